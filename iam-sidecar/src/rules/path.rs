//! Request-path normalisation: the one form of a path that rules are matched on and that
//! the upstream receives, so that no spelling of a path can dodge a rule.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

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
/// A path already in that form (the common case) is returned as it is, without allocating.
pub fn normalize_path(raw_path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_normal_form(raw_path) {
        return Ok(Cow::Borrowed(raw_path));
    }
    normalize_segments(raw_path).map(Cow::Owned)
}

/// Whether [`normalize_path`] would return `path` unchanged, judged without decoding: `/`,
/// or `/`-separated segments that are non-empty, do not end in a dot (so none is `.` or
/// `..`, and none loses trailing dots), and hold only `pchar` characters that need neither
/// decoding nor re-encoding and are not refused (`%` and `;` are out).
fn is_normal_form(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    rest.is_empty()
        || rest.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.ends_with('.')
                && segment
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&byte))
        })
}

/// The full normalisation of [`normalize_path`], segment by segment.
fn normalize_segments(raw_path: &str) -> Result<String, PathError> {
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
pub(super) fn validate_config_path(path: &str) -> Result<(), String> {
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
pub(super) fn has_segment_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests;
