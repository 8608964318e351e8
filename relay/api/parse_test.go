package api

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
			aerr, ok := errors.AsType[*apiError](err)
			require.True(t, ok, "error %T %v is not an *apiError: it would be a 500", err, err)
			require.Contains(t, []int{http.StatusBadRequest, http.StatusUnprocessableEntity}, aerr.status, "%v", aerr)
			require.NotEmpty(t, aerr.code)
			require.NotEmpty(t, aerr.message)
			_, err := json.Marshal(errorBody{Error: errorDetail{Code: aerr.code, Message: aerr.message}})
			require.NoError(t, err)
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

func TestCursor(t *testing.T) {
	t.Parallel()
	c := encodeCursor(cursorSubscriptions, 42)
	pos, ok := decodeCursor(c, cursorSubscriptions)
	require.True(t, ok)
	require.Equal(t, int64(42), pos)
	_, ok = decodeCursor(c, cursorDeliveries)
	require.False(t, ok, "a cursor belongs to one list")

	for _, bad := range []string{"", "!", "czo", "czoxeA", "czowMQ", "OjE", "czorMQ"} {
		// "s:", "s:1x", "s:01", ":1", "s:+1"
		_, ok := decodeCursor(bad, cursorSubscriptions)
		require.False(t, ok, bad)
	}
}

func TestParsePage(t *testing.T) {
	t.Parallel()
	p, err := parsePage(url.Values{}, cursorSubscriptions)
	require.NoError(t, err)
	require.Equal(t, page{limit: 50}, p)
	require.Nil(t, p.beforeParam())

	p, err = parsePage(url.Values{"limit": {"500"}, "cursor": {encodeCursor(cursorSubscriptions, 7)}}, cursorSubscriptions)
	require.NoError(t, err)
	require.Equal(t, page{limit: 500, before: 7}, p)
	require.Equal(t, int64(7), p.beforeParam())
}

func TestPaginate(t *testing.T) {
	t.Parallel()
	pos := func(i int) int64 { return int64(i) }
	rows, next := paginate([]int{9, 8, 7}, 2, cursorDeliveries, pos)
	require.Equal(t, []int{9, 8}, rows)
	require.NotNil(t, next)
	before, ok := decodeCursor(*next, cursorDeliveries)
	require.True(t, ok)
	require.Equal(t, int64(8), before)

	rows, next = paginate([]int{9, 8}, 2, cursorDeliveries, pos)
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
