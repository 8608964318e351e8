package relay

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

const (
	selectSecrets = `SELECT id, secret, coalesce(previous_secret, '') FROM {{schema}}.subscriptions`
	// The update only applies if nobody changed the secrets since they were read (a rotation
	// through the API, another replica resealing at the same time).
	updateSecrets = `UPDATE {{schema}}.subscriptions
SET secret = $2, previous_secret = nullif($3, '')
WHERE id = $1 AND secret = $4 AND coalesce(previous_secret, '') = $5`
)

// resealSecrets seals every subscription secret stored in clear or under a key other than
// RELAY_ENCRYPTION_KEY with that key. It runs at start-up when a key is set, so that after a
// key rotation (new key, old one as RELAY_ENCRYPTION_KEY_PREVIOUS) and a restart, the old key
// is no longer needed. Every replica may run it at once: updates are guarded, and a secret
// that changed meanwhile is left for the next start.
func resealSecrets(ctx context.Context, db *sqlx.DB, schema string, box *secrets.Box) (int, error) {
	if !box.Enabled() {
		return 0, nil
	}
	type row struct {
		id, secret, previous string
	}
	rows, err := db.QueryContext(ctx, outbox.Qualify(schema, selectSecrets))
	if err != nil {
		return 0, fmt.Errorf("reading secrets: %w", err)
	}
	var stale []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.secret, &r.previous); err != nil {
			rows.Close()
			return 0, fmt.Errorf("reading secrets: %w", err)
		}
		if box.NeedsReseal(r.secret) || (r.previous != "" && box.NeedsReseal(r.previous)) {
			stale = append(stale, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("reading secrets: %w", err)
	}
	update := outbox.Qualify(schema, updateSecrets)
	done := 0
	for _, r := range stale {
		secret, err := reseal(box, r.secret)
		if err != nil {
			return done, fmt.Errorf("resealing the secret of %s: %w", r.id, err)
		}
		previous := r.previous
		if previous != "" {
			if previous, err = reseal(box, previous); err != nil {
				return done, fmt.Errorf("resealing the previous secret of %s: %w", r.id, err)
			}
		}
		var res sql.Result
		if res, err = db.ExecContext(ctx, update, r.id, secret, previous, r.secret, r.previous); err != nil {
			return done, fmt.Errorf("storing the resealed secret of %s: %w", r.id, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			done++
		}
	}
	return done, nil
}

func reseal(box *secrets.Box, stored string) (string, error) {
	if !box.NeedsReseal(stored) {
		return stored, nil
	}
	plain, err := box.Open(stored)
	if err != nil {
		return "", err
	}
	return box.Seal(plain)
}
