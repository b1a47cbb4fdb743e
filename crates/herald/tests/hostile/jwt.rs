//! Forged, tampered, confused and oversized JWTs, sent through a real
//! socket both in `#handshake` and in `#authenticate`: each is refused with
//! socketcluster's error name, a bad one is followed by `#removeAuthToken`,
//! and another authenticated socket on the same server keeps working after
//! every attempt. A `kid` selects only among the server's own keys (a key
//! without an id ignores it); an algorithm is accepted only by a key of its
//! family.

use herald::{AuthEngine, Key};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::*;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa-public.pem");
const AUDIENCE: &str = "herald-e2e";
const ISSUER: &str = "https://login.herald.test";

/// Signs `claims` with `header` and an HMAC `secret` (any algorithm of the
/// HS family, any `kid`), independently of Herald's own signing.
fn hmac_token(header: Header, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

fn hs256_kid(kid: &str) -> Header {
    Header {
        kid: Some(kid.to_owned()),
        ..Header::new(Algorithm::HS256)
    }
}

/// Claims this server would accept, valid for ten minutes.
fn good_claims(user: &str) -> Value {
    json!({"sub": user, "aud": AUDIENCE, "iss": ISSUER, "exp": unix_now() + 600})
}

/// The HS256 fixture server that also checks `aud` and `iss`.
async fn hs_server() -> TestServer {
    TestServer::start(fixture().auth_audience([AUDIENCE]).auth_issuer([ISSUER])).await
}

/// The fixture on an RS256 engine (verifies with the public key, signs
/// with the private one).
async fn rs_server() -> TestServer {
    let engine = AuthEngine::asymmetric(Algorithm::RS256, RSA_PUBLIC, Some(RSA_PRIVATE))
        .expect("RSA test keys load");
    TestServer::start(herald_testkit::fixture(
        herald::Server::builder().auth(engine),
    ))
    .await
}

/// An authenticated socket whose `whoami` must keep answering its claims.
struct Bystander {
    client: Client,
    claims: Value,
}

impl Bystander {
    async fn new(server: &TestServer, token: &str) -> Self {
        let mut client = server.connect().await;
        let status = client.handshake(Some(token)).await;
        assert_eq!(status["isAuthenticated"], true, "bystander: {status}");
        let claims = client.call("whoami", Value::Null).await;
        Self { client, claims }
    }

    async fn still_fine(&mut self, after: &str) {
        assert_eq!(
            self.client.call("whoami", Value::Null).await,
            self.claims,
            "bystander lost its token after {after}"
        );
        assert_eq!(
            self.client.call("echo", json!([after])).await,
            json!([after])
        );
    }
}

/// Sends `token` in a fresh socket's `#handshake`, then in an
/// `#authenticate` on the same socket, and checks both refusals agree.
/// Returns the wire error.
async fn refused_both_ways(server: &TestServer, token: &str) -> Value {
    let mut c = server.connect().await;
    let status = c.handshake(Some(token)).await;
    assert_eq!(status["isAuthenticated"], false, "{status}");
    let handshake_error = status["authError"].clone();
    assert!(handshake_error.is_object(), "{status}");
    let bad = handshake_error["isBadToken"] == true;
    if bad {
        assert_eq!(c.recv_json().await, json!({"event": "#removeAuthToken"}));
    }
    assert_eq!(c.call("whoami", Value::Null).await, Value::Null);

    let cid = c.cid();
    c.send_json(json!({"event": "#authenticate", "data": token, "cid": cid}))
        .await;
    let reply = c.reply_to(cid).await;
    let auth_error = if bad {
        // A bad token: an error reply and the push (in either order).
        assert_eq!(c.recv_json().await, json!({"event": "#removeAuthToken"}));
        reply["error"].clone()
    } else {
        assert_eq!(reply["data"]["isAuthenticated"], false, "{reply}");
        reply["data"]["authError"].clone()
    };
    assert_eq!(
        auth_error, handshake_error,
        "handshake and authenticate differ"
    );
    assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
    assert!(!server.server.socket(&c.id).unwrap().is_authenticated());
    handshake_error
}

fn assert_error(e: &Value, name: &str, message_part: &str, bad_token: bool, what: &str) {
    assert_eq!(e["name"], name, "{what}: {e}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(message.contains(message_part), "{what}: {e}");
    assert_eq!(e["isBadToken"], bad_token, "{what}: {e}");
}

#[tokio::test]
async fn hostile_tokens_are_refused_and_do_not_affect_other_sockets() {
    bounded(async {
        let server = hs_server().await;
        let good = token(good_claims("alice"));
        let mut bystander = Bystander::new(&server, &good).await;
        let claims = good_claims("mallory");
        let header = |h: Value| forged_token(h, claims.clone(), "");
        let real = token(claims.clone());
        let (real_head, real_sig) = {
            let mut parts = real.split('.');
            (
                parts.next().unwrap().to_owned(),
                parts.nth(1).unwrap().to_owned(),
            )
        };
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let tampered_claims =
            json!({"sub": "admin", "aud": AUDIENCE, "iss": ISSUER, "exp": unix_now() + 600});
        let tampered = format!(
            "{real_head}.{}.{real_sig}",
            b64(&tampered_claims.to_string())
        );
        let mut expired = good_claims("mallory");
        expired["exp"] = json!(unix_now() - 60);
        let mut not_yet = good_claims("mallory");
        not_yet["nbf"] = json!(unix_now() + 3600);
        let mut wrong_aud = good_claims("mallory");
        wrong_aud["aud"] = json!("another-app");
        let mut no_aud = good_claims("mallory");
        no_aud.as_object_mut().unwrap().remove("aud");
        let mut wrong_iss = good_claims("mallory");
        wrong_iss["iss"] = json!("https://evil.test");
        let mut exp_text = good_claims("mallory");
        exp_text["exp"] = json!("never");

        let cases: Vec<(&str, String, &str, &str, bool)> = vec![
            (
                "alg none",
                header(json!({"alg": "none", "typ": "JWT"})),
                "AuthTokenInvalidError",
                "jwt signature is required",
                true,
            ),
            (
                "alg NoNe with a signature",
                forged_token(json!({"alg": "NoNe"}), claims.clone(), &real_sig),
                "AuthTokenInvalidError",
                "jwt signature is required",
                true,
            ),
            (
                "no alg",
                forged_token(json!({"typ": "JWT"}), claims.clone(), &real_sig),
                "AuthTokenInvalidError",
                "invalid algorithm",
                true,
            ),
            (
                "HS512 with the right secret",
                hmac_token(Header::new(Algorithm::HS512), SECRET.as_bytes(), &claims),
                "AuthTokenInvalidError",
                "invalid algorithm",
                true,
            ),
            (
                "unknown kid, attacker's secret",
                hmac_token(hs256_kid("key-2099"), b"attacker", &claims),
                "AuthTokenInvalidError",
                "invalid signature",
                true,
            ),
            (
                "kid path traversal, empty secret (/dev/null)",
                hmac_token(hs256_kid("../../../../../../dev/null"), b"", &claims),
                "AuthTokenInvalidError",
                "invalid signature",
                true,
            ),
            (
                "kid SQL injection, secret from the injection",
                hmac_token(
                    hs256_kid("x' UNION SELECT 'attacker' --"),
                    b"attacker",
                    &claims,
                ),
                "AuthTokenInvalidError",
                "invalid signature",
                true,
            ),
            (
                "tampered payload",
                tampered,
                "AuthTokenInvalidError",
                "invalid signature",
                true,
            ),
            (
                "signature cut off",
                format!("{}.{}.", real_head, real.split('.').nth(1).unwrap()),
                "AuthTokenInvalidError",
                "jwt signature is required",
                true,
            ),
            (
                "two parts",
                format!("{real_head}.{real_sig}"),
                "AuthTokenInvalidError",
                "jwt malformed",
                true,
            ),
            (
                "four parts",
                format!("{real}.{real_sig}"),
                "AuthTokenInvalidError",
                "jwt malformed",
                true,
            ),
            (
                "header not JSON",
                format!("{}.{}.{real_sig}", b64("{alg"), b64("{}")),
                "AuthTokenInvalidError",
                "invalid token",
                true,
            ),
            (
                "exp not a number",
                token(exp_text),
                "AuthTokenInvalidError",
                "invalid token",
                true,
            ),
            (
                "expired",
                token(expired),
                "AuthTokenExpiredError",
                "jwt expired",
                true,
            ),
            (
                "not yet valid",
                token(not_yet),
                "AuthTokenNotBeforeError",
                "jwt not active",
                false,
            ),
            (
                "wrong aud",
                token(wrong_aud),
                "AuthTokenInvalidError",
                "jwt audience invalid",
                true,
            ),
            (
                "no aud",
                token(no_aud),
                "AuthTokenInvalidError",
                "jwt audience invalid",
                true,
            ),
            (
                "wrong iss",
                token(wrong_iss),
                "AuthTokenInvalidError",
                "jwt issuer invalid",
                true,
            ),
            (
                "1 MB token",
                format!("{real_head}.{}.{real_sig}", "A".repeat(1_000_000)),
                "AuthTokenInvalidError",
                "too long",
                true,
            ),
            (
                "just over the 8 KiB bound",
                "a".repeat(8 * 1024 + 1),
                "AuthTokenInvalidError",
                "too long",
                true,
            ),
        ];
        for (what, token, name, message, bad) in cases {
            let e = refused_both_ways(&server, &token).await;
            assert_error(&e, name, message, bad, what);
            bystander.still_fine(what).await;
        }
        // The bound is on bytes, not on what they mean: a real token of
        // exactly 8 KiB still goes through.
        let padded = |n: usize| {
            let mut claims = good_claims("bob");
            claims["pad"] = json!("p".repeat(n));
            token(claims)
        };
        let mut n = (8 * 1024 - padded(0).len()) * 3 / 4 + 8;
        while padded(n).len() > 8 * 1024 {
            n -= 1;
        }
        let big = padded(n);
        assert!(big.len() > 8 * 1024 - 4, "{}", big.len());
        let mut c = server.connect().await;
        assert_eq!(c.handshake(Some(&big)).await["isAuthenticated"], true);
        bystander.still_fine("the padded token").await;
    })
    .await
}

#[tokio::test]
async fn a_kid_is_ignored_by_a_key_without_an_id() {
    bounded(async {
        let server = hs_server().await;
        // The server's one key has no id: whatever the kid says, a token
        // signed with it is the server's token, and only the signature
        // counts.
        for kid in [
            "",
            "unknown",
            "../../etc/passwd",
            "1' OR '1'='1",
            &"k".repeat(4000),
        ] {
            let t = hmac_token(hs256_kid(kid), SECRET.as_bytes(), &good_claims("kid"));
            let mut c = server.connect().await;
            let status = c.handshake(Some(&t)).await;
            assert_eq!(status["isAuthenticated"], true, "kid {kid:?}: {status}");
            assert_eq!(c.call("whoami", Value::Null).await["sub"], "kid");
        }
    })
    .await
}

#[tokio::test]
async fn a_kid_selects_only_among_the_servers_own_keys() {
    bounded(async {
        // Two keys with ids (a rotation): a kid picks one of them, never
        // anything else, and never lends a key to another algorithm.
        let engine = AuthEngine::from_keys([
            Key::secret(Algorithm::HS256, "current secret")
                .unwrap()
                .with_id("current"),
            Key::secret(Algorithm::HS256, "previous secret")
                .unwrap()
                .with_id("previous"),
            Key::public_pem(Algorithm::RS256, RSA_PUBLIC)
                .unwrap()
                .with_id("rsa"),
        ])
        .unwrap();
        let server = TestServer::start(herald_testkit::fixture(
            herald::Server::builder().auth(engine),
        ))
        .await;
        let claims = good_claims("mallory");
        let sign = |kid: &str, secret: &[u8]| hmac_token(hs256_kid(kid), secret, &claims);
        let mut bystander = Bystander::new(&server, &sign("previous", b"previous secret")).await;
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "current kid, previous secret",
                sign("current", b"previous secret"),
                "invalid signature",
            ),
            (
                "kid of the RSA key on an HS256 token signed with its PEM",
                hmac_token(hs256_kid("rsa"), RSA_PUBLIC, &claims),
                "no key matches the token's kid",
            ),
            (
                "kid path traversal, empty secret (/dev/null)",
                sign("../../../../../../dev/null", b""),
                "no key matches the token's kid",
            ),
            (
                "kid SQL injection",
                sign("x' UNION SELECT 'attacker' --", b"attacker"),
                "no key matches the token's kid",
            ),
            (
                "kid URL",
                sign("https://evil.test/jwks.json", b"attacker"),
                "no key matches the token's kid",
            ),
            (
                "4000-character kid",
                sign(&"k".repeat(4000), b"current secret"),
                "no key matches the token's kid",
            ),
        ];
        for (what, token, message) in cases {
            let e = refused_both_ways(&server, &token).await;
            assert_error(&e, "AuthTokenInvalidError", message, true, what);
            // The refusal never echoes the kid.
            assert!(e.to_string().len() < 200, "{what}: {e}");
            bystander.still_fine(what).await;
        }
        let mut c = server.connect().await;
        let status = c.handshake(Some(&sign("current", b"current secret"))).await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
    })
    .await
}

#[tokio::test]
async fn rs256_server_refuses_hs256_signed_with_its_public_key() {
    bounded(async {
        let server = rs_server().await;
        let claims = json!({"sub": "mallory", "exp": unix_now() + 600});
        let good = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &json!({"sub": "alice", "exp": unix_now() + 600}),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA key"),
        )
        .expect("sign RS256");
        let mut bystander = Bystander::new(&server, &good).await;
        // The classic confusion: HMAC with the public key's PEM as secret,
        // which a server trusting the header's alg would verify with it.
        for (what, secret) in [
            ("public PEM", RSA_PUBLIC.to_vec()),
            (
                "public PEM without its newline",
                RSA_PUBLIC.trim_ascii_end().to_vec(),
            ),
        ] {
            for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
                let forged = hmac_token(Header::new(alg), &secret, &claims);
                let e = refused_both_ways(&server, &forged).await;
                assert_error(&e, "AuthTokenInvalidError", "invalid algorithm", true, what);
                bystander.still_fine(what).await;
            }
        }
        let none = forged_token(json!({"alg": "none"}), claims.clone(), "");
        let e = refused_both_ways(&server, &none).await;
        assert_error(
            &e,
            "AuthTokenInvalidError",
            "jwt signature is required",
            true,
            "alg none",
        );
        // An RS256 header over an HS256 signature made with the PEM.
        let hs = hmac_token(Header::new(Algorithm::HS256), RSA_PUBLIC, &claims);
        let sig = hs.rsplit('.').next().unwrap();
        let relabelled = forged_token(json!({"alg": "RS256", "typ": "JWT"}), claims.clone(), sig);
        let e = refused_both_ways(&server, &relabelled).await;
        assert_error(
            &e,
            "AuthTokenInvalidError",
            "invalid signature",
            true,
            "relabelled",
        );
        bystander.still_fine("relabelled").await;
    })
    .await
}

#[tokio::test]
async fn non_string_tokens_in_authenticate_are_refused() {
    bounded(async {
        let server = hs_server().await;
        let mut bystander = Bystander::new(&server, &token(good_claims("alice"))).await;
        let mut c = server.client().await;
        for data in [
            json!(5),
            json!({"token": "x"}),
            json!(["a.b.c"]),
            Value::Null,
        ] {
            let cid = c.cid();
            c.send_json(json!({"event": "#authenticate", "data": data, "cid": cid}))
                .await;
            let reply = c.reply_to(cid).await;
            assert_eq!(reply["error"]["name"], "AuthTokenError", "{data}: {reply}");
            assert_eq!(c.recv_json().await, json!({"event": "#removeAuthToken"}));
            bystander.still_fine(&data.to_string()).await;
        }
        // A handshake whose authToken is not a string is a handshake
        // without token.
        for data in [
            json!({"authToken": 5}),
            json!({"authToken": {"a": 1}}),
            json!("t"),
        ] {
            let mut c = server.connect().await;
            c.send_json(json!({"event": "#handshake", "data": data, "cid": 1}))
                .await;
            let reply = c.recv_json().await;
            assert_eq!(reply["data"]["isAuthenticated"], false, "{reply}");
            assert!(reply["data"].get("authError").is_none(), "{reply}");
        }
    })
    .await
}
