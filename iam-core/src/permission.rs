//! The permission grammar, and the one rule for holding a permission: by its exact name.
//! The api validates roles' permissions with it; the sidecar validates its rules file and
//! judges tokens with it.

use std::fmt;

/// The pattern every permission matches (as it is quoted in error messages).
pub const PERMISSION_PATTERN: &str = "^[A-Za-z0-9_.:*-]{1,128}$";

/// A permission string that matches [`PERMISSION_PATTERN`]. Compared exactly; `*` has no
/// wildcard meaning, so a permission is held only under its own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(String);

impl Permission {
    /// Validates a permission string exactly as given.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let valid = (1..=128).contains(&input.len())
            && input.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'*' | b'-')
            });
        if valid {
            Ok(Permission(input.to_owned()))
        } else {
            Err("must match ^[A-Za-z0-9_.:*-]{1,128}$")
        }
    }

    /// The permission string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `held` (a token's or a role's permissions) includes `permission`.
pub fn holds(held: &[String], permission: &str) -> bool {
    held.iter().any(|own| own == permission)
}

/// The first of `required` that `held` does not include.
pub fn missing_permission<'a>(required: &'a [String], held: &[String]) -> Option<&'a str> {
    required
        .iter()
        .find(|permission| !holds(held, permission))
        .map(String::as_str)
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    fn strings(permissions: &[&str]) -> Vec<String> {
        permissions.iter().map(|&p| p.to_owned()).collect()
    }

    #[test]
    fn permissions_follow_the_contract_pattern() {
        for good in [
            "iam:users:read",
            "orders:*",
            "A-Z_0.9",
            "*",
            &"p".repeat(128),
        ] {
            let parsed = Permission::parse(good).expect(good);
            assert_eq!(parsed.as_str(), good);
            assert_eq!(parsed.to_string(), good);
        }
        for bad in ["", "has space", "slash/no", "é", "a\nb", &"p".repeat(129)] {
            assert_eq!(
                Permission::parse(bad),
                Err("must match ^[A-Za-z0-9_.:*-]{1,128}$"),
                "{bad}"
            );
        }
        assert!(PERMISSION_PATTERN.contains("{1,128}"));
    }

    #[test]
    fn a_permission_is_held_only_under_its_exact_name() {
        let held = strings(&["orders:*", "*", "Orders:read"]);
        assert!(holds(&held, "orders:*"));
        assert!(!holds(&held, "orders:read"));
        assert!(!holds(&held, "orders"));
        assert!(!holds(&[], "*"));
    }

    #[test]
    fn the_first_permission_not_held_is_named() {
        let required = strings(&["a", "b", "c"]);
        assert_eq!(
            missing_permission(&required, &strings(&["c", "a"])),
            Some("b")
        );
        assert_eq!(
            missing_permission(&required, &strings(&["c", "b", "a", "d"])),
            None
        );
        assert_eq!(missing_permission(&[], &[]), None);
        assert_eq!(
            missing_permission(&strings(&["orders:read"]), &strings(&["*", "orders:*"])),
            Some("orders:read")
        );
    }
}
