-- A disabled user cannot log in or refresh, and its access tokens are revoked when it is
-- disabled; enabling it again lets it log in afresh. Counting enabled admins (the last one
-- cannot be demoted, disabled or deleted) reads this column with the role.
ALTER TABLE users ADD COLUMN disabled boolean NOT NULL DEFAULT false;
