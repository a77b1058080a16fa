//! The RS256 signature check (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) with OpenSSL
//! verification contexts that are set up once per key and then reused.
//!
//! Setting a context up is most of what a signature check costs besides the RSA operation
//! itself: OpenSSL 3 looks up the key's and the digest's implementations every time. A
//! context kept from the previous check took about a fifth off each check (22 µs instead
//! of 28 on the 2-core bench machine), which is what the sidecar pays for every token its
//! verified-token memory does not hold (bench/README.md, 2026-12-07 16:45).

use std::sync::Mutex;

use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::md::Md;
use openssl::pkey::{PKey, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::{Padding, Rsa};

/// The shortest modulus accepted (RFC 7518 §3.3: 2048 bits or larger).
pub const MIN_MODULUS_BITS: u32 = 2048;

/// How many set-up contexts a key keeps for reuse. A check holds one for its duration, so
/// no more are ever in use than threads verifying at once; past this, the extra contexts
/// are dropped after use instead of kept.
const MAX_KEPT_CONTEXTS: usize = 16;

/// Why a modulus and exponent are not an RS256 verification key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the modulus is {bits} bits; RS256 needs at least {MIN_MODULUS_BITS}")]
    ModulusTooShort { bits: u32 },
    /// An exponent of 1 makes every padded message its own signature; an even one is no RSA
    /// key at all.
    #[error("the public exponent must be odd and greater than 1")]
    BadExponent,
    #[error("OpenSSL refused the key: {0}")]
    Refused(#[from] ErrorStack),
}

/// A public RSA key ready to check RS256 signatures.
pub struct Rs256Key {
    public_key: PKey<Public>,
    /// Contexts set up for this key with PKCS #1 v1.5 padding and SHA-256, waiting for reuse.
    kept: Mutex<Vec<PkeyCtx<Public>>>,
}

impl std::fmt::Debug for Rs256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rs256Key")
            .field("modulus_bits", &self.public_key.bits())
            .finish_non_exhaustive()
    }
}

impl Rs256Key {
    /// The key with this big-endian modulus and exponent (leading zero bytes allowed).
    pub fn from_components(modulus: &[u8], exponent: &[u8]) -> Result<Self, KeyError> {
        let modulus = BigNum::from_slice(modulus)?;
        let exponent = BigNum::from_slice(exponent)?;
        let bits = u32::try_from(modulus.num_bits()).unwrap_or(0);
        if bits < MIN_MODULUS_BITS {
            return Err(KeyError::ModulusTooShort { bits });
        }
        if !exponent.is_bit_set(0) || exponent.num_bits() < 2 {
            return Err(KeyError::BadExponent);
        }
        let public_key = PKey::from_rsa(Rsa::from_public_components(modulus, exponent)?)?;
        // Set one context up now: a key OpenSSL cannot use fails here, not at the first token.
        let context = prepare(&public_key)?;
        Ok(Rs256Key {
            public_key,
            kept: Mutex::new(vec![context]),
        })
    }

    /// Whether `signature` is the RS256 signature of `message` under this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let digest = openssl::sha::sha256(message);
        let Some(mut context) = self.take_context() else {
            return false;
        };
        // `Ok(false)` is a signature that does not match; `Err` one OpenSSL could not even
        // check (a wrong length, say). Neither changes the context's key or settings, so
        // the context is kept either way.
        let valid = matches!(context.verify(&digest, signature), Ok(true));
        self.keep(context);
        valid
    }

    /// A kept context, or a newly set-up one when none is free.
    fn take_context(&self) -> Option<PkeyCtx<Public>> {
        let kept = match self.kept.lock() {
            Ok(mut kept) => kept.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        };
        kept.or_else(|| prepare(&self.public_key).ok())
    }

    fn keep(&self, context: PkeyCtx<Public>) {
        let mut kept = match self.kept.lock() {
            Ok(kept) => kept,
            Err(poisoned) => poisoned.into_inner(),
        };
        if kept.len() < MAX_KEPT_CONTEXTS {
            kept.push(context);
        }
    }

    /// How many set-up contexts wait for reuse.
    #[cfg(test)]
    fn kept_contexts(&self) -> usize {
        self.kept.lock().map(|kept| kept.len()).unwrap_or(0)
    }
}

/// A verification context for `key` with PKCS #1 v1.5 padding and SHA-256 digests.
fn prepare(key: &PKey<Public>) -> Result<PkeyCtx<Public>, ErrorStack> {
    let mut context = PkeyCtx::new(key)?;
    context.verify_init()?;
    context.set_rsa_padding(Padding::PKCS1)?;
    context.set_signature_md(Md::sha256())?;
    Ok(context)
}

#[cfg(test)]
#[path = "rs256/tests.rs"]
mod tests;
