//! Signing keys: creation, encryption at rest, rotation and the in-memory key ring that signs
//! and verifies tokens.
//!
//! Lifecycle: a key is *published* from creation (in the JWKS, not signing), *active* from
//! `activates_at` (signing), *retired* from `retires_at` (no longer signing, still published)
//! and leaves the JWKS at `unpublish_at`, once every token it signed has expired.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use iam_core::token::AccessTokenSigner;
use iam_core::{
    AccessTokenClaims, KeySet, PublicJwk, PublicJwks, Reason, VerificationRules, VerifiedTokens,
    verify_access_token,
};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use sqlx::PgPool;

use crate::config::KeyEncryptionKey;
use crate::error::AppError;
use crate::store::signing_keys::{self, NewSigningKey, SigningKeyRecord};

/// Size of generated RSA keys, and the minimum accepted on import.
pub const RSA_KEY_BITS: u32 = 2048;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where a key is in its lifecycle at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyState {
    Published,
    Active,
    Retired,
    Unpublished,
}

impl SigningKeyState {
    /// The state of `key` at `now`.
    pub fn of(key: &SigningKeyRecord, now: DateTime<Utc>) -> Self {
        if key.unpublish_at.is_some_and(|at| at <= now) {
            SigningKeyState::Unpublished
        } else if key.retires_at.is_some_and(|at| at <= now) {
            SigningKeyState::Retired
        } else if key.activates_at <= now {
            SigningKeyState::Active
        } else {
            SigningKeyState::Published
        }
    }

    /// Lowercase name for `keys list`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKeyState::Published => "published",
            SigningKeyState::Active => "active",
            SigningKeyState::Retired => "retired",
            SigningKeyState::Unpublished => "unpublished",
        }
    }
}

/// An RSA private key with its public JWK (kid = RFC 7638 thumbprint).
struct KeyPair {
    jwk: PublicJwk,
    private_der: Vec<u8>,
}

impl std::fmt::Debug for KeyPair {
    // Never print private key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("kid", &self.jwk.kid)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    fn generate() -> Result<Self, AppError> {
        let rsa = Rsa::generate(RSA_KEY_BITS).map_err(internal("generate an RSA key"))?;
        Self::from_rsa(&rsa)
    }

    /// Parses an operator's PEM (PKCS#8 or PKCS#1), refusing anything but RSA >= 2048 bits.
    fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let key: PKey<Private> = PKey::private_key_from_pem(pem)
            .map_err(|_| "not a PEM private key (PKCS#8 or PKCS#1 expected)".to_owned())?;
        let rsa = key
            .rsa()
            .map_err(|_| "not an RSA key: only RSA keys can sign RS256 tokens".to_owned())?;
        if rsa.size() * 8 < RSA_KEY_BITS {
            return Err(format!(
                "the RSA key has {} bits; at least {RSA_KEY_BITS} are required",
                rsa.size() * 8
            ));
        }
        if !rsa.check_key().unwrap_or(false) {
            return Err("the RSA key is inconsistent".to_owned());
        }
        Self::from_rsa(&rsa).map_err(|error| error.to_string())
    }

    fn from_rsa(rsa: &Rsa<Private>) -> Result<Self, AppError> {
        let jwk = PublicJwk::from_rsa_components(&rsa.n().to_vec(), &rsa.e().to_vec());
        let private_der = rsa
            .private_key_to_der()
            .map_err(internal("encode the private key"))?;
        Ok(KeyPair { jwk, private_der })
    }
}

fn internal<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> AppError {
    move |error| AppError::Internal(format!("cannot {what}: {error}"))
}

/// Encrypts a private key with AES-256-GCM; the kid is authenticated as associated data so
/// a ciphertext cannot be moved to another key's row.
fn encrypt_private_key(
    kek: &KeyEncryptionKey,
    kid: &str,
    private_der: &[u8],
) -> Result<Vec<u8>, AppError> {
    let mut nonce = [0u8; NONCE_LEN];
    openssl::rand::rand_bytes(&mut nonce).map_err(internal("draw a nonce"))?;
    let mut tag = [0u8; TAG_LEN];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        kek.bytes(),
        Some(&nonce),
        kid.as_bytes(),
        private_der,
        &mut tag,
    )
    .map_err(internal("encrypt the private key"))?;
    Ok([nonce.as_slice(), &ciphertext, &tag].concat())
}

fn decrypt_private_key(
    kek: &KeyEncryptionKey,
    kid: &str,
    stored_kek_id: &str,
    sealed: &[u8],
) -> Result<Vec<u8>, AppError> {
    if stored_kek_id != kek.id() {
        return Err(AppError::Internal(format!(
            "signing key {kid} was encrypted with key-encryption key {stored_kek_id}, but \
             IAM_KEY_ENCRYPTION_KEY is {}",
            kek.id()
        )));
    }
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(AppError::Internal(format!(
            "signing key {kid}: ciphertext too short"
        )));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        kek.bytes(),
        Some(nonce),
        kid.as_bytes(),
        ciphertext,
        tag,
    )
    .map_err(|_| AppError::Internal(format!("signing key {kid} does not decrypt")))
}

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
pub async fn ensure_active_key(db: &PgPool, kek: &KeyEncryptionKey) -> Result<(), AppError> {
    let mut tx = db.begin().await?;
    signing_keys::lock_lifecycle(&mut *tx).await?;
    let now = Utc::now();
    let keys = signing_keys::list_published(&mut *tx, now).await?;
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
    db: &PgPool,
    kek: &KeyEncryptionKey,
    policy: RotationPolicy,
    pem: Option<&[u8]>,
) -> Result<SigningKeyRecord, AppError> {
    let key = match pem {
        Some(pem) => {
            KeyPair::from_pem(pem).map_err(|why| AppError::invalid_field("pem-file", why))?
        }
        None => KeyPair::generate()?,
    };
    rotate_to(db, kek, policy, &key, None)
        .await?
        .ok_or_else(|| AppError::Internal("the rotation did not happen".to_owned()))
}

/// Rotates to a generated key when the newest key began signing more than `interval` ago
/// and no rotation is pending. Replicas may all call it: the lifecycle lock and the re-check
/// under it make exactly one of them rotate.
pub async fn rotate_if_due(
    db: &PgPool,
    kek: &KeyEncryptionKey,
    policy: RotationPolicy,
    interval: Duration,
) -> Result<Option<SigningKeyRecord>, AppError> {
    let keys = signing_keys::list_all(db).await?;
    if !rotation_due(&keys, Utc::now(), interval) {
        return Ok(None);
    }
    let key = KeyPair::generate()?;
    rotate_to(db, kek, policy, &key, Some(interval)).await
}

fn rotation_due(keys: &[SigningKeyRecord], now: DateTime<Utc>, interval: Duration) -> bool {
    keys.iter()
        .map(|key| key.activates_at)
        .max()
        .is_none_or(|newest| newest + to_chrono(interval) <= now)
}

async fn rotate_to(
    db: &PgPool,
    kek: &KeyEncryptionKey,
    policy: RotationPolicy,
    key: &KeyPair,
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
    tx.commit().await?;
    Ok(Some(stored))
}

/// Checks every `check_every` whether an automatic rotation is due (`KEY_ROTATION_INTERVAL`).
pub fn spawn_automatic_rotation(
    db: PgPool,
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
    /// Access tokens that verified with the current keys; forgotten on every reload.
    verified: Arc<VerifiedTokens>,
}

/// How many verified access tokens each replica remembers.
const REMEMBERED_TOKENS: usize = 10_000;

impl KeyRing {
    /// Loads the keys published at the moment.
    pub async fn load(db: &PgPool, kek: &KeyEncryptionKey) -> Result<Self, AppError> {
        let material = load_material(db, kek, None).await?;
        Ok(KeyRing {
            material: Arc::new(RwLock::new(Arc::new(material))),
            verified: Arc::new(VerifiedTokens::new(REMEMBERED_TOKENS)),
        })
    }

    /// Reloads from the database; keeps the current keys when that fails.
    pub async fn reload(&self, db: &PgPool, kek: &KeyEncryptionKey) -> Result<(), AppError> {
        let current_signer = self.current().signer.clone();
        let material = load_material(db, kek, current_signer).await?;
        if let Ok(mut slot) = self.material.write() {
            *slot = Arc::new(material);
        }
        // A key may have left the published set: verify every token afresh.
        self.verified.forget_all();
        Ok(())
    }

    fn current(&self) -> Arc<KeyMaterial> {
        match self.material.read() {
            Ok(slot) => Arc::clone(&slot),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
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
        if let Some(recalled) = self.verified.recall(token, rules, now) {
            return recalled;
        }
        let keys = Arc::clone(&self.current().verification);
        let claims = Arc::new(verify_access_token(token, &keys, rules, now)?);
        self.verified.remember(token, Arc::clone(&claims));
        Ok(claims)
    }
}

async fn load_material(
    db: &PgPool,
    kek: &KeyEncryptionKey,
    current_signer: Option<Arc<AccessTokenSigner>>,
) -> Result<KeyMaterial, AppError> {
    let now = Utc::now();
    let published = signing_keys::list_published(db, now).await?;
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
    db: &PgPool,
    kek: &KeyEncryptionKey,
    kid: &str,
) -> Result<Arc<AccessTokenSigner>, AppError> {
    let sealed = signing_keys::find_private(db, kid)
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
pub fn spawn_reloader(ring: KeyRing, db: PgPool, kek: KeyEncryptionKey, interval: Duration) {
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

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn private_keys_round_trip_through_encryption_bound_to_their_kid() {
        let kek = KeyEncryptionKey::new([3; 32], false);
        let sealed = encrypt_private_key(&kek, "kid-1", b"secret der").expect("encrypt");
        assert!(!sealed.windows(10).any(|w| w == b"secret der"));
        let opened = decrypt_private_key(&kek, "kid-1", &kek.id(), &sealed).expect("decrypt");
        assert_eq!(opened, b"secret der");
        assert!(decrypt_private_key(&kek, "kid-2", &kek.id(), &sealed).is_err());
        let other = KeyEncryptionKey::new([4; 32], false);
        assert!(decrypt_private_key(&other, "kid-1", &kek.id(), &sealed).is_err());
        assert!(decrypt_private_key(&other, "kid-1", &other.id(), &sealed).is_err());
    }

    #[test]
    fn a_rotation_is_due_when_the_newest_key_is_older_than_the_interval() {
        let now = Utc::now();
        let key = |seconds_ago: i64| SigningKeyRecord {
            kid: format!("k{seconds_ago}"),
            public_jwk: sqlx::types::Json(PublicJwk::from_rsa_components(&[1], &[1])),
            created_at: now,
            activates_at: now - chrono::Duration::seconds(seconds_ago),
            retires_at: None,
            unpublish_at: None,
        };
        let interval = Duration::from_secs(60);
        assert!(rotation_due(&[], now, interval));
        assert!(rotation_due(&[key(61)], now, interval));
        assert!(!rotation_due(&[key(61), key(30)], now, interval));
        // A pending key (activating in the future) means a rotation is already under way.
        assert!(!rotation_due(&[key(600), key(-10)], now, interval));
    }

    #[test]
    fn imported_keys_must_be_rsa_of_at_least_2048_bits() {
        let small = Rsa::generate(1024).expect("rsa");
        let pem = small.private_key_to_pem().expect("pem");
        assert!(
            KeyPair::from_pem(&pem)
                .expect_err("too small")
                .contains("1024 bits")
        );
        assert!(KeyPair::from_pem(b"-----BEGIN NONSENSE-----").is_err());
        let good = Rsa::generate(2048).expect("rsa");
        let pkcs1 = good.private_key_to_pem().expect("pem");
        let pkcs8 = PKey::from_rsa(good)
            .expect("pkey")
            .private_key_to_pem_pkcs8()
            .expect("pem");
        let a = KeyPair::from_pem(&pkcs1).expect("pkcs1");
        let b = KeyPair::from_pem(&pkcs8).expect("pkcs8");
        assert_eq!(a.jwk.kid, b.jwk.kid);
    }
}
