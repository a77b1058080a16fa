//! Sessions: password login and refresh-token rotation with replay detection (how they end
//! is in `sign_out`, changing one's password in `own_password`).

use chrono::{DateTime, Utc};
use iam_core::token::{AccessTokenClaims, IssuancePolicy, TokenSubject};
use serde_json::json;
use uuid::Uuid;

use crate::domain::audit::{self, Actor, AuditEvent, EventType, Outcome};
use crate::domain::email::Email;
use crate::domain::password::Password;
use crate::domain::refresh::{self, PresentedToken};
use crate::domain::throttle;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::refresh_tokens::{self, NewRefreshToken};
use crate::store::users::{PasswordState, UserRecord};
use crate::store::{login_failures, users};

/// An access token and the refresh token that renews it.
pub struct TokenPair {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub refresh_expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair").finish_non_exhaustive()
    }
}

/// Who gets a token pair.
pub(super) struct Holder<'a> {
    pub(super) id: Uuid,
    pub(super) email: &'a str,
    pub(super) role: &'a str,
    pub(super) permissions: &'a [String],
    /// The holder's subject cut-off, which a new access token must not fall under.
    pub(super) tokens_revoked_at: Option<DateTime<Utc>>,
}

impl<'a> From<&'a UserRecord> for Holder<'a> {
    fn from(user: &'a UserRecord) -> Self {
        Holder {
            id: user.id,
            email: &user.email,
            role: &user.role,
            permissions: &user.permissions,
            tokens_revoked_at: user.tokens_revoked_at,
        }
    }
}

/// Where a new refresh token sits in its family.
struct Lineage {
    family_id: Uuid,
    parent_id: Option<Uuid>,
}

/// Password grant. Unknown emails and wrong passwords both cost one full hash and give the
/// same error; repeated failures for one email are throttled.
pub async fn login(
    state: &AppState,
    actor: &Actor,
    email: &str,
    password: &str,
) -> Result<TokenPair, AppError> {
    // No account can have a malformed email or an out-of-range password, so answering at
    // once reveals nothing about which accounts exist.
    let (Ok(email), Ok(password)) = (Email::parse(email), Password::parse(password)) else {
        return Err(AppError::InvalidCredentials);
    };
    let now = Utc::now();
    charge_attempt(state, &email, now).await?;
    let user =
        users::find_credentials_by_email(&mut *state.db.acquire().await?, email.as_str()).await?;
    let outcome = state
        .hasher
        .verify(
            password,
            user.as_ref().map(|user| user.password_hash.as_str()),
        )
        .await?;
    // A failure was counted before the guess was evaluated; nothing more to record. A
    // disabled account answers as a wrong password does, after the same work.
    let user = match user {
        Some(user) if outcome.matches && !user.disabled => user,
        Some(user) => {
            let reason = if outcome.matches {
                "disabled"
            } else {
                "wrong_password"
            };
            return Err(login_failed(state, actor, &email, Some(user.id), reason).await);
        }
        None => return Err(login_failed(state, actor, &email, None, "unknown_email").await),
    };

    let mut tx = state.db.begin().await?;
    // The password was checked against a hash read before the (slow) check. The session is
    // stored only if that hash is still the account's and the account still enabled, under a
    // lock that makes a concurrent password change, disabling or deletion wait until this
    // session exists (and then revoke it) or be seen here.
    let checked = Some(PasswordState {
        password_hash: user.password_hash.clone(),
        disabled: false,
    });
    let current = if outcome.rehashed.is_some() {
        // This login writes the row: lock it for update from the start, since two
        // concurrent logins each upgrading a share lock would deadlock.
        users::lock_by_id(&mut *tx, user.id).await?;
        users::password_state(&mut *tx, user.id).await?
    } else {
        users::password_state_for_share(&mut *tx, user.id).await?
    };
    if current != checked {
        tx.rollback().await?;
        let reason = "changed_during_login";
        return Err(login_failed(state, actor, &email, Some(user.id), reason).await);
    }
    // The role's permissions are read again, in a statement after the lock: what was read
    // before the check may predate a permission loss that has revoked this user's tokens
    // meanwhile, and the locking read above may have waited for that change.
    let Some(holder) = users::find_by_id(&mut *tx, user.id).await? else {
        return Err(AppError::Internal("a locked user vanished".into()));
    };
    login_failures::clear(&mut *tx, email.as_str()).await?;
    if let Some(rehashed) = &outcome.rehashed {
        users::update_password_hash(&mut *tx, user.id, rehashed).await?;
    }
    let pair = start_family(state, &mut tx, &Holder::from(&holder), now).await?;
    let event =
        AuditEvent::success(EventType::Login, user.id).with_detail(json!({ "email": user.email }));
    let recorded = audit::record(&mut *tx, &actor.as_user(user.id), event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(pair)
}

/// Records a refused login (its attempt stays charged to the throttle) and returns the
/// error to answer with: every refusal gets the same one, whatever the audit says.
async fn login_failed(
    state: &AppState,
    actor: &Actor,
    email: &Email,
    user_id: Option<Uuid>,
    reason: &str,
) -> AppError {
    let event = AuditEvent {
        kind: EventType::Login,
        subject: user_id.map(|id| id.to_string()),
        outcome: Outcome::Failure,
        detail: json!({ "email": email.as_str(), "reason": reason }),
    };
    let recorded = async { audit::record(&mut *state.db.acquire().await?, actor, event).await };
    match recorded.await {
        Ok(recorded) => {
            recorded.log();
            AppError::InvalidCredentials
        }
        // An unrecorded refusal must not pass as a plain one.
        Err(error) => error,
    }
}

/// Takes one login attempt for `email` from its throttle, or answers 429 when none is free.
/// The check and the charge are one step under the record's row lock, and the attempt is
/// counted as a failure *before* the password is evaluated (a success clears it), so that
/// concurrent guesses queue for the slots one by one: at most one guess per free slot is ever
/// evaluated, however many arrive at once.
pub(super) async fn charge_attempt(
    state: &AppState,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let record = login_failures::lock(&mut *tx, email.as_str(), now).await?;
    if let Some(retry_after_seconds) = throttle::retry_after(Some(&record), now) {
        tx.rollback().await?;
        return Err(AppError::Throttled {
            retry_after_seconds,
        });
    }
    login_failures::store(&mut *tx, email.as_str(), throttle::charge(record, now)).await?;
    tx.commit().await?;
    Ok(())
}

/// Refresh grant: exchanges a valid refresh token for a new pair and retires it. A token
/// presented a second time revokes its whole family.
pub async fn refresh(
    state: &AppState,
    actor: &Actor,
    presented: &str,
) -> Result<TokenPair, AppError> {
    if presented.is_empty() || presented.len() > refresh::MAX_REFRESH_TOKEN_LENGTH {
        return Err(AppError::InvalidRefreshToken);
    }
    let token_hash = refresh::hash(presented);
    let now = Utc::now();
    let mut tx = state.db.begin().await?;
    // One statement finds and locks the token and reads its holder's current role.
    let Some(found) = refresh_tokens::find_with_holder_for_update(&mut *tx, &token_hash).await?
    else {
        return Err(AppError::InvalidRefreshToken);
    };
    let record = found.token();
    match refresh::judge(&record, now) {
        PresentedToken::Valid => {}
        PresentedToken::Expired => return Err(AppError::InvalidRefreshToken),
        PresentedToken::Replayed => {
            let revoked = refresh_tokens::revoke_family(&mut *tx, record.family_id, now).await?;
            let event = AuditEvent {
                kind: EventType::RefreshTokenReplayed,
                subject: Some(record.user_id.to_string()),
                outcome: Outcome::Failure,
                detail: json!({ "family_id": record.family_id, "revoked": revoked }),
            };
            let recorded = audit::record(&mut *tx, actor, event).await?;
            tx.commit().await?;
            recorded.log();
            tracing::warn!(
                family_id = %record.family_id,
                user_id = %record.user_id,
                revoked,
                "refresh token replayed; revoked its family"
            );
            return Err(AppError::InvalidRefreshToken);
        }
    }
    let (Some(email), Some(role), Some(false)) = (&found.email, &found.role, found.disabled) else {
        // Disabling revokes the refresh tokens too; this also holds for any it missed.
        return Err(AppError::InvalidRefreshToken);
    };
    let lineage = Lineage {
        family_id: record.family_id,
        parent_id: Some(record.id),
    };
    let successor = draw_refresh_token(state, record.user_id, Some(lineage), now)?;
    // The rotation reads the role's permissions: a statement after the lock, so after any
    // permission loss that revoked this user's tokens while the lock was awaited.
    let permissions = refresh_tokens::rotate(&mut *tx, record.id, now, &successor.row(), role)
        .await?
        .ok_or_else(|| AppError::Internal(format!("the role {role} of a locked user vanished")))?;
    let holder = Holder {
        id: record.user_id,
        email,
        role,
        permissions: &permissions,
        tokens_revoked_at: found.tokens_revoked_at,
    };
    let pair = successor.pair_for(state, &holder, now)?;
    tx.commit().await?;
    Ok(pair)
}

/// A new session for `holder` (a login, or a password change): a pair whose refresh token
/// starts a family of its own, stored in the caller's transaction.
pub(super) async fn start_family(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    holder: &Holder<'_>,
    now: DateTime<Utc>,
) -> Result<TokenPair, AppError> {
    let drawn = draw_refresh_token(state, holder.id, None, now)?;
    refresh_tokens::insert(&mut *tx, &drawn.row()).await?;
    drawn.pair_for(state, holder, now)
}

/// Signs an access token for `subject` at `now`, issued after the subject's cut-off
/// `tokens_revoked_at` (so that a token minted in the same second as a revocation is not
/// refused by it).
pub(super) fn sign_access_token(
    state: &AppState,
    subject: &TokenSubject<'_>,
    tokens_revoked_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<String, AppError> {
    let config = &state.config;
    let policy = IssuancePolicy {
        issuer: config.verification_rules().issuer.clone(),
        audience: config.verification_rules().audience.clone(),
        ttl_seconds: i64::try_from(config.access_token_ttl.as_secs()).unwrap_or(i64::MAX),
    };
    let cutoff =
        tokens_revoked_at.map(|at| iam_core::revocation::cutoff_second(at.timestamp_micros()));
    let issued_at = iam_core::revocation::issued_at(now.timestamp(), cutoff);
    let claims = AccessTokenClaims::issue(&policy, subject, issued_at);
    state
        .keys
        .signer()?
        .sign(&claims)
        .map_err(|error| AppError::Internal(error.to_string()))
}

/// A refresh token drawn for a user, not yet stored, and the row that stores it.
struct DrawnRefreshToken {
    value: String,
    hash: [u8; 32],
    id: Uuid,
    lineage: Lineage,
    user_id: Uuid,
    issued_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl DrawnRefreshToken {
    fn row(&self) -> NewRefreshToken<'_> {
        NewRefreshToken {
            id: self.id,
            token_hash: &self.hash,
            family_id: self.lineage.family_id,
            parent_id: self.lineage.parent_id,
            user_id: self.user_id,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
        }
    }

    /// The pair of this refresh token and an access token signed for `holder`.
    fn pair_for(
        self,
        state: &AppState,
        holder: &Holder<'_>,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AppError> {
        let config = &state.config;
        let user_id = holder.id.to_string();
        let subject = TokenSubject {
            subject: &user_id,
            client_id: &config.default_client_id,
            email: Some(holder.email),
            role: holder.role,
            permissions: holder.permissions,
            scope: None,
        };
        let access_token = sign_access_token(state, &subject, holder.tokens_revoked_at, now)?;
        Ok(TokenPair {
            access_token,
            expires_in: config.access_token_ttl.as_secs(),
            refresh_token: self.value,
            refresh_expires_in: config.refresh_token_ttl.as_secs(),
        })
    }
}

/// Draws a refresh token for `user_id` at `now`, starting a family of its own unless a
/// `lineage` is given; no database work, so the caller stores it inside its transaction.
fn draw_refresh_token(
    state: &AppState,
    user_id: Uuid,
    lineage: Option<Lineage>,
    now: DateTime<Utc>,
) -> Result<DrawnRefreshToken, AppError> {
    let refresh_ttl = state.config.refresh_token_ttl.as_secs();
    let refresh_token = refresh::generate()?;
    let id = Uuid::now_v7();
    let lineage = lineage.unwrap_or(Lineage {
        family_id: id,
        parent_id: None,
    });
    Ok(DrawnRefreshToken {
        value: refresh_token.value,
        hash: refresh_token.hash,
        id,
        lineage,
        user_id,
        issued_at: now,
        // TTLs are bounded to ten years by the configuration.
        expires_at: now + chrono::Duration::seconds(i64::try_from(refresh_ttl).unwrap_or(0)),
    })
}
