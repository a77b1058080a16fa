//! SQL, one module of plain functions per table. Callers own transactions and pass an
//! executor (a connection from [`iam_core::database::connections::Database`], or a transaction on one) down.

pub mod audit_events;
pub mod clients;
pub mod login_failures;
pub mod refresh_tokens;
pub mod revoked_access_tokens;
pub mod revoked_subjects;
pub mod roles;
pub mod signing_keys;
pub mod users;
