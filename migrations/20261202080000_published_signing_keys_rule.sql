-- The one definition of "published": a key is in the JWKS from its creation until its
-- unpublish_at (set when it retires, once every token it signed has expired). iam-jwks and
-- iam-api both read the published set from this view, so neither repeats the rule.
-- CREATE OR REPLACE keeps the grants operators gave on the view (e.g. to iam_jwks); the
-- columns only grow (created_at, for iam-api's key listing), none is private.
CREATE OR REPLACE VIEW published_signing_keys AS
    SELECT kid, public_jwk, activates_at, retires_at, unpublish_at, created_at
    FROM signing_keys
    WHERE unpublish_at IS NULL OR unpublish_at > now();
