// Package outbox is what applications import: the Event they publish, Publish itself, and the
// database schema the relay reads, with its migrations.
//
// # Publishing
//
// An application writes one row into <schema>.outbox in the same transaction as its own
// change, so the event exists if and only if the change committed. Publish does that from Go
// (package pgxoutbox for pgx, with the statement Publisher.Statement builds); any other
// language inserts the row with plain SQL. Bad events are refused before they reach
// the database (so the application's transaction is not aborted by a failed statement) and,
// for writers that bypass Publish, by CHECK constraints inside the application's transaction.
//
// # Schema and migrations
//
// The schema lives in versioned SQL files embedded in the binary (migrations/NNNN_name.sql).
// Migrate applies the missing ones in one transaction under a transaction-scoped advisory lock,
// so any number of replicas may start at once: one migrates, the others wait and then find
// nothing to do. A failed migration rolls back whole.
//
// Tables and indexes change only through migrations. The relay's SQL functions (the claim
// and the record) have one current definition each, in functions/<name>.sql, applied with
// CREATE OR REPLACE in the same transaction after the migrations whenever its "-- version: N"
// line is newer than the database's (table schema_functions). A change to a function is a
// change to its file; an older relay never replaces a newer function.
//
// A statement-level trigger sends NOTIFY <schema>_outbox with an empty payload on every
// insert. The payload is empty on purpose: PostgreSQL folds identical notifications within a
// transaction (a bulk insert is one notification) and an empty payload can never exceed the
// 8000-byte limit and fail the application's insert. The notification is only a hint; the
// relay polls as well. MigrateOptions.NotifyTrigger=false removes the trigger for databases
// where the global commit lock NOTIFY takes is too costly.
package outbox
