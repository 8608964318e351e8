-- Delivery IDs that do not show volumes (relay/ids), and indexes for the lists of events and
-- deliveries.
--
-- settings: values of the installation that every replica must share. delivery_id_key is
-- the AES-128 key (hex) that turns a delivery's row id into its public ID: 16 bytes of a
-- SHA-256 over two random UUIDs (244 random bits), written once here and never changed,
-- since changing it would change every delivery's ID. delivery_id_legacy_max is the
-- largest row id when this ran: IDs in the old form ("dlv_" + base36 of the row id) stay
-- valid up to it and no further, so that newer rows cannot be found by counting.
CREATE TABLE {{schema}}.settings (
    name  text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO {{schema}}.settings (name, value) VALUES
    ('delivery_id_key', encode(substring(sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) FROM 1 FOR 16), 'hex')),
    ('delivery_id_legacy_max', (SELECT coalesce(max(id), 0) FROM {{schema}}.deliveries)::text);

-- GET /v1/events and GET /v1/deliveries run newest first by row id, and each page must cost
-- its own rows, not the table: every common filter gets an index in that order.
--
-- A tenant's events and deliveries (deliveries.tenant_key is its subscription's tenant).
CREATE INDEX outbox_tenant_idx ON {{schema}}.outbox (tenant_id, id) WHERE tenant_id IS NOT NULL;
CREATE INDEX deliveries_tenant_idx ON {{schema}}.deliveries (tenant_key, id);
-- By status: pending, failed and cancelled are few among the succeeded, so without these a
-- page of them walks every delivery since the last one. Succeeded ones, the bulk, page by
-- the primary key or the tenant's index. Partial, so the bulk costs these indexes nothing.
CREATE INDEX deliveries_status_idx ON {{schema}}.deliveries (status, id) WHERE status <> 'succeeded';
CREATE INDEX deliveries_tenant_status_idx ON {{schema}}.deliveries (tenant_key, status, id) WHERE status <> 'succeeded';
