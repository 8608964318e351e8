package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpguts"

	"github.com/referralloop/outbox-relay/relay/api"
)

func TestTenancy(t *testing.T) {
	t.Parallel()
	b := setup(t)

	subA := b.createURL(t, "tenant-a", "https://hooks.example.com/a")
	subB := b.createURL(t, "tenant-b", "https://hooks.example.com/b")
	subOp := b.createURL(t, "", "https://hooks.example.com/op")
	o, e := b.insertEvent(t, "signup.created", "tenant-a", `{"x": 1}`)
	dA := b.insertDelivery(t, o, e, subA, "pending", 0)
	dOp := b.insertDelivery(t, o, e, subOp, "pending", 0)

	// Tenant B reaches nothing of tenant A's, on any route, and cannot tell it exists.
	for _, rt := range []struct{ method, path string }{
		{http.MethodGet, "/v1/subscriptions/" + subA},
		{http.MethodGet, "/v1/subscriptions/" + subA + "/secret"},
		{http.MethodGet, "/v1/subscriptions/" + subA + "/deliveries"},
		{http.MethodDelete, "/v1/subscriptions/" + subA},
		{http.MethodGet, "/v1/deliveries/" + b.ids.Format(dA)},
		{http.MethodGet, "/v1/events/" + e},
		// Nor the operator's: a tenant is not the operator.
		{http.MethodGet, "/v1/subscriptions/" + subOp},
		{http.MethodGet, "/v1/subscriptions/" + subOp + "/secret"},
		{http.MethodDelete, "/v1/subscriptions/" + subOp},
		{http.MethodGet, "/v1/deliveries/" + b.ids.Format(dOp)},
	} {
		res := b.call(t, rt.method, rt.path, "tenant-b", "")
		require.Equal(t, http.StatusNotFound, res.status, "%s %s", rt.method, rt.path)
		require.Equal(t, "not_found", res.code(t))
		// The answer is exactly that of an ID that does not exist.
		require.NotContains(t, string(res.body), "tenant-a")
	}

	// Tenant A sees its own; tenant IDs are case-sensitive.
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/subscriptions/"+subA, "tenant-a", "").status)
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/subscriptions/"+subA, "Tenant-A", "").status)
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(dA), "tenant-a", "").status)
	require.Equal(t, http.StatusNotFound, b.call(t, http.MethodGet, "/v1/deliveries/"+b.ids.Format(dOp), "tenant-a", "").status)

	listIDs := func(tenant string) []string {
		res := b.call(t, http.MethodGet, "/v1/subscriptions", tenant, "")
		require.Equal(t, http.StatusOK, res.status)
		var out []string
		for _, d := range res.json(t)["data"].([]any) {
			out = append(out, d.(map[string]any)["id"].(string))
		}
		return out
	}
	require.Equal(t, []string{subA}, listIDs("tenant-a"))
	require.Equal(t, []string{subB}, listIDs("tenant-b"))
	require.Empty(t, listIDs("tenant-c"))
	require.ElementsMatch(t, []string{subA, subB, subOp}, listIDs(""), "the operator sees all")

	// The operator reaches every tenant's objects.
	require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/v1/subscriptions/"+subB+"/secret", "", "").status)
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+subB, "", "").status)

	// A failed tenant DELETE changed nothing.
	var deleted int
	require.NoError(t, b.db.Get(&deleted, `SELECT count(*) FROM relay.subscriptions WHERE deleted_at IS NOT NULL`))
	require.Equal(t, 1, deleted)
	var pending int
	require.NoError(t, b.db.Get(&pending, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending'`))
	require.Equal(t, 2, pending)

	// Tenant A deletes its own.
	require.Equal(t, http.StatusNoContent, b.call(t, http.MethodDelete, "/v1/subscriptions/"+subA, "tenant-a", "").status)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t)

	get := func(auth string) response {
		req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/v1/subscriptions", nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		return b.send(t, req)
	}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + testToken + "x", "Basic " + testToken, testToken, "Bearer " + testToken[:len(testToken)-1]} {
		res := get(auth)
		require.Equal(t, http.StatusUnauthorized, res.status, "Authorization %q", auth)
		require.Equal(t, "unauthorized", res.code(t))
		require.Equal(t, `Bearer realm="outbox-relay"`, res.header.Get("WWW-Authenticate"))
	}
	for _, auth := range []string{"Bearer " + testToken, "bearer " + testToken, "BEARER  " + testToken} {
		require.Equal(t, http.StatusOK, get(auth).status, "Authorization %q", auth)
	}

	// 401 comes before everything else, even for paths that do not exist.
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/nothing", strings.NewReader("{"))
	require.NoError(t, err)
	res := b.send(t, req)
	require.Equal(t, http.StatusUnauthorized, res.status)
}

func TestBearerAuthDisabled(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	rec := httptest.NewRecorder()
	api.BearerAuth("", next).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusTeapot, rec.Code, "an empty token means no auth")
}

func TestTenantHeader(t *testing.T) {
	t.Parallel()
	b := setup(t)

	send := func(values ...string) response {
		req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/v1/subscriptions", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testToken)
		for _, v := range values {
			req.Header.Add("X-Tenant-ID", v)
		}
		return b.send(t, req)
	}
	require.Equal(t, http.StatusOK, send().status)
	require.Equal(t, http.StatusOK, send("t1").status)
	for _, bad := range [][]string{{""}, {"a", "b"}, {strings.Repeat("t", 256)}, {"caf\xe9"}} {
		res := send(bad...)
		require.Equal(t, http.StatusBadRequest, res.status, "%q", bad)
		require.Equal(t, "invalid_tenant_id", res.code(t))
	}
}

// TestValidateTenantID is the tenant rule, the same for the X-Tenant-ID header and for the
// tenant forward auth names in reverse-proxy mode.
func TestValidateTenantID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		id   string
		want string // "" when accepted, else what the error says
	}{
		{"Plain", "tenant_a", ""},
		{"Space", "wl 42", ""},
		{"Unicode", "Ünïcödé-テナント", ""},
		{"MaxLength", strings.Repeat("x", 255), ""},
		{"MaxLengthMultibyte", strings.Repeat("é", 127) + "x", ""}, // 255 bytes
		// Characters that print nothing but are not control characters are text.
		{"NoBreakSpace", "a\u00a0b", ""},
		{"ZeroWidthNonJoiner", "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", ""}, // Persian
		{"EmojiJoiner", "team-\U0001F469\u200D\U0001F4BB", ""},
		{"RightToLeftMark", "a\u200fb", ""},
		{"Unassigned", "a\U000E0080b", ""}, // which Go release knows it must not matter

		{"Empty", "", "tenant ID is empty"},
		{"TooLong", strings.Repeat("x", 256), "tenant ID is longer than 255 bytes"},
		{"TooLongMultibyte", strings.Repeat("é", 128), "tenant ID is longer than 255 bytes"},
		{"InvalidUTF8", "caf\xe9", "tenant ID is not valid UTF-8"},
		{"TruncatedUTF8", "caf\xc3", "tenant ID is not valid UTF-8"},
		{"Surrogate", "a\xed\xa0\x80b", "tenant ID is not valid UTF-8"},
		{"NUL", "a\x00b", "tenant ID contains a control character"},
		{"Tab", "a\tb", "tenant ID contains a control character"},
		{"HeaderInjection", "tenant\r\nX-Injected: yes", "tenant ID contains a control character"},
		{"DEL", "a\x7fb", "tenant ID contains a control character"},
		{"C1NextLine", "a\u0085b", "tenant ID contains a control character"},
		{"C1Last", "a\u009fb", "tenant ID contains a control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := api.ValidateTenantID(tc.id)
			if tc.want == "" {
				require.NoError(t, err, "%q", tc.id)
				return
			}
			require.EqualError(t, err, tc.want, "%q", tc.id)
		})
	}
}

// FuzzValidateTenantID checks that every accepted tenant ID can travel as a header value (the
// proxy sets X-Tenant-ID to it) and be stored as PostgreSQL text.
func FuzzValidateTenantID(f *testing.F) {
	for _, s := range []string{"tenant_a", "", "a\x00b", "caf\xe9", "a\u0085b", "a\u200db", strings.Repeat("é", 128)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if api.ValidateTenantID(id) != nil {
			return
		}
		if id == "" || len(id) > 255 || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
			t.Fatalf("accepted %q", id)
		}
		if !httpguts.ValidHeaderFieldValue(id) {
			t.Fatalf("accepted %q, which is not a valid header value", id)
		}
	})
}

// TestHandlerFailsClosed checks the handler alone: without a Caller in the context nothing is
// served, whatever the path.
func TestHandlerFailsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, err := api.New(api.Config{DB: b.db, DeliveryIDs: b.ids})
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		ctx    func(context.Context) context.Context
		status int
	}{
		{"NoCaller", func(ctx context.Context) context.Context { return ctx }, http.StatusUnauthorized},
		{"EmptyCaller", func(ctx context.Context) context.Context { return api.WithCaller(ctx, api.Caller{}) }, http.StatusUnauthorized},
		{"BadTenant", func(ctx context.Context) context.Context {
			return api.WithCaller(ctx, api.Caller{TenantID: "a\x00b"})
		}, http.StatusBadRequest},
		{"Operator", func(ctx context.Context) context.Context {
			return api.WithCaller(ctx, api.Caller{Operator: true})
		}, http.StatusOK},
		{"TenantWinsOverOperator", func(ctx context.Context) context.Context {
			return api.WithCaller(ctx, api.Caller{TenantID: "t1", Operator: true})
		}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/subscriptions", "/nope"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req = req.WithContext(tc.ctx(req.Context()))
				rec := httptest.NewRecorder()
				a.Handler().ServeHTTP(rec, req)
				want := tc.status
				if path == "/nope" && want == http.StatusOK {
					want = http.StatusNotFound
				}
				require.Equal(t, want, rec.Code, "%s: %s", path, rec.Body)
				require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			}
		})
	}

	// A tenant Caller set by other middleware (forward auth) scopes like the header does.
	sub := b.createURL(t, "t2", "https://hooks.example.com/")
	req := httptest.NewRequest(http.MethodGet, "/v1/subscriptions/"+sub, nil)
	req = req.WithContext(api.WithCaller(req.Context(), api.Caller{TenantID: "t1", Operator: true}))
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusNotFound, rec.Code)
}

func TestSecretSealing(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *api.Config) {
		c.SealSecret = func(plain string) (string, error) { return "sealed:" + plain, nil }
		c.OpenSecret = func(stored string) (string, error) {
			plain, ok := strings.CutPrefix(stored, "sealed:")
			if !ok {
				return "", context.Canceled // any error: the key does not open it
			}
			return plain, nil
		}
	})
	sub := b.create(t, "", `{"target_url": "https://hooks.example.com/", "event_types": ["*"]}`)
	id, secret := sub["id"].(string), sub["secret"].(string)

	var stored string
	require.NoError(t, b.db.Get(&stored, `SELECT secret FROM relay.subscriptions WHERE id = $1`, id))
	require.Equal(t, "sealed:"+secret, stored)
	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "", "")
	require.Equal(t, secret, res.json(t)["secret"])

	// A secret that does not open is the relay's configuration problem: 500 with a code that
	// says so, and neither the stored value nor the error in the answer.
	_, err := b.db.Exec(`UPDATE relay.subscriptions SET secret = 'garbage' WHERE id = $1`, id)
	require.NoError(t, err)
	res = b.call(t, http.MethodGet, "/v1/subscriptions/"+id+"/secret", "", "")
	require.Equal(t, http.StatusInternalServerError, res.status)
	require.Equal(t, "secret_unavailable", res.code(t))
	require.Equal(t, "the signing secret of this subscription is encrypted with a key this relay is not configured with", res.message(t))
	require.NotContains(t, string(res.body), "garbage")
	require.NotContains(t, string(res.body), "canceled")
}

func TestInternalErrorHidesDetail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := b.createURL(t, "", "https://hooks.example.com/")
	_, err := b.db.Exec(`ALTER TABLE relay.subscriptions RENAME COLUMN description TO descr`)
	require.NoError(t, err)

	res := b.call(t, http.MethodGet, "/v1/subscriptions/"+sub, "", "")
	require.Equal(t, http.StatusInternalServerError, res.status)
	require.Equal(t, "internal_error", res.code(t))
	require.NotContains(t, string(res.body), "descr")
	require.NotContains(t, string(res.body), "column")
}
