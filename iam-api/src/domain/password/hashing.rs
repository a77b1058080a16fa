//! Computing and checking argon2id hashes in a worker's reusable memory; a hash made under
//! older parameters is checked with them and replaced by one under the current policy.

use argon2::password_hash::PasswordVerifier as _;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Version};

use super::Password;
use super::policy::{HashParameters, uses_parameters};
use super::pool::{HashingError, VerifyOutcome};

/// One worker's argon2 memory, allocated on its first hash and reused for every later one.
/// Allocating 19 MiB per hash made the allocator keep freed blocks around, and resident
/// memory grew far past threads × memory cost under a login flood; allocating lazily keeps
/// an idle process small.
pub(super) struct HashMemory {
    block_count: usize,
    blocks: Vec<Block>,
}

impl HashMemory {
    pub(super) fn new(parameters: HashParameters) -> Self {
        HashMemory {
            block_count: parameters
                .argon2_params()
                .map_or(0, |params| params.block_count()),
            blocks: Vec::new(),
        }
    }

    fn blocks(&mut self) -> &mut [Block] {
        if self.blocks.len() != self.block_count {
            self.blocks = vec![Block::new(); self.block_count];
        }
        &mut self.blocks
    }
}

/// Length of the hashes we write (argon2's default output length).
const OUTPUT_LEN: usize = 32;
/// Length of the salts we draw.
const SALT_LEN: usize = 16;

pub(super) fn failed(error: impl std::fmt::Display) -> HashingError {
    HashingError::Failed(error.to_string())
}

/// A new PHC string for `password` with a fresh random salt, hashed in `memory`.
pub(super) fn hash(
    hasher: &Argon2<'static>,
    parameters: HashParameters,
    memory: &mut HashMemory,
    password: &Password,
) -> Result<String, HashingError> {
    let mut salt = [0u8; SALT_LEN];
    openssl::rand::rand_bytes(&mut salt).map_err(failed)?;
    let mut output = [0u8; OUTPUT_LEN];
    hasher
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut output, memory.blocks())
        .map_err(failed)?;
    let params = parameters.argon2_params().map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(failed)?,
        salt: Some(Salt::new(&salt).map_err(failed)?),
        hash: Some(Output::new(&output).map_err(failed)?),
    };
    Ok(phc.to_string())
}

pub(super) fn verify(
    hasher: &Argon2<'static>,
    parameters: HashParameters,
    memory: &mut HashMemory,
    password: &Password,
    stored_hash: &str,
) -> Result<VerifyOutcome, HashingError> {
    let parsed = PasswordHash::new(stored_hash)
        .map_err(|error| HashingError::Failed(format!("stored hash is unreadable: {error}")))?;
    if !uses_parameters(&parsed, parameters) {
        // Older parameters: verify with them (allocating, rare), then upgrade the hash.
        let matches = hasher.verify_password(password.as_bytes(), &parsed).is_ok();
        let rehashed = if matches {
            Some(hash(hasher, parameters, memory, password)?)
        } else {
            None
        };
        return Ok(VerifyOutcome { matches, rehashed });
    }
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return Err(HashingError::Failed(
            "stored hash lacks salt or output".to_owned(),
        ));
    };
    let mut output = vec![0u8; expected.len()];
    hasher
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut output, memory.blocks())
        .map_err(failed)?;
    // Constant time, so the comparison reveals nothing about how much of the hash matched.
    let matches = openssl::memcmp::eq(&output, expected.as_bytes());
    Ok(VerifyOutcome {
        matches,
        rehashed: None,
    })
}
