//! Access rules for the sidecar: rules file, `PUBLIC_PATHS`, path normalisation and decisions.
//!
//! Matching is only sound on normalised paths, so callers must run [`normalize_path`] on the
//! request path, reject the request if it fails, and forward the *normalised* path upstream.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use iam_core::permission::{PERMISSION_PATTERN, Permission};
use serde::Deserialize;

mod methods;
mod path;

pub use methods::is_method_token;
use methods::rule_method_covers;
pub use path::normalize_path;
use path::{has_segment_prefix, validate_config_path};

/// Why a rules file or `PUBLIC_PATHS` value was rejected; `Display` is a one-line message.
#[derive(Debug)]
pub enum RulesError {
    /// The rules file could not be read.
    Read {
        /// The file that was being read.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The rules file is not valid TOML or has unexpected top-level keys.
    Syntax {
        /// 1-based line of the problem, when the parser reports one.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A rule is invalid.
    InvalidRule {
        /// 1-based position of the rule in the file.
        index: usize,
        /// The rule's `path`, if it has a string one.
        path: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A `PUBLIC_PATHS` entry is invalid.
    InvalidPublicPath {
        /// The (trimmed) entry.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An error found while parsing the named rules file.
    InFile {
        /// The rules file.
        file: PathBuf,
        /// The error found in its contents.
        source: Box<RulesError>,
    },
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { file, source } => {
                write!(f, "cannot read rules file {}: {source}", file.display())
            }
            Self::Syntax {
                line: Some(line),
                message,
            } => write!(f, "invalid TOML at line {line}: {message}"),
            Self::Syntax {
                line: None,
                message,
            } => write!(f, "invalid TOML: {message}"),
            Self::InvalidRule {
                index,
                path: Some(path),
                reason,
            } => write!(f, "rule {index} (path {path:?}): {reason}"),
            Self::InvalidRule {
                index,
                path: None,
                reason,
            } => write!(f, "rule {index}: {reason}"),
            Self::InvalidPublicPath { entry, reason } => {
                write!(f, "PUBLIC_PATHS entry {entry:?}: {reason}")
            }
            Self::InFile { file, source } => write!(f, "rules file {}: {source}", file.display()),
        }
    }
}

// `source()` stays `None` on purpose: `Display` already includes the cause, and exposing it as
// well would make chain-walking error reporters print it twice on the start-up line.
impl std::error::Error for RulesError {}

/// Parses `PUBLIC_PATHS`: comma-separated, trimmed, empty entries ignored, each a normalised path.
pub fn parse_public_paths(value: &str) -> Result<Vec<String>, RulesError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match validate_config_path(e) {
            Ok(()) => Ok(e.to_string()),
            Err(reason) => Err(RulesError::InvalidPublicPath {
                entry: e.to_string(),
                reason,
            }),
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    // Kept as raw values so that each rule's errors can be reported with its index.
    #[serde(default)]
    rule: Vec<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    methods: Option<Vec<String>>,
    permissions: Option<Vec<String>>,
    #[serde(default)]
    public: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    path: String,
    /// Canonical uppercase; `None` for every method.
    methods: Option<Vec<String>>,
    permissions: Vec<String>,
    public: bool,
}

impl Rule {
    fn from_raw(raw: RawRule) -> Result<Rule, String> {
        validate_config_path(&raw.path)?;
        if let Some(methods) = &raw.methods {
            if methods.is_empty() {
                return Err("methods must not be empty (omit it to match all methods)".into());
            }
            if let Some(m) = methods.iter().find(|m| !is_method_token(m)) {
                return Err(format!("method {m:?} is not an HTTP method token"));
            }
        }
        // Methods are matched case-insensitively; stored canonical so logs and tests agree.
        let methods = raw
            .methods
            .map(|methods| methods.iter().map(|m| m.to_ascii_uppercase()).collect());
        let permissions = raw.permissions.unwrap_or_default();
        if let Some(p) = permissions.iter().find(|p| Permission::parse(p).is_err()) {
            return Err(format!("permission {p:?} must match {PERMISSION_PATTERN}"));
        }
        if raw.public && !permissions.is_empty() {
            return Err("a public rule cannot require permissions".into());
        }
        Ok(Rule {
            path: raw.path,
            methods,
            permissions,
            public: raw.public,
        })
    }
}

/// An ordered, validated list of rules from the rules file; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Parses and validates a rules file's TOML text.
    pub fn parse(toml_text: &str) -> Result<Rules, RulesError> {
        let file: RulesFile = toml::from_str(toml_text).map_err(|e| RulesError::Syntax {
            line: e
                .span()
                .and_then(|s| toml_text.get(..s.start))
                .map(|t| t.matches('\n').count() + 1),
            message: e.message().replace('\n', " "),
        })?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for (i, value) in file.rule.into_iter().enumerate() {
            let path = value
                .get("path")
                .and_then(toml::Value::as_str)
                .map(str::to_string);
            let rule = value
                .try_into::<RawRule>()
                .map_err(|e| e.message().replace('\n', " "))
                .and_then(Rule::from_raw)
                .map_err(|reason| RulesError::InvalidRule {
                    index: i + 1,
                    path,
                    reason,
                })?;
            rules.push(rule);
        }
        Ok(Rules { rules })
    }

    /// Reads and parses a rules file; errors name the file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Rules::parse(&text).map_err(|e| RulesError::InFile {
            file: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Number of rules (for the start-up log).
    pub fn len(&self) -> usize {
        self.rules.len()
    }
}

/// What a request needs before it may be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access<'a> {
    /// Forward without a token.
    Public,
    /// A valid token is required (401 otherwise).
    Authenticated {
        /// Permissions the token must all hold (403 `insufficient_scope` otherwise); may be
        /// empty. Borrowed from the rule unless several rules' permissions were combined.
        required_permissions: Cow<'a, [String]>,
    },
}

impl<'a> Access<'a> {
    /// What a request needs when it must satisfy both `self` and `other`: public only if
    /// both are, else a token holding the permissions of both (without repeats).
    fn and(self, other: Access<'a>) -> Access<'a> {
        match (self, other) {
            (Access::Public, other) => other,
            (this, Access::Public) => this,
            (
                Access::Authenticated {
                    required_permissions: these,
                },
                Access::Authenticated {
                    required_permissions: those,
                },
            ) => {
                let mut all = these.into_owned();
                for permission in those.iter() {
                    if !all.contains(permission) {
                        all.push(permission.clone());
                    }
                }
                Access::Authenticated {
                    required_permissions: Cow::Owned(all),
                }
            }
        }
    }
}

/// `PUBLIC_PATHS` entries plus the rules file: everything needed to decide on a request.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    public_paths: Vec<String>,
    rules: Rules,
}

impl AccessPolicy {
    /// Builds a policy; `public_paths` should come from [`parse_public_paths`].
    pub fn new(public_paths: Vec<String>, rules: Rules) -> AccessPolicy {
        AccessPolicy {
            public_paths,
            rules,
        }
    }

    /// Decides access for a request with `method` (any case) on a path already passed
    /// through [`normalize_path`], that the upstream may also run as any of `overrides`
    /// (the values of its method-override headers): every rule that applies under any of
    /// these methods must be satisfied, so it is public only if it is public under each.
    ///
    /// Paths are case-sensitive: `/ADMIN` does not match a `/admin` rule and falls to the default
    /// (token required), so it is never *more* public, but a case-insensitive upstream would
    /// serve it without the `/admin` rule's permissions.
    pub fn decide(&self, method: &str, overrides: &[&str], normalized_path: &str) -> Access<'_> {
        overrides.iter().fold(
            self.decide_one(method, normalized_path),
            |access, method| access.and(self.decide_one(method, normalized_path)),
        )
    }

    /// Decides access for a request run as `method` (any case; a `GET` rule covers `HEAD`).
    fn decide_one(&self, method: &str, normalized_path: &str) -> Access<'_> {
        if self
            .public_paths
            .iter()
            .any(|p| has_segment_prefix(normalized_path, p))
        {
            return Access::Public;
        }
        let hit = self.rules.rules.iter().find(|r| {
            r.methods
                .as_ref()
                .is_none_or(|ms| ms.iter().any(|m| rule_method_covers(m, method)))
                && has_segment_prefix(normalized_path, &r.path)
        });
        match hit {
            Some(rule) if rule.public => Access::Public,
            Some(rule) => Access::Authenticated {
                required_permissions: Cow::Borrowed(&rule.permissions),
            },
            None => Access::Authenticated {
                required_permissions: Cow::Borrowed(&[]),
            },
        }
    }
}

#[cfg(test)]
mod tests;
