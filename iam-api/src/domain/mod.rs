//! Domain logic in plain Rust: parsed input types and the rules of the service. No salvo here.

pub mod accounts;
pub mod audit;
pub mod client_address;
pub mod client_credentials;
pub mod clients;
pub mod email;
pub mod keys;
pub mod opaque_secret;
pub mod own_password;
pub mod paging;
pub mod password;
pub mod pruning;
pub mod rbac;
pub mod refresh;
pub mod revocation;
pub mod roles;
pub mod scope;
pub mod sessions;
pub mod sign_out;
pub mod throttle;
pub mod users;
