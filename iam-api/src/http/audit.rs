//! `GET /api/v1/audit-events`: the audit trail, newest first, with keyset paging and filters.

use chrono::{DateTime, Utc};
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use salvo_oapi::extract::QueryParam;
use serde::Serialize;
use uuid::Uuid;

use super::auth::{Authorized, authorize};
use super::{Ok200, query_cursor, query_limit};
use crate::domain::audit;
use crate::domain::rbac::AuditRead;
use crate::error::AppError;
use crate::store::audit_events::{AuditEventRecord, AuditFilter};

/// One security event. `actor` and `subject` are user ids (or a role name, key id, …
/// for the subject), `operator` for the command line, `system` for the service itself, or
/// null when unknown; `detail` never holds a password, secret or token.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "at": "2026-12-01T09:30:00Z", "type": "login", "actor": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "subject": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "outcome": "success", "ip": "203.0.113.7", "detail": {"email": "alice@example.com"}})))]
pub struct AuditEventResponse {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: Option<String>,
    pub subject: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// The client address (behind `TRUSTED_PROXIES`, the one they forwarded for).
    pub ip: Option<String>,
    pub detail: serde_json::Value,
}

impl From<AuditEventRecord> for AuditEventResponse {
    fn from(event: AuditEventRecord) -> Self {
        AuditEventResponse {
            id: event.id,
            at: event.at,
            kind: event.kind,
            actor: event.actor,
            subject: event.subject,
            outcome: event.outcome,
            ip: event.ip,
            detail: event.detail.0,
        }
    }
}

/// One page of events.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"items": [{"id": "9b2e4f6a-8c1d-4e3f-a5b7-c9d1e3f5a7b9", "at": "2026-12-01T09:30:00Z", "type": "login", "actor": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "subject": "5f0c8a3e-2b1d-4c6e-9f7a-1e2d3c4b5a69", "outcome": "success", "ip": "203.0.113.7", "detail": {"email": "alice@example.com"}}], "next": null})))]
pub struct AuditPageResponse {
    pub items: Vec<AuditEventResponse>,
    /// Pass as `after` for the next (older) page; null on the last page.
    pub next: Option<Uuid>,
}

/// Lists audit events, newest first (requires `iam:audit:read`); `type`, `actor` and
/// `subject` narrow it to exact matches.
#[endpoint(
    tags("audit"),
    security(("bearer" = [])),
    parameters(
        ("type" = Option<String>, Query, description = "Only events of this type (`login`, `user.disabled`, …)"),
    ),
    responses(
        (status_code = 200, description = "One page of events", body = AuditPageResponse),
        (status_code = 401, description = "No valid access token"),
        (status_code = 403, description = "Missing iam:audit:read"),
        (status_code = 422, description = "Invalid limit, cursor or type"),
    )
)]
pub async fn list_audit_events(
    req: &mut Request,
    depot: &mut Depot,
    limit: QueryParam<String, false>,
    after: QueryParam<String, false>,
    actor: QueryParam<String, false>,
    subject: QueryParam<String, false>,
) -> Result<Ok200<AuditPageResponse>, AppError> {
    let Authorized {
        state, permission, ..
    } = authorize::<AuditRead>(req, depot).await?;
    let limit = query_limit(limit.into_inner())?;
    let after = query_cursor(after.into_inner(), "an event")?;
    // `type` is a keyword, so it cannot be an extractor's name; it is declared above.
    let kind = req.query::<String>("type");
    let (actor, subject) = (actor.into_inner(), subject.into_inner());
    let filter = AuditFilter {
        kind: kind.as_deref(),
        actor: actor.as_deref(),
        subject: subject.as_deref(),
    };
    let page = audit::list(&permission, &state.read_db, after, &filter, limit).await?;
    Ok(Ok200(AuditPageResponse {
        items: page.items.into_iter().map(Into::into).collect(),
        next: page.next,
    }))
}

/// The audit routes.
pub fn router() -> Router {
    Router::with_path("audit-events").get(list_audit_events)
}
