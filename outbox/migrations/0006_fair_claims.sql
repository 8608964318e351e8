-- Fair claims, and outbox rows every reader can read.
--
-- 1. created_at must be a finite time: 'infinity' is a valid timestamptz but no webhook
--    timestamp. The CHECK is added NOT VALID, so this migration never fails on rows
--    written before it: new rows are checked, and old bad rows fail only their own
--    deliveries (the claim answers a null created_at for them). A row the relay has
--    dispatched is exempt: marking an old bad row dispatched (an UPDATE, which checks even
--    a NOT VALID constraint) must not fail, or it would hold back every row claimed with
--    it. It is validated here when no such row exists.
ALTER TABLE {{schema}}.outbox
    ADD CONSTRAINT outbox_created_at_check CHECK (isfinite(created_at) OR dispatched_at IS NOT NULL) NOT VALID;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM {{schema}}.outbox WHERE NOT isfinite(created_at) AND dispatched_at IS NULL) THEN
        ALTER TABLE {{schema}}.outbox VALIDATE CONSTRAINT outbox_created_at_check;
    END IF;
END
$$;

-- 2. Claims take turns between tenants, then between a tenant's subscriptions, instead of
--    taking the oldest due deliveries of all: a tenant with 2,000 subscriptions and 10,000
--    pending deliveries made another tenant's single event wait for all of them, and every
--    claim probed every active subscription (tens of milliseconds with 2,000).
--
-- tenant_key is the subscription's tenant ('' for none), copied at fan-out: it groups the
-- pending deliveries by tenant in the two indexes below, where a claim finds the next
-- tenant, and the next subscription of a tenant, that has pending work with an index probe
-- or two. A relay of the previous release leaves it '' (the default); that only affects
-- fairness.
ALTER TABLE {{schema}}.deliveries ADD COLUMN tenant_key text NOT NULL DEFAULT '';
UPDATE {{schema}}.deliveries d
SET tenant_key = s.tenant_id
FROM {{schema}}.subscriptions s
WHERE s.id = d.subscription_id AND d.status = 'pending' AND s.tenant_id IS NOT NULL;

-- Pending deliveries by (tenant, subscription): the unordered by due time (a
-- subscription's first entry is its earliest), the ordered by key and outbox order (the
-- heads of its lines). They replace the per-subscription indexes of 0003 and 0001 for the
-- same rows, so a delivery is in as many indexes as before.
CREATE INDEX deliveries_turns_idx ON {{schema}}.deliveries (tenant_key, subscription_id, next_attempt_at, id)
    WHERE status = 'pending' AND ordering_key IS NULL;
CREATE INDEX deliveries_ordered_turns_idx ON {{schema}}.deliveries (tenant_key, subscription_id, ordering_key, outbox_id)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;

-- A claim walks subscriptions from after '' (see lease_due): no id may be empty. (The API
-- makes sub_... ids; this keeps a row written by hand from never being served.)
ALTER TABLE {{schema}}.subscriptions ADD CONSTRAINT subscriptions_id_check CHECK (id <> '') NOT VALID;

-- Where the next claim continues: after the tenant served last, and within each tenant
-- after the subscription served last. Written only when a claim stopped before serving
-- every tenant (or every subscription of a tenant) with work, so a claim over few tenants
-- and subscriptions writes nothing here.
CREATE TABLE {{schema}}.turn_of_tenants (
    only_row     boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    after_tenant text NOT NULL
);
CREATE TABLE {{schema}}.turn_in_tenant (
    tenant_key         text PRIMARY KEY,
    after_subscription text NOT NULL
);

-- The claim that takes these turns is lease_due (outbox/functions/lease_due.sql, with
-- record_and_lease_due; lease_deliveries now calls it for relays of the previous release).
--
-- Two releases back: nothing calls these any more, and they read the index dropped below.
-- (IF EXISTS: a database created since the functions left the migrations never had them.)
DROP FUNCTION IF EXISTS {{schema}}.record_and_claim(bigint[], integer[], timestamptz[], integer[], integer[], text[], text[], text[], bigint[], text, text[], text[], bigint, integer, bigint, integer, integer);
DROP FUNCTION IF EXISTS {{schema}}.claim_deliveries(integer, text, bigint, integer, integer);
DROP INDEX {{schema}}.deliveries_due_by_subscription_idx;
DROP INDEX {{schema}}.deliveries_ordered_idx;

-- 3. The foreign key from deliveries to subscriptions goes. Its check locks the subscription
--    row (FOR KEY SHARE) for every delivery a fan-out inserts: one event to 2,000
--    subscriptions took 57-66 ms to fan out with it, 27-30 ms without. It guarded nothing
--    the relay needs: fan-outs and test deliveries take their subscription ids from the
--    subscriptions table in the same statement, and subscriptions are never deleted (a
--    DELETE sets deleted_at, so their deliveries stay readable).
ALTER TABLE {{schema}}.deliveries DROP CONSTRAINT deliveries_subscription_id_fkey;
