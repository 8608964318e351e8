package pgxoutbox

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/referralloop/outbox-relay/outbox"
)

// Execer is what Publish needs: pgx.Tx, *pgx.Conn and *pgxpool.Pool all have it. Pass the
// application's transaction so the event commits or rolls back with its change.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Publish writes ev into the relay.outbox table through q. See Publisher.Publish.
func Publish(ctx context.Context, q Execer, ev outbox.Event) error {
	return Publisher{}.Publish(ctx, q, ev)
}

// Publisher writes events into the outbox of one schema. The zero value uses
// outbox.DefaultSchema.
type Publisher struct {
	// Schema is the relay's schema (RELAY_SCHEMA); outbox.DefaultSchema when empty.
	Schema string
}

// Publish writes ev into the outbox through q. It returns an error wrapping
// outbox.ErrInvalidEvent, without touching the database, when the event would be refused.
// Publishing an ID that already exists is not an error and stores nothing: the first event
// with that ID stands.
func (p Publisher) Publish(ctx context.Context, q Execer, ev outbox.Event) error {
	query, args, err := outbox.Publisher{Schema: p.Schema}.Statement(ev)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("publishing %s event: %w", ev.Type, err)
	}
	return nil
}
