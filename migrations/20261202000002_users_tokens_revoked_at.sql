-- Access tokens of a user issued before this instant are refused (the subject cut-off of the
-- revocation feed): set when an account is taken over by `admin create --promote`.
ALTER TABLE users ADD COLUMN tokens_revoked_at timestamptz;
