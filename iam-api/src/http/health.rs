//! `GET /api/v1/healthcheck`: liveness plus a database ping.

use std::time::Duration;

use salvo::http::StatusCode;
use salvo::prelude::*;
use salvo_oapi::ToSchema;
use salvo_oapi::endpoint;
use serde::Serialize;

use super::{app_state, write_json};
use crate::error::AppError;

/// How long the database ping may take before the database counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The healthcheck document.
#[derive(Debug, Serialize, ToSchema)]
#[salvo(schema(example = json!({"status": "ok", "database": "ok", "env": "DEFAULT", "version": "0.1.0"})))]
pub struct HealthResponse {
    /// `ok`; `error` when the database is unreachable; `draining` after the stop signal,
    /// while requests are still served (`SHUTDOWN_DELAY`).
    pub status: &'static str,
    /// `ok` or `unreachable`.
    pub database: &'static str,
    /// The `ENV` label of this deployment.
    pub env: String,
    /// The version of this binary.
    pub version: &'static str,
}

/// Reports whether the service and its database are up.
#[endpoint(
    tags("health"),
    responses(
        (status_code = 200, description = "Service and database are up", body = HealthResponse),
        (status_code = 400, description = "More than one Authorization header (refused on every route)"),
        (status_code = 503, description = "The database is unreachable, or the process is draining before it stops", body = HealthResponse,
            example = json!({"status": "error", "database": "unreachable", "env": "DEFAULT", "version": "0.1.0"})),
    )
)]
pub async fn healthcheck(depot: &mut Depot, res: &mut Response) -> Result<(), AppError> {
    let state = app_state(depot)?;
    let ping = async {
        let mut connection = state.db.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *connection).await
    };
    let database_ok = matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)));
    let database = if database_ok { "ok" } else { "unreachable" };
    let (status, body) = if state.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, ("draining", database))
    } else if database_ok {
        (StatusCode::OK, ("ok", database))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, ("error", database))
    };
    write_json(
        res,
        status,
        &HealthResponse {
            status: body.0,
            database: body.1,
            env: state.config.common.env_label.clone(),
            version: env!("CARGO_PKG_VERSION"),
        },
    );
    Ok(())
}

/// The healthcheck route.
pub fn router() -> Router {
    Router::with_path("healthcheck").get(healthcheck)
}
