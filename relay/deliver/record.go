package deliver

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/internal/pgerr"
	"github.com/referralloop/outbox-relay/internal/retry"
	"github.com/referralloop/outbox-relay/relay/metrics"
)

// maxRecordBatch caps the results written by one statement.
const maxRecordBatch = 500

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
		batch = d.gather(results, batch)
		d.writeWithRetry(batch)
		d.cover.recordEnded()
	}
}

// How long a batch of results gathers before it is written. Workers do not wait for
// records (they send what the lanes hold, claimed ahead), and each record's commit waits for
// a disk flush, which the application's own commits then queue behind: the fewer records,
// the better, as long as nothing waits for them.
//
// A batch whose record will also claim (claimWanted: a backlog, a subscription at its cap,
// an ordered line) has new deliveries waiting for it: it waits at most recordLinger for the
// results of quick requests still on the wire (job.quick), and recordGap for the next one;
// a slow endpoint's requests, which may take seconds, are not waited for, and an outside
// kick (cover.hurry) ends the gathering at once. At low load, when no quick request is on
// the wire, it is written at once.
//
// Any other batch waits for nothing but its leases, which are long: it gathers for up to
// recordIdleLinger. Under a steady flow of events that turns a record per delivery into one
// per few dozen. The cost: results held that long are lost with the process and sent again.
const (
	recordLinger     = 4 * time.Millisecond
	recordGap        = time.Millisecond
	recordIdleLinger = 20 * time.Millisecond
)

// gather adds to batch what else is ready and, as described above, waits for more, up to
// maxRecordBatch: one statement for many results (and one claim for the room they free)
// costs the database far less than one each. Once the batch is known to claim, a kick
// waiting for a claim may wait for this record instead (cover.recordStarted).
func (d *Deliverer) gather(results <-chan result, batch []result) []result {
	start := time.Now()
	claims := false
	note := func(j *job) {
		if !claims && d.claimWanted(j) {
			claims = true
			d.cover.recordStarted()
		}
	}
	note(batch[0].job)
	for len(batch) < maxRecordBatch {
		select {
		case r, ok := <-results:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			note(r.job)
			continue
		default:
		}
		wait := time.Until(start.Add(recordIdleLinger))
		if claims {
			if d.quickInFlight.Load() == 0 {
				return batch
			}
			wait = min(recordGap, time.Until(start.Add(recordLinger)))
		}
		if wait <= 0 {
			return batch
		}
		timer := time.NewTimer(wait)
		select {
		case r, ok := <-results:
			timer.Stop()
			if !ok {
				return batch
			}
			batch = append(batch, r)
			note(r.job)
		case <-timer.C:
			return batch
		case <-d.cover.hurry:
			// New deliveries are waiting for this batch's claim (Kick).
			timer.Stop()
			if claims {
				return batch
			}
		}
	}
	return batch
}

// writeWithRetry writes one batch, retrying database errors with backoff: a database error
// is never a failed attempt. A batch the database refuses for its data (a text it cannot
// store) is written row by row, so that one receiver's answer never holds back the others.
func (d *Deliverer) writeWithRetry(batch []result) {
	var toRecord []result
	var toRelease, faulted []*job
	for i := range batch {
		r := &batch[i]
		switch {
		case r.aborted:
			toRelease = append(toRelease, r.job)
		case r.localFault != "":
			faulted = append(faulted, r.job)
			d.localFault(r)
		default:
			d.decide(r)
			d.logAttempt(r)
			toRecord = append(toRecord, *r)
		}
	}
	d.release(toRelease)
	// What failed for a reason of this process is given back, due again a little later
	// rather than at once: the fault (no file descriptor left, say) is likely still there.
	d.releaseAfter(faulted, localFaultRetry)
	if len(toRecord) == 0 {
		return
	}
	// Recorded or given up, these leases are no longer this replica's to count.
	defer d.leasesEnded(jobsOf(toRecord))
	err := d.writeRetrying(toRecord)
	if err == nil || !pgerr.RefusedData(err) {
		return
	}
	d.log.Warn().Err(err).Int("results", len(toRecord)).Msg("the database refused a batch of attempt results for its data: writing them one by one")
	for i := range toRecord {
		d.writeAlone(toRecord[i])
	}
}

// jobsOf lists the jobs of these results.
func jobsOf(rs []result) []*job {
	js := make([]*job, len(rs))
	for i := range rs {
		js[i] = rs[i].job
	}
	return js
}

// localFaultRetry is how long a delivery whose request failed for a reason of this process
// waits before it is due again.
const localFaultRetry = 2 * time.Second

// localFault accounts for a request that failed for a reason of this process: it is not an
// attempt against the receiver; it is logged, counted, and shown by Trouble for a while.
func (d *Deliverer) localFault(r *result) {
	msg := r.err
	d.localFaultErr.Store(&msg)
	d.localFaultAt.Store(time.Now().UnixNano())
	d.cfg.Metrics.LocalFault(r.localFault, 1)
	d.log.Error().Str("event_id", r.job.eventID).
		Str("delivery_id", d.cfg.DeliveryIDs.Format(r.job.deliveryID)).
		Str("subscription_id", r.job.subscriptionID).
		Str("error", r.err).Dur("due_in", localFaultRetry).
		Msg("request failed for a reason of this process, not of the receiver: the delivery waits, no attempt is recorded")
}

// writeAlone writes one result that was refused as part of a batch. If the database refuses
// it alone too, its texts are replaced by a note that says so, and that is written: the
// attempt is recorded, and the bytes the database refused are never sent to it again.
func (d *Deliverer) writeAlone(r result) {
	err := d.writeRetrying([]result{r})
	if err == nil || !pgerr.RefusedData(err) {
		return
	}
	d.cfg.Metrics.LocalFault(metrics.FaultRecordRefused, 1)
	d.log.Error().Err(err).Str("delivery_id", d.cfg.DeliveryIDs.Format(r.job.deliveryID)).
		Str("subscription_id", r.job.subscriptionID).Int("attempt", r.job.attempt).
		Msg("the database refused an attempt's result for its data: recording it with its texts replaced")
	r.err = fmt.Sprintf("the attempt's error text could not be stored (SQLSTATE %s); status %d", pgerr.Code(err), r.statusCode)
	r.response = ""
	if err := d.writeRetrying([]result{r}); err != nil {
		// Not written: its lease ends, and the delivery is sent again later.
		d.log.Error().Err(err).Str("delivery_id", d.cfg.DeliveryIDs.Format(r.job.deliveryID)).Msg("giving up recording an attempt")
	}
}

// writeRetrying writes batch, retrying while the database is unavailable (or fails for any
// reason but the batch's data), until it succeeds or the shutdown deadline passes. It
// answers nil, the error of a refusal for the data, or the last error when it gave up.
func (d *Deliverer) writeRetrying(batch []result) error {
	bo := retry.NewBackoff()
	for {
		err := d.write(batch)
		if err == nil {
			d.records.OK()
			return nil
		}
		if pgerr.RefusedData(err) {
			return err
		}
		d.cfg.Metrics.LocalFault(metrics.FaultDatabase, 1)
		d.records.Fail(err)
		// Keep retrying while the relay runs; a long outage is ridden out here, and the
		// workers wait on the full results channel meanwhile instead of claiming more.
		wait := bo.NextBackOff()
		if dl := d.deadline.Load(); dl != 0 && time.Until(time.Unix(0, dl)) < wait {
			d.log.Error().Err(err).Int("results", len(batch)).Msg("giving up recording attempts at shutdown; the deliveries will be sent again")
			return err
		}
		d.log.Warn().Err(err).Int("results", len(batch)).Dur("retry_in", wait.Round(time.Millisecond)).Msg("recording attempts")
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
	case r.job.payloadSize > 0 || r.job.unreadable != "":
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
		if r.outcome == outcomeSucceeded {
			okSubs[r.job.subscriptionID] = true
		} else if r.job.payloadSize == 0 && r.job.unreadable == "" {
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
	ctx, cancel := d.dbContext()
	defer cancel()
	// The common batch, all successes, is one statement. Failures may end deliveries, publish
	// operational events and disable subscriptions: those statements commit together, so no
	// reader sees a subscription disabled without its reason or a failure without its event.
	var q queryer = d.db
	var tx *sql.Tx
	if len(failing) > 0 || len(gone) > 0 {
		var err error
		if tx, err = d.db.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("recording %d attempts: %w", n, err)
		}
		defer tx.Rollback() //nolint:errcheck // a no-op after Commit
		q = tx
	}
	var updated int
	var disabled pq.StringArray
	args := []any{deliveryIDs, attempts, startedAt, durations, statuses, errs, responses, outcomes, delays, d.cfg.Owner,
		healthy, failing, d.cfg.DisableAfter.Milliseconds()}
	var err error
	claimedWith := false
	room := d.claimRoom(n)
	claimNow := false
	for i := range batch {
		claimNow = claimNow || d.claimWanted(batch[i].job)
	}
	switch {
	case tx != nil:
		err = tx.QueryRowContext(ctx, d.recordQ, args...).Scan(&updated, &disabled)
	case claimNow && room > 0 && len(healthy) <= combineMaxSubscriptions && !d.claims.Failing():
		// Under load: record and claim for the room this batch frees, one round trip. Only
		// when a claim is wanted (claimWanted): the claim's lock is held until the record's
		// commit has reached the disk, and meanwhile the claims that fan out new events
		// wait. (Not while claims are failing: then the claim would only take the record
		// down.)
		claimedWith = true
		if err = d.recordAndClaim(ctx, args, room); err != nil {
			// The claim half may be what failed (lease_due broken, or too slow): results
			// of requests already answered must not wait for claims to work again, or their
			// leases run out and they are sent twice. Record alone; claims are retried by
			// the claim loop, whose failures /readyz reports.
			d.claims.Fail(err)
			d.log.Warn().Err(err).Int("results", n).Msg("recording with the next claim failed; recording alone")
			claimedWith = false
			err = d.recordP.QueryRow(ctx, args, &updated, &disabled)
		}
	default:
		err = d.recordP.QueryRow(ctx, args, &updated, &disabled)
	}
	if err != nil {
		return fmt.Errorf("recording %d attempts: %w", n, err)
	}
	var cancelled int64
	if len(disabled) > 0 {
		// Their reason is already set; this cancels their pending deliveries.
		res, err := q.ExecContext(ctx, d.goneQ, disabled, "")
		if err != nil {
			return fmt.Errorf("cancelling deliveries of disabled subscriptions: %w", err)
		}
		cancelled += rowsAffected(res)
	}
	reason := "endpoint answered 410 Gone at " + d.now().UTC().Format(time.RFC3339)
	if err := d.publishOperational(ctx, q, batch, gone, reason, disabled); err != nil {
		return err
	}
	if len(gone) > 0 {
		res, err := q.ExecContext(ctx, d.goneQ, gone, reason)
		if err != nil {
			return fmt.Errorf("disabling gone subscriptions: %w", err)
		}
		cancelled += rowsAffected(res)
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("recording %d attempts: %w", n, err)
		}
	}

	d.observe(batch)
	d.cfg.Metrics.Finished("cancelled", int(cancelled))
	for _, id := range disabled {
		d.log.Warn().Str("subscription_id", id).Dur("disable_after", d.cfg.DisableAfter).Msg("subscription disabled: every attempt failed for RELAY_DISABLE_AFTER")
	}
	for _, id := range gone {
		d.log.Warn().Str("subscription_id", id).Msg("subscription disabled: endpoint answered 410 Gone")
	}
	switch {
	case claimedWith:
	case claimNow:
		// Ended leases free in-flight slots of their subscriptions, and an ended head of an
		// ordered line makes the next one due: claim again now rather than at the next poll.
		d.kick()
	default:
		d.kickLater()
	}
	return nil
}

// recordAndClaim records a success-only batch and claims up to room deliveries in one
// call, and queues what it claimed.
func (d *Deliverer) recordAndClaim(ctx context.Context, recordArgs []any, room int) error {
	args := append(append(recordArgs, room), d.leaseArgs()...)
	start := time.Now()
	kicks := d.cover.latest()
	rows, err := d.recordClaimP.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	d.cover.claimedThrough(kicks)
	js, err := d.scanJobs(rows, start)
	if err != nil {
		// The record and the claim are one statement: both rolled back, or both committed
		// and only reading the answer failed; then the leases expire and the deliveries are
		// sent again, as after a crash.
		return err
	}
	d.queue(js)
	d.backlog.Store(len(js) == room)
	if len(js) == room {
		d.kick() // a full claim: more may be due
	}
	return nil
}

// combineMaxSubscriptions: a batch of results from more subscriptions than this is recorded
// alone, and the claim loop claims for the room it frees on its own connection, at the same
// time. A claim over many subscriptions walks each of them (make bench "wide": 2,000
// subscriptions with one delivery each), and made after the record in the same round trip it
// doubled each cycle of the one recorder: one event to 2,000 subscriptions took 0.6s, 0.5s
// with the two side by side. A batch from few subscriptions (a backlog draining) keeps the
// one round trip, whose claim is cheap.
const combineMaxSubscriptions = 32

// queryer is what the record step needs of a *sql.DB or *sql.Tx.
type queryer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func rowsAffected(res sql.Result) int64 {
	n, err := res.RowsAffected()
	if err != nil {
		return 0
	}
	return n
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

// Operational event types: the relay's own events, published into the outbox so that an
// operator's (or a tenant's) subscription receives them like any other.
const (
	EventDeliveryFailed       = "delivery.failed"
	EventSubscriptionDisabled = "subscription.disabled"
)

// isOperational reports whether an event type is one of the relay's own. A failed delivery
// of one of these publishes nothing, so an endpoint subscribed to them that fails cannot
// feed itself an endless stream of failures.
func isOperational(eventType string) bool {
	return eventType == EventDeliveryFailed || eventType == EventSubscriptionDisabled
}

// publishOperational writes delivery.failed for every delivery of the batch that failed for
// good, and subscription.disabled for the subscriptions that answered 410 (gone, with
// reason goneReason) or ran out of RELAY_DISABLE_AFTER (disabled).
func (d *Deliverer) publishOperational(ctx context.Context, q queryer, batch []result, gone []string, goneReason string, disabled []string) error {
	var keys, types, tenants, payloads pq.StringArray
	add := func(key, typ, tenant string, payload any) {
		b, err := json.Marshal(payload)
		if err != nil {
			return // plain maps of strings and numbers always encode
		}
		keys, types, tenants, payloads = append(keys, key), append(types, typ), append(tenants, tenant), append(payloads, string(b))
	}
	disabledBy := map[string]string{}
	for _, id := range gone {
		disabledBy[id] = goneReason
	}
	for _, id := range disabled {
		disabledBy[id] = "every attempt failed for RELAY_DISABLE_AFTER (" + d.cfg.DisableAfter.String() + ")"
	}
	for _, r := range batch {
		j := r.job
		if (r.outcome == outcomeFailed || r.outcome == outcomeGone) && !isOperational(j.eventType) {
			var status any
			if r.statusCode != 0 {
				status = r.statusCode
			}
			add(EventDeliveryFailed+":"+strconv.FormatInt(j.deliveryID, 10), EventDeliveryFailed, j.subscriptionTenant, map[string]any{
				"delivery_id": d.cfg.DeliveryIDs.Format(j.deliveryID), "event_id": j.eventID, "event_type": j.eventType,
				"subscription_id": j.subscriptionID, "attempts": j.attempt, "last_status_code": status, "last_error": r.err,
			})
		}
		if reason, ok := disabledBy[j.subscriptionID]; ok {
			delete(disabledBy, j.subscriptionID)
			add(EventSubscriptionDisabled+":"+j.subscriptionID+":"+strconv.FormatInt(j.deliveryID, 10), EventSubscriptionDisabled, j.subscriptionTenant, map[string]any{
				"subscription_id": j.subscriptionID, "target_url": j.targetURL, "reason": reason,
				"disabled_at": d.now().UTC().Format(time.RFC3339),
			})
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := q.ExecContext(ctx, d.opEvQ, keys, types, tenants, payloads); err != nil {
		return fmt.Errorf("publishing operational events: %w", err)
	}
	return nil
}
