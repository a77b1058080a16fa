//! Signing keys: creation, encryption at rest, rotation and the in-memory key ring that signs
//! and verifies tokens.
//!
//! Lifecycle: a key is *published* from creation (in the JWKS, not signing), *active* from
//! `activates_at` (signing), *retired* from `retires_at` (no longer signing, still published)
//! and leaves the JWKS at `unpublish_at`, once every token it signed has expired.
//!
//! One job a module: `state` (where a key is in that lifecycle), `pair` (generating and
//! importing RSA keys), `sealing` (the key-encryption key and AES-256-GCM at rest),
//! `rotation` (the rotation policy and the transactions that rotate) and `ring` (what this
//! replica signs and verifies with, reloaded from the database).

mod pair;
mod ring;
mod rotation;
mod sealing;
mod state;

pub use ring::{KeyRing, spawn_reloader};
pub use rotation::{RotationPolicy, ensure_active_key, rotate, spawn_automatic_rotation};
pub use sealing::KeyEncryptionKey;
pub use state::SigningKeyState;
