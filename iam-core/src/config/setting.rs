//! One environment variable as envy reads it into a typed field, without failing the read:
//! a value that does not parse is kept with its error, so that every problem can be reported
//! in one message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A variable's value parsed as `T`: unset (or blank), a value, or the text `T` refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Setting<T> {
    /// Not set, or only whitespace.
    #[default]
    Unset,
    /// Set, and parsed.
    Value(T),
    /// Set to text that does not parse: the trimmed text and why it was refused.
    Invalid { raw: String, why: String },
}

impl<T> Setting<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    /// Parses a variable's text: surrounding whitespace is ignored and blank means unset.
    pub fn parse(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.is_empty() {
            return Setting::Unset;
        }
        match raw.parse() {
            Ok(value) => Setting::Value(value),
            Err(error) => Setting::Invalid {
                raw: raw.to_owned(),
                why: error.to_string(),
            },
        }
    }
}

impl<T> From<&str> for Setting<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn from(raw: &str) -> Self {
        Setting::parse(raw)
    }
}

impl<'de, T> Deserialize<'de> for Setting<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|raw| Setting::parse(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_is_unset_and_values_are_trimmed() {
        assert_eq!(Setting::<u16>::parse("  "), Setting::Unset);
        assert_eq!(Setting::<u16>::parse(" 8000 "), Setting::Value(8000));
        assert_eq!(
            Setting::<String>::parse(" iam "),
            Setting::Value("iam".to_owned())
        );
    }

    #[test]
    fn a_value_that_does_not_parse_keeps_its_text_and_reason() {
        match Setting::<u16>::parse("http") {
            Setting::Invalid { raw, why } => {
                assert_eq!(raw, "http");
                assert!(!why.is_empty());
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
