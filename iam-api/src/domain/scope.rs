//! The `scope` of a client-credentials request (RFC 6749 §3.3): space-separated
//! permissions that narrow what the client's role holds. Nothing can widen it.

use iam_core::permission::holds;

/// What a client-credentials token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedScope {
    /// The token's `permissions`: the requested ones, or every permission of the role.
    pub permissions: Vec<String>,
    /// The token's `scope` claim: the same permissions, space-separated; `None` when there
    /// are none (an empty `scope` claim would say nothing).
    pub scope: Option<String>,
}

/// A requested scope the client's role does not cover (`invalid_scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidScope {
    /// The first requested permission the role does not hold.
    pub permission: String,
}

/// The scope granted to a client whose role holds `held`, for the `requested` scope (absent
/// or blank: everything the role holds). Each requested permission must be held exactly (no
/// wildcard or prefix meaning); repeats count once, and the role's order is kept.
pub fn narrow(held: &[String], requested: Option<&str>) -> Result<GrantedScope, InvalidScope> {
    let requested: Vec<&str> = requested
        .unwrap_or_default()
        .split(' ')
        .filter(|token| !token.is_empty())
        .collect();
    if let Some(missing) = requested.iter().find(|token| !holds(held, token)) {
        return Err(InvalidScope {
            permission: (*missing).to_owned(),
        });
    }
    let permissions: Vec<String> = if requested.is_empty() {
        held.to_vec()
    } else {
        held.iter()
            .filter(|permission| requested.contains(&permission.as_str()))
            .cloned()
            .collect()
    };
    let scope = (!permissions.is_empty()).then(|| permissions.join(" "));
    Ok(GrantedScope { permissions, scope })
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn strings(permissions: &[&str]) -> Vec<String> {
        permissions.iter().map(|&p| p.to_owned()).collect()
    }

    #[test]
    fn no_scope_grants_everything_the_role_holds() {
        let held = strings(&["orders:read", "orders:write"]);
        for requested in [None, Some(""), Some("  ")] {
            assert_eq!(
                narrow(&held, requested),
                Ok(GrantedScope {
                    permissions: held.clone(),
                    scope: Some("orders:read orders:write".into()),
                }),
                "{requested:?}"
            );
        }
        assert_eq!(
            narrow(&[], None),
            Ok(GrantedScope {
                permissions: vec![],
                scope: None
            })
        );
    }

    #[test]
    fn a_scope_narrows_to_the_permissions_asked_for() {
        let held = strings(&["orders:read", "orders:write", "stock:read"]);
        assert_eq!(
            narrow(&held, Some("stock:read orders:read")),
            Ok(GrantedScope {
                permissions: strings(&["orders:read", "stock:read"]),
                scope: Some("orders:read stock:read".into()),
            })
        );
        assert_eq!(
            narrow(&held, Some(" orders:write  orders:write ")),
            Ok(GrantedScope {
                permissions: strings(&["orders:write"]),
                scope: Some("orders:write".into()),
            })
        );
    }

    #[test]
    fn a_scope_beyond_the_role_is_refused_naming_the_permission() {
        let held = strings(&["orders:read", "orders:*"]);
        for (requested, missing) in [
            ("orders:write", "orders:write"),
            ("orders:read iam:users:write", "iam:users:write"),
            // No wildcard or prefix meaning, and no case folding.
            ("orders", "orders"),
            ("Orders:read", "Orders:read"),
            ("orders:read\torders:write", "orders:read\torders:write"),
        ] {
            assert_eq!(
                narrow(&held, Some(requested)),
                Err(InvalidScope {
                    permission: missing.into()
                }),
                "{requested:?}"
            );
        }
        assert!(narrow(&[], Some("orders:read")).is_err());
    }
}
