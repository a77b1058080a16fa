//! RSA key pairs: generated, or imported from an operator's PEM.

use iam_core::PublicJwk;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;

use super::sealing::internal;
use crate::error::AppError;

/// Size of generated RSA keys, and the minimum accepted on import.
pub const RSA_KEY_BITS: u32 = 2048;

/// An RSA private key with its public JWK (kid = RFC 7638 thumbprint).
pub(super) struct KeyPair {
    pub(super) jwk: PublicJwk,
    pub(super) private_der: Vec<u8>,
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
    pub(super) fn generate() -> Result<Self, AppError> {
        let rsa = Rsa::generate(RSA_KEY_BITS).map_err(internal("generate an RSA key"))?;
        Self::from_rsa(&rsa)
    }

    /// Parses an operator's PEM (PKCS#8 or PKCS#1), refusing anything but RSA >= 2048 bits.
    pub(super) fn from_pem(pem: &[u8]) -> Result<Self, String> {
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

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

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
