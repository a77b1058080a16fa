//! Access rules for the sidecar: rules file, `PUBLIC_PATHS`, path normalisation and decisions.
//!
//! Matching is only sound on normalised paths, so callers must run [`normalize_path`] on the
//! request path, reject the request if it fails, and forward the *normalised* path upstream.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

mod methods;

pub use methods::is_method_token;
use methods::rule_method_covers;

/// Everything outside RFC 3986 `pchar` (unreserved, sub-delims, `:`, `@`). `%` stays in the set
/// so that a decoded `%` is re-encoded and the upstream cannot decode it into something else.
const NOT_PCHAR: &AsciiSet = &non_alphanumeric_except(b"-._~!$&'()*+,;=:@");

/// Builds the set in a loop because a `.remove()` chain for 17 bytes is unreadable.
const fn non_alphanumeric_except(keep: &[u8]) -> AsciiSet {
    let mut set = NON_ALPHANUMERIC.union(AsciiSet::EMPTY); // a copy; `AsciiSet` is not `Copy`
    let mut i = 0;
    while i < keep.len() {
        set = set.remove(keep[i]);
        i += 1;
    }
    set
}

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

/// Why a request path was refused by [`normalize_path`]; such requests should get 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `%` is not followed by two hex digits.
    MalformedEscape,
    /// Percent-decoding produced bytes that are not UTF-8.
    InvalidUtf8,
    /// An encoded `/`, or a `\`, `;` or control character (raw or encoded).
    ForbiddenCharacter(char),
    /// A `..` segment would climb above the root.
    AboveRoot,
    /// A segment consists only of dots (e.g. `...`), which would vanish after dot stripping.
    OnlyDots,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => f.write_str("path must start with '/'"),
            Self::MalformedEscape => f.write_str("path contains a malformed percent-escape"),
            Self::InvalidUtf8 => f.write_str("path is not valid UTF-8 after percent-decoding"),
            Self::ForbiddenCharacter(c) => write!(f, "path contains forbidden character {c:?}"),
            Self::AboveRoot => f.write_str("path climbs above the root with '..'"),
            Self::OnlyDots => f.write_str("path has a segment made only of dots"),
        }
    }
}

impl std::error::Error for PathError {}

/// Normalises a request path (no query string) so that rule matching cannot be bypassed.
///
/// Decodes each segment (refusing malformed escapes, encoded `/`, `\`, `;`, controls and invalid
/// UTF-8), drops empty and `.` segments, resolves `..` (refusing to climb above the root), strips
/// trailing dots, then re-encodes everything outside `pchar`. No trailing slash except for `/`.
pub fn normalize_path(raw_path: &str) -> Result<String, PathError> {
    let rest = raw_path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments: Vec<String> = Vec::new();
    for raw in rest.split('/') {
        if raw.is_empty() {
            continue; // `//` and a trailing `/` collapse away
        }
        let segment = decode_segment(raw)?;
        match segment.as_str() {
            "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            _ => {
                // Some servers (notably on Windows) treat `admin.` as `admin`.
                let trimmed = segment.trim_end_matches('.');
                if trimmed.is_empty() {
                    return Err(PathError::OnlyDots);
                }
                segments.push(utf8_percent_encode(trimmed, NOT_PCHAR).to_string());
            }
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// Strictly percent-decodes one segment; `percent_decode` would pass `%zz` through silently.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(PathError::MalformedEscape);
            };
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)?;
    // A `/` here can only come from `%2F`. `\` is refused raw too because some upstreams treat it
    // as a separator (`/admin\x` would dodge a `/admin` rule), and `;` because Tomcat-style
    // servers strip `;params` from segments, so `/public/..;/admin` would be served as `/admin`.
    match decoded
        .chars()
        .find(|c| matches!(c, '/' | '\\' | ';') || c.is_control())
    {
        Some(c) => Err(PathError::ForbiddenCharacter(c)),
        None => Ok(decoded),
    }
}

/// Checks that a configured path is absolute and already in normalised form.
fn validate_config_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("path must start with '/'".into());
    }
    if path.contains('%') {
        return Err("path must not contain percent-encoding".into());
    }
    match normalize_path(path) {
        Ok(n) if n == path => Ok(()),
        Ok(n) if n.contains('%') => {
            Err("path contains characters that would need percent-encoding".into())
        }
        Ok(n) => Err(format!("path is not in normalised form (use {n:?})")),
        Err(e) => Err(format!("path is not in normalised form: {e}")),
    }
}

/// True when `prefix` is `path` or an ancestor of it on whole-segment boundaries.
fn has_segment_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `^[A-Za-z0-9_.:*-]{1,128}$`
fn is_permission(p: &str) -> bool {
    (1..=128).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:*-".contains(&b))
}

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
        if let Some(p) = permissions.iter().find(|p| !is_permission(p)) {
            return Err(format!(
                "permission {p:?} must match [A-Za-z0-9_.:*-]{{1,128}}"
            ));
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

/// Returns the first required permission the token does not hold (exact match; `*` is literal).
pub fn missing_permission<'a>(required: &'a [String], held: &[String]) -> Option<&'a str> {
    required
        .iter()
        .find(|r| !held.contains(r))
        .map(String::as_str)
}

#[cfg(test)]
mod tests;
