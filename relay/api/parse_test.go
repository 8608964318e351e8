package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/ids"
	"github.com/referralloop/outbox-relay/relay/targets"
)

// hashResolver resolves every name, to a public or private address picked by its hash.
type hashResolver struct{}

func (hashResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	h := fnv.New32a()
	h.Write([]byte(host))
	switch h.Sum32() % 3 {
	case 0:
		return []net.IPAddr{{IP: net.ParseIP("10.0.0.1")}}, nil
	case 1:
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []net.IPAddr{{IP: net.ParseIP("93.184.216.34")}}, nil
}

func FuzzCreateSubscription(f *testing.F) {
	for _, s := range []string{
		`{"target_url": "https://hooks.example.com/", "event_types": ["signup.created"]}`,
		`{"target_url": "https://hooks.example.com/", "event_type": "signup.*", "ordered": true}`,
		`{"target_url": "https://a.example.com/", "event_types": ["*", "b", "a", "a"], "filter": {"x": [1, {"y": null}]},
		  "headers": {"X-A": "1"}, "metadata": {"k": 1e10}, "description": "d"}`,
		`{"target_url": "https://127.0.0.1/", "event_types": []}`,
		`{"target_url": 1}`, `[]`, `null`, `{}`, `{"a":1}`, `{"target_url": "x"} {}`,
		`{"target_url": "https://a.example.com/", "event_types": ["a"], "filter": {"\u0000": "\ud800"}}`,
		`{"target_url": "https://a.example.com/", "event_types": ["a"], "metadata": {"n": 1e-400}}`,
		`{"target_url": "https://a.example.com/", "event_types": ["a"], "headers": {"Webhook-Id": "x"}}`,
		`{"target_url": "https://a.example.com/", "event_types": ["a"], "headers": {"x": "a\nb"}}`,
		`{"target_url": "https://a.example.com/", "event_types": ["a"], "headers": {"Authorization": "********"}}`,
		`{"target_url": "https://a.example.com/", "event_types": ["a"], "target_url": "https://b.example.com/"}`,
		"", " ", "{", `{"target_url": "https://a.example.com/", "event_types": ["a"], "filter": {"a": {"a": {"a": {}}}}}`,
	} {
		f.Add([]byte(s))
	}
	policy := targets.Policy{Resolver: hashResolver{}}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxBodyBytes {
			return // readBody answers 413 before parsing
		}
		if len(strings.TrimSpace(string(body))) == 0 {
			body = nil // readBody answers an empty body as nil
		}
		in, err := parseCreateSubscription(body)
		if err != nil {
			checkRefusal(t, err)
			return
		}

		// Accepted: everything stored is what the database and the deliverer can take.
		require.NotEmpty(t, in.EventTypes)
		require.True(t, slices.IsSorted(in.EventTypes))
		require.Equal(t, len(in.EventTypes), len(slices.Compact(slices.Clone(in.EventTypes))))
		for _, p := range in.EventTypes {
			require.True(t, validEventPattern(p), p)
		}
		require.NotContains(t, in.Description, "\x00")
		for _, raw := range []json.RawMessage{in.Filter, in.Metadata} {
			if raw == nil {
				continue
			}
			require.True(t, json.Valid(raw), "%s", raw)
			require.Equal(t, byte('{'), raw[0])
			require.NotContains(t, string(raw), `\u0000`)
		}
		require.NotEqual(t, "{}", string(in.Filter))
		for name, value := range in.Headers {
			require.True(t, isToken(name), name)
			require.NotContains(t, reservedHeaders, strings.ToLower(name))
			require.True(t, validHeaderValue(value), value)
		}
		_, err = json.Marshal(in.Headers)
		require.NoError(t, err)

		// The target check that follows never panics either, and says yes only to https.
		if policy.Validate(context.Background(), in.TargetURL) == nil {
			u, err := url.Parse(in.TargetURL)
			require.NoError(t, err)
			require.Equal(t, "https", strings.ToLower(u.Scheme))
		}
	})
}

// testAPI is an API for the pure helpers: only its delivery ID key is used.
func testAPI(t *testing.T) *API {
	t.Helper()
	d, err := ids.NewDeliveries([]byte("0123456789abcdef"), 0)
	require.NoError(t, err)
	return &API{ids: d}
}

func TestCursor(t *testing.T) {
	t.Parallel()
	a := testAPI(t)
	c := a.encodeCursor(cursorSubscriptions, 42)
	pos, ok := a.decodeCursor(c, cursorSubscriptions)
	require.True(t, ok)
	require.Equal(t, int64(42), pos)
	_, ok = a.decodeCursor(c, cursorDeliveries)
	require.False(t, ok, "a cursor belongs to one list")

	// Cursors of deliveries and events hold their row id sealed, as delivery IDs do.
	for _, kind := range []string{cursorDeliveries, cursorEvents} {
		c := a.encodeCursor(kind, 42)
		raw, err := base64.RawURLEncoding.DecodeString(c)
		require.NoError(t, err)
		require.NotContains(t, string(raw), "42")
		require.Len(t, raw, 2+26)
		pos, ok := a.decodeCursor(c, kind)
		require.True(t, ok)
		require.Equal(t, int64(42), pos)
		_, ok = a.decodeCursor(base64.RawURLEncoding.EncodeToString([]byte(kind+":42")), kind)
		require.False(t, ok, "a plain position is not a cursor of %s", kind)
	}
	_, ok = a.decodeCursor(base64.RawURLEncoding.EncodeToString([]byte("d:"+a.ids.Format(42)[4:])), cursorDeliveries)
	require.False(t, ok, "a delivery ID is not a cursor")
	_, ok = a.decodeCursor(base64.RawURLEncoding.EncodeToString([]byte("d:"+a.ids.SealCursor(ids.CursorEvents, 42))), cursorDeliveries)
	require.False(t, ok, "an events cursor sealed under the deliveries' kind")

	for _, bad := range []string{"", "!", "czo", "czoxeA", "czowMQ", "OjE", "czorMQ"} {
		// "s:", "s:1x", "s:01", ":1", "s:+1"
		_, ok := a.decodeCursor(bad, cursorSubscriptions)
		require.False(t, ok, bad)
	}
}

func TestParsePage(t *testing.T) {
	t.Parallel()
	a := testAPI(t)
	p, err := a.parsePage(url.Values{}, cursorSubscriptions)
	require.NoError(t, err)
	require.Equal(t, page{limit: 50}, p)
	require.Nil(t, p.beforeParam())

	p, err = a.parsePage(url.Values{"limit": {"500"}, "cursor": {a.encodeCursor(cursorSubscriptions, 7)}}, cursorSubscriptions)
	require.NoError(t, err)
	require.Equal(t, page{limit: 500, before: 7}, p)
	require.Equal(t, int64(7), p.beforeParam())
}

func TestPaginate(t *testing.T) {
	t.Parallel()
	a := testAPI(t)
	pos := func(i int) int64 { return int64(i) }
	rows, next := paginate(a, []int{9, 8, 7}, 2, cursorDeliveries, pos)
	require.Equal(t, []int{9, 8}, rows)
	require.NotNil(t, next)
	before, ok := a.decodeCursor(*next, cursorDeliveries)
	require.True(t, ok)
	require.Equal(t, int64(8), before)

	rows, next = paginate(a, []int{9, 8}, 2, cursorDeliveries, pos)
	require.Equal(t, []int{9, 8}, rows)
	require.Nil(t, next)
}

func TestNumberInRange(t *testing.T) {
	t.Parallel()
	for n, want := range map[string]bool{
		"0": true, "-0": true, "0.0e10": true, "1": true, "1e308": true, "-1.7976931348623157e308": true,
		"4.9e-324": true, "1e-300": true, "123456789012345678901234567890": true,
		"1e309": false, "-1e400": false, "1e-400": false, "0.0000e-999": true, "5e-325": false,
	} {
		require.Equal(t, want, numberInRange(n), n)
	}
}

func TestIsJSON(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"application/json": true, "application/json; charset=utf-8": true, "APPLICATION/JSON;charset=UTF-8": true,
		"": false, "application/json; charset=utf-16": false, "text/json": false, "application/json-patch+json": false,
		"application/json;": true, "application/json; x": false,
	} {
		require.Equal(t, want, isJSON(ct), ct)
	}
}

func TestNormalizeEventTypes(t *testing.T) {
	t.Parallel()
	got, err := normalizeEventTypes([]string{"b.*", "a", "*", "a", "b.c"})
	require.NoError(t, err)
	require.Equal(t, []string{"*", "a", "b.*", "b.c"}, got)
	for _, bad := range []string{"", ".", "*.a", "a.", "a..b", "a.**", "a*", "**", "a .b", "é"} {
		_, err := normalizeEventTypes([]string{bad})
		require.Error(t, err, bad)
	}
}

func TestCheckIdempotencyKey(t *testing.T) {
	t.Parallel()
	for k, ok := range map[string]bool{
		"a": true, "a b": true, "550e8400-e29b-41d4-a716-446655440000": true, strings.Repeat("~", 255): true,
		"": false, strings.Repeat("k", 256): false, "a\x00b": false, "a\tb": false, "a\nb": false, "\x7f": false,
		"caf\xc3\xa9": false, "caf\xe9": false,
	} {
		require.Equal(t, ok, checkIdempotencyKey(k) == "", "%q", k)
	}
}

func TestRequestHash(t *testing.T) {
	t.Parallel()
	h := requestHash("POST", "/v1/subscriptions", []byte(`{"a": 1}`))
	require.Equal(t, h, requestHash("POST", "/v1/subscriptions", []byte("\n{\"a\":1}  ")), "JSON whitespace does not count")
	require.NotEqual(t, h, requestHash("POST", "/v1/subscriptions", []byte(`{"a": 2}`)))
	require.NotEqual(t, h, requestHash("POST", "/v1/subscriptions/x", []byte(`{"a": 1}`)))
	require.NotEqual(t, h, requestHash("PUT", "/v1/subscriptions", []byte(`{"a": 1}`)))
	require.NotEqual(t, requestHash("POST", "/a", []byte("b")), requestHash("POST", "/a\x00b", nil), "fields are separated")
	require.Equal(t, requestHash("POST", "/a", nil), requestHash("POST", "/a", []byte{}))
}

// checkRefusal asserts that err is an answer for the caller, 400 or 422, that encodes.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	aerr, ok := errors.AsType[*apiError](err)
	require.True(t, ok, "error %T %v is not an *apiError: it would be a 500", err, err)
	require.Contains(t, []int{http.StatusBadRequest, http.StatusUnprocessableEntity}, aerr.status, "%v", aerr)
	require.NotEmpty(t, aerr.code)
	require.NotEmpty(t, aerr.message)
	_, err = json.Marshal(errorBody{Error: errorDetail{Code: aerr.code, Message: aerr.message}})
	require.NoError(t, err)
}

func FuzzPatchSubscription(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"status": "paused"}`, `{"status": "disabled"}`, `{"status": null}`,
		`{"target_url": "https://hooks.example.com/", "event_type": "a.*"}`, `{"target_url": null}`,
		`{"event_types": ["b", "a", "a"], "filter": null, "headers": null, "metadata": null, "description": null, "ordered": null}`,
		`{"event_types": null}`, `{"event_types": [], "event_type": "a"}`, `{"filter": {}}`,
		`{"filter": {"a": [1, {"b": null}]}, "metadata": {"n": 1e400}}`, `{"headers": {"Webhook-Id": "x"}}`,
		`{"headers": {"X-A": "1", "x-a": "2"}}`, `{"description": "\u0000"}`, `{"ordered": "yes"}`, `{"id": "sub_x"}`,
		`[]`, `null`, `"x"`, `{`, `{} {}`, "", " ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxBodyBytes {
			return // readBody answers 413 before parsing
		}
		if len(strings.TrimSpace(string(body))) == 0 {
			body = nil
		}
		p, err := parsePatchSubscription(body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		if p.EventTypes != nil {
			require.NotEmpty(t, p.EventTypes)
			require.True(t, slices.IsSorted(p.EventTypes))
			require.Equal(t, len(p.EventTypes), len(slices.Compact(slices.Clone(p.EventTypes))))
			for _, e := range p.EventTypes {
				require.True(t, validEventPattern(e), e)
			}
		}
		if p.Status != nil {
			require.Contains(t, settableStatuses, *p.Status)
		}
		if p.Description != nil {
			require.NotContains(t, *p.Description, "\x00")
		}
		if p.Filter != nil && *p.Filter != nil {
			require.True(t, json.Valid(*p.Filter))
			require.Equal(t, byte('{'), (*p.Filter)[0])
			require.NotEqual(t, "{}", string(*p.Filter))
			require.NotContains(t, string(*p.Filter), `\u0000`)
		}
		if p.Metadata != nil {
			require.True(t, json.Valid(*p.Metadata))
			require.Equal(t, byte('{'), (*p.Metadata)[0])
			require.NotContains(t, string(*p.Metadata), `\u0000`)
		}
		if p.Headers != nil {
			require.NotNil(t, *p.Headers)
			for name, value := range *p.Headers {
				require.True(t, isToken(name), name)
				require.NotContains(t, reservedHeaders, strings.ToLower(name))
				require.True(t, validHeaderValue(value), value)
			}
		}
	})
}

func FuzzReplay(f *testing.F) {
	for _, s := range []string{
		`{"since": "2026-11-27T05:00:00Z"}`, `{"since": "2026-11-27T05:00:00.123456789+05:30", "status": "cancelled"}`,
		`{"since": "0000-01-01T00:00:00Z", "status": null}`, `{"since": "2026-11-27"}`, `{"since": 1}`,
		`{"since": "0000-01-01T00:00:00-23:59"}`, `{"since": "9999-12-31T23:59:59.999999999-23:59"}`,
		`{"since": "2026-11-27T05:00:00Z", "status": "pending"}`, `{"until": "x"}`, `{}`, `[]`, `null`, "", "{",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > maxBodyBytes {
			return
		}
		if len(strings.TrimSpace(string(body))) == 0 {
			body = nil
		}
		in, err := parseReplay(body)
		if err != nil {
			checkRefusal(t, err)
			return
		}
		require.Contains(t, replayStatuses, in.Status)
		require.Equal(t, time.UTC, in.Since.Location(), "PostgreSQL refuses some offsets RFC 3339 allows")
		require.True(t, in.Since.Year() >= 1 && in.Since.Year() <= 9999, "a year PostgreSQL stores: %v", in.Since)
	})
}

func TestParseNoBody(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"{}", " { } "} {
		require.NoError(t, parseNoBody([]byte(ok)), ok)
	}
	require.NoError(t, parseNoBody(nil))
	for _, bad := range []string{`{"a": 1}`, `[]`, `null`, `1`, `{`, `{}{}`, `"{}"`} {
		err := parseNoBody([]byte(bad))
		require.Error(t, err, bad)
		checkRefusal(t, err)
	}
}
