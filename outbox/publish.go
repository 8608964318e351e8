package outbox

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
)

// Event is one outbox row as an application publishes it.
type Event struct {
	// ID is the event's identity and the webhook-id receivers dedupe on. Optional: empty means
	// a new random UUID. Set it (NewEventID) to make the application's own retries idempotent:
	// publishing the same ID twice stores one event.
	ID string
	// Type is required: dot-separated parts of [A-Za-z0-9_-], at most 255 characters, such as
	// "signup.created".
	Type string
	// TenantID scopes delivery to that tenant's subscriptions (and operator ones). Optional.
	TenantID string
	// OrderingKey, optional, makes ordered subscriptions receive events with the same key one
	// at a time in publish order (for example the signup's id).
	OrderingKey string
	// Payload becomes "data" in the webhook body. Any value encoding/json can marshal; a
	// json.RawMessage or []byte is used as it is and must be valid JSON. Required.
	Payload any
}

// Execer is what Publish needs: *sql.Tx, *sqlx.Tx, *sql.DB and *sqlx.DB all have it. Pass
// the application's transaction so the event commits or rolls back with its change.
// pgx's handles have another Exec: package pgxoutbox takes them.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// ErrInvalidEvent is returned, wrapped with the reason, for an event the outbox would refuse.
// Publish checks before it writes, so the application's transaction stays usable.
var ErrInvalidEvent = errors.New("invalid event")

var (
	eventTypeRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	uuidRE      = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
)

// ValidEventType reports whether t is a valid event type for the outbox.
func ValidEventType(t string) bool { return len(t) <= 255 && eventTypeRE.MatchString(t) }

// Publisher writes events into the outbox of one schema. The zero value uses DefaultSchema.
type Publisher struct {
	// Schema is the relay's schema (RELAY_SCHEMA); DefaultSchema when empty.
	Schema string
}

// Publish writes ev into the relay.outbox table through tx. See Publisher.Publish.
func Publish(ctx context.Context, tx Execer, ev Event) error {
	return Publisher{}.Publish(ctx, tx, ev)
}

// Publish writes ev into the outbox through tx. It returns an error wrapping ErrInvalidEvent,
// without touching the database, when the event would be refused. Publishing an ID that
// already exists is not an error and stores nothing: the first event with that ID stands.
func (p Publisher) Publish(ctx context.Context, tx Execer, ev Event) error {
	query, args, err := p.Statement(ev)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return fmt.Errorf("publishing %s event: %w", ev.Type, err)
	}
	return nil
}

// Statement checks ev and returns the INSERT that publishes it into p's outbox, with its
// arguments, for a front end that executes it on another driver (package pgxoutbox does, for
// pgx). It is the one place that holds the rules: an error wraps ErrInvalidEvent for an event
// the outbox would refuse, or says what is wrong with p.Schema. An empty ev.ID gets a new
// random one, so each call returns a different event.
//
// The arguments are strings, the payload as its JSON text, and untyped nils (NULL) for an
// empty TenantID or OrderingKey. Drivers send a string as text whatever the parameter's type,
// so PostgreSQL parses the uuid and the jsonb itself, the same through every driver; a []byte
// would go out as binary data through some (pgx, lib/pq with binary_parameters).
func (p Publisher) Statement(ev Event) (query string, args []any, err error) {
	schema := p.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	if err := CheckSchemaName(schema); err != nil {
		return "", nil, fmt.Errorf("publishing event: %w", err)
	}
	payload, err := encodePayload(ev)
	if err != nil {
		return "", nil, err
	}
	id := ev.ID
	if id == "" {
		id = NewEventID()
	}
	return Qualify(schema, insertEvent), []any{id, ev.Type, nullIfEmpty(ev.TenantID), payload, nullIfEmpty(ev.OrderingKey)}, nil
}

const insertEvent = `INSERT INTO {{schema}}.outbox (event_id, event_type, tenant_id, payload, ordering_key)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT (event_id) DO NOTHING`

func encodePayload(ev Event) (string, error) {
	if !ValidEventType(ev.Type) {
		return "", fmt.Errorf("%w: event type %q must be 1 to 255 characters of [A-Za-z0-9_-] in dot-separated parts", ErrInvalidEvent, ev.Type)
	}
	if ev.ID != "" && !uuidRE.MatchString(ev.ID) {
		return "", fmt.Errorf("%w: event ID %q is not a UUID", ErrInvalidEvent, ev.ID)
	}
	var raw []byte
	switch v := ev.Payload.(type) {
	case nil:
		return "", fmt.Errorf("%w: payload is required", ErrInvalidEvent)
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("%w: encoding payload: %v", ErrInvalidEvent, err)
		}
		raw = b
	}
	if !json.Valid(raw) {
		return "", fmt.Errorf("%w: payload is not valid JSON", ErrInvalidEvent)
	}
	return string(raw), nil
}

// NewEventID returns a random (version 4) UUID for Event.ID.
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
