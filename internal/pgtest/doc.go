// Package pgtest gives every test its own PostgreSQL database, cloned from a prepared template,
// with github.com/peterldowns/pgtestdb.
//
// # What pgtestdb does
//
// A [Template] is a pgtestdb.Migrator: its Name is the hash that identifies the template and
// its Setup is the migration. [New] hands it to pgtestdb.Custom, which:
//
//   - creates the role pgtdbuser (NOSUPERUSER NOCREATEDB NOCREATEROLE) once per server; tests
//     connect as that role and it owns their databases, so they run with the privileges of an
//     application, not of a superuser;
//   - creates testdb_tpl_<hash of Name and role> from template1, runs Setup on it, and only
//     then marks it a template (pg_database.datistemplate). This happens once per Name:
//     within a process through a once-per-key map, across the test binaries that
//     `go test ./...` runs at once through a session advisory lock on the base database. The
//     template outlives the test run, so later runs skip Setup; a new Name (relaytest derives
//     it from outbox.MigrationsFingerprint) gets a new template;
//   - clones it for every New with CREATE DATABASE testdb_tpl_<hash>_inst_<random> TEMPLATE,
//     which copies files instead of replaying migrations, and logs the clone's URL;
//   - in t.Cleanup, terminates the connections the test left open and drops the clone, unless
//     the test failed: then the clone stays, and `go test` prints the logged URL with the
//     failure.
//
// # What stays ours, and why
//
//   - Reading the server's URL (RELAY_TEST_DATABASE_URL, as scripts/with-postgres.sh exports
//     it, else [DefaultURL]) and turning it into a pgtestdb.Config: pgtestdb takes host, port,
//     user, password and database separately and pastes them into a URL unescaped, so they
//     are escaped here, and user, password and dbname are moved out of the URL's query, where
//     they would override the role and database pgtestdb picks.
//   - A reachability check before pgtestdb runs: pgtestdb connects without a timeout and
//     reports a missing server as a failure to create its role. Instead [New] fails within
//     ten seconds with one line that says how to get a server: `make test` runs the tests
//     through scripts/with-postgres.sh, which uses RELAY_TEST_DATABASE_URL, the server on
//     127.0.0.1:5432, or a throwaway cluster.
//   - The [Template] type itself, so that callers declare a template as a value (a Name and
//     a Setup function, or no Setup for an empty database) rather than a type per template.
//
// # Failures
//
//   - A Setup that returns an error fails the test with it. The half-built template is kept,
//     unmarked, for inspection, and pgtestdb remembers the error: every later New for that
//     Name in the same process fails the same way. The next process drops the half-built
//     template and runs Setup again, as it does after a process died during Setup.
//
// Kept databases and templates of old Names accumulate until removed by hand; templates are
// rebuilt on demand, so removing everything is safe while no tests run (templates must be
// unmarked before they can be dropped):
//
//	psql "$RELAY_TEST_DATABASE_URL" -Atc "SELECT format('ALTER DATABASE %I IS_TEMPLATE false; DROP DATABASE %I WITH (FORCE);', datname, datname)
//	  FROM pg_database WHERE datname LIKE 'testdb\_tpl\_%'" | psql "$RELAY_TEST_DATABASE_URL"
//
// # Requirements
//
// The base URL must be in URL form (postgres://...), not key=value form. Its role must be a
// superuser: pgtestdb creates a role and marks templates by updating pg_database.
package pgtest
