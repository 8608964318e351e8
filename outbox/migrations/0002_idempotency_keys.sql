-- Idempotency-Key support for the management API's POST routes (relay/api).
-- {{schema}} is replaced by the quoted schema name (RELAY_SCHEMA) before this runs.

CREATE TABLE {{schema}}.idempotency_keys (
    -- Whose key: 'operator' or 'tenant:<tenant id>'. Keys of different callers never meet.
    caller       text NOT NULL,
    key          text NOT NULL,
    -- SHA-256 of the method, path and body of the first request: a repeat must match it.
    request_hash bytea NOT NULL,
    -- The first answer; both null while the first request is still being served.
    status       integer,
    -- The answer's body as stored through the API's SealSecret (it may hold a secret).
    body         text,
    -- When the key was claimed; keys are answered for 24 hours from then.
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
-- Expired keys are deleted in small batches, oldest first.
CREATE INDEX idempotency_keys_created_idx ON {{schema}}.idempotency_keys (created_at);
