-- Per-subscription rate limits and timeouts.
--
-- timeout_seconds: the deadline of one attempt (connect to last byte) for this
-- subscription, instead of RELAY_DELIVERY_TIMEOUT (null). Claims lease such deliveries that
-- much longer, so the lease covers the request.
--
-- rate_limit: requests per second to this subscription's endpoint, across every relay
-- (null: none), enforced by a token bucket that holds one second's worth (at least one
-- token). Nullable columns without defaults: adding them rewrites nothing.
ALTER TABLE {{schema}}.subscriptions
    ADD COLUMN rate_limit double precision
        CONSTRAINT subscriptions_rate_limit_check CHECK (rate_limit >= 0.001 AND rate_limit <= 10000),
    ADD COLUMN timeout_seconds integer
        CONSTRAINT subscriptions_timeout_check CHECK (timeout_seconds BETWEEN 1 AND 30);

-- The buckets: tokens is what a subscription's bucket held at "at" (no row: full). In the
-- database rather than a relay's memory, so that a new active relay, or two relays that
-- both believe they are active for a moment, continue the same bucket: a hand-over lets no
-- burst through. Only claims write it, under the claim lock and in the transaction that
-- leases what the tokens pay for (lease_due). A table of its own rather than columns of
-- subscriptions: a record of results locks subscription rows (failing_since) and then
-- takes the claim lock, so a claim that waited for such a row under that lock would
-- deadlock with it.
CREATE TABLE {{schema}}.rate_buckets (
    subscription_id text PRIMARY KEY,
    tokens          double precision NOT NULL,
    at              timestamptz NOT NULL
);
