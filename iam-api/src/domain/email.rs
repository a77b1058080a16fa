//! Email addresses as the service stores and compares them.

use std::fmt;

/// A syntactically valid email address, trimmed and lowercased.
///
/// Only ASCII addresses are accepted: an internationalised domain must be given in its
/// punycode (`xn--`) form, so that two spellings of one mailbox can never be two accounts
/// and look-alike (confusable) Unicode characters cannot imitate another user's address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// The longest address the service stores (RFC 5321's path limit minus the brackets).
pub const MAX_EMAIL_LENGTH: usize = 254;

impl Email {
    /// Normalises and validates an address; the error says what is wrong with it.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let email = input.trim().to_ascii_lowercase();
        if email.is_empty() {
            return Err("must not be empty");
        }
        if email.len() > MAX_EMAIL_LENGTH {
            return Err("must be at most 254 characters");
        }
        if !email.is_ascii() {
            return Err("must be ASCII; write an internationalised domain in its xn-- form");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("must look like name@example.com");
        };
        if local.is_empty() || local.len() > 64 {
            return Err("the part before @ must be 1 to 64 characters");
        }
        if !local.bytes().all(is_local_part_byte)
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err("the part before @ has a character that is not allowed");
        }
        if !is_domain(domain) {
            return Err("the domain must be a host name such as example.com");
        }
        Ok(Email(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 5322 `atext` plus the dot; quoted local parts are not accepted.
fn is_local_part_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&byte)
}

fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for input in [
            "",
            "   ",
            "no-at-sign",
            "@example.com",
            "ada@",
            "ada@localhost",
            "ada@exa mple.com",
            "ada lovelace@example.com",
            "ada@-example.com",
            "ada@example..com",
            ".ada@example.com",
            "a..da@example.com",
            "ada@b\u{fc}cher.de",
            "\u{430}da@example.com",
        ] {
            assert!(Email::parse(input).is_err(), "{input:?} should be refused");
        }
    }

    #[test]
    fn punycode_domains_and_plus_addresses_are_accepted() {
        assert!(Email::parse("ada@xn--bcher-kva.de").is_ok());
        assert!(Email::parse("ada+iam@example.com").is_ok());
    }

    #[test]
    fn length_is_capped_at_254() {
        let domain = format!(
            "{}.{}.{}.{}.com",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63)
        );
        let long = format!("ada@{domain}");
        assert!(long.len() > 254);
        assert_eq!(
            Email::parse(&long).err(),
            Some("must be at most 254 characters")
        );
        let local = "x".repeat(65);
        assert!(Email::parse(&format!("{local}@example.com")).is_err());
    }
}
