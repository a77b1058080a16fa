//! How a [`Database`](super::connections::Database) tells that its connections lead to a
//! server that is gone or read-only, and retires them: the instant of the last retirement
//! (which connections it covers), and the rollback of a transaction dropped open, which also
//! asks whether the server has become a standby. Why connections are retired, and when, is
//! in the documentation of [`connections`](super::connections).

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use sqlx::{PgConnection, Row as _};

use super::connections::Role;

/// The last time every connection was retired; shared with the pool's `before_acquire`.
#[derive(Debug, Default)]
pub(super) struct Retirement(Mutex<Option<Instant>>);

impl Retirement {
    /// Retires every connection opened (or taken from sqlx) before now.
    pub(super) fn now(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether a connection opened (or taken from sqlx, which is later) at `opened` has
    /// been retired since.
    pub(super) fn covers(&self, opened: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|retired| opened < retired)
    }
}

/// What the server of a connection said when its open transaction was rolled back.
pub(super) enum AfterRollback {
    /// Rolled back; the server takes writes (or the connection is a replica's).
    Usable,
    /// Rolled back, but the server is a standby now: the connection leads away from the
    /// primary.
    InRecovery,
}

/// Rolls back the transaction `connection` holds open, asking in the same round trip whether
/// the server is in recovery when it should be a primary.
pub(super) async fn roll_back(
    connection: &mut PgConnection,
    role: Role,
) -> Result<AfterRollback, sqlx::Error> {
    if role == Role::Replica {
        sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await?;
        return Ok(AfterRollback::Usable);
    }
    let rows = sqlx::raw_sql("ROLLBACK; SELECT pg_is_in_recovery()")
        .fetch_all(&mut *connection)
        .await?;
    let in_recovery = match rows.first() {
        Some(row) => row.try_get::<bool, _>(0)?,
        None => false,
    };
    Ok(if in_recovery {
        AfterRollback::InRecovery
    } else {
        AfterRollback::Usable
    })
}
