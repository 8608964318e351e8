// Package keycheck finds the active subscriptions that this relay cannot sign for: those
// whose signing secret (or previous secret during a rotation), a sealed custom header value
// or client certificate key no configured key opens, so
// that a wrong or missing RELAY_ENCRYPTION_KEY is seen at start-up and in readiness, not
// only as deliveries that never go out.
//
// A Checker reads every active subscription's stored secrets at start and then every
// Interval, and tries the configured keys on them (secrets.SigningKey, the same step the
// deliverer takes before it signs). Problems are logged one line per kind and key (how
// many subscriptions, a few of their IDs, what to configure), never the secrets. The
// deliverer reports what it meets between scans, and asks which subscriptions to leave to
// other replicas (Blocked); readiness asks Trouble.
//
// Nothing here changes a subscription or a delivery: the deliveries of a subscription with a
// key problem stay pending with their attempts untouched, and go out by themselves once a
// relay with the right key (or a rotated secret) takes them.
package keycheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

// Config configures a Checker.
type Config struct {
	// DB is the relay's database; required.
	DB *sqlx.DB
	// Schema holds the relay's tables; outbox.DefaultSchema when empty.
	Schema string
	// Open opens a stored secret (a secrets.Box's Open); nil means every secret is stored
	// in clear.
	Open func(stored string) (string, error)
	// Interval is how often the subscriptions are checked again; 30s when zero.
	Interval time.Duration
	// Logger is the component's logger.
	Logger zerolog.Logger
}

// Checker keeps the subscriptions whose secrets cannot be opened. Safe for concurrent use.
type Checker struct {
	cfg   Config
	query string

	mu sync.Mutex
	// scanned holds what the last scan found, reported what the deliverer met since.
	scanned, reported map[string]string
	// logged holds the problem lines of the last scan, to log only what changed.
	logged map[string]bool
}

// activeSecrets reads what a delivery would be signed with (the secret, and the previous
// one while it still signs beside it), the custom headers it would carry and the client
// certificate it would present.
const activeSecrets = `
SELECT id, secret, CASE WHEN previous_secret_expires_at > now() THEN coalesce(previous_secret, '') ELSE '' END,
       headers::text, coalesce(client_cert, ''), coalesce(client_key, '')
FROM {{schema}}.subscriptions
WHERE status = 'active' AND deleted_at IS NULL
ORDER BY id`

// New returns a Checker for cfg.
func New(cfg Config) (*Checker, error) {
	if cfg.DB == nil {
		return nil, errors.New("keycheck: DB is required")
	}
	if cfg.Schema == "" {
		cfg.Schema = outbox.DefaultSchema
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	return &Checker{
		cfg:      cfg,
		query:    outbox.Qualify(cfg.Schema, activeSecrets),
		scanned:  map[string]string{},
		reported: map[string]string{},
		logged:   map[string]bool{},
	}, nil
}

// Run checks every Interval until ctx ends (the first check is Scan, run by the caller at
// start-up). A check that cannot read the database is retried at the next interval.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.Scan(ctx); err != nil && ctx.Err() == nil {
				c.cfg.Logger.Warn().Err(err).Msg("checking subscription secrets")
			}
		}
	}
}

// Scan checks every active subscription now, and logs each problem it finds that the last
// scan did not: one line per kind of problem and key.
func (c *Checker) Scan(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := c.cfg.DB.QueryContext(qctx, c.query)
	if err != nil {
		return fmt.Errorf("reading subscription secrets: %w", err)
	}
	defer rows.Close()
	found := map[string]string{}
	groups := map[string]*group{}
	for rows.Next() {
		var id, secret, previous, headers, certChain, certKey string
		if err := rows.Scan(&id, &secret, &previous, &headers, &certChain, &certKey); err != nil {
			return fmt.Errorf("reading subscription secrets: %w", err)
		}
		stored, err := c.check(secret, previous, headers)
		if err == nil && certKey != "" {
			if _, err = secrets.ClientCertificate(certChain, certKey, c.cfg.Open); err != nil {
				stored = certKey
			}
		}
		if err != nil {
			found[id] = err.Error()
			g := groupOf(groups, err, stored)
			g.ids = append(g.ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading subscription secrets: %w", err)
	}

	c.mu.Lock()
	c.scanned = found
	c.reported = map[string]string{} // what the deliverer met is in this scan too, or fixed
	logged := map[string]bool{}
	var fresh []*group
	for key, g := range groups {
		logged[key] = true
		if !c.logged[key] {
			fresh = append(fresh, g)
		}
	}
	c.logged = logged
	c.mu.Unlock()

	sort.Slice(fresh, func(i, j int) bool { return fresh[i].key < fresh[j].key })
	for _, g := range fresh {
		ev := c.cfg.Logger.Error().Str("problem", g.kind).Int("subscriptions", len(g.ids)).
			Strs("subscription_ids", g.ids[:min(len(g.ids), 5)])
		if g.keyID != "" {
			ev = ev.Str("key_id", g.keyID)
		}
		ev.Msg(g.message + "; their deliveries wait until it is fixed")
	}
	return nil
}

// check tries the configured keys on one subscription's stored secrets and headers, as
// the deliverer would before sending; on failure it answers the stored value that failed.
func (c *Checker) check(secret, previous, headers string) (string, error) {
	for _, stored := range []string{secret, previous} {
		if stored == "" {
			continue
		}
		if _, err := secrets.SigningKey(stored, c.cfg.Open); err != nil {
			return stored, err
		}
	}
	values, err := secrets.DecodeHeaders([]byte(headers))
	if err != nil {
		return "", fmt.Errorf("custom headers: %w", err)
	}
	for name, v := range values {
		if _, err := v.Open(c.open); err != nil {
			return v.Sealed, fmt.Errorf("custom header %q: %w", name, err)
		}
	}
	return "", nil
}

// open opens a sealed value with Config.Open; without it nothing sealed can be opened.
func (c *Checker) open(stored string) (string, error) {
	if c.cfg.Open == nil {
		return "", secrets.ErrNoKey
	}
	return c.cfg.Open(stored)
}

// group is one kind of problem with one key, and the subscriptions that have it.
type group struct {
	key, kind, keyID, message string
	ids                       []string
}

// groupOf finds or makes the group of err, met on the stored value stored.
func groupOf(groups map[string]*group, err error, stored string) *group {
	keyID := secrets.KeyIDOf(stored)
	kind, message := "unusable_secret", "subscription secrets are not valid whsec_ values"
	switch {
	case errors.Is(err, secrets.ErrNoKey):
		kind, message = "no_key", "subscription secrets or header values are encrypted but RELAY_ENCRYPTION_KEY is not set"
	case errors.Is(err, secrets.ErrUnknownKey):
		kind, message = "unknown_key", "subscription secrets or header values are sealed with a key that is neither RELAY_ENCRYPTION_KEY nor RELAY_ENCRYPTION_KEY_PREVIOUS (set the key with this id)"
	case errors.Is(err, secrets.ErrDecrypt):
		kind, message = "does_not_decrypt", "subscription secrets or header values do not decrypt with the configured key of the same id: altered, or a different key that shares the id"
	case errors.Is(err, secrets.ErrMalformed):
		kind, message = "malformed", "subscription secrets are malformed sealed values"
	case errors.Is(err, secrets.ErrBadClientCertificate):
		kind, message = "unusable_client_certificate", "subscription client certificates are stored in a form the relay cannot use"
	case errors.Is(err, secrets.ErrMalformedHeaders):
		kind, message = "malformed_headers", "subscription custom headers are stored in a form the relay cannot read"
	}
	key := kind + "/" + keyID
	g := groups[key]
	if g == nil {
		g = &group{key: key, kind: kind, keyID: keyID, message: message}
		groups[key] = g
	}
	return g
}

// Report records that the deliverer could not open subscriptionID's secret or sealed
// headers; it counts until the next scan.
func (c *Checker) Report(subscriptionID string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reported[subscriptionID] = err.Error()
}

// Blocked lists the subscriptions known to have a key problem.
func (c *Checker) Blocked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.scanned)+len(c.reported))
	for id := range c.scanned {
		ids = append(ids, id)
	}
	for id := range c.reported {
		if _, dup := c.scanned[id]; !dup {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Problem answers why subscriptionID cannot be signed for, or "" when nothing is known.
func (c *Checker) Problem(subscriptionID string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.reported[subscriptionID]; ok {
		return p
	}
	return c.scanned[subscriptionID]
}

// Trouble says, for readiness, how many active subscriptions cannot be signed for and
// why (the first of them), or "" when there are none.
func (c *Checker) Trouble() string {
	ids := c.Blocked()
	if len(ids) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d active subscription(s) cannot be signed for with the configured keys, e.g. %s: %s",
		len(ids), ids[0], c.Problem(ids[0]))
	return b.String()
}
