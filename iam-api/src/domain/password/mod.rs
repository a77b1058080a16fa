//! Passwords: the parsed `Password` type and the bounded argon2id hashing pool.
//!
//! One job a module: `policy` (the argon2id parameters and whether a stored hash still meets
//! them), `hashing` (computing and checking hashes in reusable memory, rehashing to the
//! current policy) and `pool` (the fixed hashing threads behind a bounded queue, and the
//! dummy hash that makes unknown emails cost as much as wrong passwords).

use std::fmt;

mod hashing;
mod policy;
mod pool;

pub use policy::HashParameters;
pub use pool::{HashingError, PasswordHasherPool};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password of acceptable length. Never printed, never serialised.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Accepts 8 to 128 characters, exactly as given (no trimming: spaces are characters).
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let length = input.chars().count();
        if length < MIN_PASSWORD_CHARS {
            return Err("must be at least 8 characters");
        }
        if length > MAX_PASSWORD_CHARS {
            return Err("must be at most 128 characters");
        }
        Ok(Password(input.to_owned()))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// A random password nobody knows, for the dummy hash.
    pub(super) fn random() -> Self {
        Password(uuid::Uuid::new_v4().to_string())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn password(text: &str) -> Password {
        Password::parse(text).expect("valid password")
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("ünïcödé!").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", password("hunter2hunter2")),
            "Password(<redacted>)"
        );
    }
}
