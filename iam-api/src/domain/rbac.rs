//! Role-based access control: role names, permissions, and the capability values that
//! privileged domain functions demand, so that a missing permission check does not compile.

use std::fmt;

use iam_core::permission::holds;

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

/// Permissions follow the one grammar in `iam_core::permission`.
pub use iam_core::permission::Permission;

/// The role every new user gets.
pub const DEFAULT_ROLE: &str = "user";
/// The built-in administrator role.
pub const ADMIN_ROLE: &str = "admin";
/// The permissions the built-in admin role always keeps.
pub const IAM_PERMISSIONS: [&str; 7] = [
    UsersRead::NAME,
    UsersWrite::NAME,
    RolesRead::NAME,
    RolesWrite::NAME,
    ClientsRead::NAME,
    ClientsWrite::NAME,
    AuditRead::NAME,
];

/// What a caller may grant to others (the delegation ceiling, [`within_ceiling`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ceiling {
    /// A caller with the built-in admin role: the root of delegation, which introduces the
    /// applications' permissions (`orders:write`, …) that nobody holds before it grants them.
    Everything,
    /// Any other caller: exactly the permissions of its own role.
    Held(Vec<String>),
}

impl Ceiling {
    /// The ceiling of a caller with `role` and its permissions `held`.
    pub fn of(role: &str, held: &[String]) -> Ceiling {
        if role == ADMIN_ROLE {
            Ceiling::Everything
        } else {
            Ceiling::Held(held.to_vec())
        }
    }

    /// Whether a caller under this ceiling may grant `permission`.
    pub fn allows(&self, permission: &str) -> bool {
        match self {
            Ceiling::Everything => true,
            Ceiling::Held(held) => holds(held, permission),
        }
    }
}

/// Only this module can make a [`sealed::Grant`], so only [`require`] can call
/// [`IamPermission::granted`].
mod sealed {
    /// Proof that [`super::require`] checked the permission.
    #[derive(Debug)]
    pub struct Grant(pub(super) ());
}

/// A permission the service itself checks. Values of implementing types can only be made by
/// [`require`] (their constructor needs a [`sealed::Grant`] that no other module can make),
/// so a function that takes one cannot be called without the check. Each value also carries
/// its caller's [`Ceiling`], for the delegation ceiling ([`within_ceiling`]).
pub trait IamPermission: Sized {
    /// The permission string.
    const NAME: &'static str;
    /// The capability, for a caller under `ceiling`; only [`require`] can call it.
    fn granted(ceiling: Ceiling, grant: sealed::Grant) -> Self;
    /// What the caller may grant.
    fn ceiling(&self) -> &Ceiling;
}

macro_rules! iam_permission {
    ($(#[$doc:meta])* $type:ident = $name:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $type {
            ceiling: Ceiling,
        }
        impl IamPermission for $type {
            const NAME: &'static str = $name;
            fn granted(ceiling: Ceiling, _: sealed::Grant) -> Self {
                $type { ceiling }
            }
            fn ceiling(&self) -> &Ceiling {
                &self.ceiling
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
iam_permission!(
    /// Proof that the caller may read clients (service accounts).
    ClientsRead = "iam:clients:read"
);
iam_permission!(
    /// Proof that the caller may create, disable and delete clients and their secrets.
    ClientsWrite = "iam:clients:write"
);
iam_permission!(
    /// Proof that the caller may read the audit trail.
    AuditRead = "iam:audit:read"
);

/// Checks that a caller with `role` and its permissions `held` holds `P`'s permission and
/// returns the capability, or 403.
pub fn require<P: IamPermission>(role: &str, held: &[String]) -> Result<P, AppError> {
    if holds(held, P::NAME) {
        Ok(P::granted(Ceiling::of(role, held), sealed::Grant(())))
    } else {
        Err(AppError::Forbidden(P::NAME))
    }
}

/// The capability of the operator at the command line (`iam-api users …`): whoever can run
/// the binary against the database holds everything already, so nothing is checked and the
/// ceiling is [`Ceiling::Everything`]. Only `cli` calls it.
pub fn operator<P: IamPermission>() -> P {
    P::granted(Ceiling::Everything, sealed::Grant(()))
}

/// The delegation ceiling: nobody grants what they do not hold. `Ok` when the caller behind
/// `capability` may grant every permission in `involved`, else a 403 naming the first it
/// may not.
pub fn within_ceiling(
    capability: &impl IamPermission,
    involved: &[String],
) -> Result<(), AppError> {
    match involved
        .iter()
        .find(|permission| !capability.ceiling().allows(permission))
    {
        Some(missing) => Err(AppError::BeyondCeiling(missing.clone())),
        None => Ok(()),
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
    fn parsed_names_and_permissions_keep_their_text() {
        let role = RoleName::parse("editor.v2").expect("role");
        assert_eq!(role.as_str(), "editor.v2");
        assert_eq!(role.to_string(), "editor.v2");
        assert_eq!(
            Permission::parse("orders:write")
                .expect("permission")
                .as_str(),
            "orders:write"
        );
    }

    fn strings(permissions: &[&str]) -> Vec<String> {
        permissions.iter().map(|&p| p.to_owned()).collect()
    }

    #[test]
    fn the_ceiling_allows_only_what_the_caller_holds() {
        let caller: UsersWrite =
            require("helpdesk", &strings(&["iam:users:write", "orders:read"])).expect("granted");
        assert_eq!(
            caller.ceiling(),
            &Ceiling::Held(strings(&["iam:users:write", "orders:read"]))
        );
        assert!(within_ceiling(&caller, &[]).is_ok());
        assert!(within_ceiling(&caller, &strings(&["orders:read"])).is_ok());
        assert!(within_ceiling(&caller, &strings(&["orders:read", "iam:users:write"])).is_ok());
        for (involved, missing) in [
            (strings(&["orders:write"]), "orders:write"),
            (
                strings(&["orders:read", "iam:roles:write"]),
                "iam:roles:write",
            ),
            // No wildcard and no prefix meaning: `orders:*` is a permission of its own.
            (strings(&["orders:*"]), "orders:*"),
            (strings(&["orders"]), "orders"),
            (strings(&["Orders:read"]), "Orders:read"),
        ] {
            match within_ceiling(&caller, &involved) {
                Err(AppError::BeyondCeiling(named)) => assert_eq!(named, missing),
                other => panic!("{involved:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_built_in_admin_role_may_grant_everything() {
        let admin: RolesWrite = require(ADMIN_ROLE, &strings(&IAM_PERMISSIONS)).expect("granted");
        assert_eq!(admin.ceiling(), &Ceiling::Everything);
        assert!(within_ceiling(&admin, &strings(&["orders:write", "anything:at:all"])).is_ok());
        // A custom role with the same permissions is not the root of delegation.
        let lookalike: RolesWrite = require("admins", &strings(&IAM_PERMISSIONS)).expect("granted");
        assert!(matches!(
            within_ceiling(&lookalike, &strings(&["orders:write"])),
            Err(AppError::BeyondCeiling(_))
        ));
        assert!(within_ceiling(&lookalike, &strings(&IAM_PERMISSIONS)).is_ok());
    }

    #[test]
    fn require_grants_only_the_exact_permission() {
        let held = vec!["iam:users:read".to_owned(), "iam:*".to_owned()];
        assert!(require::<UsersRead>("helpdesk", &held).is_ok());
        assert!(matches!(
            require::<UsersWrite>("helpdesk", &held),
            Err(AppError::Forbidden("iam:users:write"))
        ));
        assert!(require::<RolesWrite>("helpdesk", &[]).is_err());
        // The admin role's name is no permission: what counts is what the role holds.
        assert!(require::<RolesWrite>(ADMIN_ROLE, &[]).is_err());
    }
}
