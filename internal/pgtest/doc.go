// Package pgtest gives every test its own PostgreSQL database, cloned from a prepared template,
// in the manner of peterldowns/pgtestdb.
//
// # How it works
//
// A [Template] names a way to prepare a database (typically: apply the outbox migrations) and
// carries the function that does it. The first [New] call for a template name, in any test
// process, creates the database relaytest_tpl_<hash of the name>, runs Setup against it and
// marks it finished with the comment 'ready' on the database. Every [New] call then clones it
// with CREATE DATABASE relaytest_<random hex> TEMPLATE relaytest_tpl_..., which copies files
// instead of replaying migrations and takes tens of milliseconds. The template outlives the
// test run, so later runs skip Setup entirely; change the Name (for example, make it a hash of
// the migration files) to get a new template when the setup changes.
//
// # Concurrency
//
// `go test ./...` runs the test binaries of several packages at once, and each may run
// parallel tests. Template creation is serialized across all of them by a session-level
// pg_advisory_lock taken on a connection to the base database; inside one process a mutex per
// template name avoids taking it more than once. Clones do not need the lock: a template
// marked ready is never written to again, and no connection to it stays open (CREATE
// DATABASE ... TEMPLATE refuses to copy a database someone is connected to).
//
// # Failures
//
//   - A process that dies while building a template leaves it without the 'ready' comment;
//     the next process to take the lock drops it (WITH (FORCE)) and builds it again. A Setup
//     that returns an error has its template dropped at once and fails the test.
//   - A test database is dropped by t.Cleanup WITH (FORCE), so connections the test forgot to
//     close do not keep it alive. If the test failed, the database is kept for inspection
//     and its URL is logged instead.
//   - When no server answers at the base URL, [New] fails the test with one line that says
//     how to get one: `make test` runs the tests through scripts/with-postgres.sh, which
//     uses RELAY_TEST_DATABASE_URL, the server on 127.0.0.1:5432, or a throwaway cluster.
//
// Kept databases and templates of old Names accumulate until removed by hand; templates are
// rebuilt on demand, so removing everything is safe while no tests run:
//
//	psql "$RELAY_TEST_DATABASE_URL" -Atc "SELECT format('DROP DATABASE %I WITH (FORCE);', datname)
//	  FROM pg_database WHERE datname LIKE 'relaytest\_%'" | psql "$RELAY_TEST_DATABASE_URL"
//
// # Requirements
//
// The base URL (RELAY_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable) must be in URL form, not
// key=value form, because test database URLs are made by replacing its path. Its role must
// be allowed to create databases, and the server must be PostgreSQL 13 or newer for DROP
// DATABASE ... WITH (FORCE).
package pgtest
