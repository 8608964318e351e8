package api

import "time"

// Routes lists the method and pattern of every route a serves, for tests outside the package.
func Routes(a *API) [][2]string {
	var out [][2]string
	for _, rt := range a.routes() {
		out = append(out, [2]string{rt.method, rt.pattern})
	}
	return out
}

// SetIdempotencyWait shortens how long a repeat waits for the first request with its key.
func SetIdempotencyWait(a *API, d time.Duration) { a.idempotencyWait = d }
