-- Roles carry permissions; a user has exactly one role.
CREATE TABLE roles (
    name        text PRIMARY KEY
                CONSTRAINT roles_name_format CHECK (name ~ '^[a-z][a-z0-9_.-]{1,62}$'),
    description text        NOT NULL DEFAULT '',
    permissions text[]      NOT NULL DEFAULT '{}',
    built_in    boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO roles (name, description, permissions, built_in) VALUES
    ('admin', 'Administers users and roles',
     ARRAY['iam:users:read', 'iam:users:write', 'iam:roles:read', 'iam:roles:write'], true),
    ('user', 'Default role of every new user', ARRAY[]::text[], true);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Stored trimmed and lowercased by the application; the index below makes uniqueness
    -- case-insensitive even for rows written by hand.
    email         text        NOT NULL CONSTRAINT users_email_length CHECK (char_length(email) <= 254),
    password_hash text        NOT NULL,
    -- RESTRICT: a role that is still assigned cannot be deleted, even by a concurrent
    -- assignment racing the deletion.
    role          text        NOT NULL CONSTRAINT users_role_fkey
                  REFERENCES roles (name) ON UPDATE CASCADE ON DELETE RESTRICT,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_role_idx ON users (role);

-- Rotating refresh tokens. Only a SHA-256 of the token is stored. Every token descends from
-- one login (its family); presenting a used token again revokes the whole family.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    token_hash  bytea       NOT NULL CONSTRAINT refresh_tokens_token_hash_key UNIQUE,
    family_id   uuid        NOT NULL,
    parent_id   uuid        REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz
);

CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- Token signing keys. The private key is encrypted with AES-256-GCM under
-- IAM_KEY_ENCRYPTION_KEY (nonce || ciphertext || tag, the kid as associated data); the
-- public JWK is readable on its own so that iam-jwks never touches private material.
CREATE TABLE signing_keys (
    kid                      text PRIMARY KEY,
    public_jwk               jsonb       NOT NULL,
    private_key_ciphertext   bytea       NOT NULL,
    key_encryption_key_id    text        NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    -- published from creation, signs from activates_at, stops signing at retires_at and
    -- leaves the JWKS at unpublish_at (after every token it signed has expired).
    activates_at             timestamptz NOT NULL,
    retires_at               timestamptz,
    unpublish_at             timestamptz,
    CONSTRAINT signing_keys_lifecycle_order CHECK (
        (retires_at IS NULL OR retires_at >= activates_at)
        AND (unpublish_at IS NULL OR (retires_at IS NOT NULL AND unpublish_at >= retires_at))
    )
);

-- Failed password logins per email (known or not), for throttling shared by every replica.
CREATE TABLE login_failures (
    email           text PRIMARY KEY,
    failure_count   integer     NOT NULL,
    last_failure_at timestamptz NOT NULL
);
