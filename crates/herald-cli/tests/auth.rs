//! `herald serve` with auth keys from its configuration: `[[auth_keys]]`
//! (PEM files and inline), the clock leeway, the channels claim, a JWKS
//! URL from `--auth-jwks-url`, and `check-config` naming a bad key.

mod common;

use std::process::Stdio;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../herald/tests/testdata/keys");

fn key_file(name: &str) -> String {
    format!("{KEYS}/{name}")
}

fn sign(alg: Algorithm, pem_file: &str, kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(key_file(pem_file)).unwrap();
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let header = Header {
        kid: Some(kid.to_owned()),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Connects and handshakes with `token`; the socket and the reply data.
async fn handshake_with(herald: &Herald, token: &str) -> (Ws, Value) {
    handshake(&herald.ws_url(), Some(token)).await
}

#[tokio::test]
async fn configured_keys_leeway_and_the_channels_claim() {
    let dir = TempDir::new("auth-keys");
    let config = dir.path("herald.toml");
    let rsa_public = std::fs::read_to_string(key_file("rsa-public.pem")).unwrap();
    std::fs::write(
        &config,
        format!(
            r#"
auth_leeway = "30s"
channels_claim = "grants"

[[auth_keys]]
id = "es-2026"
algorithm = "ES256"
private_key = "{}"

[[auth_keys]]
id = "rs-2025"
algorithm = "RS256"
public_key = """{rsa_public}"""

[namespaces.user]
subscribe = "none"
"#,
            key_file("p256-private.pem")
        ),
    )
    .unwrap();
    let herald = Herald::start(
        &["--config", config.to_str().unwrap()],
        "warn",
        Stdio::inherit(),
    )
    .await;

    // Expired ten seconds ago: within the leeway. Its grants claim opens
    // user:ada, which no client may subscribe to otherwise.
    let es = sign(
        Algorithm::ES256,
        "p256-private.pem",
        "es-2026",
        &json!({"sub": "ada", "exp": unix_now() - 10, "grants": ["user:ada"]}),
    );
    let (mut ws, status) = handshake_with(&herald, &es).await;
    assert_eq!(status["isAuthenticated"], true, "{status}");
    let reply = request(
        &mut ws,
        json!({"event": "#subscribe", "data": {"channel": "user:ada"}, "cid": 2}),
    )
    .await;
    assert_eq!(reply, json!({"rid": 2}));
    let reply = request(
        &mut ws,
        json!({"event": "#subscribe", "data": {"channel": "user:bob"}, "cid": 3}),
    )
    .await;
    assert_eq!(reply["error"]["name"], "ForbiddenError", "{reply}");

    // The verification-only RSA key of the previous rotation.
    let rs = sign(
        Algorithm::RS256,
        "rsa-private.pem",
        "rs-2025",
        &json!({"sub": "bob", "exp": unix_now() + 600}),
    );
    let (_ws2, status) = handshake_with(&herald, &rs).await;
    assert_eq!(status["isAuthenticated"], true, "{status}");
    // Expired beyond the leeway.
    let old = sign(
        Algorithm::ES256,
        "p256-private.pem",
        "es-2026",
        &json!({"sub": "ada", "exp": unix_now() - 120}),
    );
    let (_ws3, status) = handshake_with(&herald, &old).await;
    assert_eq!(
        status["authError"]["name"], "AuthTokenExpiredError",
        "{status}"
    );
    assert_eq!(herald.stop().await, Some(0));
}

#[tokio::test]
async fn a_jwks_url_from_the_flag_verifies_tokens() {
    let ed = sign(
        Algorithm::EdDSA,
        "ed25519-private.pem",
        "idp-1",
        &json!({"sub": "cy", "exp": unix_now() + 600}),
    );
    let pem = std::fs::read(key_file("ed25519-private.pem")).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(
        &EncodingKey::from_ed_pem(&pem).unwrap(),
        Algorithm::EdDSA,
    )
    .unwrap();
    jwk.common.key_id = Some("idp-1".into());
    let body = json!({"keys": [jwk]}).to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/.well-known/jwks.json");
    let herald = Herald::start(&["--auth-jwks-url", &url], "warn", Stdio::inherit()).await;
    let (_ws, status) = handshake_with(&herald, &ed).await;
    assert_eq!(status["isAuthenticated"], true, "{status}");
    assert_eq!(herald.stop().await, Some(0));
}

#[tokio::test]
async fn check_config_names_a_key_that_does_not_load() {
    let dir = TempDir::new("auth-check");
    let config = dir.path("bad.toml");
    std::fs::write(
        &config,
        format!(
            "max_payload = 1024\n\n[[auth_keys]]\nalgorithm = \"ES384\"\nprivate_key = \"{}\"\n",
            key_file("p256-private.pem")
        ),
    )
    .unwrap();
    let output = within(
        "check-config",
        tokio::process::Command::new(BIN)
            .args(["check-config"])
            .arg(&config)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    let stderr = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("bad.toml:3"), "{stderr}");
    assert!(stderr.contains("auth_keys[0]"), "{stderr}");
}
