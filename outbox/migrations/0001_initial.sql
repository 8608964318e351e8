-- The outbox the application writes, and the relay's own bookkeeping.
-- {{schema}} is replaced by the quoted schema name (RELAY_SCHEMA) before this runs.

CREATE TABLE {{schema}}.outbox (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    event_type    text NOT NULL,
    tenant_id     text,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    ordering_key  text,
    -- Set when the relay has fanned the row out to its deliveries.
    dispatched_at timestamptz,
    CONSTRAINT outbox_event_id_key UNIQUE (event_id),
    CONSTRAINT outbox_event_type_check CHECK (
        char_length(event_type) BETWEEN 1 AND 255
        AND event_type ~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$'
    )
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

-- Only rows waiting for dispatch are indexed, so the claim query stays cheap however large
-- the table grows between retention runs.
CREATE INDEX outbox_undispatched_idx ON {{schema}}.outbox (id) WHERE dispatched_at IS NULL;

CREATE TABLE {{schema}}.subscriptions (
    -- seq orders lists and cursors; id is what users see.
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    id              text PRIMARY KEY,
    tenant_id       text,
    target_url      text NOT NULL,
    event_types     text[] NOT NULL,
    filter          jsonb,
    headers         jsonb NOT NULL DEFAULT '{}',
    description     text NOT NULL DEFAULT '',
    metadata        jsonb NOT NULL DEFAULT '{}',
    ordered         boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'active',
    disabled_reason text,
    -- The signing secret, "whsec_..." in clear or "enc:v1:..." when RELAY_ENCRYPTION_KEY is set.
    secret          text NOT NULL,
    -- The secret that still signs beside the new one after a rotation, until it expires.
    previous_secret            text,
    previous_secret_expires_at timestamptz,
    -- Start of the current run of failed attempts; null after any success (auto-disable).
    failing_since   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Deleted subscriptions stay so that their deliveries remain readable.
    deleted_at      timestamptz,
    CONSTRAINT subscriptions_status_check CHECK (status IN ('active', 'paused', 'disabled')),
    CONSTRAINT subscriptions_event_types_check CHECK (cardinality(event_types) > 0)
);
CREATE UNIQUE INDEX subscriptions_seq_idx ON {{schema}}.subscriptions (seq);
-- The fan-out reads only live, active subscriptions.
CREATE INDEX subscriptions_active_idx ON {{schema}}.subscriptions (tenant_id)
    WHERE status = 'active' AND deleted_at IS NULL;
-- An exact duplicate (same tenant, URL, event types, filter) is refused.
CREATE UNIQUE INDEX subscriptions_duplicate_idx ON {{schema}}.subscriptions
    (coalesce(tenant_id, ''), target_url, event_types, coalesce(filter, 'null'::jsonb))
    WHERE deleted_at IS NULL;

CREATE TABLE {{schema}}.deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL,
    outbox_id       bigint NOT NULL,
    subscription_id text NOT NULL REFERENCES {{schema}}.subscriptions (id),
    -- Copied from the event only for ordered subscriptions: non-null means "one at a time".
    ordering_key    text,
    status          text NOT NULL DEFAULT 'pending',
    -- Attempts started so far; the next attempt gets attempt_count + 1.
    attempt_count   integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    -- A claim: the replica sending it and until when. An expired lease is free to take.
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_event_subscription_key UNIQUE (event_id, subscription_id),
    CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled'))
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

CREATE INDEX deliveries_due_idx ON {{schema}}.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_subscription_idx ON {{schema}}.deliveries (subscription_id, id);
-- The head of each (subscription, ordering key) line of an ordered subscription.
CREATE INDEX deliveries_ordered_idx ON {{schema}}.deliveries (subscription_id, ordering_key, outbox_id)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;

CREATE TABLE {{schema}}.attempts (
    delivery_id   bigint NOT NULL REFERENCES {{schema}}.deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    status_code   integer,
    error         text,
    response_body text,
    PRIMARY KEY (delivery_id, attempt)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
