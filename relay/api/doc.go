// Package api is the management API: HTTP and JSON over the subscriptions, deliveries and
// events in the relay's schema.
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
// reverse proxy's /webhooks) is http.StripPrefix around Handler. openapi.json describes every
// route, body, answer and error code; a test holds it and API.routes to each other.
//
// # When the database is away
//
// Every request runs under Config.RequestTimeout (20 seconds by default, under the server's
// 30-second write timeout). An error that means the database cannot be reached or takes no
// work (a refused, reset or closed connection, driver.ErrBadConn, PostgreSQL classes 08 and
// 53, 57P01 to 57P03, or a query cut by that deadline) is 503 database_unavailable with
// Retry-After: 5, logged as a warning; the request may simply be sent again. Everything else
// unexpected stays 500. Since only 2xx answers are kept for an Idempotency-Key, a request that
// met an outage can be retried with its key. Should the database vanish after the key was
// claimed, the claim cannot be released either: the key answers 409 idempotency_key_in_use
// until the claim counts as abandoned, a minute later.
//
// # Idempotency-Key
//
// Every POST takes an Idempotency-Key header (1 to 255 printable ASCII characters; else 400
// invalid_idempotency_key). The wrapper (idempotent) reads the body, then claims the key for
// the caller ("operator" or "tenant:<id>": callers never share keys) with INSERT ... ON
// CONFLICT DO NOTHING into idempotency_keys, so of two identical requests at once exactly one
// runs. A 2xx answer is stored (sealed through SealSecret, as it may hold a secret) and
// replayed, status and body, with Idempotent-Replayed: true, to every repeat with the same
// method, path and body (JSON whitespace aside) for 24 hours. The same key with another
// request is 422 idempotency_key_reused, as at Stripe. A repeat while the first request runs
// waits up to 5 seconds for its answer, then gets 409 idempotency_key_in_use. An answer that
// is not 2xx is not stored and frees the key, so a corrected request may reuse it. A claim
// whose request never finished (its process died) is taken over after a minute. Expired keys
// are deleted in batches of 1,000, at most once a minute per process, on the back of a
// request that uses a key.
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
// invalid_metadata, invalid_description, invalid_status, invalid_since).
// parseCreateSubscription, parsePatchSubscription and parseReplay do all of it without I/O,
// which is what their fuzz tests exercise; only the target URL's DNS check (targets.Policy)
// runs afterwards. Routes that take no body (rotate-secret, test, retry) accept none, an
// empty one, or {}. An ID is checked before the body, so a malformed ID is 404 whatever the
// body.
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
// position (subscriptions.seq; deliveries.id and outbox.id sealed with the delivery ID key,
// relay/ids, so that a cursor counts no more than a delivery ID does): stable under inserts,
// and meaningless to another list. A cursor carries no filter: pass the same filters with
// it. The event_type filter of GET /v1/subscriptions with an exact type lists the
// subscriptions that would receive that type ("*", "signup.*" and "signup.created" for
// signup.created); with a pattern it lists those that have that very pattern.
//
// GET /v1/events and GET /v1/deliveries list everything the caller may see, with filters
// (event_type exact, since, until; status, subscription_id, event_type, since). Their items
// are the single answers made light: an event with delivery_count instead of its
// deliveries, a delivery with event_type and last_attempt instead of its attempts, so that
// a page costs one query whatever the number of attempts. Each filter a page is commonly
// asked for walks an index in id order (migration 0009) and stops at the page's end; a
// filter checked on the way (event_type, since and until, a status within a tenant's
// succeeded bulk) costs the rows it passes over, which is the page when matches are common
// and more when they are rare or far back.
//
// # Changing
//
// PATCH takes the creation's fields plus status, each validated by the same rules, and
// changes only those present; null resets an optional field to its default (no filter, no
// headers, {} metadata, "" description, not ordered, no rate_limit, the relay's timeout, no
// client certificate) and is refused for target_url,
// event_types and status. The row is locked (SELECT ... FOR UPDATE) while the patch is
// merged, so a concurrent change by the deliverer (a 410 or RELAY_DISABLE_AFTER disabling
// it) is never silently overwritten. status takes active or paused; disabled is the relay's
// verdict (422 invalid_status). Setting active on a paused or disabled subscription clears
// disabled_reason and failing_since: the auto-disable window starts afresh. A patch that
// makes it an exact duplicate of another live subscription is 409 duplicate_subscription
// with existing_id. New target URLs, headers, rate_limit and timeout apply to pending
// deliveries too (from their next claim); ordered applies to events fanned out afterwards.
//
// rate_limit (requests per second, 0.001 to 10000) and timeout (whole seconds, 1 to 30) are
// refused with 422 invalid_rate_limit or invalid_timeout for anything else, a string or
// another JSON type included: the message says what the field takes.
//
// # Deleting
//
// DELETE soft-deletes (deleted_at) and, in the same statement, cancels the subscription's
// pending deliveries; a second DELETE, and every other route, answers 404 for it. Its
// deliveries stay readable through GET /v1/deliveries/{id} and the event view. A retry or
// replay that races a DELETE can leave a pending delivery of a deleted subscription behind;
// the deliverer never claims those, and retention's orphan sweep cancels them.
//
// # Sending again
//
// The routes that queue work write rows the deliverer polls for, then call
// Config.DeliveriesQueued so that the active relay starts at once (this one, or, from a
// standby, the one it notifies):
//
//   - test writes a webhook.test outbox row (the subscription's tenant; payload
//     {"subscription_id", "message"}) that is born dispatched, so the dispatcher never fans
//     it out, and its one delivery, due now, in one statement. It goes to that subscription
//     whatever its event types and filter. A paused or disabled subscription is refused (409
//     subscription_not_active): the deliverer would hold the test back and send it, stale,
//     whenever the subscription became active again.
//   - replay re-queues the subscription's finished deliveries of one status (failed by
//     default) created at or after since; retry re-queues one delivery whatever its status,
//     except while it is in flight (pending under a live lease: 409 delivery_in_flight) or
//     when its subscription is deleted (409 subscription_deleted). Both set status pending,
//     next_attempt_at now and clear the lease, and keep attempt_count, so attempt numbers
//     continue (attempt 5 after 4). Both also set tenant_key from the subscription, since
//     claims take turns between tenants by it and a delivery that finished before the
//     column existed has it empty. Deliveries of a paused or disabled subscription are
//     re-queued as asked and go out once it is active.
//
// # Secrets
//
// The signing secret comes from signature.NewSecret and is stored through Config.SealSecret
// (relay/secrets: AES-256-GCM when RELAY_ENCRYPTION_KEY is set). It is shown once in the
// 201 of the creation, in the answer of rotate-secret, and otherwise only by GET
// /v1/subscriptions/{id}/secret, which opens it with Config.OpenSecret. rotate-secret moves
// the current secret, still sealed, to previous_secret with previous_secret_expires_at =
// now() + SecretRotationOverlap; the deliverer signs with both until then. There is only
// one previous secret: a rotation during an overlap drops the older one. Answers carry
// Cache-Control: no-store, and nothing is logged but IDs.
//
// A creation may bring its own secret ("secret": whsec_ and the padded standard base64 of a
// 24- to 64-byte key), stored exactly like a made one; a bad one is 422 invalid_secret with a
// message that never quotes it. With "signature_scheme": "v1a" the secret column holds the
// sealed whsk_ ed25519 private key instead (signature.NewKeyPair), and every route that would
// show a v1 secret shows {"public_key": "whpk_..."}: GET .../secret takes the public half of
// the opened private key, so nothing else needs storing. The deliverer reads the scheme from
// the opened key's prefix; the signature_scheme column is for the API (GET shows it, and
// rotate-secret makes the matching kind of key, guarded on it). Both fields are fixed at
// creation: PATCH refuses them with 422 naming the field.
//
// # Custom header values
//
// Custom headers are often credentials (Authorization: Bearer ...), so they are treated like
// the secret. Each value is stored sealed through Config.SealSecret, as {"sealed":
// "enc:v1:..."} in the headers column, names in clear (relay/secrets describes the format);
// with no encryption key SealSecret answers its input and values are stored as plain JSON
// strings. Every answer (the 201 of the creation, GET, lists, PATCH) shows each value as
// headerMask, "********"; GET /v1/subscriptions/{id}?reveal=headers, with the tenancy of
// every route, opens them. A PATCH value equal to the mask keeps the stored value of the
// header with that name in any case, untouched when sealed (so it survives even without the
// key) and sealed on the way when stored in clear; the mask for a header the subscription
// does not have, or in a creation, is 422 invalid_headers, since storing the asterisks would
// silently replace a credential. A stored secret or header value that Config.OpenSecret
// cannot open (the key that sealed it is not configured) is 500 secret_unavailable: the
// relay's configuration, not the request, must change, so it is not a 503. Headers take no
// part in the duplicate check.
//
// # Client certificates
//
// client_certificate ({"cert_pem", "key_pem"}, on creation and PATCH) is a PEM chain, leaf
// first, and the leaf's private key, checked with tls.X509KeyPair and stored re-encoded: the
// chain in clear, the key through Config.SealSecret like the signing secret. Anything else
// is 422 invalid_client_certificate, whose message never quotes the key. An expired
// certificate is accepted; answers show {"subject", "not_after"} of the leaf and nothing
// else, so a client sees the expiry coming. No route shows the PEMs again.
//
// # Blocked subscriptions
//
// The deliverer sends nothing for a subscription whose signing secret, a sealed header
// value or client certificate key no configured key opens; its deliveries wait. Every
// subscription the API answers carries blocked_reason, so the owner sees why without
// reading the relay's logs: null, or Config.KeyProblem's answer phrased with the setting that fixes it (blockedReason). The API
// does not open secrets to decide this itself: the key check (relay/keycheck) and the
// deliverer decide, and the API shows what they found, which is what this relay process
// knows (replicas configured alike agree). A list costs no extra query.
package api
