//! Reading a document the sidecar polls (the JWKS now, the revocation feed next) with a size
//! cap: the body is read chunk by chunk and refused as soon as it would pass the cap, so a
//! broken or hostile key service cannot make the sidecar buffer an unbounded body.

/// The largest document the sidecar reads from the JWKS or the revocation feed. A JWKS of
/// a few keys is a few KiB; the feed is bounded by one token lifetime's revocations.
pub const MAX_FETCHED_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why a document was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The body is (or says it is) larger than the cap.
    #[error("the document is larger than {cap} bytes")]
    TooLarge {
        /// The cap it would have passed.
        cap: usize,
    },
    /// The body could not be read.
    #[error("the document could not be read: {0}")]
    Read(String),
}

/// Whether a declared `Content-Length` already rules the body out.
fn declared_too_large(content_length: Option<u64>, cap: usize) -> bool {
    content_length.is_some_and(|length| length > cap as u64)
}

/// Appends `chunk` to `body`, unless the two together would pass `cap` (`body` never holds
/// more than `cap` bytes, so the subtraction cannot underflow).
fn append_within(body: &mut Vec<u8>, chunk: &[u8], cap: usize) -> Result<(), DocumentError> {
    if chunk.len() > cap.saturating_sub(body.len()) {
        return Err(DocumentError::TooLarge { cap });
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// Reads the body of `response`, at most `cap` bytes of it (use
/// [`MAX_FETCHED_DOCUMENT_BYTES`]); a larger body is refused without reading the rest.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, DocumentError> {
    if declared_too_large(response.content_length(), cap) {
        return Err(DocumentError::TooLarge { cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| DocumentError::Read(error.to_string()))?
    {
        append_within(&mut body, &chunk, cap)?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_above_the_cap_is_refused_up_front() {
        assert!(!declared_too_large(None, 10));
        assert!(!declared_too_large(Some(0), 10));
        assert!(!declared_too_large(Some(10), 10));
        assert!(declared_too_large(Some(11), 10));
        assert!(declared_too_large(
            Some(u64::MAX),
            MAX_FETCHED_DOCUMENT_BYTES
        ));
    }

    #[test]
    fn chunks_are_taken_until_the_cap_and_not_one_byte_more() {
        let mut body = Vec::new();
        assert_eq!(append_within(&mut body, b"hello", 10), Ok(()));
        assert_eq!(append_within(&mut body, b"", 10), Ok(()));
        // 5 + 6 > 10: refused, and the body is left as it was.
        assert_eq!(
            append_within(&mut body, b"world!", 10),
            Err(DocumentError::TooLarge { cap: 10 })
        );
        assert_eq!(body, b"hello");
        // 5 + 5 = 10: exactly the cap is fine; after it, nothing more fits.
        assert_eq!(append_within(&mut body, b"world", 10), Ok(()));
        assert_eq!(body, b"helloworld");
        assert_eq!(
            append_within(&mut body, b"!", 10),
            Err(DocumentError::TooLarge { cap: 10 })
        );
        assert_eq!(append_within(&mut body, b"", 10), Ok(()));
    }

    #[test]
    fn a_single_chunk_larger_than_the_cap_is_refused() {
        let mut body = Vec::new();
        assert_eq!(
            append_within(&mut body, &[b' '; 11], 10),
            Err(DocumentError::TooLarge { cap: 10 })
        );
        assert!(body.is_empty());
        assert_eq!(append_within(&mut body, &[b' '; 10], 10), Ok(()));
    }

    #[test]
    fn errors_say_what_happened() {
        assert_eq!(
            DocumentError::TooLarge { cap: 1_048_576 }.to_string(),
            "the document is larger than 1048576 bytes"
        );
        assert_eq!(
            DocumentError::Read("reset".into()).to_string(),
            "the document could not be read: reset"
        );
    }

    #[test]
    fn the_cap_is_one_mebibyte() {
        assert_eq!(MAX_FETCHED_DOCUMENT_BYTES, 1_048_576);
    }
}
