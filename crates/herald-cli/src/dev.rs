//! `herald serve --dev`: a demo a newcomer opens in a browser.
//!
//! With `--dev` the server also serves:
//!
//! * `GET /`: a small live chat built on the TypeScript client
//!   (`clients/ts`, bundled into `assets/demo/` and compiled into the binary,
//!   so the page needs nothing but this binary: no CDN, no npm);
//! * `POST /herald/dev/token` with `{"name": N}`: a token for user `N`
//!   signed with the server's auth secret (a random one when none is set),
//!   so that anyone can log in as any name. A development convenience only,
//!   which is why it exists only with `--dev`;
//! * the namespace `demo:` with history, recovery, presence and join/leave
//!   (everyone may read, logged-in users may publish `{"text"}`, which the
//!   server stamps with the publisher's user name), and the procedure
//!   `dev.dropMe` `{seconds}` that closes the caller's socket with 1013
//!   `retry after <seconds>`, so the page can show a reconnect and the
//!   recovery of what was said meanwhile.
//!
//! Without `--dev` none of this exists.

use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use herald::{
    ChannelOptions, ErrorPayload, Middleware, PublishRequest, Rule, Server, ServerBuilder, Socket,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// The demo's namespace (`demo:lobby`, `demo:random`, …).
pub const NAMESPACE: &str = "demo";

/// The token route.
pub const TOKEN_PATH: &str = "/herald/dev/token";

/// Longest accepted user name, in characters.
const MAX_NAME: usize = 32;

/// Longest accepted chat message, in characters.
const MAX_TEXT: usize = 500;

/// Longest accepted token request body, in bytes.
const MAX_BODY: usize = 1024;

/// Lifetime of a demo token.
const TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

const INDEX: &str = include_str!("../assets/demo/index.html");
const STYLE: &str = include_str!("../assets/demo/style.css");
const APP_JS: &str = include_str!("../assets/demo/app.js");
const WORKER_JS: &str = include_str!("../assets/demo/worker.js");

/// The `demo:` namespace's options.
pub fn namespace() -> ChannelOptions {
    ChannelOptions {
        history_size: 200,
        history_ttl: Duration::from_secs(3600),
        recover: true,
        presence: true,
        join_leave: true,
        subscribe: Rule::Any,
        publish: Rule::Authenticated,
        ..ChannelOptions::default()
    }
}

/// Chat messages on `demo:` are `{"text"}`; the server sets `user` from
/// the publisher's token, so that nobody speaks under another name.
struct StampUser;

#[async_trait]
impl Middleware for StampUser {
    async fn publish_in(
        &self,
        socket: &Socket,
        request: &mut PublishRequest,
    ) -> Result<(), ErrorPayload> {
        if !request.channel().starts_with("demo:") {
            return Ok(());
        }
        let text = request
            .data
            .as_ref()
            .and_then(|d| d.get("text"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.chars().count() <= MAX_TEXT)
            .ok_or_else(|| {
                ErrorPayload::new(
                    "InvalidArgumentsError",
                    "a demo message is {\"text\": \"1 to 500 characters\"}",
                )
            })?
            .to_owned();
        let user = socket
            .auth_claims()
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned));
        request.data = Some(json!({ "user": user, "text": text }));
        Ok(())
    }
}

/// Adds the demo's namespace, middleware and procedure to a server.
pub fn customize(builder: ServerBuilder) -> ServerBuilder {
    #[derive(Deserialize)]
    struct Drop {
        seconds: u64,
    }
    builder
        .namespace(NAMESPACE, namespace())
        .middleware(StampUser)
        .procedure("dev.dropMe", |req| async move {
            let Drop { seconds } = req.parse()?;
            let seconds = seconds.clamp(1, 30);
            req.socket
                .disconnect(1013, format!("retry after {seconds}"));
            Ok::<Value, ErrorPayload>(json!({ "seconds": seconds }))
        })
}

/// The page, its assets and the token route.
pub fn router(server: &Server) -> Router {
    let index = render_index(&server.config().path);
    Router::new()
        .route("/", get(move || async move { page(index) }))
        .route(
            "/herald/dev/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/herald/dev/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/herald/dev/worker.js",
            get(|| async { asset("text/javascript; charset=utf-8", WORKER_JS) }),
        )
        .route(TOKEN_PATH, post(token).with_state(server.clone()))
}

/// The page with the WebSocket path of this server filled in.
fn render_index(path: &str) -> String {
    INDEX.replace("__HERALD_PATH__", &escape_attribute(path))
}

fn escape_attribute(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn page(index: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        index,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "error": message }).to_string(),
    )
        .into_response()
}

/// Checks a user name: 1 to 32 characters after trimming, no control
/// characters.
fn valid_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.chars().count() > MAX_NAME {
        return Err("the name is longer than 32 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("the name has control characters");
    }
    Ok(name)
}

async fn token(State(server): State<Server>, body: Bytes) -> Response {
    #[derive(Deserialize)]
    struct Login {
        name: String,
    }
    if body.len() > MAX_BODY {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large");
    }
    let Ok(Login { name }) = serde_json::from_slice::<Login>(&body) else {
        return error(StatusCode::BAD_REQUEST, "expected {\"name\": \"...\"}");
    };
    let name = match valid_name(&name) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut claims = herald::Claims::new();
    claims.insert("sub".to_owned(), Value::from(name));
    match server.auth().sign(&claims, TOKEN_LIFETIME) {
        Ok(token) => (
            [(header::CONTENT_TYPE, "application/json")],
            json!({ "token": token }).to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot sign a demo token");
            error(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign a token")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(valid_name("  ada "), Ok("ada"));
        assert_eq!(valid_name("Ådä Løvelace"), Ok("Ådä Løvelace"));
        assert!(valid_name("").is_err());
        assert!(valid_name("   ").is_err());
        assert!(valid_name("a\u{7}b").is_err());
        assert!(valid_name(&"x".repeat(33)).is_err());
        assert!(valid_name(&"é".repeat(32)).is_ok());
    }

    #[test]
    fn the_path_is_escaped_into_the_page() {
        assert!(render_index("/ws/").contains("content=\"/ws/\""));
        let odd = render_index("/a\"<b>&/");
        assert!(odd.contains("content=\"/a&quot;&lt;b&gt;&amp;/\""));
        assert!(!odd.contains("__HERALD_PATH__"));
    }

    #[test]
    fn the_namespace_is_valid() {
        namespace().validate("demo").unwrap();
    }
}
