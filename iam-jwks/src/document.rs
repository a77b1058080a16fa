//! A JSON document serialised once and served many times, with its strong entity tag ready
//! to send: nothing about it is worked out per request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::HeaderValue;
use serde::Serialize;
use serde::ser::Error as _;

/// The bytes of a document and its strong `ETag`: a quoted SHA-256 of the bytes.
#[derive(Debug, Clone)]
pub struct Served {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Served {
    /// Serialises `value` and tags the bytes.
    pub fn of<T: Serialize>(value: &T) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        let tag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(openssl::sha::sha256(&body))
        );
        // Quotes around URL-safe base64 always make a valid header value.
        let etag = HeaderValue::try_from(tag).map_err(serde_json::Error::custom)?;
        Ok(Served {
            body: body.into(),
            etag,
        })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_is_strong_and_follows_the_content() {
        let empty = Served::of(&serde_json::json!({"keys": []})).expect("document");
        let etag = empty.etag.to_str().expect("ascii");
        assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 45);
        assert_eq!(&empty.body[..], br#"{"keys":[]}"#);
        let other = Served::of(&serde_json::json!({"keys": [1]})).expect("document");
        assert_ne!(other.etag, empty.etag);
    }
}
