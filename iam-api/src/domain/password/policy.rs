//! The hashing policy: argon2id cost parameters, and whether a stored hash still meets them
//! (when not, the next successful login rehashes it).

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};

/// argon2id cost parameters (`PASSWORD_HASH_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParameters {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParameters {
    /// Checks the parameters against argon2's own limits.
    pub fn validate(&self) -> Result<(), String> {
        self.argon2_params().map(|_| ())
    }

    pub(super) fn argon2_params(&self) -> Result<Params, String> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|error| format!("argon2 rejects these parameters: {error}"))
    }

    pub(super) fn hasher(&self) -> Result<Argon2<'static>, String> {
        Ok(Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            self.argon2_params()?,
        ))
    }
}

/// Whether a stored hash is argon2id version 19 at exactly the configured parameters.
pub(super) fn uses_parameters(parsed: &PasswordHash, parameters: HashParameters) -> bool {
    let is_argon2id = parsed.algorithm.as_str() == Algorithm::Argon2id.ident().as_str();
    let Ok(stored) = Params::try_from(parsed) else {
        return false;
    };
    let is_current_version = parsed.version == Some(Version::V0x13.into());
    is_argon2id
        && is_current_version
        && stored.m_cost() == parameters.memory_kib
        && stored.t_cost() == parameters.iterations
        && stored.p_cost() == parameters.parallelism
}
