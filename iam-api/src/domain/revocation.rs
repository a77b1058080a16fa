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

/// How many holders of a role [`revoke_holders_of_role`] revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedHolders {
    pub users: usize,
    pub clients: usize,
}

/// Makes every access token of every holder of `role` (its users and clients) issued before
/// now be refused everywhere, as for a role that lost permissions: its holders' tokens carry
/// them. The holders' rows are locked first and the instant taken after, so a token issuer
/// that read a holder before the lock mints a token older than the cut-off, and one that
/// waits for the lock reads the role's permissions afterwards (the issuers read them in a
/// statement after their lock, never in the locking one, whose join would keep the version
/// it saw before waiting). No token with a lost permission escapes either way.
pub async fn revoke_holders_of_role(
    tx: &mut sqlx::PgConnection,
    config: &ApiConfig,
    role: &str,
) -> Result<RevokedHolders, AppError> {
    let user_holders = users::lock_holders_of_role(&mut *tx, role).await?;
    let client_holders = clients::lock_holders_of_role(&mut *tx, role).await?;
    let now = Utc::now();
    let user_cutoffs = cutoffs_after(
        now,
        user_holders.iter().map(|holder| holder.tokens_revoked_at),
    )?;
    let client_cutoffs = cutoffs_after(
        now,
        client_holders.iter().map(|holder| holder.tokens_revoked_at),
    )?;
    let user_ids: Vec<Uuid> = user_holders.iter().map(|user| user.id).collect();
    let client_ids: Vec<String> = client_holders.into_iter().map(|client| client.id).collect();
    if !user_ids.is_empty() {
        users::revoke_tokens_of_each(&mut *tx, &user_ids, &user_cutoffs).await?;
    }
    if !client_ids.is_empty() {
        clients::revoke_tokens_of_each(&mut *tx, &client_ids, &client_cutoffs).await?;
    }
    let revoked = RevokedHolders {
        users: user_ids.len(),
        clients: client_ids.len(),
    };
    let subjects: Vec<String> = user_ids
        .iter()
        .map(Uuid::to_string)
        .chain(client_ids)
        .collect();
    if !subjects.is_empty() {
        let revoked_ats: Vec<DateTime<Utc>> =
            user_cutoffs.into_iter().chain(client_cutoffs).collect();
        let keep_untils: Vec<DateTime<Utc>> = revoked_ats
            .iter()
            .map(|&revoked_at| keep_until(config, revoked_at))
            .collect();
        revoked_subjects::record_each(&mut *tx, &subjects, &revoked_ats, &keep_untils).await?;
    }
    Ok(revoked)
}

/// The new cut-offs of subjects revoked at `now` whose previous ones are `previous`.
fn cutoffs_after(
    now: DateTime<Utc>,
    previous: impl Iterator<Item = Option<DateTime<Utc>>>,
) -> Result<Vec<DateTime<Utc>>, AppError> {
    previous
        .map(|previous| revocation_instant(now, previous))
        .collect()
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
