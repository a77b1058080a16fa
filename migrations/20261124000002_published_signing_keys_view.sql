-- The public half of the signing keys, for iam-jwks: it reads only this view and never sees
-- private key material. Operators can give iam-jwks a role limited to it:
--   CREATE ROLE iam_jwks LOGIN PASSWORD '...';
--   GRANT SELECT ON published_signing_keys TO iam_jwks;
CREATE VIEW published_signing_keys AS
    SELECT kid, public_jwk, activates_at, retires_at, unpublish_at
    FROM signing_keys;
