// Package dispatch turns outbox rows into deliveries: one per (event, matching subscription).
//
// # How a row is claimed
//
// One statement does the whole step: it selects the oldest undispatched rows with
// FOR UPDATE SKIP LOCKED, marks them dispatched, and inserts their deliveries. There is no
// "last seen id" cursor: identity values become visible at commit, out of order, and a cursor
// would skip a row that commits late. SKIP LOCKED lets several replicas claim side by side
// without waiting on each other, and because marking and fan-out commit together, a crash
// leaves either both or neither.
//
// # Exactly one delivery per (event, subscription)
//
// deliveries has a unique key on (event_id, subscription_id) and the fan-out inserts with
// ON CONFLICT DO NOTHING, so re-running a batch (a replay of the same outbox row, a second
// replica, a crash between insert and commit) can never create a second delivery.
//
// # Matching
//
// A subscription matches when it is active and not deleted, its tenant is null or equal to
// the event's, its filter is null or contained in the payload (jsonb @>), and one of its event
// types is "*", the exact type, or a prefix wildcard "a.b.*" matching every type that starts
// with "a.b.". "*" leaves out the relay's own operational events (delivery.failed,
// subscription.disabled), which go only to subscriptions that ask for them by name or prefix. A subscription's status counts at fan-out time: events committed while it is
// paused or disabled create no delivery for it.
//
// # When it runs
//
// The dispatcher wakes on a notification (package notify), on its poll interval, and on Kick.
// After a full batch it claims again at once; after a database error it backs off
// exponentially and keeps trying, and Healthy reports false until a claim succeeds again.
package dispatch
