package relay

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/referralloop/outbox-relay/outbox"
	"github.com/referralloop/outbox-relay/relay/secrets"
)

const (
	selectSecrets = `SELECT id, secret, coalesce(previous_secret, ''), headers::text, coalesce(client_key, '') FROM {{schema}}.subscriptions`
	// The updates only apply if nobody changed what they rewrite since it was read (a
	// rotation or a PATCH through the API, another replica resealing at the same time).
	// Secrets and headers are guarded apart, so that a PATCH of the headers does not hold
	// back the secrets, nor the other way round.
	updateSecrets = `UPDATE {{schema}}.subscriptions
SET secret = $2, previous_secret = nullif($3, '')
WHERE id = $1 AND secret = $4 AND coalesce(previous_secret, '') = $5`
	updateHeaders = `UPDATE {{schema}}.subscriptions
SET headers = $2::jsonb
WHERE id = $1 AND headers = $3::jsonb`
	updateClientKey = `UPDATE {{schema}}.subscriptions
SET client_key = $2
WHERE id = $1 AND client_key = $3`
)

// sealedRow is what resealing reads of one subscription: its stored secrets, headers and
// client certificate key ("" for none).
type sealedRow struct {
	id, secret, previous, headers, clientKey string
}

// resealSecrets seals every subscription secret, custom header value and client certificate
// key stored in clear or
// under a key other than RELAY_ENCRYPTION_KEY with that key, and answers how many
// subscriptions it rewrote. It runs at start-up when a key is set, so that after a key
// rotation (new key, old one as RELAY_ENCRYPTION_KEY_PREVIOUS) and a restart, the old key
// is no longer needed. Every replica may run it at once: updates are guarded, and a value
// that changed meanwhile is left for the next start. A subscription with a value no
// configured key opens is left as it is and counted in unopenable (the key check reports
// it, one line per key); the sweep goes on. It stops at the first value it cannot store;
// what it did until then stays done.
func resealSecrets(ctx context.Context, db *sqlx.DB, schema string, box *secrets.Box) (resealed, unopenable int, err error) {
	if !box.Enabled() {
		return 0, 0, nil
	}
	stale, err := readStale(ctx, db, schema, box)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range stale {
		changed, err := resealRow(ctx, db, schema, box, r)
		switch {
		case err != nil && secrets.Unopenable(err):
			unopenable++
		case err != nil:
			return resealed, unopenable, err
		case changed:
			resealed++
		}
	}
	return resealed, unopenable, nil
}

// readStale answers the subscriptions with a secret or a header value to reseal.
func readStale(ctx context.Context, db *sqlx.DB, schema string, box *secrets.Box) ([]sealedRow, error) {
	rows, err := db.QueryContext(ctx, outbox.Qualify(schema, selectSecrets))
	if err != nil {
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	defer rows.Close()
	var stale []sealedRow
	for rows.Next() {
		var r sealedRow
		if err := rows.Scan(&r.id, &r.secret, &r.previous, &r.headers, &r.clientKey); err != nil {
			return nil, fmt.Errorf("reading secrets: %w", err)
		}
		if box.NeedsReseal(r.secret) || (r.previous != "" && box.NeedsReseal(r.previous)) || headersNeedReseal(box, r.headers) ||
			(r.clientKey != "" && box.NeedsReseal(r.clientKey)) {
			stale = append(stale, r)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	return stale, nil
}

// resealRow rewrites what needs it in one subscription read by readStale, and reports
// whether anything was stored.
func resealRow(ctx context.Context, db *sqlx.DB, schema string, box *secrets.Box, r sealedRow) (bool, error) {
	changed := false
	if box.NeedsReseal(r.secret) || (r.previous != "" && box.NeedsReseal(r.previous)) {
		secret, err := reseal(box, r.secret)
		if err != nil {
			return false, fmt.Errorf("resealing the secret of %s: %w", r.id, err)
		}
		previous := r.previous
		if previous != "" {
			if previous, err = reseal(box, previous); err != nil {
				return false, fmt.Errorf("resealing the previous secret of %s: %w", r.id, err)
			}
		}
		res, err := db.ExecContext(ctx, outbox.Qualify(schema, updateSecrets), r.id, secret, previous, r.secret, r.previous)
		if err != nil {
			return false, fmt.Errorf("storing the resealed secret of %s: %w", r.id, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			changed = true
		}
	}
	if headersNeedReseal(box, r.headers) {
		headers, err := resealHeaders(box, r.headers)
		if err != nil {
			return changed, fmt.Errorf("resealing the headers of %s: %w", r.id, err)
		}
		res, err := db.ExecContext(ctx, outbox.Qualify(schema, updateHeaders), r.id, string(headers), r.headers)
		if err != nil {
			return changed, fmt.Errorf("storing the resealed headers of %s: %w", r.id, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			changed = true
		}
	}
	if r.clientKey != "" && box.NeedsReseal(r.clientKey) {
		key, err := reseal(box, r.clientKey)
		if err != nil {
			return changed, fmt.Errorf("resealing the client certificate key of %s: %w", r.id, err)
		}
		res, err := db.ExecContext(ctx, outbox.Qualify(schema, updateClientKey), r.id, key, r.clientKey)
		if err != nil {
			return changed, fmt.Errorf("storing the resealed client certificate key of %s: %w", r.id, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			changed = true
		}
	}
	return changed, nil
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

// headersNeedReseal reports whether a headers column holds a value in clear or sealed under
// a key other than box's current one. A column it cannot read is left alone: resealing
// would have to guess, and the deliverer reports it.
func headersNeedReseal(box *secrets.Box, raw string) bool {
	stored, err := secrets.DecodeHeaders([]byte(raw))
	if err != nil {
		return false
	}
	for _, v := range stored {
		if !v.IsSealed() || box.NeedsReseal(v.Sealed) {
			return true
		}
	}
	return false
}

// resealHeaders answers the headers column with every value sealed under box's current key.
// A clear value is sealed as it is, never opened: it may start with "enc:" and still be the
// value to send.
func resealHeaders(box *secrets.Box, raw string) ([]byte, error) {
	stored, err := secrets.DecodeHeaders([]byte(raw))
	if err != nil {
		return nil, err
	}
	for name, v := range stored {
		plain := v.Plain
		switch {
		case !v.IsSealed():
		case box.NeedsReseal(v.Sealed):
			if plain, err = box.Open(v.Sealed); err != nil {
				return nil, fmt.Errorf("header %q: %w", name, err)
			}
		default:
			continue
		}
		sealed, err := box.Seal(plain)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", name, err)
		}
		stored[name] = secrets.HeaderValue{Sealed: sealed}
	}
	return secrets.EncodeHeaders(stored)
}
