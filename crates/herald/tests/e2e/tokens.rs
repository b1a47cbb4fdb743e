//! Keys from the server's own configuration, through real sockets: every
//! algorithm family, several keys told apart by `kid` (a rotation), the
//! clock leeway, and a token signed elsewhere pushed to a socket.

use std::time::Duration;

use herald::{AuthEngine, Key};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::*;

const RSA: &[u8] = include_bytes!("../testdata/keys/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../testdata/keys/rsa-public.pem");
const RSA2: &[u8] = include_bytes!("../testdata/keys/rsa2-private.pem");
const P256: &[u8] = include_bytes!("../testdata/keys/p256-private.pem");
const P256_PUBLIC: &[u8] = include_bytes!("../testdata/keys/p256-public.pem");
const P384: &[u8] = include_bytes!("../testdata/keys/p384-private.pem");
const P384_PUBLIC: &[u8] = include_bytes!("../testdata/keys/p384-public.pem");
const ED: &[u8] = include_bytes!("../testdata/keys/ed25519-private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../testdata/keys/ed25519-public.pem");

/// Signs `claims` with `alg` and a PEM (or, for HS*, a secret), with
/// `kid`, independently of Herald.
fn sign(alg: Algorithm, material: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(material)
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(material).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(material).unwrap(),
        _ => EncodingKey::from_rsa_pem(material).unwrap(),
    };
    let header = Header {
        kid: kid.map(str::to_owned),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": unix_now() + 600})
}

async fn with_engine(engine: AuthEngine) -> TestServer {
    TestServer::start(herald_testkit::fixture(
        herald::Server::builder().auth(engine),
    ))
    .await
}

/// The user the handshake authenticated, or the refusal.
async fn handshake_as(server: &TestServer, token: &str) -> Result<String, Value> {
    let mut c = server.connect().await;
    let status = c.handshake(Some(token)).await;
    if status["isAuthenticated"] == true {
        let who = c.call("whoami", Value::Null).await;
        return Ok(who["sub"].as_str().unwrap().to_owned());
    }
    Err(status["authError"].clone())
}

#[tokio::test]
async fn every_algorithm_family_authenticates_a_socket() {
    bounded(async {
        // One server trusting a key of each algorithm, verification-only
        // from public PEMs, each with an id.
        let cases: Vec<(Algorithm, &[u8], &[u8])> = vec![
            (Algorithm::HS256, b"hs256 secret", b""),
            (Algorithm::HS384, b"hs384 secret", b""),
            (Algorithm::HS512, b"hs512 secret", b""),
            (Algorithm::RS256, RSA, RSA_PUBLIC),
            (Algorithm::RS512, RSA, RSA_PUBLIC),
            (Algorithm::PS256, RSA, RSA_PUBLIC),
            (Algorithm::PS384, RSA, RSA_PUBLIC),
            (Algorithm::ES256, P256, P256_PUBLIC),
            (Algorithm::ES384, P384, P384_PUBLIC),
            (Algorithm::EdDSA, ED, ED_PUBLIC),
        ];
        let keys = cases.iter().map(|(alg, material, public)| {
            let id = format!("{alg:?}");
            if public.is_empty() {
                Key::secret(*alg, material).unwrap().with_id(id)
            } else {
                Key::public_pem(*alg, public).unwrap().with_id(id)
            }
        });
        let server = with_engine(AuthEngine::from_keys(keys).unwrap()).await;
        for (alg, material, _) in &cases {
            let id = format!("{alg:?}");
            let with_kid = sign(*alg, material, Some(&id), &claims(&id));
            assert_eq!(handshake_as(&server, &with_kid).await, Ok(id.clone()));
            // Without a kid, the keys of its algorithm are tried.
            let without = sign(*alg, material, None, &claims(&id));
            assert_eq!(handshake_as(&server, &without).await, Ok(id.clone()));
        }
        // An algorithm no key takes.
        let e = handshake_as(&server, &sign(Algorithm::RS384, RSA, None, &claims("x")))
            .await
            .unwrap_err();
        assert_eq!(e["message"], "invalid algorithm", "{e}");
        // A kid of another algorithm's key: no key of this algorithm has it.
        let e = handshake_as(
            &server,
            &sign(Algorithm::ES256, P256, Some("RS256"), &claims("x")),
        )
        .await
        .unwrap_err();
        assert_eq!(e["message"], "no key matches the token's kid", "{e}");
    })
    .await
}

#[tokio::test]
async fn key_rotation_with_configured_keys_and_kids() {
    bounded(async {
        let old = || {
            Key::private_pem(Algorithm::RS256, RSA)
                .unwrap()
                .with_id("2025")
        };
        let new = || {
            Key::private_pem(Algorithm::ES256, P256)
                .unwrap()
                .with_id("2026")
        };
        // Step 1: the new key is trusted, the old one still signs.
        let step1 = with_engine(AuthEngine::from_keys([old(), new()]).unwrap()).await;
        // Step 2: the new key signs, the old one still verifies.
        let step2 = with_engine(AuthEngine::from_keys([new(), old()]).unwrap()).await;
        // Step 3: the old key is gone.
        let step3 = with_engine(AuthEngine::from_keys([new()]).unwrap()).await;

        let mut c = step1.client().await;
        c.call("login", json!({"user": "ada"})).await;
        let issued_1 = step1
            .server
            .socket(&c.id)
            .unwrap()
            .signed_auth_token()
            .unwrap();
        let mut c = step2.client().await;
        c.call("login", json!({"user": "bob"})).await;
        let issued_2 = step2
            .server
            .socket(&c.id)
            .unwrap()
            .signed_auth_token()
            .unwrap();
        assert_eq!(token_claims(&issued_1)["sub"], "ada");
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_eq!(
            (kid(&issued_1).as_str(), kid(&issued_2).as_str()),
            ("2025", "2026")
        );

        for server in [&step1, &step2] {
            assert_eq!(handshake_as(server, &issued_1).await.unwrap(), "ada");
            assert_eq!(handshake_as(server, &issued_2).await.unwrap(), "bob");
        }
        assert_eq!(handshake_as(&step3, &issued_2).await.unwrap(), "bob");
        let e = handshake_as(&step3, &issued_1).await.unwrap_err();
        assert_eq!(e["name"], "AuthTokenInvalidError", "{e}");
        // A kid cannot lend its key to another algorithm.
        let forged = sign(Algorithm::RS256, RSA2, Some("2026"), &claims("mallory"));
        let e = handshake_as(&step3, &forged).await.unwrap_err();
        assert_eq!(e["message"], "invalid algorithm", "{e}");
    })
    .await
}

#[tokio::test]
async fn the_clock_leeway_accepts_a_just_expired_token_and_expires_it_after() {
    bounded(async {
        let strict = TestServer::fixture().await;
        let lenient = TestServer::start(fixture().auth_leeway(Duration::from_secs(2))).await;
        let just_expired = token(json!({"sub": "ada", "exp": unix_now() - 1}));
        let e = handshake_as(&strict, &just_expired).await.unwrap_err();
        assert_eq!(e["name"], "AuthTokenExpiredError", "{e}");

        let mut c = lenient.connect().await;
        let status = c.handshake(Some(&just_expired)).await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
        // The session ends at exp + leeway, as a later handshake would.
        within_for(Duration::from_secs(8), "the expiry push", async {
            c.expect_event("#removeAuthToken").await;
        })
        .await;
        assert_eq!(c.call("whoami", Value::Null).await, Value::Null);
        let long_expired = token(json!({"sub": "ada", "exp": unix_now() - 30}));
        let e = handshake_as(&lenient, &long_expired).await.unwrap_err();
        assert_eq!(e["name"], "AuthTokenExpiredError", "{e}");
    })
    .await
}

#[tokio::test]
async fn a_token_signed_elsewhere_is_verified_then_pushed_without_a_reconnect() {
    bounded(async {
        // The server verifies tokens of the backend's RSA key and signs
        // nothing itself.
        let engine = AuthEngine::asymmetric(Algorithm::RS256, RSA_PUBLIC, None).unwrap();
        let server = with_engine(engine).await;
        let mut c = server.connect().await;
        let first = sign(Algorithm::RS256, RSA, None, &claims("ada"));
        assert_eq!(c.handshake(Some(&first)).await["isAuthenticated"], true);
        let socket = server.server.socket(&c.id).unwrap();

        // A refreshed token from the backend: verified, stored, pushed.
        let refreshed = sign(
            Algorithm::RS256,
            RSA,
            None,
            &json!({"sub": "ada", "exp": unix_now() + 3600, "n": 2}),
        );
        let got = socket.set_signed_auth_token(&refreshed).await.unwrap();
        assert_eq!(got["n"], 2);
        let push = c.expect_event("#setAuthToken").await;
        assert_eq!(push["data"]["token"], refreshed.as_str());
        assert_eq!(c.call("whoami", Value::Null).await["n"], 2);

        // One the server cannot verify is refused, and the socket keeps
        // the token it had.
        let bogus = sign(Algorithm::RS256, RSA2, None, &claims("ada"));
        let e = socket.set_signed_auth_token(&bogus).await.unwrap_err();
        assert_eq!(e.payload.message, "invalid signature");
        assert_eq!(c.call("whoami", Value::Null).await["n"], 2);
        // Nor can this server sign tokens of its own.
        assert!(socket.set_auth_token(json!({"sub": "x"})).is_err());
    })
    .await
}
