//! The key ring: what this replica signs and verifies with, reloaded from the database.

use iam_core::database::connections::Database;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::Utc;
use iam_core::revocation::Revocations;
use iam_core::token::AccessTokenSigner;
use iam_core::{
    AccessTokenClaims, KeySet, PublicJwks, Reason, Recall, VerificationRules, VerifiedTokens,
    verify_access_token,
};

use super::sealing::{KeyEncryptionKey, decrypt_private_key};
use super::state::SigningKeyState;
use crate::error::AppError;
use crate::store::signing_keys;

/// What the api signs and verifies with at one moment.
#[derive(Debug)]
struct KeyMaterial {
    signer: Option<Arc<AccessTokenSigner>>,
    verification: Arc<KeySet>,
}

/// The keys this replica signs and verifies with, reloaded from the database periodically so
/// that a rotation reaches every replica without a restart.
#[derive(Debug, Clone)]
pub struct KeyRing {
    material: Arc<RwLock<Arc<KeyMaterial>>>,
    /// Access tokens that verified with the current keys; forgotten when a key leaves them.
    verified: Arc<VerifiedTokens>,
}

/// How many verified access tokens each replica remembers.
const REMEMBERED_TOKENS: usize = 10_000;

impl KeyRing {
    /// Loads the keys published at the moment.
    pub async fn load(db: &Database, kek: &KeyEncryptionKey) -> Result<Self, AppError> {
        let material = load_material(db, kek, None).await?;
        Ok(KeyRing {
            material: Arc::new(RwLock::new(Arc::new(material))),
            verified: Arc::new(VerifiedTokens::new(REMEMBERED_TOKENS)),
        })
    }

    /// Reloads from the database; keeps the current keys when that fails.
    pub async fn reload(&self, db: &Database, kek: &KeyEncryptionKey) -> Result<(), AppError> {
        let current_signer = self.current().signer.clone();
        let material = Arc::new(load_material(db, kek, current_signer).await?);
        // A lock poisoned by a panic elsewhere still holds a whole `Arc`: replace it.
        let previous = std::mem::replace(
            &mut *self
                .material
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            Arc::clone(&material),
        );
        self.verified
            .key_set_replaced(&previous.verification, &material.verification);
        Ok(())
    }

    fn current(&self) -> Arc<KeyMaterial> {
        Arc::clone(&self.material.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The signer of the active key.
    pub fn signer(&self) -> Result<Arc<AccessTokenSigner>, AppError> {
        self.current()
            .signer
            .clone()
            .ok_or_else(|| AppError::Internal("no active signing key".to_owned()))
    }

    /// Verifies an access token against the published keys at `now` (unix seconds); a
    /// token that verified before is recalled instead of checked by RSA again.
    pub fn verify(
        &self,
        token: &str,
        rules: &VerificationRules,
        now: i64,
    ) -> Result<Arc<AccessTokenClaims>, Reason> {
        // The api learns of revocations from its database, per request, after this
        // (`users.tokens_revoked_at`, refresh-token families), so the verifier's own view
        // stays empty here.
        let revoked = &Revocations::NONE;
        let epoch = match self.verified.recall(token, rules, revoked, now) {
            Recall::Known(recalled) => return recalled,
            Recall::Unknown(epoch) => epoch,
        };
        let keys = Arc::clone(&self.current().verification);
        let claims = Arc::new(verify_access_token(token, &keys, rules, revoked, now)?);
        self.verified
            .remember(token, Arc::clone(&claims), rules, now, epoch);
        Ok(claims)
    }
}

async fn load_material(
    db: &Database,
    kek: &KeyEncryptionKey,
    current_signer: Option<Arc<AccessTokenSigner>>,
) -> Result<KeyMaterial, AppError> {
    let now = Utc::now();
    let published = signing_keys::list_published(&mut *db.acquire().await?).await?;
    let jwks = PublicJwks {
        keys: published
            .iter()
            .map(|key| key.public_jwk.0.clone())
            .collect(),
    };
    let verification = KeySet::from_jwks(&jwks)
        .map_err(|error| AppError::Internal(format!("published key unusable: {error}")))?;
    // The newest active key signs; reuse the parsed signer when it has not changed.
    let active = published
        .iter()
        .filter(|key| SigningKeyState::of(key, now) == SigningKeyState::Active)
        .max_by_key(|key| key.activates_at);
    let signer = match (active, current_signer) {
        (Some(key), Some(signer)) if signer.kid() == key.kid => Some(signer),
        (Some(key), current) => match open_signer(db, kek, &key.kid).await {
            Ok(signer) => Some(signer),
            // On a reload, a key this replica cannot open (e.g. sealed under a new
            // IAM_KEY_ENCRYPTION_KEY during its rollout) must not also stop it from
            // verifying tokens of the new key: keep signing with the current key.
            Err(error) if current.is_some() => {
                tracing::warn!(%error, kid = %key.kid, "cannot open the new signing key; still signing with the current one");
                current
            }
            Err(error) => return Err(error),
        },
        (None, _) => None,
    };
    Ok(KeyMaterial {
        signer,
        verification: Arc::new(verification),
    })
}

async fn open_signer(
    db: &Database,
    kek: &KeyEncryptionKey,
    kid: &str,
) -> Result<Arc<AccessTokenSigner>, AppError> {
    let sealed = signing_keys::find_private(&mut *db.acquire().await?, kid)
        .await?
        .ok_or_else(|| AppError::Internal(format!("key {kid} vanished")))?;
    let der = decrypt_private_key(
        kek,
        &sealed.kid,
        &sealed.key_encryption_key_id,
        &sealed.private_key_ciphertext,
    )?;
    let signer = AccessTokenSigner::from_private_key_der(kid, &der)
        .map_err(|error| AppError::Internal(error.to_string()))?;
    Ok(Arc::new(signer))
}

/// Reloads the key ring every `interval` until the process ends.
pub fn spawn_reloader(ring: KeyRing, db: Database, kek: KeyEncryptionKey, interval: Duration) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if let Err(error) = ring.reload(&db, &kek).await {
                tracing::warn!(%error, "could not reload signing keys; keeping the current ones");
            }
        }
    });
}
