package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

const (
	idempotencyHeader = "Idempotency-Key"
	// maxIdempotencyKeyLength is Stripe's limit, in bytes.
	maxIdempotencyKeyLength = 255
	// idempotencyTTL is how long a key answers with its first request's answer.
	idempotencyTTL = 24 * time.Hour
	// idempotencyAbandoned is how old a claim without an answer must be before another
	// request may take the key over: its request's process died. Longer than any request
	// may run (the server's WriteTimeout is 30s).
	idempotencyAbandoned = time.Minute
	// idempotencyWait bounds how long a repeat waits for the first request with its key to
	// finish before it answers 409 idempotency_key_in_use.
	idempotencyWait = 5 * time.Second
	// purgeInterval and purgeBatch pace the deletion of expired keys: one small batch per API
	// instance per interval, on the back of a request that uses a key.
	purgeInterval = time.Minute
	purgeBatch    = 1000
	// bookkeepingTimeout bounds storing or releasing a claim.
	bookkeepingTimeout = 5 * time.Second
)

// idempotent wraps a POST handler with Idempotency-Key: the first request with a key claims
// it and runs; its answer, if 2xx, is stored; a repeat by the same caller with the same
// method, path and body gets that answer again (with Idempotent-Replayed: true) without
// running the handler. A repeat with another request is 422 idempotency_key_reused; a
// repeat while the first still runs waits for it up to idempotencyWait, then answers 409
// idempotency_key_in_use. Answers that are not 2xx are not stored (Stripe does the same for
// requests that failed validation): the key is released, and the request may be sent again
// with the same key, corrected or not. Without the header the handler runs as it is.
func (a *API) idempotent(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s scope) error {
		values, present := r.Header[http.CanonicalHeaderKey(idempotencyHeader)]
		if !present {
			return h(w, r, s)
		}
		if len(values) != 1 {
			return errorf(http.StatusBadRequest, codeInvalidIdempotency, "Idempotency-Key is given more than once")
		}
		key := values[0]
		if msg := checkIdempotencyKey(key); msg != "" {
			return errorf(http.StatusBadRequest, codeInvalidIdempotency, "Idempotency-Key %s", msg)
		}
		// The body is read here, with the usual limits, to compare it with the first
		// request's; the handler then reads the same bytes.
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		hash := requestHash(r.Method, r.URL.Path, body)
		caller := s.idempotencyCaller()

		a.maybePurgeIdempotencyKeys(r.Context())
		claimedAt, replayed, err := a.claimIdempotencyKey(w, r, caller, key, hash)
		if err != nil || replayed {
			return err
		}

		// Storing or releasing the claim happens even when the client has gone away: the
		// work is done (or not) either way, and the key must say which.
		bookkeeping := func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.WithoutCancel(r.Context()), bookkeepingTimeout)
		}
		done := false
		defer func() {
			if !done { // an error answer, or a panic on its way to recover
				ctx, cancel := bookkeeping()
				defer cancel()
				if _, err := a.db.ExecContext(ctx, a.q.releaseIdempotencyKey, caller, key, claimedAt); err != nil {
					a.log.Warn().Err(err).Msg("releasing idempotency key")
				}
			}
		}()
		cw := &captureWriter{ResponseWriter: w}
		if err := h(cw, r, s); err != nil {
			return err
		}
		if cw.status < 200 || cw.status > 299 {
			return nil
		}
		// Sealed like a secret: the answer to a creation or a rotation holds one.
		stored, err := a.sealSecret(cw.body.String())
		if err != nil {
			a.log.Error().Err(err).Msg("sealing idempotent answer; the key is released")
			return nil // the answer is already sent
		}
		ctx, cancel := bookkeeping()
		defer cancel()
		if _, err := a.db.ExecContext(ctx, a.q.storeIdempotencyKey, caller, key, claimedAt, cw.status, stored); err != nil {
			a.log.Error().Err(err).Msg("storing idempotent answer; the key is released")
			return nil
		}
		done = true
		return nil
	}
}

// claimIdempotencyKey claims key for this request and answers the claim's token, or, when a
// request with the key already finished, replays its answer (replayed true). It waits while
// the first request runs.
func (a *API) claimIdempotencyKey(w http.ResponseWriter, r *http.Request, caller, key string, hash []byte) (claimedAt time.Time, replayed bool, err error) {
	ctx := r.Context()
	deadline := time.Now().Add(a.idempotencyWait)
	delay := 10 * time.Millisecond
	for {
		err := a.db.GetContext(ctx, &claimedAt, a.q.claimIdempotencyKey, caller, key, hash,
			idempotencyTTL.Milliseconds(), idempotencyAbandoned.Milliseconds())
		if err == nil {
			return claimedAt, false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return time.Time{}, false, fmt.Errorf("claiming idempotency key: %w", err)
		}

		var held struct {
			RequestHash []byte         `db:"request_hash"`
			Status      sql.NullInt32  `db:"status"`
			Body        sql.NullString `db:"body"`
		}
		err = a.db.GetContext(ctx, &held, a.q.getIdempotencyKey, caller, key)
		inUse := errorf(http.StatusConflict, codeIdempotencyInUse,
			"a request with this Idempotency-Key is still being processed; retry later")
		if errors.Is(err, sql.ErrNoRows) {
			if time.Now().After(deadline) {
				return time.Time{}, false, inUse
			}
			continue // released or purged in between: claim again
		}
		if err != nil {
			return time.Time{}, false, fmt.Errorf("reading idempotency key: %w", err)
		}
		if !bytes.Equal(held.RequestHash, hash) {
			return time.Time{}, false, invalid(codeIdempotencyReused,
				"Idempotency-Key was already used for another request (method, path or body differ) in the last 24 hours; use a new key")
		}
		if held.Status.Valid {
			plain, err := a.openSecret(held.Body.String)
			if err != nil {
				return time.Time{}, false, fmt.Errorf("opening idempotent answer: %w", err)
			}
			hdr := w.Header()
			hdr.Set("Content-Type", "application/json")
			hdr.Set("Cache-Control", "no-store")
			hdr.Set("X-Content-Type-Options", "nosniff")
			hdr.Set("Idempotent-Replayed", "true")
			w.WriteHeader(int(held.Status.Int32))
			_, _ = io.WriteString(w, plain)
			return time.Time{}, true, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, false, inUse
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// maybePurgeIdempotencyKeys deletes a batch of expired keys, at most once per purgeInterval
// in this process. Failure only delays the cleanup.
func (a *API) maybePurgeIdempotencyKeys(ctx context.Context) {
	now := time.Now().UnixNano()
	last := a.lastPurge.Load()
	if now-last < int64(purgeInterval) || !a.lastPurge.CompareAndSwap(last, now) {
		return
	}
	if _, err := a.db.ExecContext(ctx, a.q.purgeIdempotencyKeys, idempotencyTTL.Milliseconds(), purgeBatch); err != nil {
		a.log.Warn().Err(err).Msg("deleting expired idempotency keys")
	}
}

// checkIdempotencyKey answers why k cannot be an Idempotency-Key, or "". Keys are visible
// ASCII (spaces inside allowed), so that they store as text whatever bytes a client sends.
func checkIdempotencyKey(k string) string {
	if k == "" {
		return "is empty"
	}
	if len(k) > maxIdempotencyKeyLength {
		return fmt.Sprintf("is longer than %d bytes", maxIdempotencyKeyLength)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < ' ' || c > '~' {
			return "must be printable ASCII"
		}
	}
	return ""
}

// requestHash identifies a request for Idempotency-Key: its method, path and body, the body
// compacted when it is JSON so that whitespace does not count.
func requestHash(method, path string, body []byte) []byte {
	var compact bytes.Buffer
	if json.Compact(&compact, body) == nil {
		body = compact.Bytes()
	}
	h := sha256.New()
	h.Write([]byte(method))
	h.Write([]byte{0})
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// idempotencyCaller names whose keys a request uses: every tenant, and the operator, have
// their own.
func (s scope) idempotencyCaller() string {
	if s.operator() {
		return "operator"
	}
	return "tenant:" + s.tenant
}

// captureWriter passes an answer through and keeps a copy of its status and body.
type captureWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captureWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}
