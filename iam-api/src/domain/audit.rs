//! Audit events (contract §3): one row per security event, written in the transaction of
//! the change it records, and one structured log line once that transaction has committed.
//! An event names who acted, on whom, from where and how it ended; its detail never holds
//! a password, secret or token (only ids, emails, role names and permissions).

use iam_core::database::connections::Database;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::paging;
use crate::error::AppError;
use crate::store::audit_events::{self, AuditEventRecord, AuditFilter};

/// Every kind of event, with its name in the `type` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Login,
    RefreshTokenReplayed,
    TokenRevoked,
    UserRegistered,
    UserRoleChanged,
    UserDisabled,
    UserEnabled,
    UserDeleted,
    UserPasswordSet,
    UserPasswordChanged,
    UserSignedOut,
    RoleCreated,
    RoleUpdated,
    RoleDeleted,
    ClientCreated,
    ClientDisabled,
    ClientEnabled,
    ClientDeleted,
    ClientSecretAdded,
    ClientSecretDeleted,
    ClientAuthentication,
    KeyRotated,
    AdminCreated,
    AdminPromoted,
}

impl EventType {
    /// Every type, for validating the listing's filter.
    pub const ALL: [EventType; 24] = [
        EventType::Login,
        EventType::RefreshTokenReplayed,
        EventType::TokenRevoked,
        EventType::UserRegistered,
        EventType::UserRoleChanged,
        EventType::UserDisabled,
        EventType::UserEnabled,
        EventType::UserDeleted,
        EventType::UserPasswordSet,
        EventType::UserPasswordChanged,
        EventType::UserSignedOut,
        EventType::RoleCreated,
        EventType::RoleUpdated,
        EventType::RoleDeleted,
        EventType::ClientCreated,
        EventType::ClientDisabled,
        EventType::ClientEnabled,
        EventType::ClientDeleted,
        EventType::ClientSecretAdded,
        EventType::ClientSecretDeleted,
        EventType::ClientAuthentication,
        EventType::KeyRotated,
        EventType::AdminCreated,
        EventType::AdminPromoted,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Login => "login",
            EventType::RefreshTokenReplayed => "refresh_token.replayed",
            EventType::TokenRevoked => "token.revoked",
            EventType::UserRegistered => "user.registered",
            EventType::UserRoleChanged => "user.role_changed",
            EventType::UserDisabled => "user.disabled",
            EventType::UserEnabled => "user.enabled",
            EventType::UserDeleted => "user.deleted",
            EventType::UserPasswordSet => "user.password_set",
            EventType::UserPasswordChanged => "user.password_changed",
            EventType::UserSignedOut => "user.signed_out",
            EventType::RoleCreated => "role.created",
            EventType::RoleUpdated => "role.updated",
            EventType::RoleDeleted => "role.deleted",
            EventType::ClientCreated => "client.created",
            EventType::ClientDisabled => "client.disabled",
            EventType::ClientEnabled => "client.enabled",
            EventType::ClientDeleted => "client.deleted",
            EventType::ClientSecretAdded => "client.secret_added",
            EventType::ClientSecretDeleted => "client.secret_deleted",
            EventType::ClientAuthentication => "client.authentication",
            EventType::KeyRotated => "key.rotated",
            EventType::AdminCreated => "admin.created",
            EventType::AdminPromoted => "admin.promoted",
        }
    }

    /// The type with this name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// Who acted, and from which client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    id: Option<String>,
    ip: Option<IpAddr>,
}

impl Actor {
    /// An authenticated user.
    pub fn user(id: Uuid, ip: Option<IpAddr>) -> Actor {
        Actor {
            id: Some(id.to_string()),
            ip,
        }
    }

    /// A request with no authenticated caller (registration, login, revocation).
    pub fn anonymous(ip: Option<IpAddr>) -> Actor {
        Actor { id: None, ip }
    }

    /// The operator at the command line.
    pub fn operator() -> Actor {
        Actor {
            id: Some("operator".to_owned()),
            ip: None,
        }
    }

    /// The service itself (automatic key rotation, `BOOTSTRAP_ADMIN_*`).
    pub fn system() -> Actor {
        Actor {
            id: Some("system".to_owned()),
            ip: None,
        }
    }

    /// The same client, now known as user `id` (a login that succeeded).
    pub fn as_user(&self, id: Uuid) -> Actor {
        Actor::user(id, self.ip)
    }
}

/// How an event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// An event to record: what happened to whom, how it ended, and detail without secrets.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: EventType,
    pub subject: Option<String>,
    pub outcome: Outcome,
    pub detail: Value,
}

impl AuditEvent {
    /// A successful event about `subject` with no detail.
    pub fn success(kind: EventType, subject: impl ToString) -> AuditEvent {
        AuditEvent {
            kind,
            subject: Some(subject.to_string()),
            outcome: Outcome::Success,
            detail: json!({}),
        }
    }

    /// The same event with `detail`.
    pub fn with_detail(mut self, detail: Value) -> AuditEvent {
        self.detail = detail;
        self
    }
}

/// An event stored in a transaction that has not committed yet: log it once it has.
#[must_use = "log the event after the transaction commits"]
#[derive(Debug)]
pub struct Recorded(AuditEventRecord);

impl Recorded {
    /// Writes the event's structured log line (target `audit`).
    pub fn log(self) {
        let event = self.0;
        tracing::info!(
            target: "audit",
            event_id = %event.id,
            event_type = %event.kind,
            actor = event.actor.as_deref().unwrap_or("-"),
            subject = event.subject.as_deref().unwrap_or("-"),
            outcome = %event.outcome,
            ip = event.ip.as_deref().unwrap_or("-"),
            detail = %event.detail.0,
            "audit event"
        );
    }
}

/// Stores `event` by `actor` in the caller's transaction (or on its own, given a pool).
pub async fn record<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    actor: &Actor,
    event: AuditEvent,
) -> Result<Recorded, AppError> {
    let row = AuditEventRecord {
        id: Uuid::now_v7(),
        at: Utc::now(),
        kind: event.kind.as_str().to_owned(),
        actor: actor.id.clone(),
        subject: event.subject,
        outcome: event.outcome.as_str().to_owned(),
        ip: actor.ip.map(|ip| ip.to_string()),
        detail: sqlx::types::Json(event.detail),
    };
    audit_events::insert(executor, &row).await?;
    Ok(Recorded(row))
}

/// One page of events, newest first.
#[derive(Debug)]
pub struct AuditPage {
    pub items: Vec<AuditEventRecord>,
    /// The `after` value of the next (older) page, when there is one.
    pub next: Option<Uuid>,
}

/// Lists events newest first, `limit` at a time, older than the event `after`.
pub async fn list(
    _: &crate::domain::rbac::AuditRead,
    db: &Database,
    after: Option<Uuid>,
    filter: &AuditFilter<'_>,
    limit: Option<i64>,
) -> Result<AuditPage, AppError> {
    let limit = paging::page_size(limit)?;
    if let Some(kind) = filter.kind
        && EventType::parse(kind).is_none()
    {
        return Err(AppError::invalid_field("type", "not an event type"));
    }
    let rows = audit_events::list_before(
        &mut *db.acquire().await?,
        after,
        filter,
        paging::rows_to_read(limit),
    )
    .await?;
    let (items, next) = paging::page_of(rows, limit, |event| event.id);
    Ok(AuditPage { items, next })
}

/// Deletes events recorded before `now` minus the retention; returns how many.
pub async fn purge(
    db: &Database,
    now: DateTime<Utc>,
    retention: chrono::Duration,
) -> Result<u64, AppError> {
    let Some(cutoff) = now.checked_sub_signed(retention) else {
        return Ok(0);
    };
    Ok(audit_events::delete_before(&mut *db.acquire().await?, cutoff).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_distinct_name_that_parses_back() {
        let mut names: Vec<&str> = EventType::ALL.iter().map(|kind| kind.as_str()).collect();
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
        assert_eq!(EventType::parse("Login"), None);
        assert_eq!(EventType::parse(""), None);
    }
}
