-- Asymmetric signatures (Standard Webhooks v1a, ed25519) beside HMAC (v1).
--
-- The scheme is fixed when a subscription is created. The column is what the API shows and
-- what rotate-secret reads to make the right kind of key; the deliverer does not read it:
-- the signing key itself says what it is ("whsec_..." an HMAC secret, "whsk_..." an ed25519
-- private key, recognised once secret or previous_secret is opened), so the claim functions
-- return the same columns as before. Existing subscriptions are v1: that is how they sign.
ALTER TABLE {{schema}}.subscriptions
    ADD COLUMN signature_scheme text NOT NULL DEFAULT 'v1'
        CONSTRAINT subscriptions_signature_scheme_check CHECK (signature_scheme IN ('v1', 'v1a'));
