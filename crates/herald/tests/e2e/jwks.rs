//! Keys from a JWKS: a local HTTP server serves a key set that rotates
//! (a new `kid` appears, the old one goes), answers 503, goes down and
//! comes back, while real sockets authenticate against Herald.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald::{AuthEngine, JwksOptions};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::common::*;

const RSA_A: &[u8] = include_bytes!("../testdata/keys/rsa-private.pem");
const RSA_B: &[u8] = include_bytes!("../testdata/keys/rsa2-private.pem");
const P256: &[u8] = include_bytes!("../testdata/keys/p256-private.pem");
const ED25519: &[u8] = include_bytes!("../testdata/keys/ed25519-private.pem");

/// A signing key of the identity provider the JWKS belongs to.
struct IdpKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

impl IdpKey {
    fn new(kid: &str, alg: Algorithm, pem: &[u8]) -> Self {
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .expect("test key");
        Self {
            kid: kid.to_owned(),
            alg,
            key,
        }
    }

    /// Its public half as a JWK, with its kid (and `alg` when `with_alg`).
    fn jwk(&self, with_alg: bool) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("JWK");
        jwk.common.key_id = Some(self.kid.clone());
        if !with_alg {
            jwk.common.key_algorithm = None;
        }
        serde_json::to_value(jwk).expect("JWK as JSON")
    }

    /// A token for `user`, valid ten minutes, with this key's kid.
    fn token(&self, user: &str) -> String {
        self.token_as(&self.kid, user)
    }

    /// A token signed with this key but naming `kid`.
    fn token_as(&self, kid: &str, user: &str) -> String {
        let header = Header {
            kid: Some(kid.to_owned()),
            ..Header::new(self.alg)
        };
        jsonwebtoken::encode(
            &header,
            &json!({"sub": user, "exp": unix_now() + 600}),
            &self.key,
        )
        .expect("sign")
    }
}

/// The P-256 key's public half under `kid`: the JWKS takes ES256, so a
/// random kid on an ES256 token is an unknown kid, not an unknown
/// algorithm.
fn attacker_key_known_as(kid: &str) -> Value {
    IdpKey::new(kid, Algorithm::ES256, P256).jwk(true)
}

/// What the JWKS server serves, and what it saw.
#[derive(Default)]
struct Served {
    keys: Mutex<Vec<Value>>,
    /// Bumped on every change of `keys` (the ETag).
    version: AtomicUsize,
    /// 200 normally; anything else is answered with that status.
    status: AtomicU16,
    cache_control: Mutex<Option<String>>,
    requests: AtomicUsize,
    not_modified: AtomicUsize,
}

async fn serve_jwks(State(s): State<Arc<Served>>, headers: HeaderMap) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let status = s.status.load(Ordering::SeqCst);
    if status != 200 {
        return StatusCode::from_u16(status).unwrap().into_response();
    }
    let etag = format!("\"v{}\"", s.version.load(Ordering::SeqCst));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let body = json!({"keys": *s.keys.lock()}).to_string();
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response();
    if let Some(cc) = s.cache_control.lock().clone() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    response
}

/// A JWKS endpoint on 127.0.0.1.
struct JwksServer {
    served: Arc<Served>,
    addr: std::net::SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> Self {
        let served = Arc::new(Served {
            status: AtomicU16::new(200),
            ..Served::default()
        });
        *served.keys.lock() = keys;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = Self {
            served,
            addr,
            task: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(serve_jwks))
            .with_state(self.served.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.served.keys.lock() = keys;
        self.served.version.fetch_add(1, Ordering::SeqCst);
    }

    fn requests(&self) -> usize {
        self.served.requests.load(Ordering::SeqCst)
    }

    /// Stops listening: connections are refused.
    async fn go_down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port.
    async fn come_back(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("rebind");
        self.serve(listener);
    }
}

/// The fixture on a JWKS-only engine, once the first fetch is done.
async fn herald_with(options: JwksOptions) -> TestServer {
    let engine = AuthEngine::jwks(options).expect("JWKS options");
    let server = TestServer::start(herald_testkit::fixture(
        herald::Server::builder().auth(engine),
    ))
    .await;
    within("the first JWKS fetch", server.server.auth().jwks_ready())
        .await
        .expect("the first JWKS fetch");
    server
}

/// The handshake's verdict on `token`: the claims' user, or the refusal.
async fn try_token(server: &TestServer, token: &str) -> Result<String, Value> {
    let mut c = server.connect().await;
    let status = c.handshake(Some(token)).await;
    if status["isAuthenticated"] == true {
        let who = c.call("whoami", Value::Null).await;
        return Ok(who["sub"].as_str().unwrap_or_default().to_owned());
    }
    Err(status["authError"].clone())
}

/// Retries `token` (a fresh socket each time) until it is accepted:
/// what a client does after a refusal, while the refresh floor passes.
async fn accepted_eventually(server: &TestServer, token: &str, what: &str) -> String {
    within(what, async {
        loop {
            if let Ok(user) = try_token(server, token).await {
                return user;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_rotated_key_is_fetched_on_its_new_kid_and_the_removed_one_refused() {
    bounded(async {
        let a = IdpKey::new("key-a", Algorithm::RS256, RSA_A);
        let b = IdpKey::new("key-b", Algorithm::RS256, RSA_B);
        let jwks = JwksServer::start(vec![a.jwk(true)]).await;
        let server = herald_with(
            JwksOptions::new(jwks.url())
                .min_refresh(Duration::from_millis(100))
                .refresh(Duration::from_secs(3600)),
        )
        .await;
        assert_eq!(try_token(&server, &a.token("ada")).await.unwrap(), "ada");
        let mut holder = server.connect().await;
        assert_eq!(
            holder.handshake(Some(&a.token("holder"))).await["isAuthenticated"],
            true
        );

        // Rotation: key-b appears, key-a is removed. A token of the new key
        // names a kid the cache lacks: Herald refreshes and accepts it.
        jwks.set_keys(vec![b.jwk(true)]);
        let before = jwks.requests();
        assert_eq!(
            accepted_eventually(&server, &b.token("bob"), "key-b accepted").await,
            "bob"
        );
        assert!(jwks.requests() > before, "no refresh for the new kid");

        // The removed key is refused now that the set was refreshed.
        let e = try_token(&server, &a.token("ada")).await.unwrap_err();
        assert_eq!(e["name"], "AuthTokenInvalidError", "{e}");
        assert_eq!(e["message"], "no key matches the token's kid", "{e}");
        // A token of the old key claiming the new key's kid: the new key
        // checks it, and it is not its signature.
        let e = try_token(&server, &a.token_as("key-b", "mallory"))
            .await
            .unwrap_err();
        assert_eq!(e["message"], "invalid signature", "{e}");
        // A socket authenticated before keeps its session.
        assert_eq!(holder.call("whoami", Value::Null).await["sub"], "holder");
    })
    .await
}

#[tokio::test]
async fn random_kids_cannot_make_herald_hammer_the_jwks_server() {
    bounded(async {
        let good = IdpKey::new("good", Algorithm::EdDSA, ED25519);
        // Its own key, unknown to the JWKS (the signature never gets
        // checked: no key has the kid).
        let attacker = IdpKey::new("x", Algorithm::ES256, P256);
        let jwks = JwksServer::start(vec![good.jwk(true), attacker_key_known_as("p256"), {
            let mut k = IdpKey::new("rsa", Algorithm::RS256, RSA_A).jwk(true);
            k["use"] = json!("sig");
            k
        }])
        .await;
        let server = herald_with(
            JwksOptions::new(jwks.url())
                .min_refresh(Duration::from_secs(120))
                .refresh(Duration::from_secs(3600)),
        )
        .await;
        assert_eq!(jwks.requests(), 1);
        let started = std::time::Instant::now();
        for i in 0..40 {
            let kid = format!("random-{i}-{}", rand::random::<u64>());
            let e = try_token(&server, &attacker.token_as(&kid, "mallory"))
                .await
                .unwrap_err();
            assert_eq!(e["message"], "no key matches the token's kid", "{e}");
        }
        // The first unknown kid came within the floor of the first fetch:
        // no fetch at all, and no token waited for one.
        assert_eq!(jwks.requests(), 1, "random kids made Herald fetch");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        // Good tokens are not held up.
        assert_eq!(try_token(&server, &good.token("ada")).await.unwrap(), "ada");
    })
    .await
}

#[tokio::test]
async fn the_last_good_keys_stay_while_the_jwks_server_is_down() {
    bounded(async {
        let a = IdpKey::new("key-a", Algorithm::EdDSA, ED25519);
        let c = IdpKey::new("key-c", Algorithm::RS256, RSA_B);
        let mut jwks = JwksServer::start(vec![a.jwk(false)]).await;
        let server = herald_with(
            JwksOptions::new(jwks.url())
                .min_refresh(Duration::from_millis(100))
                .refresh(Duration::from_secs(3600))
                .timeout(Duration::from_secs(2)),
        )
        .await;
        assert_eq!(try_token(&server, &a.token("ada")).await.unwrap(), "ada");

        // The server answers 503: refreshes fail, the cached key works.
        jwks.served.status.store(503, Ordering::SeqCst);
        let before = jwks.requests();
        within("a failed refresh", async {
            while jwks.requests() == before {
                let _ = try_token(&server, &c.token("probe")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(try_token(&server, &a.token("ada")).await.unwrap(), "ada");

        // Down altogether: connections refused. Still the cached key.
        jwks.go_down().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let e = try_token(&server, &c.token("probe")).await.unwrap_err();
        assert_eq!(e["name"], "AuthTokenInvalidError", "{e}");
        assert_eq!(try_token(&server, &a.token("ada")).await.unwrap(), "ada");

        // Back, with a new key: accepted once fetched.
        jwks.served.status.store(200, Ordering::SeqCst);
        jwks.set_keys(vec![a.jwk(false), c.jwk(true)]);
        jwks.come_back().await;
        assert_eq!(
            accepted_eventually(&server, &c.token("cy"), "key-c after the outage").await,
            "cy"
        );
        assert_eq!(try_token(&server, &a.token("ada")).await.unwrap(), "ada");
    })
    .await
}

#[tokio::test]
async fn cache_control_max_age_schedules_refreshes_and_etags_make_them_cheap() {
    bounded(async {
        let a = IdpKey::new("key-a", Algorithm::RS256, RSA_A);
        let jwks = JwksServer::start(vec![a.jwk(true)]).await;
        *jwks.served.cache_control.lock() = Some("public, max-age=0".into());
        let _server = herald_with(
            JwksOptions::new(jwks.url())
                .min_refresh(Duration::from_millis(100))
                .refresh(Duration::from_secs(3600)),
        )
        .await;
        // max-age=0 is floored at min_refresh: a refresh every 100 ms,
        // with no token asking, each a 304 (If-None-Match; the 304 carries
        // no Cache-Control, so the max-age of the 200 it confirms holds).
        within("three scheduled refreshes", async {
            while jwks.served.not_modified.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(jwks.requests() >= 4);
    })
    .await
}
