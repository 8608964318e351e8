-- The active relay: the one relay of all that share this schema that claims, fans out,
-- sends and cleans up (relay/leader). The others stand by: they serve the API and read this
-- row once a second, and the first to find it expired takes it over.
--
-- One row per role; 'relay' is the only role so far. expires_at is set from the database's
-- clock by the holder's heartbeat, so that relays whose clocks disagree still agree on who
-- holds it. term counts the hand-overs, for logs and the metrics.
CREATE TABLE {{schema}}.leader (
    role       text PRIMARY KEY,
    owner      text NOT NULL,
    term       bigint NOT NULL DEFAULT 1,
    elected_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
