//! Revoking every access token of a subject (a user or a client): at the api at once (the
//! subject's cut-off is read with it on each request) and at every verifier through the
//! revocation feed, which iam-jwks builds from `revoked_subjects`. Both are written in the
//! caller's transaction, so the feed never lists a change that did not happen nor misses one
//! that did.

use chrono::{DateTime, Utc};
use iam_core::AccessTokenClaims;
use uuid::Uuid;

use crate::config::ApiConfig;
use crate::error::AppError;
use crate::store::clients::{self, ClientRecord};
use crate::store::revoked_access_tokens::{self, RevokedAccessToken};
use crate::store::{revoked_subjects, users};

/// Makes every access token of `user_id` issued before `now` be refused everywhere. Locks
/// the user's row until the transaction ends.
pub async fn revoke_access_tokens(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let Some(previous) = users::tokens_revoked_at_for_update(&mut *tx, user_id).await? else {
        return Err(AppError::NotFound("user"));
    };
    let revoked_at = revocation_instant(now, previous)?;
    users::revoke_tokens(&mut *tx, user_id, revoked_at).await?;
    record_subject(tx, config, &user_id.to_string(), revoked_at).await
}

/// Makes every access token of `client`, whose row the caller holds locked, issued before
/// `now` be refused everywhere.
pub async fn revoke_client_access_tokens(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    client: &ClientRecord,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let revoked_at = revocation_instant(now, client.tokens_revoked_at)?;
    clients::revoke_tokens(&mut *tx, &client.id, revoked_at).await?;
    record_subject(tx, config, &client.id, revoked_at).await
}

/// The subject's new cut-off: `now`, but always later than the `previous` one.
fn revocation_instant(
    now: DateTime<Utc>,
    previous: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, AppError> {
    let instant = iam_core::revocation::revocation_instant(
        now.timestamp_micros(),
        previous.map(|at| at.timestamp_micros()),
    );
    DateTime::from_timestamp_micros(instant)
        .ok_or_else(|| AppError::Internal(format!("revocation instant {instant} out of range")))
}

/// Lists the subject's cut-off in the revocation feed.
async fn record_subject(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    subject: &str,
    revoked_at: DateTime<Utc>,
) -> Result<(), AppError> {
    revoked_subjects::record(
        &mut *tx,
        subject,
        revoked_at,
        keep_until(config, revoked_at),
    )
    .await?;
    Ok(())
}

/// Revokes the single access token with these (verified) claims, everywhere, until it
/// expires. Revoking it twice changes nothing.
pub async fn revoke_access_token(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    claims: &AccessTokenClaims,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let expires_at = DateTime::from_timestamp(claims.exp, 0)
        .ok_or_else(|| AppError::Internal(format!("exp {} out of range", claims.exp)))?;
    let leeway = chrono::Duration::seconds(config.verification_rules().leeway_seconds);
    revoked_access_tokens::record(
        &mut *tx,
        &RevokedAccessToken {
            jti: &claims.jti,
            subject: &claims.sub,
            revoked_at: now,
            expires_at,
            keep_until: expires_at + leeway,
        },
    )
    .await?;
    Ok(())
}

/// Until when the feed must list a revocation made at `now`: a token issued before it
/// expires at most `ACCESS_TOKEN_TTL` later, and verifiers allow `JWT_LEEWAY` past that.
fn keep_until(config: &ApiConfig, now: DateTime<Utc>) -> DateTime<Utc> {
    let lifetime = config.rotation_policy().token_lifetime;
    now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX)
}
