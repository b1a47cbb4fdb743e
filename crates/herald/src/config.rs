//! Server settings: timings, limits, admission control and the
//! slow-consumer policy.
//!
//! Timing defaults match socketcluster-server 20 where it has the same
//! setting, so an application moving from it sees the same behaviour; the
//! limits it lacks have safe defaults of their own (docs/operations.md
//! lists every one).

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
    /// Most frames of deliveries (publications, server transmits) each
    /// socket's outbound queue holds. A delivery that would pass this bound
    /// or [`Config::outbound_queue_bytes`] makes the socket a slow consumer:
    /// it is closed with [`herald_protocol::close::SLOW_CONSUMER`] (4100)
    /// and its queued frames are dropped, so that one slow reader never
    /// delays or grows memory for everyone else. The client reconnects and
    /// resubscribes (and recovers, on channels with history). Replies to the
    /// socket's own requests never count as a slow consumer: while more than
    /// the byte bound of them waits, the socket is not read. Default 4096.
    pub outbound_queue: usize,
    /// Most bytes each socket's outbound queue holds (deliveries queued or
    /// being written); see [`Config::outbound_queue`]. A slow reader costs
    /// at most this much. One delivery larger than the bound still goes to
    /// a socket with nothing else queued. Default 4 MiB.
    pub outbound_queue_bytes: usize,
    /// Messages per second a socket is read at (pongs excluded). Past its
    /// burst a faster socket is throttled: Herald reads its next message
    /// only when the rate allows (TCP pushes back on the peer), and a socket
    /// that stays over the rate for 10 s is closed with 4101. 0 =
    /// unlimited. Default 5,000.
    pub inbound_rate: u32,
    /// Messages a socket may send in a burst above `inbound_rate`.
    /// Default 10,000.
    pub inbound_burst: u32,
    /// Most invokes and transmits of one socket whose handlers run at once.
    /// Beyond it an invoke gets an `InFlightLimitError` and a transmit is
    /// dropped (both counted in `herald_limit_violations_total`). 0 =
    /// unlimited. Default 64.
    pub max_in_flight: usize,
    /// Most sockets this node holds; beyond it upgrades are refused with
    /// 503 and `Retry-After` (browsers: accepted, closed 1013). 0 =
    /// unlimited. Default 100,000.
    pub max_connections: usize,
    /// Most sockets from one peer address (429 and `Retry-After` beyond).
    /// 0 = unlimited. Default 0: behind a load balancer or a NAT every peer
    /// may share an address.
    pub max_connections_per_ip: usize,
    /// Most sockets one user (the [`Config::user_claim`] of its token) holds
    /// on this node; a socket authenticating beyond it is closed with 4102.
    /// 0 = unlimited. Default 100.
    pub max_connections_per_user: usize,
    /// Upgrades per second this node accepts (a token bucket); beyond it
    /// they are refused with 503 and a spread `Retry-After`. 0 = unlimited.
    /// Default 2,000.
    pub handshake_rate: u32,
    /// Upgrades accepted in a burst above `handshake_rate`. Default 2,000.
    pub handshake_burst: u32,
    /// Origins a browser may connect from (`https://app.example.com`,
    /// `https://*.example.com`, `*`); an upgrade with another `Origin` is
    /// refused with 403. Requests without `Origin` (not from a browser) are
    /// always allowed. Empty = any origin. Default empty.
    pub allowed_origins: Vec<String>,
    /// On shutdown, how long running procedures may take to reply before
    /// the sockets are closed with 1012. Default 10 s.
    pub drain_timeout: Duration,
    /// How many malformed frames a socket may send in a burst before it is
    /// closed with 1003 (invalid data). Malformed frames are otherwise ignored
    /// as socketcluster-server does. The allowance refills by one every
    /// [`Config::malformed_refill`]. Default 16.
    pub malformed_burst: u32,
    /// Refill period of the malformed-frame allowance. Default 1 s.
    pub malformed_refill: Duration,
    /// Longest accepted channel name in bytes; a longer one, an empty one or
    /// one with control characters (tab, CR and LF allowed) gets an `InvalidActionError`. Default
    /// 1024.
    pub max_channel_name: usize,
    /// Most channels one socket may be subscribed to (0 = unlimited); one
    /// more gets an `InvalidActionError`. Default 1,000 (socketcluster-server
    /// has no limit).
    pub socket_channel_limit: usize,
    /// Lifetime of tokens signed by [`crate::Socket::set_auth_token`] when the
    /// claims carry no `exp`. Default 24 h.
    pub auth_default_expiry: Duration,
    /// Whether clients may publish (`#publish`). Default true.
    pub allow_client_publish: bool,
    /// How long a write to a socket may block before the socket is dropped
    /// as a slow consumer (counted as 4100; no close frame can follow a
    /// frame cut halfway). Default 10 s.
    pub write_timeout: Duration,
    /// The token claim naming the user a socket is authenticated as, for
    /// messages addressed to a user ([`crate::Server::users`]). Default `sub`.
    pub user_claim: String,
    /// The token claim listing channels the server subscribes the socket
    /// to when it authenticates (server-side subscriptions, e.g. a
    /// personal channel per user); see docs/protocol.md, "Claims". Empty:
    /// off. Default `channels`.
    pub channels_claim: String,
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
    /// What an invoke of a procedure that nothing serves gets. Default
    /// [`UnknownProcedures::Error`].
    pub unknown_procedures: UnknownProcedures,
}

/// What an invoke of a procedure that no handler serves gets. Either way it
/// is counted in `herald_unknown_procedures_total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownProcedures {
    /// A `NoSuchProcedureError` reply naming the procedure.
    #[default]
    Error,
    /// No reply at all, as socketcluster-server does: the client's call
    /// times out. For applications written against that behaviour.
    Ignore,
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
            outbound_queue_bytes: 4 * 1024 * 1024,
            inbound_rate: 5000,
            inbound_burst: 10_000,
            max_in_flight: 64,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            max_connections_per_user: 100,
            handshake_rate: 2000,
            handshake_burst: 2000,
            allowed_origins: Vec::new(),
            drain_timeout: Duration::from_secs(10),
            malformed_burst: 16,
            malformed_refill: Duration::from_secs(1),
            max_channel_name: 1024,
            socket_channel_limit: 1000,
            auth_default_expiry: Duration::from_secs(defaults::AUTH_DEFAULT_EXPIRY_SECS),
            allow_client_publish: true,
            write_timeout: Duration::from_secs(10),
            user_claim: "sub".to_owned(),
            channels_claim: "channels".to_owned(),
            announce_interval: Duration::from_secs(5),
            channels: ChannelOptions::default(),
            namespaces: BTreeMap::new(),
            unknown_namespaces: UnknownNamespaces::Plain,
            presence_ttl: Duration::from_secs(30),
            unknown_procedures: UnknownProcedures::Error,
        }
    }
}
