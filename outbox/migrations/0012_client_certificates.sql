-- Client certificates (mTLS) per subscription.
--
-- client_cert: the PEM certificate chain, leaf first, in clear (a certificate is public).
-- client_key: its private key in PEM, sealed like the signing secret when
-- RELAY_ENCRYPTION_KEY is set ("enc:v1:..."), in clear otherwise. Both or neither: a
-- subscription presents a certificate only with its key. Nullable columns without
-- defaults: adding them rewrites nothing.
ALTER TABLE {{schema}}.subscriptions
    ADD COLUMN client_cert text,
    ADD COLUMN client_key text,
    ADD CONSTRAINT subscriptions_client_certificate_check CHECK ((client_cert IS NULL) = (client_key IS NULL));
