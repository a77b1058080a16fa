//! Private keys at rest: the key-encryption key (`IAM_KEY_ENCRYPTION_KEY`) and AES-256-GCM
//! sealing bound to each key's kid.

use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

use crate::error::AppError;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The AES-256 key that encrypts private signing keys at rest. Never printed.
#[derive(Clone)]
pub struct KeyEncryptionKey {
    bytes: [u8; 32],
    /// Whether this is the public development key (local only).
    pub is_development_key: bool,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEncryptionKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl KeyEncryptionKey {
    /// A key from its 32 raw bytes.
    pub fn new(bytes: [u8; 32], is_development_key: bool) -> Self {
        KeyEncryptionKey {
            bytes,
            is_development_key,
        }
    }

    /// The raw key, for the cipher only.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A short fingerprint stored next to each ciphertext, so that a wrong key is reported
    /// as such instead of as corrupt data.
    pub fn id(&self) -> String {
        let digest = openssl::sha::sha256(&self.bytes);
        digest[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Maps a crypto library error to an internal error saying what could not be done.
pub(super) fn internal<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> AppError {
    move |error| AppError::Internal(format!("cannot {what}: {error}"))
}

/// Encrypts a private key with AES-256-GCM; the kid is authenticated as associated data so
/// a ciphertext cannot be moved to another key's row.
pub(super) fn encrypt_private_key(
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

pub(super) fn decrypt_private_key(
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
}
