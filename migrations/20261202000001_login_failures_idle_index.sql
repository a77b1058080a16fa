-- The pruner deletes failure records whose last failure no longer counts; without an index
-- that delete would scan a table that made-up emails can fill.
CREATE INDEX login_failures_last_failure_idx ON login_failures (last_failure_at);
