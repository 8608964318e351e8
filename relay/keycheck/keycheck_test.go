package keycheck_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/internal/relaytest"
	"github.com/referralloop/outbox-relay/relay/keycheck"
	"github.com/referralloop/outbox-relay/relay/secrets"
	"github.com/referralloop/outbox-relay/relay/signature"
)

func box(t *testing.T, b byte) *secrets.Box {
	t.Helper()
	bx, err := secrets.New(bytes.Repeat([]byte{b}, secrets.KeySize), nil)
	require.NoError(t, err)
	return bx
}

func insert(t *testing.T, db *sqlx.DB, id, status, secret, headers string) {
	t.Helper()
	_, err := db.Exec(`INSERT INTO relay.subscriptions (id, target_url, event_types, status, secret, headers)
		VALUES ($1, 'https://example.com/' || $1, '{*}', $2, $3, $4)`, id, status, secret, headers)
	require.NoError(t, err)
}

func seal(t *testing.T, b *secrets.Box, plain string) string {
	t.Helper()
	s, err := b.Seal(plain)
	require.NoError(t, err)
	return s
}

// lines answers the log lines that name a problem.
func lines(buf *bytes.Buffer) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["problem"] != nil {
			out = append(out, m)
		}
	}
	buf.Reset()
	return out
}

func TestFindsActiveSubscriptionsNoKeyOpens(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	current, lost := box(t, 1), box(t, 9)
	plain, err := signature.NewSecret()
	require.NoError(t, err)
	sealedHeader, err := json.Marshal(map[string]any{"Authorization": map[string]string{"sealed": seal(t, lost, "Bearer x")}})
	require.NoError(t, err)

	insert(t, db, "sub_clear", "active", plain, `{}`)
	insert(t, db, "sub_current", "active", seal(t, current, plain), `{"X-Plain": "v"}`)
	insert(t, db, "sub_lost1", "active", seal(t, lost, plain), `{}`)
	insert(t, db, "sub_lost2", "active", seal(t, lost, plain), `{}`)
	insert(t, db, "sub_header", "active", plain, string(sealedHeader))
	insert(t, db, "sub_paused", "paused", seal(t, lost, plain), `{}`) // not sent to: not a problem now

	var logs bytes.Buffer
	c, err := keycheck.New(keycheck.Config{DB: db, Open: current.Open, Logger: zerolog.New(&logs)})
	require.NoError(t, err)
	require.Empty(t, c.Trouble(), "nothing known before a scan")
	require.NoError(t, c.Scan(context.Background()))

	require.Equal(t, []string{"sub_header", "sub_lost1", "sub_lost2"}, c.Blocked())
	require.Contains(t, c.Problem("sub_lost1"), "unknown key")
	require.Contains(t, c.Problem("sub_header"), `custom header "Authorization"`)
	require.Empty(t, c.Problem("sub_current"))
	trouble := c.Trouble()
	require.Contains(t, trouble, "3 active subscription(s) cannot be signed for")
	require.Contains(t, trouble, "sub_header")

	// One line per problem and key, however many subscriptions share it, and no secret.
	got := lines(&logs)
	require.Len(t, got, 1, "the lost key is one problem: %v", got)
	require.Equal(t, "unknown_key", got[0]["problem"])
	require.Equal(t, secrets.KeyID(bytes.Repeat([]byte{9}, secrets.KeySize)), got[0]["key_id"])
	require.EqualValues(t, 3, got[0]["subscriptions"])
	require.NotContains(t, logs.String(), plain)

	// The same problems again: nothing new to say.
	require.NoError(t, c.Scan(context.Background()))
	require.Empty(t, lines(&logs))

	// What the deliverer meets between scans counts until the next scan.
	c.Report("sub_clear", errors.New("opening the signing secret: boom"))
	require.Contains(t, c.Blocked(), "sub_clear")
	require.Equal(t, "opening the signing secret: boom", c.Problem("sub_clear"))

	// Fixed (a rotated secret sealed with the current key): the next scan clears it.
	_, err = db.Exec(`UPDATE relay.subscriptions SET secret = $1 WHERE id IN ('sub_lost1', 'sub_lost2')`, seal(t, current, plain))
	require.NoError(t, err)
	_, err = db.Exec(`UPDATE relay.subscriptions SET headers = '{}' WHERE id = 'sub_header'`)
	require.NoError(t, err)
	require.NoError(t, c.Scan(context.Background()))
	require.Empty(t, c.Blocked())
	require.Empty(t, c.Trouble())
}

func TestNoKeyConfigured(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	plain, err := signature.NewSecret()
	require.NoError(t, err)
	insert(t, db, "sub_sealed", "active", seal(t, box(t, 1), plain), `{}`)
	var logs bytes.Buffer
	c, err := keycheck.New(keycheck.Config{DB: db, Open: (&secrets.Box{}).Open, Logger: zerolog.New(&logs)})
	require.NoError(t, err)
	require.NoError(t, c.Scan(context.Background()))
	require.Equal(t, []string{"sub_sealed"}, c.Blocked())
	got := lines(&logs)
	require.Len(t, got, 1)
	require.Equal(t, "no_key", got[0]["problem"])
	require.Contains(t, got[0]["message"], "RELAY_ENCRYPTION_KEY is not set")
}

// TestClientCertificateKey: a client certificate whose key no configured key opens blocks
// its subscription like its secret would; one that opens does not.
func TestClientCertificateKey(t *testing.T) {
	db, _ := relaytest.NewDB(t)
	current, lost := box(t, 1), box(t, 9)
	plain, err := signature.NewSecret()
	require.NoError(t, err)
	ca := relaytest.NewPrivateCA(t)
	certPEM, keyPEM := ca.NewClientCertificate(t, "relay", time.Now().Add(time.Hour))
	for id, key := range map[string]string{"sub_ok": seal(t, current, string(keyPEM)), "sub_lost": seal(t, lost, string(keyPEM))} {
		insert(t, db, id, "active", plain, `{}`)
		_, err := db.Exec(`UPDATE relay.subscriptions SET client_cert = $2, client_key = $3 WHERE id = $1`, id, string(certPEM), key)
		require.NoError(t, err)
	}
	var logs bytes.Buffer
	c, err := keycheck.New(keycheck.Config{DB: db, Open: current.Open, Logger: zerolog.New(&logs)})
	require.NoError(t, err)
	require.NoError(t, c.Scan(context.Background()))
	require.Equal(t, []string{"sub_lost"}, c.Blocked())
	got := lines(&logs)
	require.Len(t, got, 1)
	require.Equal(t, "unknown_key", got[0]["problem"])
}
