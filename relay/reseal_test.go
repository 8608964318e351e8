package relay

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/pgtest"
	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

var template = pgtest.Template{
	Name: outbox.MigrationsFingerprint(),
	Setup: func(ctx context.Context, db *sql.DB) error {
		_, err := outbox.Migrate(ctx, db, outbox.MigrateOptions{NotifyTrigger: true})
		return err
	},
}

func resealDB(t *testing.T) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", pgtest.New(t, template))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func testBox(t *testing.T, current, previous byte) *secrets.Box {
	t.Helper()
	key := func(b byte) []byte {
		if b == 0 {
			return nil
		}
		return bytes.Repeat([]byte{b}, secrets.KeySize)
	}
	box, err := secrets.New(key(current), key(previous))
	require.NoError(t, err)
	return box
}

func insertSubscription(t *testing.T, db *sqlx.DB, id, secret, headers string) {
	t.Helper()
	_, err := db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, headers, secret)
		VALUES ($1, 'https://hooks.example.com/' || $1, '{*}', $2::jsonb, $3)`, id, headers, secret)
	require.NoError(t, err)
}

func sealedHeader(t *testing.T, box *secrets.Box, plain string) string {
	t.Helper()
	sealed, err := box.Seal(plain)
	require.NoError(t, err)
	b, err := json.Marshal(map[string]string{"sealed": sealed})
	require.NoError(t, err)
	return string(b)
}

func storedHeaders(t *testing.T, db *sqlx.DB, id string) string {
	t.Helper()
	var h string
	require.NoError(t, db.Get(&h, `SELECT headers::text FROM relay.subscriptions WHERE id = $1`, id))
	return h
}

// TestResealHeaders: after a start with a new key, every header value is sealed under it:
// those stored in clear and those sealed under the previous key. Nothing needs the previous
// key any more, and the values are unchanged.
func TestResealHeaders(t *testing.T) {
	t.Parallel()
	db := resealDB(t)
	oldBox := testBox(t, 1, 0)
	newBox := testBox(t, 2, 1)
	onlyNew := testBox(t, 2, 0)
	oldSecret, err := oldBox.Seal("whsec_b")
	require.NoError(t, err)
	newSecret, err := onlyNew.Seal("whsec_c")
	require.NoError(t, err)

	insertSubscription(t, db, "sub_clear", "whsec_a",
		`{"Authorization": "Bearer clear-token", "X-Odd": "enc:v1:not-sealed"}`)
	insertSubscription(t, db, "sub_old", oldSecret,
		`{"Authorization": `+sealedHeader(t, oldBox, "Bearer old-token")+`, "X-Team": "growth"}`)
	currentHeaders := `{"Authorization": ` + sealedHeader(t, onlyNew, "Bearer new-token") + `}`
	insertSubscription(t, db, "sub_current", newSecret, currentHeaders)
	insertSubscription(t, db, "sub_headers_only", newSecret, `{"X-A": "value-a"}`)
	insertSubscription(t, db, "sub_none", newSecret, `{}`)
	currentHeaders = storedHeaders(t, db, "sub_current")

	n, _, err := resealSecrets(context.Background(), db, "relay", newBox)
	require.NoError(t, err)
	require.Equal(t, 3, n, "sub_clear, sub_old and sub_headers_only")

	want := map[string]map[string]string{
		"sub_clear":        {"Authorization": "Bearer clear-token", "X-Odd": "enc:v1:not-sealed"},
		"sub_old":          {"Authorization": "Bearer old-token", "X-Team": "growth"},
		"sub_current":      {"Authorization": "Bearer new-token"},
		"sub_headers_only": {"X-A": "value-a"},
		"sub_none":         {},
	}
	for id, plain := range want {
		raw := storedHeaders(t, db, id)
		for _, v := range plain {
			require.NotContains(t, raw, v, id)
		}
		stored, err := secrets.DecodeHeaders([]byte(raw))
		require.NoError(t, err, id)
		for name, v := range stored {
			require.True(t, v.IsSealed(), "%s %s", id, name)
			require.False(t, onlyNew.NeedsReseal(v.Sealed), "%s %s", id, name)
		}
		got, err := secrets.OpenHeaders([]byte(raw), onlyNew.Open)
		require.NoError(t, err, "%s opens without the previous key", id)
		require.Equal(t, plain, got, id)

		var secret string
		require.NoError(t, db.Get(&secret, `SELECT secret FROM relay.subscriptions WHERE id = $1`, id))
		_, err = onlyNew.Open(secret)
		require.NoError(t, err, id)
	}
	require.Equal(t, currentHeaders, storedHeaders(t, db, "sub_current"), "already current: not rewritten")

	n, _, err = resealSecrets(context.Background(), db, "relay", newBox)
	require.NoError(t, err)
	require.Zero(t, n, "a second start has nothing to do")
}

func TestResealHeadersWithoutKey(t *testing.T) {
	t.Parallel()
	db := resealDB(t)
	insertSubscription(t, db, "sub_clear", "whsec_a", `{"Authorization": "Bearer clear-token"}`)
	n, _, err := resealSecrets(context.Background(), db, "relay", testBox(t, 0, 0))
	require.NoError(t, err)
	require.Zero(t, n)
	require.JSONEq(t, `{"Authorization": "Bearer clear-token"}`, storedHeaders(t, db, "sub_clear"))
}

// TestResealHeadersGuarded: headers changed between reading and writing (a PATCH on another
// replica) are not overwritten with the stale ones; the secret is resealed all the same.
func TestResealHeadersGuarded(t *testing.T) {
	t.Parallel()
	db := resealDB(t)
	box := testBox(t, 2, 0)
	insertSubscription(t, db, "sub_a", "whsec_a", `{"Authorization": "Bearer before"}`)

	stale, err := readStale(context.Background(), db, "relay", box)
	require.NoError(t, err)
	require.Len(t, stale, 1)
	patched := `{"Authorization": ` + sealedHeader(t, box, "Bearer after") + `}`
	_, err = db.Exec(`UPDATE relay.subscriptions SET headers = $1::jsonb WHERE id = 'sub_a'`, patched)
	require.NoError(t, err)

	changed, err := resealRow(context.Background(), db, "relay", box, stale[0])
	require.NoError(t, err)
	require.True(t, changed, "the secret was resealed")
	got, err := secrets.OpenHeaders([]byte(storedHeaders(t, db, "sub_a")), box.Open)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Authorization": "Bearer after"}, got)
	var secret string
	require.NoError(t, db.Get(&secret, `SELECT secret FROM relay.subscriptions WHERE id = 'sub_a'`))
	require.True(t, strings.HasPrefix(secret, "enc:v1:"), secret)
}

// TestResealHeadersUnknownKey: a subscription with a header sealed under a key the relay
// does not have is left as it is, counted, and does not stop the others from being resealed.
func TestResealHeadersUnknownKey(t *testing.T) {
	t.Parallel()
	db := resealDB(t)
	lost := `{"Authorization": ` + sealedHeader(t, testBox(t, 9, 0), "Bearer lost") + `}`
	insertSubscription(t, db, "sub_lost", "whsec_a", lost)
	insertSubscription(t, db, "sub_ok", "whsec_b", `{"Authorization": "Bearer ok"}`)
	resealed, unopenable, err := resealSecrets(context.Background(), db, "relay", testBox(t, 2, 1))
	require.NoError(t, err)
	require.Equal(t, 1, resealed)
	require.Equal(t, 1, unopenable)
	var headers string
	require.NoError(t, db.Get(&headers, `SELECT headers::text FROM relay.subscriptions WHERE id = 'sub_lost'`))
	require.JSONEq(t, lost, headers, "left as it was")
	require.NoError(t, db.Get(&headers, `SELECT headers::text FROM relay.subscriptions WHERE id = 'sub_ok'`))
	require.NotContains(t, headers, "Bearer ok", "the others are sealed")
}

// TestResealClientKey: a client certificate key in clear or under the previous key is
// sealed under the current one; one already current is left alone, and so is the
// certificate, which is public.
func TestResealClientKey(t *testing.T) {
	t.Parallel()
	db := resealDB(t)
	oldBox := testBox(t, 1, 0)
	newBox := testBox(t, 2, 1)
	onlyNew := testBox(t, 2, 0)
	secret, err := onlyNew.Seal("whsec_a")
	require.NoError(t, err)
	const keyPEM = "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"
	oldKey, err := oldBox.Seal(keyPEM)
	require.NoError(t, err)
	currentKey, err := onlyNew.Seal(keyPEM)
	require.NoError(t, err)
	for id, key := range map[string]string{"sub_clear": keyPEM, "sub_old": oldKey, "sub_current": currentKey} {
		insertSubscription(t, db, id, secret, `{}`)
		_, err := db.Exec(`UPDATE relay.subscriptions SET client_cert = 'CERT', client_key = $2 WHERE id = $1`, id, key)
		require.NoError(t, err)
	}
	insertSubscription(t, db, "sub_none", secret, `{}`)

	n, _, err := resealSecrets(context.Background(), db, "relay", newBox)
	require.NoError(t, err)
	require.Equal(t, 2, n, "sub_clear and sub_old")
	for _, id := range []string{"sub_clear", "sub_old", "sub_current"} {
		var cert, key string
		require.NoError(t, db.QueryRow(`SELECT client_cert, client_key FROM relay.subscriptions WHERE id = $1`, id).Scan(&cert, &key))
		require.Equal(t, "CERT", cert)
		require.False(t, newBox.NeedsReseal(key), id)
		plain, err := onlyNew.Open(key)
		require.NoError(t, err, id)
		require.Equal(t, keyPEM, plain, id)
	}
	var stillCurrent string
	require.NoError(t, db.Get(&stillCurrent, `SELECT client_key FROM relay.subscriptions WHERE id = 'sub_current'`))
	require.Equal(t, currentKey, stillCurrent, "a current value is not rewritten")
	var none sql.NullString
	require.NoError(t, db.Get(&none, `SELECT client_key FROM relay.subscriptions WHERE id = 'sub_none'`))
	require.False(t, none.Valid)
}
