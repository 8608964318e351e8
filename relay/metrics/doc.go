// Package metrics defines the relay's Prometheus metrics: counters and histograms the
// dispatcher and deliverer update as they work, and gauges read from the database
// (backlog, oldest undispatched row, due deliveries, subscriptions by status).
//
// Names follow Prometheus conventions: the outbox_relay_ prefix, base units, _total for
// counters, _seconds for durations. Labels stay low-cardinality: outcomes, statuses and fault
// kinds only, never subscription IDs or URLs.
//
// # What a scrape costs the database
//
// /metrics has no authentication, and the relay's own connections are the ones that claim and
// record deliveries, so a scrape must not cost the database in proportion to the number of
// scrapers. DBCollector reads the queue gauges with one set of queries and lets that read
// serve every scrape for MaxAge (5s): however many scrapers there are, the database sees at
// most one read per MaxAge. Scrapes that arrive while a read runs wait for that read instead
// of starting their own. outbox_relay_queue_stats_age_seconds tells how old the figures are.
//
// # How it fails
//
// A read that fails, or does not end within Timeout (2s), gives outbox_relay_database_up 0 and
// no queue figures, never a failed scrape. The failure is kept for MaxAge like figures are, so
// a database that is down is not asked again by every scraper. No scrape waits for a read
// longer than Timeout, even when the driver does not give up on a dead connection in time:
// the scrape stops waiting and the read finishes on its own.
package metrics
