// Package retry holds how the relay waits before trying a failed database step again
// (claiming, dispatching, recording, migrating, reconnecting LISTEN): one schedule, so that
// every component backs off alike while the database is away and comes back as fast once it
// returns.
package retry

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// InitialInterval is the first wait, short so that a blip (a failover, a restarted pooler)
// costs little; MaxInterval caps the wait during a long outage, so that the relay is back
// within seconds of the database.
const (
	InitialInterval = 100 * time.Millisecond
	MaxInterval     = 5 * time.Second
)

// NewBackoff returns a new backoff for one component's retry loop: waits from InitialInterval,
// growing by half with jitter up to MaxInterval, and never backoff.Stop, since the database
// either comes back or the process is stopped. Call Reset after a success.
func NewBackoff() *backoff.ExponentialBackOff {
	// Options rather than fields set afterwards: the constructor's Reset has already taken
	// the initial interval, and a field set later would only apply from the next Reset.
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(InitialInterval),
		backoff.WithMaxInterval(MaxInterval),
		backoff.WithMaxElapsedTime(0),
	)
}
