//! Pruning: rows that no longer count are deleted periodically, so no table grows without
//! bound.

use chrono::Utc;
use iam_core::database::connections::Database;

use crate::domain::{audit, throttle};
use crate::store::{login_failures, refresh_tokens, revoked_access_tokens, revoked_subjects};

/// How long expired refresh tokens are kept before they are deleted.
const EXPIRED_TOKEN_RETENTION: chrono::Duration = chrono::Duration::days(1);

/// Every `interval` (and once at start), deletes long-expired refresh tokens, subject
/// revocations no token can fall under any more, login failure records that no longer
/// count, and audit events older than `audit_retention`, so no table grows without bound
/// (made-up emails leave a failure record each).
pub fn spawn_pruner(
    db: Database,
    interval: std::time::Duration,
    audit_retention: std::time::Duration,
) {
    let audit_retention =
        chrono::Duration::from_std(audit_retention).unwrap_or(chrono::Duration::MAX);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = Utc::now();
            match async {
                refresh_tokens::delete_expired_before(
                    &mut *db.acquire().await?,
                    now - EXPIRED_TOKEN_RETENTION,
                )
                .await
            }
            .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned expired refresh tokens"),
                Err(error) => tracing::warn!(%error, "could not prune expired refresh tokens"),
            }
            match async {
                revoked_subjects::delete_kept_until(&mut *db.acquire().await?, now).await
            }
            .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned lapsed subject revocations"),
                Err(error) => tracing::warn!(%error, "could not prune subject revocations"),
            }
            match async {
                revoked_access_tokens::delete_kept_until(&mut *db.acquire().await?, now).await
            }
            .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned lapsed token revocations"),
                Err(error) => tracing::warn!(%error, "could not prune token revocations"),
            }
            match audit::purge(&db, now, audit_retention).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "purged audit events past their retention"),
                Err(error) => tracing::warn!(%error, "could not purge audit events"),
            }
            match async {
                login_failures::delete_idle_since(
                    &mut *db.acquire().await?,
                    throttle::forgotten_before(now),
                )
                .await
            }
            .await
            {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "pruned idle login failure records"),
                Err(error) => tracing::warn!(%error, "could not prune login failure records"),
            }
        }
    });
}
