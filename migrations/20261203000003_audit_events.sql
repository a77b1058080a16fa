-- One row per security event (contract §3), written in the transaction of the change it
-- records. `actor` and `subject` are ids as text (a user id, `operator` for the command
-- line, `system` for the service itself), or null when unknown (a failed login for an
-- unknown email). `detail` never holds a password, secret or token. Ids are UUIDv7, so
-- keyset paging by id is time order; rows older than AUDIT_RETENTION_DAYS are purged.
CREATE TABLE audit_events (
    id      uuid PRIMARY KEY,
    at      timestamptz NOT NULL,
    type    text        NOT NULL,
    actor   text,
    subject text,
    outcome text        NOT NULL CONSTRAINT audit_events_outcome CHECK (outcome IN ('success', 'failure')),
    ip      text,
    detail  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_type_id ON audit_events (type, id);
CREATE INDEX audit_events_actor_id ON audit_events (actor, id);
CREATE INDEX audit_events_subject_id ON audit_events (subject, id);

-- Reading the audit trail is a permission of its own, which the built-in admin role holds.
UPDATE roles
SET permissions = ARRAY(SELECT DISTINCT p FROM unnest(permissions || 'iam:audit:read'::text) AS p ORDER BY p)
WHERE name = 'admin';
