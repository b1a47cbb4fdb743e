//! A Rust client for Herald and for socketcluster-server 20 (the
//! SocketCluster v2 wire protocol).
//!
//! ```no_run
//! # async fn demo() -> Result<(), herald_client::Error> {
//! use futures_util::StreamExt;
//! use herald_client::Client;
//!
//! let client = Client::connect("ws://127.0.0.1:8000/socketcluster/").await?;
//! let mut sub = client.subscribe("chat").await?;
//! client.publish("chat", "hello").await?;
//! let reply = client.invoke("echo", &serde_json::json!({"x": 1})).await?;
//! if let Some(Ok(publication)) = sub.next().await {
//!     println!("{} says {}", publication.channel, publication.data);
//! }
//! client.close().await;
//! # let _ = reply; Ok(()) }
//! ```
//!
//! What it does by itself:
//!
//! * **Reconnects** after losing the connection, with exponential backoff and
//!   full jitter ([`ReconnectPolicy`]: 0.5 s initial, ×1.5, capped at 30 s),
//!   at once after a ping timeout. It **re-authenticates** by sending the
//!   stored token ([`TokenStore`]) in the handshake and **resubscribes** every
//!   channel; publications keep arriving on the same [`Subscription`]s.
//!   Requests in flight when the connection drops fail with
//!   [`Error::BadConnection`]; nothing hangs.
//! * **Detects dead servers**: no ping (nor any message) within the
//!   handshake's `pingTimeout` closes the socket with 4000 and reconnects.
//! * **Answers pings** and the server's invokes (see [`Client::on_invoke`]).
//!
//! Design: each client owns one background task holding the socket; handles
//! send it commands over a bounded queue. Streams handed out
//! ([`Subscription`], [`Receiver`], [`Events`]) are bounded and drop their
//! oldest item when the consumer is slow, reporting how many were dropped,
//! so that a slow consumer never stalls the connection.
//!
//! Modules:
//! * `client`: the [`Client`] handle and its [`ClientBuilder`].
//! * `task`: the connection task that owns the socket.
//! * `connection`: one connection attempt and the dead-peer timer.
//! * `config`, `backoff`: settings and the reconnect schedule.
//! * `subscription`, `handlers`, `events`: what the server sends, as streams.
//! * `token_store`: keeping the auth token; decoding its claims.
//! * `queue`: the drop-oldest queue behind every stream.
//! * `error`: the [`Error`] type.

#![warn(missing_docs)]

mod backoff;
mod client;
mod config;
mod connection;
mod error;
mod events;
mod handlers;
mod queue;
mod subscription;
mod task;
mod token_store;

pub use client::{Client, ClientBuilder, SubscribeOptions, WeakClient};
pub use config::{ClientConfig, PingTimeout, ReconnectPolicy};
pub use error::{Error, Result};
pub use events::{ClientEvent, ConnectionState, Events};
pub use handlers::{Lagged, Receiver};
pub use herald_protocol::ErrorPayload;
pub use subscription::{Publication, Subscription, SubscriptionError};
pub use token_store::{FileTokenStore, MemoryTokenStore, TokenStore, decode_claims};
