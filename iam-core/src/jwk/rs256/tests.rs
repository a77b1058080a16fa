#![allow(clippy::expect_used)] // test helpers report failure by panicking
use std::sync::Arc;

use openssl::hash::MessageDigest;
use openssl::pkey::Private;
use openssl::sign::Signer;

use super::*;

const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0";

fn private_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("rsa key")).expect("pkey")
}

fn public_of(private: &PKey<Private>) -> Rs256Key {
    let rsa = private.rsa().expect("rsa");
    Rs256Key::from_components(&rsa.n().to_vec(), &rsa.e().to_vec()).expect("key")
}

fn sign(private: &PKey<Private>, digest: MessageDigest, message: &[u8]) -> Vec<u8> {
    let mut signer = Signer::new(digest, private).expect("signer");
    signer.update(message).expect("update");
    signer.sign_to_vec().expect("sign")
}

#[test]
fn accepts_its_own_signature_and_nothing_else() {
    let private = private_key();
    let key = public_of(&private);
    let signature = sign(&private, MessageDigest::sha256(), MESSAGE);
    assert!(key.verify(MESSAGE, &signature));
    assert!(!key.verify(b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9", &signature));
    let mut flipped = signature.clone();
    flipped[100] ^= 1;
    assert!(!key.verify(MESSAGE, &flipped));
    // Another key's signature over the same message.
    assert!(!key.verify(
        MESSAGE,
        &sign(&private_key(), MessageDigest::sha256(), MESSAGE)
    ));
}

#[test]
fn refuses_a_signature_over_another_digest() {
    // PKCS #1 v1.5 names the digest inside the signature: a valid SHA-512 or SHA-1
    // signature of the same message is not an RS256 one.
    let private = private_key();
    let key = public_of(&private);
    for digest in [MessageDigest::sha512(), MessageDigest::sha1()] {
        assert!(!key.verify(MESSAGE, &sign(&private, digest, MESSAGE)));
    }
}

#[test]
fn a_kept_context_still_checks_after_refusals_of_every_kind() {
    let private = private_key();
    let key = public_of(&private);
    let signature = sign(&private, MessageDigest::sha256(), MESSAGE);
    let mut forged = signature.clone();
    forged[0] ^= 0x80;
    // A forged signature, one of the wrong length (OpenSSL reports an error), an empty one.
    for refused in [forged.as_slice(), &signature[..255], &[], &[0xff; 512]] {
        assert!(!key.verify(MESSAGE, refused));
        assert_eq!(
            key.kept_contexts(),
            1,
            "the context is kept after a refusal"
        );
        assert!(key.verify(MESSAGE, &signature), "and it still accepts");
    }
}

#[test]
fn keeps_one_context_per_concurrent_check_up_to_the_cap() {
    let private = private_key();
    let key = public_of(&private);
    let signature = sign(&private, MessageDigest::sha256(), MESSAGE);
    assert_eq!(key.kept_contexts(), 1, "one is set up with the key");
    assert!(key.verify(MESSAGE, &signature));
    assert_eq!(key.kept_contexts(), 1, "the one taken is given back");

    // Checks in flight at once each take a context; given back, they are all kept.
    let taken: Vec<_> = (0..MAX_KEPT_CONTEXTS)
        .map(|_| key.take_context().expect("context"))
        .collect();
    assert_eq!(key.kept_contexts(), 0);
    let extra = key
        .take_context()
        .expect("a context is set up when none is free");
    for context in taken {
        key.keep(context);
    }
    assert_eq!(key.kept_contexts(), MAX_KEPT_CONTEXTS);
    key.keep(extra);
    assert_eq!(
        key.kept_contexts(),
        MAX_KEPT_CONTEXTS,
        "past the cap it is dropped"
    );
    assert!(key.verify(MESSAGE, &signature));
}

#[test]
fn concurrent_checks_share_the_key() {
    let private = private_key();
    let key = Arc::new(public_of(&private));
    let signature = Arc::new(sign(&private, MessageDigest::sha256(), MESSAGE));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (key, signature) = (Arc::clone(&key), Arc::clone(&signature));
            std::thread::spawn(move || {
                let mut forged = signature.to_vec();
                forged[thread] ^= 1;
                (0..50).all(|_| key.verify(MESSAGE, &signature) && !key.verify(MESSAGE, &forged))
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().expect("thread"));
    }
    assert!(key.kept_contexts() <= MAX_KEPT_CONTEXTS);
}

#[test]
fn refuses_short_moduli_and_accepts_2048_bits() {
    let e = [1, 0, 1];
    let short = Rsa::generate(1024).expect("rsa");
    assert!(matches!(
        Rs256Key::from_components(&short.n().to_vec(), &e),
        Err(KeyError::ModulusTooShort { bits: 1024 })
    ));
    // 2047 bits: the top bit of 2048 cleared.
    let mut modulus = Rsa::generate(2048).expect("rsa").n().to_vec();
    assert!(Rs256Key::from_components(&modulus, &e).is_ok());
    modulus[0] = 0x7f;
    assert!(matches!(
        Rs256Key::from_components(&modulus, &e),
        Err(KeyError::ModulusTooShort { bits: 2047 })
    ));
    // Leading zero bytes do not count.
    let mut padded = vec![0, 0];
    padded.extend(Rsa::generate(2048).expect("rsa").n().to_vec());
    assert!(Rs256Key::from_components(&padded, &e).is_ok());
}

#[test]
fn refuses_an_exponent_of_one_or_an_even_one() {
    let modulus = Rsa::generate(2048).expect("rsa").n().to_vec();
    for exponent in [&[1][..], &[2], &[1, 0, 0], &[0], &[]] {
        assert!(
            matches!(
                Rs256Key::from_components(&modulus, exponent),
                Err(KeyError::BadExponent)
            ),
            "exponent {exponent:?}"
        );
    }
    for exponent in [&[3][..], &[1, 0, 1], &[0, 1, 0, 1]] {
        assert!(
            Rs256Key::from_components(&modulus, exponent).is_ok(),
            "exponent {exponent:?}"
        );
    }
}

#[test]
fn debug_shows_the_modulus_size_only() {
    let key = public_of(&private_key());
    let shown = format!("{key:?}");
    assert!(shown.contains("modulus_bits: 2048"), "{shown}");
}
