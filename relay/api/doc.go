// Package api is the management API: HTTP and JSON over the subscriptions, deliveries and
// events in the relay's schema (SPEC sections 6 and 11).
//
// # Layers
//
// A request passes, outside in:
//
//	BearerAuth(token, ...)   401 unless "Authorization: Bearer <token>"
//	TenantFromHeader(...)    sets the Caller from X-Tenant-ID (absent: the operator)
//	API.Handler()            recover -> requireCaller -> routes -> method -> handler
//
// Authentication and tenancy are middleware, and the handler knows only the Caller in the
// request context (WithCaller). In reverse-proxy mode forward auth replaces the first two and
// sets a tenant Caller itself; the handler does not change. The handler fails closed: a
// request with no Caller, or a Caller that is neither a tenant nor the operator, is 401.
//
// # Routes
//
// API.routes is the whole surface, one line per method and path. Paths are registered once on
// a net/http ServeMux with one handler per path that picks the method, so a wrong method is a
// JSON 405 with Allow, and an unknown path a JSON 404. Handlers have one shape: they write
// their success answer and return an error; an *apiError is answered as it is, anything else
// is logged and answered 500 internal_error with no detail. Mounting under a prefix (the
// reverse proxy's /webhooks) is http.StripPrefix around Handler.
//
// Idempotency-Key (a later step) fits around the POST routes as a wrapper that stores the
// first answer per caller and key and replays it; handlers need not know.
//
// # Tenancy
//
// A tenant caller sees and creates only subscriptions with its tenant_id, their deliveries
// (also after the subscription is deleted), and outbox events with its tenant_id (with only
// its own subscriptions' deliveries). The operator sees everything, and the subscriptions it
// creates have no tenant. Tenancy is one SQL parameter in every query (sql.go), so whatever
// a caller may not see is simply not found: 404, never 403, and no difference between
// "another tenant's" and "does not exist". Malformed IDs are 404 too.
//
// # Requests
//
// Bodies are JSON objects of at most 64 KiB (413 body_too_large), sent as application/json
// (415 unsupported_media_type). Decoding is strict and in two steps: the body is split into
// raw top-level fields (exact names, each once; 400 unknown_field or invalid_json), then each
// field is decoded on its own, so a value of the wrong JSON type is 400 invalid_json naming
// the field, and a value of the right type that is not acceptable is 422 with a code per
// field (invalid_target_url, invalid_event_types, invalid_filter, invalid_headers,
// invalid_metadata, invalid_description). parseCreateSubscription does all of it without
// I/O, which is what FuzzCreateSubscription exercises; only the target URL's DNS check
// (targets.Policy) runs afterwards.
//
// Everything stored is checked for what PostgreSQL would refuse with an error (U+0000, numbers
// out of jsonb's range, deep nesting, invalid UTF-8 in X-Tenant-ID), so bad input is never a
// 500. Creation normalises: event types are deduplicated and sorted, a filter of {} is stored
// as no filter, free-form objects are re-encoded. That makes the duplicate check
// (subscriptions_duplicate_idx: same tenant, URL, event types and filter) compare meaning, not
// spelling; a duplicate answers 409 duplicate_subscription with existing_id.
//
// # Lists
//
// Lists run newest first, answer {"data": [...], "next_cursor": ...} and take ?limit= (1 to
// 500, default 50; else 422 invalid_limit) and ?cursor= (the previous page's next_cursor; else
// 422 invalid_cursor). A cursor is the base64url of the list's kind and the last row's
// position (subscriptions.seq, deliveries.id): stable under inserts, and meaningless to
// another list. A cursor carries no filter: pass the same filters with it. The event_type
// filter of GET /v1/subscriptions with an exact type lists the subscriptions that would
// receive that type ("*", "signup.*" and "signup.created" for signup.created); with a pattern
// it lists those that have that very pattern.
//
// # Deleting
//
// DELETE soft-deletes (deleted_at) and, in the same statement, cancels the subscription's
// pending deliveries; a second DELETE, and every other route, answers 404 for it. Its
// deliveries stay readable through GET /v1/deliveries/{id} and the event view.
//
// # Secrets
//
// The signing secret comes from signature.NewSecret and is stored through Config.SealSecret
// (encryption at rest when configured). It is shown once in the 201 of the creation and
// then only by GET /v1/subscriptions/{id}/secret. Answers carry Cache-Control: no-store, and
// nothing is logged but IDs.
package api
