//! Server settings: timings, limits and the slow-consumer policy.
//!
//! Every default matches socketcluster-server 20 where it has the same
//! setting, so an application moving from it sees the same behaviour.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_protocol::defaults;

use crate::namespace::{ChannelOptions, UnknownNamespaces};

/// Settings of a Herald server. Build with [`Config::default`] and adjust the
/// fields, or through [`crate::ServerBuilder`]'s methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// HTTP path of the WebSocket endpoint. Default `/socketcluster/`.
    pub path: String,
    /// Interval between server pings. Default 8 s.
    pub ping_interval: Duration,
    /// A socket silent for this long (no pong, no frame) is closed with 4001.
    /// Sent to clients in the handshake. Default 30 s.
    pub ping_timeout: Duration,
    /// Time a new socket has to complete `#handshake` (close 4005). Default 10 s.
    pub handshake_timeout: Duration,
    /// Default time the server waits for a client's reply to a server-side
    /// invoke. Default 10 s.
    pub ack_timeout: Duration,
    /// Largest inbound message in bytes; larger closes with 1009. Default 1 MiB.
    pub max_payload: usize,
    /// Capacity, in frames, of each socket's outbound queue. When a socket's
    /// queue is full the socket is a slow consumer: it is closed with
    /// [`herald_protocol::close::SLOW_CONSUMER`] (4100) and its queued frames
    /// are dropped, so that one slow reader never delays or grows memory for
    /// everyone else. The client reconnects and resubscribes. Default 4096.
    pub outbound_queue: usize,
    /// How many malformed frames a socket may send in a burst before it is
    /// closed with 1003 (invalid data). Malformed frames are otherwise ignored
    /// as socketcluster-server does. The allowance refills by one every
    /// [`Config::malformed_refill`]. Default 16.
    pub malformed_burst: u32,
    /// Refill period of the malformed-frame allowance. Default 1 s.
    pub malformed_refill: Duration,
    /// Longest accepted channel name in bytes; a longer one gets an
    /// `InvalidActionError`. Default 1024.
    pub max_channel_name: usize,
    /// Most channels one socket may be subscribed to (0 = unlimited).
    /// Default 0, as socketcluster-server.
    pub socket_channel_limit: usize,
    /// Lifetime of tokens signed by [`crate::Socket::set_auth_token`] when the
    /// claims carry no `exp`. Default 24 h.
    pub auth_default_expiry: Duration,
    /// Whether clients may publish (`#publish`). Default true.
    pub allow_client_publish: bool,
    /// How long a write to a socket may block before the socket is dropped.
    /// Default 10 s.
    pub write_timeout: Duration,
    /// The token claim naming the user a socket is authenticated as, for
    /// messages addressed to a user ([`crate::Server::users`]). Default `sub`.
    pub user_claim: String,
    /// Interval between this node's announcements to the cluster; a node
    /// missing three is considered gone. Default 5 s.
    pub announce_interval: Duration,
    /// Options of the channels without a namespace (see
    /// [`crate::namespace`]). Default: no history, no presence, anyone may
    /// subscribe and publish.
    pub channels: ChannelOptions,
    /// Namespaces by name: a channel `NAME:rest` takes the options of
    /// namespace `NAME`.
    pub namespaces: BTreeMap<String, ChannelOptions>,
    /// What a channel `NAME:rest` is when no namespace `NAME` exists.
    /// Default [`UnknownNamespaces::Plain`].
    pub unknown_namespaces: UnknownNamespaces,
    /// How long a presence entry lives without being refreshed. Each node
    /// refreshes its own entries every third of it, so the entries of a
    /// node that died vanish within this bound. Default 30 s.
    pub presence_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: defaults::PATH.to_owned(),
            ping_interval: defaults::PING_INTERVAL,
            ping_timeout: defaults::PING_TIMEOUT,
            handshake_timeout: defaults::HANDSHAKE_TIMEOUT,
            ack_timeout: defaults::ACK_TIMEOUT,
            max_payload: defaults::MAX_PAYLOAD,
            outbound_queue: 4096,
            malformed_burst: 16,
            malformed_refill: Duration::from_secs(1),
            max_channel_name: 1024,
            socket_channel_limit: 0,
            auth_default_expiry: Duration::from_secs(defaults::AUTH_DEFAULT_EXPIRY_SECS),
            allow_client_publish: true,
            write_timeout: Duration::from_secs(10),
            user_claim: "sub".to_owned(),
            announce_interval: Duration::from_secs(5),
            channels: ChannelOptions::default(),
            namespaces: BTreeMap::new(),
            unknown_namespaces: UnknownNamespaces::Plain,
            presence_ttl: Duration::from_secs(30),
        }
    }
}
