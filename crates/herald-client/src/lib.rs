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
//! With Herald's protocol extension (channels with history and presence;
//! a plain SocketCluster server simply never uses it):
//!
//! * **Recovers** what was published while it was disconnected. Each
//!   [`Publication`] on a channel with history carries its
//!   [`StreamPosition`] (offset and epoch); the client keeps the last one
//!   per channel and resubscribes from it, so missed publications arrive on
//!   the same [`Subscription`], in order, before the live ones, and
//!   duplicates are dropped. What cannot be recovered is reported once, in
//!   place, as [`SubscriptionError::Gap`] (and [`ClientEvent::Gap`]); the
//!   stream goes on. An application that persists
//!   [`Subscription::position`] resumes from it after a restart
//!   ([`SubscribeOptions::since`]). A resubscribe refused with `BrokerError`
//!   is retried on the reconnect schedule ([`ClientEvent::SubscribeRetrying`]).
//! * **Reads history and presence**: [`Client::history`],
//!   [`Client::presence`], [`Client::presence_stats`], and joins and leaves
//!   as streams ([`Client::presence_events`], [`Client::presence_events_of`]).
//!
//! ```no_run
//! # async fn demo(client: herald_client::Client) -> Result<(), herald_client::Error> {
//! use futures_util::StreamExt;
//! use herald_client::{HistoryOptions, SubscribeOptions, SubscriptionError};
//!
//! // Resume where the last run stopped (a position it saved).
//! let saved = Some(herald_client::StreamPosition::new(41, "Xk3_aZ09"));
//! let options = SubscribeOptions { since: saved, ..SubscribeOptions::default() };
//! let mut room = client.subscribe_with("chat:lobby", options).await?;
//! while let Some(item) = room.next().await {
//!     match item {
//!         Ok(p) => println!("#{:?} {}", p.offset(), p.data),
//!         Err(SubscriptionError::Gap(gap)) => {
//!             // Lost for good: reload from the source of truth.
//!             eprintln!("{gap}");
//!         }
//!         Err(SubscriptionError::Lagged(_)) => {
//!             // Dropped here, not on the server: read them back.
//!             let since = room.position().cloned();
//!             let page = client
//!                 .history("chat:lobby", HistoryOptions { since, limit: None })
//!                 .await?;
//!             println!("{} publications to catch up", page.publications.len());
//!         }
//!         Err(e) => eprintln!("{e}"),
//!     }
//!     // Save room.position() to resume from it next time.
//! }
//! # Ok(()) }
//! ```
//!
//! Design: each client owns one background task holding the socket; handles
//! send it commands over a bounded queue. Streams handed out
//! ([`Subscription`], [`Receiver`], [`Events`]) are bounded and drop their
//! oldest item when the consumer is slow, reporting how many were dropped,
//! so that a slow consumer never stalls the connection.
//!
//! Modules:
//! * `client`: the [`Client`] handle; `builder`: its [`ClientBuilder`].
//! * `task`: the connection task that owns the socket (its run loop,
//!   channels and recovery, requests, inbound dispatch, auth: one module
//!   each).
//! * `connection`: one connection attempt and the dead-peer timer.
//! * `config`, `backoff`: settings and the reconnect schedule.
//! * `subscription`, `handlers`, `events`: what the server sends, as streams.
//! * `gap`: the notice that publications were lost ([`StreamGap`]).
//! * `history`, `presence`: Herald's history and presence calls and streams.
//! * `token_store`: keeping the auth token; decoding its claims.
//! * `queue`: the drop-oldest queue behind every stream.
//! * `error`: the [`Error`] type.

#![warn(missing_docs)]

mod backoff;
mod builder;
mod client;
mod config;
mod connection;
mod error;
mod events;
mod gap;
mod handlers;
mod history;
mod presence;
mod queue;
mod subscription;
mod task;
mod tls;
mod token_store;

pub use builder::ClientBuilder;
pub use client::{Client, SubscribeOptions, WeakClient};
pub use config::{ClientConfig, PingTimeout, ReconnectPolicy};
pub use error::{Error, Result};
pub use events::{ClientEvent, ConnectionState, Events};
pub use gap::{GapCause, StreamGap};
pub use handlers::{Lagged, Receiver};
pub use herald_protocol::ErrorPayload;
pub use herald_protocol::ext::{ClientInfo, PresenceEvent, PresenceStats, StreamPosition};
pub use history::{History, HistoryOptions};
pub use presence::{PresenceChange, PresenceEvents};
pub use subscription::{Publication, Subscription, SubscriptionError};
pub use tls::TlsConfig;
pub use token_store::{FileTokenStore, MemoryTokenStore, TokenStore, decode_claims};
