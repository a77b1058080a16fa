-- OAuth 2.0 clients (service accounts, contract §3): a machine identity with a role, which
-- gets access tokens with the client-credentials grant. Its id is random and URL-safe (never
-- a UUID, so a token's `sub` says whether it names a user or a client). Like a user it can
-- be disabled, and its access tokens issued before `tokens_revoked_at` are refused.
CREATE TABLE clients (
    id                text PRIMARY KEY
                      CONSTRAINT clients_id_format CHECK (id ~ '^[A-Za-z0-9_-]{16,64}$'),
    name              text        NOT NULL
                      CONSTRAINT clients_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    -- RESTRICT, as for users: a role still held by a client cannot be deleted.
    role              text        NOT NULL CONSTRAINT clients_role_fkey
                      REFERENCES roles (name) ON UPDATE CASCADE ON DELETE RESTRICT,
    disabled          boolean     NOT NULL DEFAULT false,
    tokens_revoked_at timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX clients_name_key ON clients (name);
CREATE INDEX clients_role_idx ON clients (role);

-- A client's secrets: several at once, so that a new one can be rolled out before the old
-- one is deleted. Only a SHA-256 of each is stored: a secret is 256 random bits, which no
-- offline guessing can reach, so a slow password hash would buy nothing.
CREATE TABLE client_secrets (
    id          uuid PRIMARY KEY,
    client_id   text        NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    secret_hash bytea       NOT NULL CONSTRAINT client_secrets_secret_hash_key UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_secrets_client_id ON client_secrets (client_id);

-- Managing clients is a pair of permissions of their own, which the built-in admin role holds.
UPDATE roles
SET permissions = ARRAY(SELECT DISTINCT p FROM unnest(permissions || ARRAY['iam:clients:read', 'iam:clients:write']) AS p ORDER BY p)
WHERE name = 'admin';
