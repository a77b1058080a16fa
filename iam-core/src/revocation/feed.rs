//! The revocation feed's document (contract §5): what iam-jwks serves and the sidecar reads.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::Revocations;

/// Where iam-jwks serves the feed.
pub const REVOCATIONS_PATH: &str = "/api/v1/revocations";

/// `{"subjects":{"<sub>":<cut-off>},"tokens":{"<jti>":<exp>},"generated_at":<unix seconds>}`.
/// Sorted maps, so that the same revocations always serialise to the same bytes and the
/// strong ETag only changes when they do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// Subject → cut-off (unix seconds): its tokens issued before it are refused.
    pub subjects: BTreeMap<String, i64>,
    /// Token id → the token's expiry (unix seconds): refused until then.
    pub tokens: BTreeMap<String, i64>,
    /// When the document was built (unix seconds).
    pub generated_at: i64,
}

impl RevocationFeed {
    /// What a verifier consults; takes the entries without copying them.
    pub fn into_revocations(self) -> Revocations {
        Revocations::new(self.subjects, self.tokens.into_keys())
    }
}

/// Reads a feed document straight into the form a verifier consults, entry by entry, with
/// no intermediate copy of the entries: what a sidecar does with every new copy, so that a
/// large feed costs its entries and little more. Members other than `subjects` and `tokens`
/// are skipped; both of those must be there.
pub fn parse_revocations(document: &[u8]) -> Result<Revocations, serde_json::Error> {
    let mut revocations = Revocations::default();
    let mut deserializer = serde_json::Deserializer::from_slice(document);
    FeedSeed(&mut revocations).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(revocations)
}

/// The whole document.
struct FeedSeed<'a>(&'a mut Revocations);

impl<'de> DeserializeSeed<'de> for FeedSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FeedSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a revocation feed object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut subjects, mut tokens) = (false, false);
        while let Some(member) = map.next_key::<String>()? {
            match member.as_str() {
                "subjects" => {
                    map.next_value_seed(EntriesSeed::Subjects(self.0))?;
                    subjects = true;
                }
                "tokens" => {
                    map.next_value_seed(EntriesSeed::Tokens(self.0))?;
                    tokens = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (subjects, tokens) {
            (true, true) => Ok(()),
            (false, _) => Err(A::Error::missing_field("subjects")),
            (true, false) => Err(A::Error::missing_field("tokens")),
        }
    }
}

/// One of the two maps: subject → cut-off, or token id → expiry (the expiry is read, and
/// needs not be kept: the feed drops the entry once it passes).
enum EntriesSeed<'a> {
    Subjects(&'a mut Revocations),
    Tokens(&'a mut Revocations),
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object of ids and unix seconds")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        match self {
            EntriesSeed::Subjects(revocations) => {
                while let Some((subject, cutoff)) = map.next_entry::<String, i64>()? {
                    revocations.revoke_subject(&subject, cutoff);
                }
            }
            EntriesSeed::Tokens(revocations) => {
                while let Some((token_id, _expires_at)) = map.next_entry::<String, i64>()? {
                    revocations.revoke_token(&token_id);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use super::*;
    use crate::revocation::test_claims as claims;

    #[test]
    fn the_document_has_the_contracts_shape_and_revokes_what_it_lists() {
        let text = r#"{"subjects":{"u1":1000},"tokens":{"j1":2000},"generated_at":1500}"#;
        let feed: RevocationFeed = serde_json::from_str(text).expect("feed");
        assert_eq!(serde_json::to_string(&feed).expect("json"), text);
        let revoked = feed.into_revocations();
        assert!(revoked.revokes(&claims("u1", "x", 999)));
        assert!(!revoked.revokes(&claims("u1", "x", 1000)));
        assert!(revoked.revokes(&claims("u2", "j1", 1900)));
        assert!(!revoked.revokes(&claims("u2", "j2", 1900)));
    }

    #[test]
    fn a_document_parses_straight_into_the_same_revocations() {
        let text = br#"{"generated_at":1500,"subjects":{"u1":1000,"0193a0c4-0000-7000-8000-00000000beef":7},"tokens":{"j1":2000},"extra":[1,{"a":2}]}"#;
        let parsed = parse_revocations(text).expect("feed");
        let via_document = serde_json::from_slice::<RevocationFeed>(text)
            .expect("feed")
            .into_revocations();
        assert_eq!(parsed, via_document);
        assert_eq!(parsed.len(), (2, 1));
        assert!(parsed.revokes(&claims("u1", "x", 999)));
        assert!(!parsed.revokes(&claims("u1", "x", 1000)));
        assert!(parsed.revokes(&claims("0193a0c4-0000-7000-8000-00000000beef", "x", 6)));
        assert!(parsed.revokes(&claims("u2", "j1", 1900)));
    }

    #[test]
    fn a_document_without_both_maps_or_with_bad_entries_is_refused() {
        for (text, says) in [
            (&br#"{"tokens":{}}"#[..], "missing field `subjects`"),
            (br#"{"subjects":{}}"#, "missing field `tokens`"),
            (br#"[]"#, "a revocation feed object"),
            (
                br#"{"subjects":[],"tokens":{}}"#,
                "an object of ids and unix seconds",
            ),
            (br#"{"subjects":{"u":"soon"},"tokens":{}}"#, "expected i64"),
            (br#"{"subjects":{},"tokens":{}} x"#, "trailing characters"),
        ] {
            let error = parse_revocations(text).expect_err(says).to_string();
            assert!(error.contains(says), "{error} does not say {says}");
        }
        assert_eq!(
            parse_revocations(br#"{"subjects":{},"tokens":{}}"#).expect("empty"),
            Revocations::NONE
        );
    }

    #[test]
    fn the_same_entries_serialise_to_the_same_bytes() {
        let mut one = RevocationFeed::default();
        let mut other = RevocationFeed::default();
        for subject in ["b", "a", "c"] {
            one.subjects.insert(subject.to_owned(), 1);
        }
        for subject in ["c", "b", "a"] {
            other.subjects.insert(subject.to_owned(), 1);
        }
        assert_eq!(
            serde_json::to_vec(&one).expect("json"),
            serde_json::to_vec(&other).expect("json")
        );
    }
}
