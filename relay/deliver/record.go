package deliver

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// maxRecordBatch caps the results written by one statement.
const maxRecordBatch = 500

// stopRecordingAfter bounds how long, once shutdown has begun, unwritten results are retried
// before they are given up (their leases expire and the deliveries are sent again).
const stopRecordingAfter = 10 * time.Second

// recordLoop writes results in batches until results is closed and drained. Batching falls
// out of the flow: while one batch is being written the next accumulates in the channel.
func (d *Deliverer) recordLoop(results <-chan result) {
	var batch []result
	for {
		r, ok := <-results
		if !ok {
			return
		}
		batch = append(batch[:0], r)
	fill:
		for len(batch) < maxRecordBatch {
			select {
			case r, ok := <-results:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		d.writeWithRetry(batch)
	}
}

// writeWithRetry writes one batch, retrying database errors with backoff: a database error
// is never a failed attempt.
func (d *Deliverer) writeWithRetry(batch []result) {
	var toRecord, toRelease []result
	for i := range batch {
		r := &batch[i]
		if r.aborted {
			toRelease = append(toRelease, *r)
			continue
		}
		d.decide(r)
		d.logAttempt(r)
		toRecord = append(toRecord, *r)
	}
	if len(toRelease) > 0 {
		jobs := make([]*job, len(toRelease))
		for i := range toRelease {
			jobs[i] = toRelease[i].job
		}
		d.release(jobs)
	}
	if len(toRecord) == 0 {
		return
	}
	bo := newBackoff()
	var giveUpAt time.Time
	for {
		err := d.write(toRecord)
		if err == nil {
			return
		}
		if giveUpAt.IsZero() {
			giveUpAt = time.Now().Add(stopRecordingAfter)
		}
		// Keep retrying while the relay runs; a long outage is ridden out here, and the
		// workers wait on the full results channel meanwhile instead of claiming more.
		wait := bo.NextBackOff()
		d.log.Warn().Err(err).Int("results", len(toRecord)).Dur("retry_in", wait).Msg("recording attempts")
		if d.stopping() && time.Now().After(giveUpAt) {
			d.log.Error().Int("results", len(toRecord)).Msg("giving up recording attempts at shutdown; the deliveries will be sent again")
			return
		}
		time.Sleep(wait)
	}
}

// stopping reports whether shutdown has begun (no more claims are made).
func (d *Deliverer) stopping() bool { return d.stopped.Load() }

// decide fills in the outcome and retry delay of a finished attempt.
func (d *Deliverer) decide(r *result) {
	switch {
	case r.err == "" && r.statusCode >= 200 && r.statusCode < 300:
		r.outcome = outcomeSucceeded
	case r.statusCode == 410:
		r.outcome = outcomeGone
	case r.job.payloadSize > 0 || r.job.badSecret != nil:
		r.outcome = outcomeFailed // no retry can change these
	default:
		r.outcome, r.delay = nextStep(d.cfg.RetrySchedule, r.job.attempt, r.retryAfter)
	}
}

// write records one batch in one statement and handles 410s.
func (d *Deliverer) write(batch []result) error {
	n := len(batch)
	var (
		deliveryIDs = make(pq.Int64Array, n)
		attempts    = make(pq.Int64Array, n)
		startedAt   = make(pq.StringArray, n)
		durations   = make(pq.Int64Array, n)
		statuses    = make(pq.Int64Array, n)
		errs        = make(pq.StringArray, n)
		responses   = make(pq.StringArray, n)
		outcomes    = make(pq.StringArray, n)
		delays      = make(pq.Int64Array, n)
		gone        pq.StringArray
		lineMoved   bool
		okSubs      = map[string]bool{}
		failedSubs  = map[string]bool{}
	)
	for i, r := range batch {
		deliveryIDs[i] = r.job.deliveryID
		attempts[i] = int64(r.job.attempt)
		startedAt[i] = r.startedAt.UTC().Format(time.RFC3339Nano)
		durations[i] = r.duration.Milliseconds()
		statuses[i] = int64(r.statusCode)
		errs[i] = r.err
		responses[i] = r.response
		outcomes[i] = string(r.outcome)
		delays[i] = r.delay.Milliseconds()
		if r.outcome == outcomeGone {
			gone = append(gone, r.job.subscriptionID)
		}
		if r.job.ordered && r.outcome != outcomeRetry {
			lineMoved = true
		}
		if r.outcome == outcomeSucceeded {
			okSubs[r.job.subscriptionID] = true
		} else if r.job.payloadSize == 0 && r.job.badSecret == nil {
			// Only requests that were made say anything about the endpoint's health.
			failedSubs[r.job.subscriptionID] = true
		}
	}
	var healthy, failing pq.StringArray
	for id := range okSubs {
		healthy = append(healthy, id)
	}
	for id := range failedSubs {
		if !okSubs[id] {
			failing = append(failing, id)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var updated int
	var disabled pq.StringArray
	if err := d.db.QueryRowContext(ctx, d.recordQ, deliveryIDs, attempts, startedAt, durations, statuses, errs, responses, outcomes, delays, d.cfg.Owner,
		healthy, failing, d.cfg.DisableAfter.Milliseconds()).Scan(&updated, &disabled); err != nil {
		return fmt.Errorf("recording %d attempts: %w", n, err)
	}
	if len(disabled) > 0 {
		// Their reason is already set; this cancels their pending deliveries.
		res, err := d.db.ExecContext(ctx, d.goneQ, disabled, "")
		if err != nil {
			return fmt.Errorf("cancelling deliveries of disabled subscriptions: %w", err)
		}
		d.countCancelled(res)
		for _, id := range disabled {
			d.log.Warn().Str("subscription_id", id).Dur("disable_after", d.cfg.DisableAfter).Msg("subscription disabled: every attempt failed for RELAY_DISABLE_AFTER")
		}
	}
	d.observe(batch)
	if lineMoved {
		// The next delivery of an ordered line is due now; do not leave it to the next poll.
		d.Kick()
	}
	if len(gone) > 0 {
		reason := "endpoint answered 410 Gone at " + time.Now().UTC().Format(time.RFC3339)
		res, err := d.db.ExecContext(ctx, d.goneQ, gone, reason)
		if err != nil {
			return fmt.Errorf("disabling gone subscriptions: %w", err)
		}
		d.countCancelled(res)
		for _, id := range gone {
			d.log.Warn().Str("subscription_id", id).Msg("subscription disabled: endpoint answered 410 Gone")
		}
	}
	return nil
}

// observe updates the metrics for a recorded batch.
func (d *Deliverer) observe(batch []result) {
	m := d.cfg.Metrics
	if m == nil {
		return
	}
	now := d.now()
	for _, r := range batch {
		m.Attempt(r.class, r.duration)
		switch r.outcome {
		case outcomeSucceeded:
			m.Finished("succeeded", 1)
			m.Delivered(now.Sub(r.job.createdAt))
		case outcomeFailed, outcomeGone:
			m.Finished("failed", 1)
		}
	}
}

func (d *Deliverer) countCancelled(res sql.Result) {
	if n, err := res.RowsAffected(); err == nil {
		d.cfg.Metrics.Finished("cancelled", int(n))
	}
}
