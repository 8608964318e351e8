package api_test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain lets more tests run at once than there are CPUs, unless -parallel is given: each
// test spends most of its time waiting for PostgreSQL (cloning and dropping its database,
// queries), not computing, so the default of GOMAXPROCS leaves a small machine idle. And no
// goroutine (the deliverer of TestWithDeliverer, an idempotency wait) outlives the tests.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "8")
	}
	goleak.VerifyTestMain(m,
		// database/sql's connection opener lives as long as its *sql.DB, closed in t.Cleanup.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
