//! Authentication and authorization: a `login` procedure that issues a
//! signed token, an HTTP login route beside the WebSocket endpoint (Herald
//! mounted in an axum app), and middleware that guards channels by claim.
//!
//! ```text
//! cargo run --example auth
//! ```
//!
//! Users (demo only): `ada` / `lovelace` (role admin), `bob` / `builder`
//! (role user). Channel rules:
//! * `admin/*`: subscribers need `role: "admin"`;
//! * `user/<name>/*`: only the user `<name>` may subscribe;
//! * everything else: authenticated sockets only; publishing by clients is
//!   allowed on `chat/*` only.
//!
//! ```js
//! const socket = require('socketcluster-client').create({hostname: '127.0.0.1', port: 8000});
//! await socket.invoke('login', {user: 'ada', password: 'lovelace'});
//! // socket.authToken is now {sub: 'ada', role: 'admin', iat, exp}; it is sent
//! // again on every reconnect.
//! const admin = socket.subscribe('admin/alerts');
//! ```
//!
//! Or over HTTP: `curl -d '{"user":"bob","password":"builder"}' -H 'content-type: application/json' http://127.0.0.1:8000/login`
//! returns `{"token": ...}`, which a client passes to `socket.authenticate(token)`.

use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use herald::{ErrorPayload, Middleware, PublishRequest, Server, Socket, SubscribeRequest};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Credentials {
    user: String,
    password: String,
}

/// Demo user table: (user, password, role).
const USERS: &[(&str, &str, &str)] = &[("ada", "lovelace", "admin"), ("bob", "builder", "user")];

fn check(credentials: &Credentials) -> Option<Value> {
    USERS
        .iter()
        .find(|(u, p, _)| *u == credentials.user && *p == credentials.password)
        .map(|(u, _, role)| json!({ "sub": u, "role": role }))
}

fn forbidden(message: String) -> ErrorPayload {
    ErrorPayload::new("ForbiddenError", message)
}

/// Guards channels by the claims of the socket's token.
struct ChannelRules;

#[async_trait]
impl Middleware for ChannelRules {
    async fn subscribe(
        &self,
        socket: &Socket,
        request: &mut SubscribeRequest,
    ) -> Result<(), ErrorPayload> {
        let channel = request.channel();
        let Some(claims) = socket.auth_claims() else {
            return Err(forbidden(format!("log in to subscribe to {channel}")));
        };
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
        let role = claims.get("role").and_then(Value::as_str).unwrap_or("");
        if channel.starts_with("admin/") && role != "admin" {
            return Err(forbidden(format!("{channel} is for admins")));
        }
        if let Some(rest) = channel.strip_prefix("user/") {
            let owner = rest.split('/').next().unwrap_or("");
            if owner != sub {
                return Err(forbidden(format!("{channel} belongs to {owner}")));
            }
        }
        Ok(())
    }

    async fn publish_in(
        &self,
        socket: &Socket,
        request: &mut PublishRequest,
    ) -> Result<(), ErrorPayload> {
        if !request.channel().starts_with("chat/") {
            return Err(forbidden(format!(
                "clients may not publish to {}",
                request.channel()
            )));
        }
        let Some(claims) = socket.auth_claims() else {
            return Err(forbidden("log in to publish".into()));
        };
        // Stamp every chat message with its author: clients cannot forge it.
        let author = claims.get("sub").cloned().unwrap_or(Value::Null);
        request.data = Some(json!({ "from": author, "body": request.data.take() }));
        Ok(())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let secret = std::env::var("HERALD_AUTH_SECRET").unwrap_or_else(|_| "example secret".into());
    let server = Server::builder()
        .auth_secret(&secret)
        .configure(|c| c.auth_default_expiry = Duration::from_secs(3600))
        .middleware(ChannelRules)
        .procedure("login", |req| async move {
            let credentials: Credentials = req.parse()?;
            let claims = check(&credentials)
                .ok_or_else(|| ErrorPayload::new("LoginError", "wrong user or password"))?;
            req.socket
                .set_auth_token(claims)
                .map_err(|e| ErrorPayload::new("AuthError", e.to_string()))?;
            Ok(json!({ "ok": true }))
        })
        .procedure("logout", |req| async move {
            req.socket.remove_auth_token();
            Ok::<_, ErrorPayload>(Value::Null)
        })
        .build();

    // The application's own HTTP routes live beside the WebSocket endpoint.
    let auth_server = server.clone();
    let app = axum::Router::new()
        .route(
            "/login",
            post(move |Json(credentials): Json<Credentials>| {
                let server = auth_server.clone();
                async move {
                    let Some(claims) = check(&credentials) else {
                        return Err((StatusCode::UNAUTHORIZED, "wrong user or password"));
                    };
                    let claims = claims.as_object().cloned().unwrap_or_default();
                    server
                        .auth()
                        .sign(&claims, Duration::from_secs(3600))
                        .map(|token| Json(json!({ "token": token })))
                        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "cannot sign"))
                }
            }),
        )
        .merge(server.router());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!(
        "auth example on http://{0}/login and ws://{0}/socketcluster/",
        listener.local_addr()?
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    server.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
