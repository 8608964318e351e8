// Package pgxoutbox publishes outbox events through pgx (github.com/jackc/pgx/v5), for
// applications whose transactions are pgx.Tx rather than *sql.Tx. Pass the application's
// transaction so the event commits or rolls back with its change:
//
//	tx, err := pool.Begin(ctx)
//	...
//	err = pgxoutbox.Publish(ctx, tx, outbox.Event{Type: "signup.created", Payload: signup})
//	...
//	err = tx.Commit(ctx)
//
// It is a separate package so that applications on database/sql, which use outbox.Publish,
// do not compile pgx in. The event and its rules are the outbox package's: Publish executes
// the statement outbox.Publisher.Statement builds, so both front ends check the same things
// and write the same row. Only the way the statement is sent differs.
//
// # Guarantees and failures
//
// Publish returns an error wrapping outbox.ErrInvalidEvent, without sending anything, for an
// event the outbox would refuse, so the transaction stays usable. Publishing an ID that
// already exists stores nothing and is not an error: the first event with that ID stands.
// An error from the database (for example a schema that was never migrated) aborts the
// transaction, as any failed statement does in PostgreSQL.
//
// Event.Payload takes the same forms as with outbox.Publish: any value encoding/json marshals,
// or JSON text as json.RawMessage or []byte. The statement's arguments are strings (the
// payload as its JSON text) and NULLs for an empty TenantID or OrderingKey, which pgx sends as
// text in every query execution mode: the default cached statements, and QueryExecModeExec
// or QueryExecModeSimpleProtocol behind PgBouncer. PostgreSQL parses the event ID and the
// jsonb itself, exactly as it does for outbox.Publish.
package pgxoutbox
