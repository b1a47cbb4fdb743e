//! Client settings and their defaults.
//!
//! Everything tunable lives in [`ClientConfig`] so that a service can build it
//! from its own configuration file and hand it over in one piece;
//! [`crate::ClientBuilder`] offers the common knobs as methods.
//!
//! | setting | default | why |
//! | --- | --- | --- |
//! | `connect_timeout` | 10 s | TCP + WebSocket upgrade + `#handshake` reply |
//! | `ack_timeout` | 10 s | socketcluster-client's default `ackTimeout` |
//! | `ping_timeout` | [`PingTimeout::FromServer`] | the handshake's `pingTimeout` (30 s on a default server) |
//! | `reconnect` | on, 0.5 s × 1.5, capped at 30 s, full jitter | see [`ReconnectPolicy`] |
//! | `subscription_buffer` | 1024 publications | per [`crate::Subscription`], drop-oldest |
//! | `receiver_buffer` | 1024 messages | per [`crate::Receiver`], drop-oldest |
//! | `event_buffer` | 256 events | per [`crate::Events`] stream, drop-oldest |
//! | `command_buffer` | 256 commands | calls queued for the connection task (backpressure) |
//! | `max_message_size` | 64 MiB | largest inbound WebSocket message |
//! | `tls` | the system's root certificates | whom `wss://` trusts ([`crate::TlsConfig`]) |

use std::sync::Arc;
use std::time::Duration;

use crate::tls::TlsConfig;
use crate::token_store::{MemoryTokenStore, TokenStore};

/// How the client reconnects after losing its connection.
///
/// The delay before the `n`-th consecutive attempt (0-based) is drawn
/// uniformly from `[0, min(max_delay, initial_delay * multiplier^n)]` (full
/// jitter). After a ping timeout (4000), a pong timeout (4001) or a close
/// without status (1005) the first attempt goes out at once, as in
/// socketcluster-client. A close with code 1000 or any code from 4500 up
/// (permanent by SocketCluster convention) is not followed by a reconnect;
/// the client then connects again on the next call that needs the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Reconnect by itself at all. When false, a lost connection is only
    /// re-established by the next call that needs it. (A resubscribe the
    /// server refuses with `BrokerError` is retried on this schedule either
    /// way: the subscription has no other way back.)
    pub enabled: bool,
    /// Upper bound of the first delay. Default 500 ms.
    pub initial_delay: Duration,
    /// Growth factor of the upper bound per failed attempt (values below 1
    /// are taken as 1). Default 1.5.
    pub multiplier: f64,
    /// Cap of the upper bound. Default 30 s.
    pub max_delay: Duration,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(500),
            multiplier: 1.5,
            max_delay: Duration::from_secs(30),
        }
    }
}

impl ReconnectPolicy {
    /// A policy that never reconnects by itself.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// How long the client waits for a server ping before it declares the server
/// dead, closes with 4000 and reconnects. Any inbound message counts as a
/// sign of life, not only pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PingTimeout {
    /// Use the `pingTimeout` the server sends in its handshake reply (what
    /// socketcluster-client does). Default.
    #[default]
    FromServer,
    /// Use this timeout whatever the server says.
    Fixed(Duration),
    /// Never time out (dead peers are then only noticed by TCP).
    Disabled,
}

/// Every setting of a [`crate::Client`]. See the module documentation for the
/// defaults.
#[derive(Clone)]
pub struct ClientConfig {
    /// Time allowed for TCP connect, WebSocket upgrade and the `#handshake`
    /// reply together. A slower attempt is abandoned with code 4007.
    pub connect_timeout: Duration,
    /// Default time to wait for the reply to an invoke, an acknowledged
    /// publish, a subscribe or an authenticate. Per-call overrides exist.
    pub ack_timeout: Duration,
    /// Dead-peer detection.
    pub ping_timeout: PingTimeout,
    /// Reconnect behaviour.
    pub reconnect: ReconnectPolicy,
    /// Capacity of each subscription stream.
    pub subscription_buffer: usize,
    /// Capacity of each transmit receiver stream.
    pub receiver_buffer: usize,
    /// Capacity of each connection event stream.
    pub event_buffer: usize,
    /// Capacity of the queue of calls waiting for the connection task.
    pub command_buffer: usize,
    /// Largest inbound WebSocket message accepted; a larger one closes the
    /// connection (1009) and the client reconnects.
    pub max_message_size: usize,
    /// Where the auth token is kept between connections (and, with a
    /// [`crate::FileTokenStore`], between runs).
    pub token_store: Arc<dyn TokenStore>,
    /// Whom a `wss://` connection trusts; `None`: the system's root
    /// certificates ([`crate::TlsConfig::native_roots`]).
    pub tls: Option<TlsConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            ping_timeout: PingTimeout::FromServer,
            reconnect: ReconnectPolicy::default(),
            subscription_buffer: 1024,
            receiver_buffer: 1024,
            event_buffer: 256,
            command_buffer: 256,
            max_message_size: 64 * 1024 * 1024,
            token_store: Arc::new(MemoryTokenStore::new()),
            tls: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("ack_timeout", &self.ack_timeout)
            .field("ping_timeout", &self.ping_timeout)
            .field("reconnect", &self.reconnect)
            .field("subscription_buffer", &self.subscription_buffer)
            .field("receiver_buffer", &self.receiver_buffer)
            .field("event_buffer", &self.event_buffer)
            .field("command_buffer", &self.command_buffer)
            .field("max_message_size", &self.max_message_size)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Replaces zero capacities (which would make a queue useless) by 1.
    pub(crate) fn sanitized(mut self) -> Self {
        self.subscription_buffer = self.subscription_buffer.max(1);
        self.receiver_buffer = self.receiver_buffer.max(1);
        self.event_buffer = self.event_buffer.max(1);
        self.command_buffer = self.command_buffer.max(1);
        self.max_message_size = self.max_message_size.max(1024);
        self
    }
}
