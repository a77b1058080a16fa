//! How sessions end at the holder's or anyone's request: revoking one token (RFC 7009) and
//! signing out everywhere. Each is refused at the api at once and at every verifier
//! through the revocation feed.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::domain::audit::{self, Actor, AuditEvent, EventType};
use crate::domain::refresh;
use crate::domain::revocation;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::refresh_tokens;

/// Revokes a token (RFC 7009). An access token (a JWT: it has dots, a refresh token never
/// does) that verifies is refused everywhere from now on; a refresh token's whole family
/// is revoked (logout). Unknown tokens are ignored, as RFC 7009 asks, so the answer says
/// nothing about which tokens exist.
pub async fn revoke(state: &AppState, actor: &Actor, presented: &str) -> Result<(), AppError> {
    if presented.contains('.') {
        let now = Utc::now();
        let rules = state.config.verification_rules();
        // Only a token this service signed is listed: nobody can fill the feed with
        // made-up token ids. An expired one is refused everywhere already.
        if let Ok(claims) = state.keys.verify(presented, rules, now.timestamp()) {
            let mut tx = state.db.begin().await?;
            revocation::revoke_access_token(&mut tx, &state.config, &claims, now).await?;
            let event = AuditEvent::success(EventType::TokenRevoked, &claims.sub)
                .with_detail(json!({ "token_type": "access_token", "jti": claims.jti }));
            let recorded = audit::record(&mut *tx, actor, event).await?;
            tx.commit().await?;
            recorded.log();
        }
        return Ok(());
    }
    if presented.is_empty() || presented.len() > refresh::MAX_REFRESH_TOKEN_LENGTH {
        return Ok(());
    }
    let token_hash = refresh::hash(presented);
    let mut tx = state.db.begin().await?;
    let Some(record) = refresh_tokens::find_by_hash_for_update(&mut *tx, &token_hash).await? else {
        return Ok(());
    };
    refresh_tokens::revoke_family(&mut *tx, record.family_id, Utc::now()).await?;
    let event = AuditEvent::success(EventType::TokenRevoked, record.user_id)
        .with_detail(json!({ "token_type": "refresh_token", "family_id": record.family_id }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}

/// Signs a user out everywhere (`DELETE /me/sessions`): every refresh token is revoked and
/// every access token issued until now is refused.
pub async fn sign_out_everywhere(
    state: &AppState,
    actor: &Actor,
    user_id: Uuid,
) -> Result<(), AppError> {
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    // This locks the user's row first. A refresh holds it shared until it commits, so the
    // statement below sees any successor a racing refresh stores, and a refresh that comes
    // after waits, then finds its token revoked.
    revocation::revoke_access_tokens(&mut tx, &state.config, user_id, now).await?;
    let revoked_sessions = refresh_tokens::revoke_all_of_user(&mut *tx, user_id, now).await?;
    let event = AuditEvent::success(EventType::UserSignedOut, user_id)
        .with_detail(json!({ "revoked_sessions": revoked_sessions }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(())
}
