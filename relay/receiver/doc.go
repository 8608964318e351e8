// Package receiver is the local webhook receiver behind `outbox-relay receive`: what a
// developer points a subscription at instead of a request bin, to see exactly what the relay
// sends and whether it is signed with the secret they hold.
//
// Every POST, on any path, is verified with the signature package and then printed to Out:
// a line with the time, path, webhook-id, X-Webhook-Event, X-Webhook-Attempt and
// "signature ok", then the body as indented JSON (or as it came, when it is not JSON), then a
// blank line. A request that fails verification is answered 401 with the reason and printed
// as one "REJECTED <reason>" line, so a wrong secret or a skewed clock shows at a glance.
// Bodies over 1 MiB are refused with 413, other methods with 405.
//
// The receiver answers 204 to every verified request, so the relay records a success and
// moves on; it keeps nothing. Output blocks are written whole under a mutex, so concurrent
// deliveries never interleave. Run stops accepting requests when its context ends and waits
// up to five seconds for requests in flight; no goroutine outlives it.
package receiver
