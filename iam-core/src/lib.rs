//! What every IAM process shares: access-token claims and their one verifier, JWK types,
//! configuration helpers and (behind the `telemetry` feature) logging setup.
//!
//! Nothing here opens a database connection, and only the `server` feature (which the binaries
//! enable) brings an HTTP server, so a verifier that depends on this crate never drags in a
//! server or a driver.

pub mod bearer;
pub mod config;
#[cfg(feature = "database")]
pub mod database;
pub mod jwk;
#[cfg(feature = "telemetry")]
pub mod metrics;
pub mod permission;
#[cfg(feature = "server")]
pub mod problem;
#[cfg(feature = "runtime")]
pub mod process;
pub mod refusal;
pub mod revocation;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod shutdown;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod token;
pub mod verified;

pub use jwk::{KeySet, PublicJwk, PublicJwks};
pub use token::{AccessTokenClaims, Reason, VerificationRules, verify_access_token};
pub use verified::{Epoch, Recall, VerifiedTokens};
