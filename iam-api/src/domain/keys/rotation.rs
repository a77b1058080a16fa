//! Rotation: the policy, the first key, operator and automatic rotations. Every change of the
//! key set runs under the lifecycle advisory lock, so replicas never rotate twice.

use iam_core::database::connections::Database;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::pair::KeyPair;
use super::sealing::{KeyEncryptionKey, encrypt_private_key};
use super::state::SigningKeyState;
use crate::domain::audit::{self, Actor, AuditEvent, EventType};
use crate::error::AppError;
use crate::store::signing_keys::{self, NewSigningKey, SigningKeyRecord};

async fn store_key_pair(
    connection: &mut sqlx::PgConnection,
    kek: &KeyEncryptionKey,
    key: &KeyPair,
    activates_at: DateTime<Utc>,
) -> Result<(), AppError> {
    let sealed = encrypt_private_key(kek, &key.jwk.kid, &key.private_der)?;
    signing_keys::insert(
        connection,
        &NewSigningKey {
            kid: &key.jwk.kid,
            public_jwk: &key.jwk,
            private_key_ciphertext: &sealed,
            key_encryption_key_id: &kek.id(),
            activates_at,
        },
    )
    .await
    .map_err(|error| match crate::error::violated_constraint(&error) {
        Some("signing_keys_pkey") => {
            AppError::Conflict(format!("key {} exists already", key.jwk.kid))
        }
        _ => error.into(),
    })
}

/// Creates and activates a key when none is active, e.g. on first start. Replicas starting
/// together are serialised by an advisory lock, so exactly one key is created.
pub async fn ensure_active_key(db: &Database, kek: &KeyEncryptionKey) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    signing_keys::lock_lifecycle(&mut *tx).await?;
    let now = Utc::now();
    let keys = signing_keys::list_published(&mut *tx).await?;
    if !keys
        .iter()
        .any(|key| SigningKeyState::of(key, now) == SigningKeyState::Active)
    {
        let key = KeyPair::generate()?;
        store_key_pair(&mut tx, kek, &key, now).await?;
        tracing::info!(kid = %key.jwk.kid, "created the first signing key");
    }
    tx.commit().await?;
    Ok(())
}

/// Timing of a rotation.
#[derive(Debug, Clone, Copy)]
pub struct RotationPolicy {
    /// How long a new key is published before it signs.
    pub grace: Duration,
    /// How long after retirement tokens signed by the old key may still be valid
    /// (access-token TTL plus leeway).
    pub token_lifetime: Duration,
}

/// Adds a new key that signs after the grace period; the current key retires at that moment.
/// With `pem`, the operator's key is used instead of a generated one.
pub async fn rotate(
    db: &Database,
    kek: &KeyEncryptionKey,
    policy: RotationPolicy,
    actor: &Actor,
    pem: Option<&[u8]>,
) -> Result<SigningKeyRecord, AppError> {
    let key = match pem {
        Some(pem) => {
            KeyPair::from_pem(pem).map_err(|why| AppError::invalid_field("pem-file", why))?
        }
        None => KeyPair::generate()?,
    };
    let imported = pem.is_some();
    rotate_to(db, kek, policy, &key, actor, imported, None)
        .await?
        .ok_or_else(|| AppError::Internal("the rotation did not happen".to_owned()))
}

/// Rotates to a generated key when the newest key began signing more than `interval` ago
/// and no rotation is pending. Replicas may all call it: the lifecycle lock and the re-check
/// under it make exactly one of them rotate.
pub async fn rotate_if_due(
    db: &Database,
    kek: &KeyEncryptionKey,
    policy: RotationPolicy,
    interval: Duration,
) -> Result<Option<SigningKeyRecord>, AppError> {
    let keys = signing_keys::list_all(&mut *db.acquire().await?).await?;
    if !rotation_due(&keys, Utc::now(), interval) {
        return Ok(None);
    }
    let key = KeyPair::generate()?;
    rotate_to(
        db,
        kek,
        policy,
        &key,
        &Actor::system(),
        false,
        Some(interval),
    )
    .await
}

fn rotation_due(keys: &[SigningKeyRecord], now: DateTime<Utc>, interval: Duration) -> bool {
    keys.iter()
        .map(|key| key.activates_at)
        .max()
        .is_none_or(|newest| newest + to_chrono(interval) <= now)
}

async fn rotate_to(
    db: &Database,
    kek: &KeyEncryptionKey,
    policy: RotationPolicy,
    key: &KeyPair,
    actor: &Actor,
    imported: bool,
    only_if_due: Option<Duration>,
) -> Result<Option<SigningKeyRecord>, AppError> {
    let mut tx = db.begin().await?;
    signing_keys::lock_lifecycle(&mut *tx).await?;
    let now = Utc::now();
    if let Some(interval) = only_if_due
        && !rotation_due(&signing_keys::list_all(&mut *tx).await?, now, interval)
    {
        return Ok(None);
    }
    let activates_at = now + to_chrono(policy.grace);
    let unpublish_at = activates_at + to_chrono(policy.token_lifetime);
    signing_keys::retire_signing_keys(&mut *tx, activates_at, unpublish_at).await?;
    store_key_pair(&mut tx, kek, key, activates_at).await?;
    let stored = signing_keys::list_all(&mut *tx)
        .await?
        .into_iter()
        .find(|record| record.kid == key.jwk.kid)
        .ok_or_else(|| AppError::Internal("the new key vanished".to_owned()))?;
    let event = AuditEvent::success(EventType::KeyRotated, &stored.kid)
        .with_detail(json!({ "imported": imported, "activates_at": stored.activates_at }));
    let recorded = audit::record(&mut *tx, actor, event).await?;
    tx.commit().await?;
    recorded.log();
    Ok(Some(stored))
}

/// Checks every `check_every` whether an automatic rotation is due (`KEY_ROTATION_INTERVAL`).
pub fn spawn_automatic_rotation(
    db: Database,
    kek: KeyEncryptionKey,
    policy: RotationPolicy,
    interval: Duration,
) {
    let check_every = (interval / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match rotate_if_due(&db, &kek, policy, interval).await {
                Ok(Some(key)) => tracing::info!(
                    kid = %key.kid,
                    activates_at = %key.activates_at,
                    "rotated the signing key automatically"
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "automatic key rotation failed; will retry"),
            }
        }
    });
}

/// Durations here come from configuration bounded to ten years, far inside chrono's range.
fn to_chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::days(3650))
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use iam_core::PublicJwk;

    #[test]
    fn a_rotation_is_due_when_the_newest_key_is_older_than_the_interval() {
        let now = Utc::now();
        let key = |seconds_ago: i64| SigningKeyRecord {
            kid: format!("k{seconds_ago}"),
            public_jwk: sqlx::types::Json(PublicJwk::from_rsa_components(&[1], &[1])),
            created_at: now,
            activates_at: now - chrono::Duration::seconds(seconds_ago),
            retires_at: None,
            published: true,
        };
        let interval = Duration::from_secs(60);
        assert!(rotation_due(&[], now, interval));
        assert!(rotation_due(&[key(61)], now, interval));
        assert!(!rotation_due(&[key(61), key(30)], now, interval));
        // A pending key (activating in the future) means a rotation is already under way.
        assert!(!rotation_due(&[key(600), key(-10)], now, interval));
    }
}
