//! Unit tests of the engine: signing and verifying with every algorithm,
//! key choice by `kid`, leeway, and socketcluster's refusals.

use super::*;
use base64::Engine as _;
use serde_json::json;

const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/testdata/keys/rsa-public.pem");
const RSA2_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/rsa2-private.pem");
const P256_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/p256-private.pem");
const P256_PUBLIC: &[u8] = include_bytes!("../../tests/testdata/keys/p256-public.pem");
const P384_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/p384-private.pem");
const P384_PUBLIC: &[u8] = include_bytes!("../../tests/testdata/keys/p384-public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../../tests/testdata/keys/ed25519-private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../../tests/testdata/keys/ed25519-public.pem");

fn claims(v: Value) -> Claims {
    v.as_object().unwrap().clone()
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

#[test]
fn signs_and_verifies() {
    let engine = AuthEngine::hs256("secret");
    let token = engine
        .sign(&claims(json!({"sub": "u1"})), minute())
        .unwrap();
    let c = engine.verify_offline(&token).unwrap();
    assert_eq!(c["sub"], "u1");
    assert!(c["exp"].as_u64().unwrap() > unix_now());
    assert_eq!(engine.signing_algorithm(), Some(Algorithm::HS256));
}

#[test]
fn every_algorithm_signs_and_verifies_and_only_its_own() {
    let keys: Vec<(Algorithm, Key, &[u8])> = vec![
        (
            Algorithm::HS256,
            Key::secret(Algorithm::HS256, "s256").unwrap(),
            b"",
        ),
        (
            Algorithm::HS384,
            Key::secret(Algorithm::HS384, "s384").unwrap(),
            b"",
        ),
        (
            Algorithm::HS512,
            Key::secret(Algorithm::HS512, "s512").unwrap(),
            b"",
        ),
        (
            Algorithm::RS256,
            Key::private_pem(Algorithm::RS256, RSA_PRIVATE).unwrap(),
            RSA_PUBLIC,
        ),
        (
            Algorithm::RS384,
            Key::private_pem(Algorithm::RS384, RSA_PRIVATE).unwrap(),
            RSA_PUBLIC,
        ),
        (
            Algorithm::RS512,
            Key::private_pem(Algorithm::RS512, RSA_PRIVATE).unwrap(),
            RSA_PUBLIC,
        ),
        (
            Algorithm::PS256,
            Key::private_pem(Algorithm::PS256, RSA_PRIVATE).unwrap(),
            RSA_PUBLIC,
        ),
        (
            Algorithm::PS384,
            Key::private_pem(Algorithm::PS384, RSA_PRIVATE).unwrap(),
            RSA_PUBLIC,
        ),
        (
            Algorithm::PS512,
            Key::private_pem(Algorithm::PS512, RSA_PRIVATE).unwrap(),
            RSA_PUBLIC,
        ),
        (
            Algorithm::ES256,
            Key::private_pem(Algorithm::ES256, P256_PRIVATE).unwrap(),
            P256_PUBLIC,
        ),
        (
            Algorithm::ES384,
            Key::private_pem(Algorithm::ES384, P384_PRIVATE).unwrap(),
            P384_PUBLIC,
        ),
        (
            Algorithm::EdDSA,
            Key::private_pem(Algorithm::EdDSA, ED_PRIVATE).unwrap(),
            ED_PUBLIC,
        ),
    ];
    let tokens: Vec<(Algorithm, String)> = keys
        .iter()
        .map(|(alg, key, _)| {
            let engine = AuthEngine::from_keys([key.clone()]).unwrap();
            let t = engine.sign(&claims(json!({"sub": "u"})), minute()).unwrap();
            assert_eq!(engine.verify_offline(&t).unwrap()["sub"], "u", "{alg:?}");
            (*alg, t)
        })
        .collect();
    for (alg, key, public) in &keys {
        // A verification-only engine from the public PEM accepts it too.
        if !public.is_empty() {
            let verifier = AuthEngine::asymmetric(*alg, public, None).unwrap();
            let own = &tokens.iter().find(|(a, _)| a == alg).unwrap().1;
            assert!(verifier.verify_offline(own).is_ok(), "{alg:?} public PEM");
            assert_eq!(verifier.signing_algorithm(), None);
        }
        let engine = AuthEngine::from_keys([key.clone()]).unwrap();
        for (other, token) in &tokens {
            let result = engine.verify_offline(token);
            if other == alg {
                assert!(result.is_ok(), "{alg:?}");
            } else {
                assert_eq!(
                    result.unwrap_err().payload.message,
                    "invalid algorithm",
                    "{other:?} token against a {alg:?} key"
                );
            }
        }
    }
}

#[test]
fn the_first_signing_key_signs_with_its_kid_and_every_key_verifies() {
    let old = Key::private_pem(Algorithm::RS256, RSA_PRIVATE)
        .unwrap()
        .with_id("2025");
    let new = Key::private_pem(Algorithm::RS256, RSA2_PRIVATE)
        .unwrap()
        .with_id("2026");
    let before = AuthEngine::from_keys([old.clone(), new.clone()]).unwrap();
    let after = AuthEngine::from_keys([new.clone(), old.clone()]).unwrap();
    let t_old = before.sign(&claims(json!({"sub": "u"})), minute()).unwrap();
    let t_new = after.sign(&claims(json!({"sub": "u"})), minute()).unwrap();
    let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid;
    assert_eq!(kid(&t_old).as_deref(), Some("2025"));
    assert_eq!(kid(&t_new).as_deref(), Some("2026"));
    for engine in [&before, &after] {
        assert!(engine.verify_offline(&t_old).is_ok());
        assert!(engine.verify_offline(&t_new).is_ok());
    }
    // The old key dropped: its tokens name a kid nothing has.
    let only_new = AuthEngine::from_keys([new]).unwrap();
    let e = only_new.verify_offline(&t_old).unwrap_err().payload;
    assert_eq!(e.message, "no key matches the token's kid");
    assert!(e.is_bad_token());
    // A kid picks its key: a token signed by the old key but claiming the
    // new key's kid is tried against the new key only.
    let forged_header = Header {
        kid: Some("2026".into()),
        ..Header::new(Algorithm::RS256)
    };
    let forged = jsonwebtoken::encode(
        &forged_header,
        &json!({"sub": "u"}),
        old.encoding().unwrap().1,
    )
    .unwrap();
    assert_eq!(
        before.verify_offline(&forged).unwrap_err().payload.message,
        "invalid signature"
    );
    // Keys without an id are tried whatever the kid says.
    let anonymous = AuthEngine::hs256("secret");
    let t = jsonwebtoken::encode(
        &Header {
            kid: Some("anything".into()),
            ..Header::new(Algorithm::HS256)
        },
        &json!({"sub": "u"}),
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert!(anonymous.verify_offline(&t).is_ok());
}

#[test]
fn verification_only_engines_cannot_sign_and_empty_ones_do_not_build() {
    let engine = AuthEngine::asymmetric(Algorithm::ES256, P256_PUBLIC, None).unwrap();
    assert!(matches!(
        engine.sign(&Claims::new(), minute()),
        Err(AuthError::NoSigningKey)
    ));
    assert!(matches!(AuthEngine::from_keys([]), Err(AuthError::NoKeys)));
    assert!(matches!(
        AuthEngine::asymmetric(Algorithm::RS256, RSA_PUBLIC, Some(RSA2_PRIVATE)),
        Err(AuthError::MismatchedKeys { .. })
    ));
}

#[test]
fn leeway_stretches_exp_and_nbf() {
    let strict = AuthEngine::hs256("secret");
    let lenient = AuthEngine::hs256("secret").leeway(Duration::from_secs(30));
    assert_eq!(strict.leeway_secs(), 0);
    let now = unix_now();
    let just_expired = strict
        .sign(&claims(json!({"exp": now - 10})), minute())
        .unwrap();
    let long_expired = strict
        .sign(&claims(json!({"exp": now - 120})), minute())
        .unwrap();
    let soon_valid = strict
        .sign(&claims(json!({"nbf": now + 10})), minute())
        .unwrap();
    assert_eq!(
        strict
            .verify_offline(&just_expired)
            .unwrap_err()
            .payload
            .name,
        "AuthTokenExpiredError"
    );
    let c = lenient.verify_offline(&just_expired).unwrap();
    assert_eq!(lenient.session_expiry(&c), Some(now - 10 + 30));
    assert_eq!(strict.session_expiry(&c), Some(now - 10));
    assert_eq!(
        lenient
            .verify_offline(&long_expired)
            .unwrap_err()
            .payload
            .name,
        "AuthTokenExpiredError"
    );
    assert_eq!(
        strict.verify_offline(&soon_valid).unwrap_err().payload.name,
        "AuthTokenNotBeforeError"
    );
    assert!(lenient.verify_offline(&soon_valid).is_ok());
}

#[test]
fn refusals_match_socketcluster() {
    let engine = AuthEngine::hs256("secret");
    let err = |t: &str| engine.verify_offline(t).unwrap_err().payload;

    let e = err("garbage");
    assert_eq!(
        (e.name.as_str(), e.message.as_str()),
        ("AuthTokenInvalidError", "jwt malformed")
    );
    assert!(e.is_bad_token());

    let other = AuthEngine::hs256("other")
        .sign(&claims(json!({"sub": "u"})), minute())
        .unwrap();
    assert_eq!(err(&other).message, "invalid signature");

    let expired = engine
        .sign(&claims(json!({"sub": "u", "exp": 1000})), minute())
        .unwrap();
    let e = err(&expired);
    assert_eq!(e.name, "AuthTokenExpiredError");
    assert_eq!(e.extra["expiry"], "1970-01-01T00:16:40.000Z");
    assert!(e.is_bad_token());

    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg":"none","typ":"JWT"})),
        b64(json!({"sub":"u"}))
    );
    assert_eq!(err(&none).message, "jwt signature is required");

    let rs = format!(
        "{}.{}.c2ln",
        b64(json!({"alg":"RS256","typ":"JWT"})),
        b64(json!({"sub":"u"}))
    );
    assert_eq!(err(&rs).message, "invalid algorithm");

    let future = engine
        .sign(
            &claims(json!({"sub": "u", "nbf": unix_now() + 3600})),
            Duration::from_secs(7200),
        )
        .unwrap();
    let e = err(&future);
    assert_eq!(e.name, "AuthTokenNotBeforeError");
    assert!(!e.is_bad_token());
}

#[test]
fn far_future_and_odd_times_do_not_panic() {
    let engine = AuthEngine::hs256("secret");
    let odd = engine
        .sign(&claims(json!({"nbf": 1e300})), minute())
        .unwrap();
    assert_eq!(
        engine.verify_offline(&odd).unwrap_err().payload.message,
        "invalid token"
    );
    for nbf in [json!(6_516_659_349_664_100_386u64), json!(u64::MAX)] {
        let t = engine.sign(&claims(json!({"nbf": nbf})), minute()).unwrap();
        let e = engine.verify_offline(&t).unwrap_err().payload;
        assert_eq!(e.name, "AuthTokenNotBeforeError", "{nbf}");
        assert!(e.extra.get("date").is_none(), "{e:?}");
    }
}

#[test]
fn long_tokens_are_refused_before_decoding() {
    let engine = AuthEngine::hs256("secret").max_token_len(64);
    let e = engine.verify_offline(&"a".repeat(65)).unwrap_err().payload;
    assert_eq!(e.name, "AuthTokenInvalidError");
    assert!(e.message.contains("too long"), "{}", e.message);
    assert!(e.is_bad_token());
    assert_eq!(
        AuthEngine::hs256("s").token_len_limit(),
        DEFAULT_MAX_TOKEN_LEN
    );
    // Nor does it sign one it would refuse.
    let big = claims(json!({"pad": "x".repeat(100)}));
    assert!(matches!(
        engine.sign(&big, minute()),
        Err(AuthError::TokenTooLong { limit: 64, .. })
    ));
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let engine = AuthEngine::hs256("secret")
        .audience(["app", "admin"])
        .issuer(["https://login.example"]);
    let sign = |v: Value| engine.sign(&claims(v), minute()).unwrap();
    let iss = "https://login.example";
    assert!(
        engine
            .verify_offline(&sign(json!({"aud": "app", "iss": iss})))
            .is_ok()
    );
    assert!(
        engine
            .verify_offline(&sign(json!({"aud": ["x", "admin"], "iss": iss})))
            .is_ok()
    );
    for (bad, needle) in [
        (json!({"aud": "other", "iss": iss}), "audience"),
        (json!({"aud": ["x", 5], "iss": iss}), "audience"),
        (json!({"iss": iss}), "audience"),
        (
            json!({"aud": "app", "iss": "https://evil.example"}),
            "issuer",
        ),
        (json!({"aud": "app"}), "issuer"),
        (json!({"aud": "app", "iss": [iss]}), "issuer"),
    ] {
        let e = engine
            .verify_offline(&sign(bad.clone()))
            .unwrap_err()
            .payload;
        assert_eq!(e.name, "AuthTokenInvalidError", "{bad}");
        assert!(e.message.contains(needle), "{bad}: {}", e.message);
        assert!(e.is_bad_token());
    }
    // Not configured: not checked.
    let plain = AuthEngine::hs256("secret");
    let t = plain
        .sign(&claims(json!({"aud": "whatever"})), minute())
        .unwrap();
    assert!(plain.verify_offline(&t).is_ok());
}

#[tokio::test]
async fn async_verify_without_jwks_is_the_offline_check() {
    let engine = AuthEngine::hs256("secret");
    let t = engine.sign(&claims(json!({"sub": "u"})), minute()).unwrap();
    assert_eq!(engine.verify(&t).await.unwrap()["sub"], "u");
    assert_eq!(engine.jwks_ready().await.unwrap(), 0);
    assert_eq!(
        engine.verify("x.y").await.unwrap_err().payload.message,
        "jwt malformed"
    );
}
