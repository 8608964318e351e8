-- The web console (relay/console).
--
-- Sessions of the operator console: one row per signed-in browser. The cookie holds a
-- random ID (with a MAC, so a forged cookie costs no query); this table holds its SHA-256,
-- so that its rows sign nobody in. Sign-out deletes the row, every relay sharing the
-- schema sees it at once, and expired rows go whenever someone signs in.
CREATE TABLE {{schema}}.console_sessions (
    id_hash    bytea PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_idx ON {{schema}}.console_sessions (expires_at);

-- The delivery log's most used filter: failures are few among a day's successes, and
-- without an index a page of them walks every delivery since the last one.
CREATE INDEX deliveries_failed_idx ON {{schema}}.deliveries (id) WHERE status = 'failed';

-- The overview's last hour of attempts. BRIN: attempts are written in time order and never
-- updated, so a summary per range of pages finds the last hour's without a full index to
-- maintain on every record. autosummarize: each range is summarized (by autovacuum) as soon
-- as it is full, rather than at the next VACUUM; until then a range is read whole.
CREATE INDEX attempts_started_brin ON {{schema}}.attempts USING brin (started_at) WITH (autosummarize = on);
