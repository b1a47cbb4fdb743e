//! # Herald
//!
//! A realtime WebSocket framework that speaks the SocketCluster v2 protocol,
//! so the official `socketcluster-client` works against it unchanged.
//!
//! Herald solves what plain WebSockets leave to every team: heartbeats that
//! find dead peers, authentication with signed tokens that survive
//! reconnects, middleware that decides who may connect, subscribe, publish
//! and call what, and channels (pub/sub) that work the same on one process or
//! many, through a pluggable [`Broker`].
//!
//! ```no_run
//! use herald::{ErrorPayload, Server};
//! use serde_json::{Value, json};
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::builder()
//!     .auth_secret("change me")
//!     .procedure("login", |req| async move {
//!         let user: String = req.parse()?;
//!         req.socket
//!             .set_auth_token(json!({ "sub": user }))
//!             .map_err(|e| ErrorPayload::new("AuthError", e.to_string()))?;
//!         Ok::<Value, ErrorPayload>(json!({ "ok": true }))
//!     })
//!     .build();
//!
//! // Standalone...
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! server.clone().serve(listener, std::future::pending()).await?;
//!
//! // ...or as one route of an axum app:
//! let app: axum::Router = axum::Router::new().merge(server.router());
//! # Ok(()) }
//! ```
//!
//! ## Map of the crate
//! * [`server`]: [`ServerBuilder`], [`Server`], [`Exchange`].
//! * [`socket`]: the [`Socket`] handle given to handlers and middleware.
//! * [`handler`]: procedures ([`Request`]) and receivers ([`Message`]).
//! * [`middleware`]: [`Middleware`] and [`PublishOutMiddleware`].
//! * [`api`]: the HTTP server API for backends (`POST /api/<method>`),
//!   behind an API key ([`Server::api_router`]).
//! * [`auth`]: [`AuthEngine`], its [`Key`]s and JWKS ([`JwksOptions`]),
//!   signing and verifying JWTs, the claims Herald reads.
//! * `grants` (internal): server-side subscriptions from the token's
//!   channels claim.
//! * [`broker`]: the [`Broker`] trait and the in-process [`MemoryBroker`].
//! * [`cluster`]: operations on users' sockets on every node ([`Users`]),
//!   node announcements ([`NodeInfo`]), cluster-wide queries
//!   ([`Server::cluster_channels`]).
//! * [`config`]: [`Config`], every timing and limit.
//! * [`metrics`]: every metric's name and description, and `GET /metrics`
//!   ([`metrics::Prometheus`]).
//! * [`namespace`]: [`ChannelOptions`] per namespace: history, recovery,
//!   presence, who may subscribe and publish.
//! * `publish`, `subscribe` (internal): the one publishing path and the one
//!   subscribe path, where rules, history and presence apply.
//! * `reads` (internal): history and presence reads.
//! * `presence` (internal): this node's presence entries and their refresh.
//! * `registry` (internal): channel subscribers, fan-out, and each history
//!   channel's order and gap repair.
//! * `connection` (internal): the per-socket task.
//! * [`tls`]: [`TlsConfig`], `wss://` on the server's own port.
//! * `transport` (internal): the HTTP upgrade and WebSocket codec.
//! * `http_client` (internal): the pooled HTTP client of outbound requests
//!   (JWKS, hooks).
//! * `status` (internal): `/herald/health`, `/herald/ready`, `/herald/info`.

#![warn(missing_docs)]

mod admission;
pub mod api;
pub mod auth;
pub mod broker;
pub mod cluster;
pub mod config;
mod connection;
mod grants;
pub mod handler;
mod http_client;
pub mod metrics;
pub mod middleware;
pub mod namespace;
mod presence;
mod publish;
mod queue;
mod reads;
mod registry;
mod scratch;
mod serve;
pub mod server;
pub mod socket;
mod status;
mod subscribe;
pub mod tls;
mod transport;

pub use auth::{AuthEngine, AuthError, Claims, JwksError, JwksOptions, Key, TokenError};
pub use broker::{
    Broker, BrokerError, BrokerSink, BrokerStatus, HistoryPage, HistoryQuery, MemoryBroker,
    Publication, SinkEvent, StreamPosition,
};
pub use cluster::{ChannelCount, ClusterChannels, NodeInfo, Users};
pub use config::{Config, UnknownProcedures};
pub use handler::{Message, Request};
pub use herald_protocol as protocol;
pub use herald_protocol::ErrorPayload;
pub use middleware::{
    InvokeRequest, Middleware, PublishOut, PublishOutMiddleware, PublishRequest, Rejection,
    SubscribeRequest, TransmitRequest,
};
pub use namespace::{ChannelOptions, Rule, UnknownNamespaces};
pub use publish::PublishError;
pub use reads::ReadError;
pub use server::{ConfigError, Exchange, Server, ServerBuilder};
pub use socket::{RequestInfo, SendError, Socket, SocketState};
pub use tls::{TlsConfig, TlsError};
#[cfg(feature = "test-echo")]
pub use transport::echo_router;

/// The README's Rust snippet, compiled (not run: it serves forever) as a
/// doc test, so that it keeps building as written.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
