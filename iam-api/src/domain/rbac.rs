//! Role-based access control: role names, permissions, and the capability values that
//! privileged domain functions demand, so that a missing permission check does not compile.

use std::fmt;

use crate::error::AppError;

/// A role name: `^[a-z][a-z0-9_.-]{1,62}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// Validates a role name exactly as given (no case folding: `Admin` is refused).
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let bytes = input.as_bytes();
        let valid = (2..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes[1..].iter().all(|&b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if valid {
            Ok(RoleName(input.to_owned()))
        } else {
            Err("must match ^[a-z][a-z0-9_.-]{1,62}$")
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A permission string: `^[A-Za-z0-9_.:*-]{1,128}$`. Compared exactly; `*` has no wildcard
/// meaning, so a permission is granted only by its own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission(String);

impl Permission {
    /// Validates a permission string.
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

/// The role every new user gets.
pub const DEFAULT_ROLE: &str = "user";
/// The built-in administrator role.
pub const ADMIN_ROLE: &str = "admin";
/// The permissions the built-in admin role always keeps.
pub const IAM_PERMISSIONS: [&str; 4] = [
    UsersRead::NAME,
    UsersWrite::NAME,
    RolesRead::NAME,
    RolesWrite::NAME,
];

/// A permission the service itself checks. Values of implementing types can only be made by
/// [`require`], so a function that takes one cannot be called without the check.
pub trait IamPermission: Sized {
    /// The permission string.
    const NAME: &'static str;
    #[doc(hidden)]
    fn granted() -> Self;
}

macro_rules! iam_permission {
    ($(#[$doc:meta])* $type:ident = $name:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $type(());
        impl IamPermission for $type {
            const NAME: &'static str = $name;
            fn granted() -> Self {
                $type(())
            }
        }
    };
}

iam_permission!(
    /// Proof that the caller may read users.
    UsersRead = "iam:users:read"
);
iam_permission!(
    /// Proof that the caller may change users' roles.
    UsersWrite = "iam:users:write"
);
iam_permission!(
    /// Proof that the caller may read roles.
    RolesRead = "iam:roles:read"
);
iam_permission!(
    /// Proof that the caller may create, change and delete roles.
    RolesWrite = "iam:roles:write"
);

/// Checks that `held` contains `P`'s permission and returns the capability, or 403.
pub fn require<P: IamPermission>(held: &[String]) -> Result<P, AppError> {
    if held.iter().any(|permission| permission == P::NAME) {
        Ok(P::granted())
    } else {
        Err(AppError::Forbidden(P::NAME))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn role_names_follow_the_contract_pattern() {
        for good in [
            "admin",
            "us",
            "editor.v2",
            "team_a-b",
            &format!("a{}", "b".repeat(62)),
        ] {
            assert!(RoleName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "Admin",
            "1st",
            "_x",
            "with space",
            "",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permissions_follow_the_contract_pattern() {
        for good in ["iam:users:read", "orders:*", "A-Z_0.9"] {
            assert!(Permission::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "slash/no", &"p".repeat(129)] {
            assert!(Permission::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn require_grants_only_the_exact_permission() {
        let held = vec!["iam:users:read".to_owned(), "iam:*".to_owned()];
        assert!(require::<UsersRead>(&held).is_ok());
        assert!(matches!(
            require::<UsersWrite>(&held),
            Err(AppError::Forbidden("iam:users:write"))
        ));
        assert!(require::<RolesWrite>(&[]).is_err());
    }
}
