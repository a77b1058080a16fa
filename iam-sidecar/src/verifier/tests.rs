#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers report failure by panicking
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

#[test]
fn max_age_is_read_from_cache_control() {
    assert_eq!(max_age("public, max-age=60"), Some(Duration::from_secs(60)));
    assert_eq!(max_age("Max-Age=5"), Some(Duration::from_secs(5)));
    assert_eq!(max_age("no-store"), None);
    assert_eq!(max_age("max-age=soon"), None);
}

/// The RFC 7638 §3.1 example key, published under each of `kids`.
fn jwks(kids: &[&str]) -> String {
    let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    let keys: Vec<serde_json::Value> = kids
        .iter()
        .map(|kid| {
            serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": "AQAB"})
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// A valid JWKS of `kids` padded with leading whitespace to exactly `len` bytes: it
/// parses at any size, so only the cap can refuse it.
fn padded_jwks(kids: &[&str], len: usize) -> String {
    let document = jwks(kids);
    format!("{}{document}", " ".repeat(len - document.len()))
}

/// How a test JWKS server frames a body.
#[derive(Clone, Copy)]
enum Framing {
    ContentLength,
    Chunked,
}

/// Answers one connection per body, in turn, with `Connection: close`.
async fn serve(bodies: Vec<(String, Framing)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for (body, framing) in bodies {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the client closed early");
                head.extend_from_slice(&buffer[..read]);
            }
            let mut response =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    .to_vec();
            match framing {
                Framing::ContentLength => {
                    response.extend(format!("content-length: {}\r\n\r\n", body.len()).bytes());
                    response.extend(body.bytes());
                }
                Framing::Chunked => {
                    response.extend(b"transfer-encoding: chunked\r\n\r\n");
                    for chunk in body.as_bytes().chunks(64 * 1024) {
                        response.extend(format!("{:x}\r\n", chunk.len()).bytes());
                        response.extend(chunk);
                        response.extend(b"\r\n");
                    }
                    response.extend(b"0\r\n\r\n");
                }
            }
            // The client may hang up once it has seen enough; that is the point.
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        }
    });
    url
}

fn verifier(url: String, metrics: &Arc<Metrics>) -> TokenVerifier {
    let rules = VerificationRules {
        issuer: "iam".into(),
        audience: "iam".into(),
        leeway_seconds: 0,
    };
    TokenVerifier::new(url, Duration::from_secs(30), rules, Arc::clone(metrics)).unwrap()
}

fn kids(verifier: &TokenVerifier) -> (bool, bool, usize) {
    let keys = verifier.current().expect("a key set");
    (keys.contains("first"), keys.contains("second"), keys.len())
}

#[tokio::test]
async fn a_jwks_over_the_cap_is_a_failed_refresh_and_the_last_good_set_stays() {
    let cap = MAX_FETCHED_DOCUMENT_BYTES;
    let url = serve(vec![
        (jwks(&["first"]), Framing::ContentLength),
        (
            padded_jwks(&["first", "second"], cap + 1),
            Framing::ContentLength,
        ),
        (padded_jwks(&["first", "second"], cap + 1), Framing::Chunked),
        (padded_jwks(&["first", "second"], 8 * cap), Framing::Chunked),
        // Exactly the cap is still read: the refusals above are the cap's doing.
        (padded_jwks(&["first", "second"], cap), Framing::Chunked),
    ])
    .await;
    let metrics = Arc::new(Metrics::default());
    let verifier = verifier(url, &metrics);
    verifier.fetch().await.expect("the first set loads");
    assert_eq!(kids(&verifier), (true, false, 1));
    for attempt in ["declared", "chunked", "far over"] {
        let error = verifier.fetch().await.expect_err(attempt);
        assert!(
            matches!(
                error,
                FetchError::Document {
                    source: DocumentError::TooLarge { cap: 1_048_576 },
                    ..
                }
            ),
            "{attempt}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("the document is larger than 1048576 bytes"),
            "{attempt}: {error}"
        );
        assert_eq!(kids(&verifier), (true, false, 1), "{attempt}");
    }
    verifier
        .fetch()
        .await
        .expect("a set of exactly the cap loads");
    assert_eq!(kids(&verifier), (true, true, 2));
    let text = metrics.render();
    assert!(
        text.contains("iam_sidecar_jwks_refresh_failures_total 3"),
        "{text}"
    );
    assert!(
        text.contains("iam_sidecar_jwks_refreshes_total 2"),
        "{text}"
    );
    assert!(text.contains("iam_sidecar_jwks_keys 2"), "{text}");
}

/// Whether `verifier` remembers the token "t" (as verified, whatever its verdict now).
fn remembers(verifier: &TokenVerifier, now: i64) -> bool {
    matches!(
        verifier
            .verified
            .recall("t", &verifier.rules, &Revocations::NONE, now),
        Recall::Known(_)
    )
}

#[tokio::test]
async fn verified_tokens_are_remembered_across_refreshes_until_a_key_leaves_the_set() {
    let url = serve(vec![
        (jwks(&["first"]), Framing::ContentLength),
        // The same set again, then one more key: nothing verified before changes.
        (jwks(&["first"]), Framing::ContentLength),
        (jwks(&["first", "second"]), Framing::Chunked),
        // "first" withdrawn: what it verified must be verified again.
        (jwks(&["second"]), Framing::ContentLength),
    ])
    .await;
    let metrics = Arc::new(Metrics::default());
    let verifier = verifier(url, &metrics);
    verifier.fetch().await.expect("the first set loads");
    let now = chrono::Utc::now().timestamp();
    let Recall::Unknown(epoch) =
        verifier
            .verified
            .recall("t", &verifier.rules, &Revocations::NONE, now)
    else {
        panic!("nothing is remembered yet");
    };
    let claims = iam_core::AccessTokenClaims {
        iss: "iam".into(),
        sub: "user".into(),
        aud: iam_core::token::Audience::One("iam".into()),
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: "j".into(),
        client_id: None,
        email: None,
        role: "user".into(),
        permissions: vec![],
        scope: None,
    };
    verifier.verified.remember(
        "t",
        Arc::new(VerifiedIdentity::new(claims).expect("sendable claims")),
        &verifier.rules,
        now,
        epoch,
    );
    assert!(remembers(&verifier, now));
    for refresh in ["unchanged", "a key added"] {
        verifier.fetch().await.expect(refresh);
        assert!(remembers(&verifier, now), "{refresh}");
    }
    assert_eq!(kids(&verifier), (true, true, 2));
    verifier.fetch().await.expect("a key withdrawn");
    assert_eq!(kids(&verifier), (false, true, 1));
    assert!(!remembers(&verifier, now));
}

#[test]
fn revocations_are_installed_even_after_a_panic_poisoned_their_lock() {
    let metrics = Arc::new(Metrics::default());
    let verifier = verifier("http://127.0.0.1:9/jwks.json".into(), &metrics);
    verifier.install_revocations(Revocations::NONE);
    let panicked = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let _held = verifier.revoked.write();
                panic!("a panic while the revocations are locked");
            })
            .join()
    });
    assert!(panicked.is_err() && verifier.revoked.is_poisoned());
    let mut revocations = Revocations::NONE;
    revocations.revoke_token("a-token-id");
    verifier.install_revocations(revocations);
    let installed = verifier.current_revocations().expect("revocations");
    assert_eq!(installed.len(), (0, 1));
}
