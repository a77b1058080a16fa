-- What every verifier must learn about (the revocation feed, contract §5). A subject's
-- cut-off refuses its access tokens issued before it; a single token is refused by its
-- `jti`. Rows are kept until no token they affect can still be valid (`keep_until`), which
-- bounds the feed by the revocations of one token lifetime. These rows outlive the user
-- they name: a deleted user's tokens must stay refused. iam-jwks reads them (with its own
-- role: GRANT SELECT ON revoked_subjects, revoked_access_tokens, revocation_feed_version).
CREATE TABLE revoked_subjects (
    subject    text PRIMARY KEY,
    revoked_at timestamptz NOT NULL,
    keep_until timestamptz NOT NULL
);
CREATE INDEX revoked_subjects_keep_until ON revoked_subjects (keep_until);

CREATE TABLE revoked_access_tokens (
    jti        text PRIMARY KEY,
    subject    text NOT NULL,
    revoked_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,  -- the token's `exp`
    keep_until timestamptz NOT NULL
);
CREATE INDEX revoked_access_tokens_keep_until ON revoked_access_tokens (keep_until);

-- One counter that every change to those tables bumps in the same transaction. The feed's
-- builder polls this single row and reloads only when it moved. A sequence or the largest
-- `revoked_at` would not do: a transaction that commits after a later one would be missed.
CREATE TABLE revocation_feed_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO revocation_feed_version (singleton, version) VALUES (true, 0);

CREATE FUNCTION bump_revocation_feed_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revocation_feed_version SET version = version + 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER revoked_subjects_changed
    AFTER INSERT OR UPDATE OR DELETE ON revoked_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revocation_feed_version();
CREATE TRIGGER revoked_access_tokens_changed
    AFTER INSERT OR UPDATE OR DELETE ON revoked_access_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION bump_revocation_feed_version();
