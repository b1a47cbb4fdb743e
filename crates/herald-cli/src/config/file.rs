//! The schema of the top level of a config file, and how its keys map
//! onto [`herald::Config`]. Sections with their own tables live in their own
//! modules (`channels` for `[channels]` and `[namespaces.NAME]`); a new
//! section adds a field here and its struct in a module of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::channels::{ChannelsSection, NamespaceSection};
use super::de::{one_or_many, unknown_procedures};

/// The contents of a config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<SocketAddr>,
    /// WebSocket path.
    pub path: Option<String>,
    /// HS256 secret.
    pub auth_secret: Option<String>,
    /// Audiences a token's `aud` must name (a string or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    pub auth_audience: Option<Vec<String>>,
    /// Issuers a token's `iss` must be (a string or an array).
    #[serde(default, deserialize_with = "one_or_many")]
    pub auth_issuer: Option<Vec<String>>,
    /// Longest accepted auth token, bytes.
    pub max_auth_token: Option<usize>,
    /// Server ping interval.
    #[serde(default, with = "humantime_serde")]
    pub ping_interval: Option<Duration>,
    /// Ping timeout.
    #[serde(default, with = "humantime_serde")]
    pub ping_timeout: Option<Duration>,
    /// Handshake timeout.
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    /// Default ack timeout of server-side invokes.
    #[serde(default, with = "humantime_serde")]
    pub ack_timeout: Option<Duration>,
    /// Largest accepted message, bytes.
    pub max_payload: Option<usize>,
    /// Outbound queue capacity per socket, frames.
    pub outbound_queue: Option<usize>,
    /// Outbound queue capacity per socket, bytes.
    pub outbound_queue_bytes: Option<usize>,
    /// Inbound messages per second per socket (0 = unlimited).
    pub inbound_rate: Option<u32>,
    /// Inbound messages in a burst above the rate.
    pub inbound_burst: Option<u32>,
    /// Invokes and transmits in flight per socket (0 = unlimited).
    pub max_in_flight: Option<usize>,
    /// Sockets per node (0 = unlimited).
    pub max_connections: Option<usize>,
    /// Sockets per peer address (0 = unlimited).
    pub max_connections_per_ip: Option<usize>,
    /// Sockets per user and node (0 = unlimited).
    pub max_connections_per_user: Option<usize>,
    /// Upgrades per second (0 = unlimited).
    pub handshake_rate: Option<u32>,
    /// Upgrades in a burst above the rate.
    pub handshake_burst: Option<u32>,
    /// Origins browsers may connect from (empty: any).
    pub allowed_origins: Option<Vec<String>>,
    /// How long running procedures may take on shutdown.
    #[serde(default, with = "humantime_serde")]
    pub drain_timeout: Option<Duration>,
    /// Most channels per socket (0 = unlimited).
    pub socket_channel_limit: Option<usize>,
    /// Longest channel name, bytes.
    pub max_channel_name: Option<usize>,
    /// Whether clients may publish.
    pub allow_client_publish: Option<bool>,
    /// Default lifetime of signed tokens.
    #[serde(default, with = "humantime_serde")]
    pub auth_default_expiry: Option<Duration>,
    /// Broker URL (see `--broker`).
    pub broker: Option<String>,
    /// Interval between cluster announcements.
    #[serde(default, with = "humantime_serde")]
    pub announce_interval: Option<Duration>,
    /// Token claim naming the user of a socket.
    pub user_claim: Option<String>,
    /// Node id.
    pub node_id: Option<String>,
    /// How long presence entries live without a refresh.
    #[serde(default, with = "humantime_serde")]
    pub presence_ttl: Option<Duration>,
    /// PEM certificate chain: serve `wss://` (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Worker processes sharing the listen port (see `--workers`).
    pub workers: Option<usize>,
    /// Base address of each worker's own status listener (see
    /// `--worker-status-listen`).
    pub worker_status_listen: Option<SocketAddr>,
    /// What an invoke of a procedure nothing serves gets: `error`
    /// (default) or `ignore`.
    #[serde(default, deserialize_with = "unknown_procedures")]
    pub unknown_procedures: Option<herald::UnknownProcedures>,
    /// `[channels]`: options of channels without a namespace.
    pub channels: Option<ChannelsSection>,
    /// `[namespaces.NAME]`: options of the channels `NAME:...`.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceSection>,
}

impl FileConfig {
    /// Applies the keys that are set to `config`.
    pub fn apply(&self, config: &mut herald::Config) {
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { config.$field = v; } )* };
        }
        set!(
            path,
            ping_interval,
            ping_timeout,
            handshake_timeout,
            ack_timeout,
            max_payload,
            outbound_queue,
            outbound_queue_bytes,
            inbound_rate,
            inbound_burst,
            max_in_flight,
            max_connections,
            max_connections_per_ip,
            max_connections_per_user,
            handshake_rate,
            handshake_burst,
            allowed_origins,
            drain_timeout,
            socket_channel_limit,
            max_channel_name,
            allow_client_publish,
            auth_default_expiry,
            announce_interval,
            user_claim,
            presence_ttl,
            unknown_procedures
        );
        if let Some(channels) = &self.channels {
            config.channels = channels.options.options();
            if let Some(u) = channels.unknown_namespaces {
                config.unknown_namespaces = u;
            }
        }
        for (name, ns) in &self.namespaces {
            config.namespaces.insert(name.clone(), ns.options());
        }
    }
}
