// Package defaults holds the relay's default settings: the value each RELAY_ variable takes
// when it is unset, which is also what a component falls back to when the field of its Config
// that the variable feeds is left at zero.
//
// They live here, once, because they used to be written twice, as config's tags and as each
// package's fallback, and a change to one copy would have left `outbox-relay help` describing
// a relay that no longer existed. Package config fills and documents them from here;
// relay/deliver, relay/dispatch, relay/proxy and outbox fall back to them.
//
// Tunables that no variable sets (lease margins, check intervals, batch sizes of the clean-up)
// stay in the package that uses them: they have one copy already.
//
// This package imports nothing of the module's, so that every package, config and outbox
// included, may import it.
package defaults

import "time"

// Where the relay's objects live (RELAY_SCHEMA). outbox.DefaultSchema is this value.
const Schema = "relay"

// Migration at start-up (RELAY_AUTO_MIGRATE, RELAY_NOTIFY_TRIGGER).
const (
	AutoMigrate   = true
	NotifyTrigger = true
)

// Listening addresses (RELAY_LISTEN_ADDR, RELAY_OPS_ADDR, RELAY_ADMIN_ADDR). The operator API
// of reverse-proxy mode is on loopback because it trusts X-Tenant-ID: only the pod may reach
// it.
const (
	ListenAddr = ":8080"
	OpsAddr    = ":9090"
	AdminAddr  = "127.0.0.1:8081"
)

// DBMaxConns is RELAY_DB_MAX_CONNS: pooled database connections per relay, the LISTEN
// connection aside. Sized for the sidecar shape: only the active relay claims and sends
// (relay/leader), and its claims, records and fan-outs run one statement at a time each, so
// four carry the steady load with one to spare for the API; a standby uses one.
const DBMaxConns = 4

// Claiming and sending.
const (
	// PollInterval is RELAY_POLL_INTERVAL: the safety-net poll of the outbox and of due
	// retries, for when no notification or kick comes.
	PollInterval = time.Second
	// BatchSize is RELAY_BATCH_SIZE: rows one claim takes. Working off a backlog, a
	// statement may take up to BacklogBatches times as many (see there).
	BatchSize = 100
	// BacklogBatches bounds how far statements grow beyond RELAY_BATCH_SIZE while working off
	// a backlog: a fan-out that finds a full batch doubles the next, up to this many times
	// the batch; a claim takes the room the recorded results freed, up to as many. Each
	// statement is a transaction the database pays for, so a backlog costs a tenth of the
	// transactions, while at the pace of new events statements stay small and quick.
	BacklogBatches = 10
	// Workers is RELAY_WORKERS: concurrent requests per replica.
	Workers = 64
	// DeliveryTimeout is RELAY_DELIVERY_TIMEOUT: one attempt, connect to last byte.
	DeliveryTimeout = 5 * time.Second
	// MaxPayloadBytes is RELAY_MAX_PAYLOAD_BYTES: larger payloads fail without a request.
	MaxPayloadBytes = 256 << 10
	// MaxInFlightPerSubscription is RELAY_MAX_IN_FLIGHT_PER_SUBSCRIPTION: concurrent
	// requests to one subscription, across replicas.
	MaxInFlightPerSubscription = 16
	// DisableAfter is RELAY_DISABLE_AFTER: a subscription whose attempts have all failed
	// this long is disabled.
	DisableAfter = 120 * time.Hour
	// ShutdownGrace is RELAY_SHUTDOWN_GRACE: time for requests in flight after SIGTERM,
	// under Kubernetes' default termination grace of 30s.
	ShutdownGrace = 25 * time.Second
)

// RetrySchedule is RELAY_RETRY_SCHEDULE: the delays before attempts 2, 3, ... A function, not
// a variable, so that no caller can change the default for the others.
func RetrySchedule() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour}
}

// The management API and retention.
const (
	// SecretRotationOverlap is RELAY_SECRET_ROTATION_OVERLAP: after rotate-secret, the old
	// secret signs beside the new one this long.
	SecretRotationOverlap = 24 * time.Hour
	// Retention is RELAY_RETENTION: finished deliveries and dispatched outbox rows are
	// deleted after this long.
	Retention = 7 * 24 * time.Hour
)

// Logging (RELAY_LOG_FORMAT, RELAY_LOG_LEVEL).
const (
	LogFormat = "json"
	LogLevel  = "info"
)

// The web console (RELAY_CONSOLE, RELAY_CONSOLE_TITLE, RELAY_CONSOLE_FRAME_ANCESTORS).
const (
	Console               = true
	ConsoleTitle          = "outbox-relay"
	ConsoleFrameAncestors = "'self'"
)

// Reverse-proxy mode.
const (
	// ProxyPrefix is RELAY_PROXY_PREFIX: the path the relay's API is served under.
	ProxyPrefix = "/webhooks"
	// AuthCacheTTL is RELAY_AUTH_CACHE_TTL: how long a forward-auth answer is reused.
	AuthCacheTTL = 10 * time.Second
	// MinAuthCacheTTL is the shortest positive RELAY_AUTH_CACHE_TTL. The forward-auth cache
	// sweeps expired entries every TTL/100 from a goroutine of its own: below this it would
	// wake the process more than a thousand times a second (and under 100ns it panics).
	MinAuthCacheTTL = 100 * time.Millisecond
)
