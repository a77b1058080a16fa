use super::*;

#[test]
fn expiry_is_checked_with_leeway() {
    let key = test_key();
    let token = key.signer.sign(&claims(NOW)).expect("sign");
    let keys = keys_of(&key);
    assert!(
        verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW + 300 + 30).is_ok()
    );
    assert_eq!(
        verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW + 300 + 31),
        Err(Reason::Expired)
    );
}

#[test]
fn not_before_is_checked_with_leeway() {
    let key = test_key();
    let token = key.signer.sign(&claims(NOW)).expect("sign");
    let keys = keys_of(&key);
    assert!(verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW - 30).is_ok());
    assert_eq!(
        verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW - 31),
        Err(Reason::NotYetValid)
    );
}

#[test]
fn wrong_issuer_and_audience_are_refused() {
    let key = test_key();
    let token = key.signer.sign(&claims(NOW)).expect("sign");
    let keys = keys_of(&key);
    let mut other_issuer = rules();
    other_issuer.issuer = "someone-else".into();
    assert_eq!(
        verify_access_token(&token, &keys, &other_issuer, &Revocations::NONE, NOW),
        Err(Reason::WrongIssuer)
    );
    let mut other_audience = rules();
    other_audience.audience = "billing".into();
    assert_eq!(
        verify_access_token(&token, &keys, &other_audience, &Revocations::NONE, NOW),
        Err(Reason::WrongAudience)
    );
}

#[test]
fn missing_required_claims_are_refused() {
    let key = test_key();
    let keys = keys_of(&key);
    for claim in ["exp", "iss", "aud", "sub", "permissions"] {
        let mut payload = serde_json::to_value(claims(NOW)).expect("json");
        payload.as_object_mut().expect("object").remove(claim);
        let token = key.signer.sign_json(&payload).expect("sign");
        assert_eq!(
            verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW),
            Err(Reason::InvalidClaims),
            "without {claim}"
        );
    }
}

#[test]
fn an_audience_array_must_contain_ours() {
    let key = test_key();
    let keys = keys_of(&key);
    let header = r#"{"alg":"RS256","typ":"at+jwt","kid":"KID"}"#.replace("KID", &key.jwk.kid);
    let with_audience = |audience: Audience| {
        let mut token_claims = claims(NOW);
        token_claims.aud = audience;
        sign_with_header(&key, &header, &token_claims)
    };
    let many = |values: &[&str]| Audience::Many(values.iter().map(|&v| v.to_owned()).collect());
    for accepted in [
        many(&["iam"]),
        many(&["billing", "iam"]),
        many(&["iam", "billing"]),
    ] {
        let token = with_audience(accepted.clone());
        assert!(
            verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW).is_ok(),
            "{accepted:?}"
        );
    }
    // Tokens minted for other services, also when the array holds something else only.
    for refused in [
        many(&["billing"]),
        many(&["billing", "orders"]),
        many(&[]),
        many(&["IAM"]),
        many(&["iam "]),
        Audience::One("billing".into()),
    ] {
        let token = with_audience(refused.clone());
        assert_eq!(
            verify_access_token(&token, &keys, &rules(), &Revocations::NONE, NOW),
            Err(Reason::WrongAudience),
            "{refused:?}"
        );
    }
}

#[test]
fn a_revoked_token_is_refused_after_its_signature_and_claims() {
    let key = test_key();
    let keys = keys_of(&key);
    let issued = claims(NOW);
    let token = key.signer.sign(&issued).expect("sign");
    let by_id = Revocations::new([], [issued.jti.clone()]);
    assert_eq!(
        verify_access_token(&token, &keys, &rules(), &by_id, NOW),
        Err(Reason::Revoked)
    );
    let by_subject = Revocations::new([(issued.sub.clone(), issued.iat + 1)], []);
    assert_eq!(
        verify_access_token(&token, &keys, &rules(), &by_subject, NOW),
        Err(Reason::Revoked)
    );
    let before_it = Revocations::new([(issued.sub.clone(), issued.iat)], []);
    assert!(verify_access_token(&token, &keys, &rules(), &before_it, NOW).is_ok());
    // The claims are judged first: an expired, revoked token says it expired.
    assert_eq!(
        verify_access_token(&token, &keys, &rules(), &by_id, issued.exp + 31),
        Err(Reason::Expired)
    );
    // And the signature before both: a forged token never learns whether its id is revoked.
    let flip_at = token.len() - 10;
    let flipped = if &token[flip_at..=flip_at] == "A" {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{flipped}{}", &token[..flip_at], &token[flip_at + 1..]);
    assert_eq!(
        verify_access_token(&forged, &keys, &rules(), &by_id, NOW),
        Err(Reason::BadSignature)
    );
}
