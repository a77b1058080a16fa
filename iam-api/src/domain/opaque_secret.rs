//! Opaque secrets: 256 bits from the OS CSPRNG in URL-safe base64, stored only as a SHA-256
//! hash. Refresh tokens and client secrets are made this way. With that much entropy a fast
//! hash is safe (nobody can guess their way to a preimage offline), and look-ups go through a
//! unique index on the hash, so comparing happens on a hash of a secret and leaks nothing
//! useful through timing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::AppError;

/// Bytes of randomness in a secret.
const SECRET_BYTES: usize = 32;

/// A freshly drawn secret: the value for its holder (shown once), the hash for the database.
pub struct OpaqueSecret {
    pub value: String,
    pub hash: [u8; 32],
}

impl std::fmt::Debug for OpaqueSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpaqueSecret(<redacted>)")
    }
}

/// Draws a new secret.
pub fn generate() -> Result<OpaqueSecret, AppError> {
    let value = URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>()?);
    let hash = hash(&value);
    Ok(OpaqueSecret { value, hash })
}

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AppError> {
    let mut bytes = [0u8; N];
    openssl::rand::rand_bytes(&mut bytes)
        .map_err(|error| AppError::Internal(format!("cannot draw random bytes: {error}")))?;
    Ok(bytes)
}

/// The stored form of a secret.
pub fn hash(value: &str) -> [u8; 32] {
    openssl::sha::sha256(value.as_bytes())
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_256_bits_and_are_stored_as_hashes() {
        let secret = generate().expect("secret");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&secret.value).expect("b64").len(),
            32
        );
        assert_eq!(secret.hash, hash(&secret.value));
        assert_ne!(generate().expect("secret").value, secret.value);
        assert_eq!(format!("{secret:?}"), "OpaqueSecret(<redacted>)");
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_value() {
        // FIPS 180-2's test vector: SHA-256("abc").
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = hash("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }
}
