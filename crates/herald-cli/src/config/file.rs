//! The schema of the config file: its top-level keys and the tables of its
//! sections, and how they map onto [`herald::Config`].
//!
//! Every key is optional (`None`: not set here, the default or a lower
//! layer applies). A section with a table of its own keeps its struct in a
//! module of its own (`channels`) and adds one field here; everything else
//! (environment names, `print-config`, the docs test) follows from the
//! struct. Checks of single values live in the `de` adapters, so that a bad
//! value is reported at its key and line. Sections are plain structs (or
//! maps of them), never `#[serde(flatten)]`, which would hide their keys
//! from [`super::keys`] and the line of a bad value from `check-config`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::auth::AuthKeySection;
use super::channels::{ChannelsSection, NamespaceSection, set_some};
use super::de::{self, NamespaceName};
use super::hooks::HooksSection;

/// The contents of a config file (and of each layer over it: environment
/// variables, flags).
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// WebSocket path (starts with `/`).
    #[serde(
        default,
        with = "de::endpoint_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub path: Option<String>,
    /// HS256 secret.
    #[serde(default, with = "de::secret", skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    /// Audiences a token's `aud` must name (a string or an array).
    #[serde(
        default,
        with = "de::one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_audience: Option<Vec<String>>,
    /// Issuers a token's `iss` must be (a string or an array).
    #[serde(
        default,
        with = "de::one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_issuer: Option<Vec<String>>,
    /// Longest accepted auth token, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_auth_token: Option<usize>,
    /// `[[auth_keys]]`: the keys tokens are signed and verified with (the
    /// first that can sign issues the server's tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_keys: Option<Vec<AuthKeySection>>,
    /// Clock leeway on `exp` and `nbf`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_leeway: Option<Duration>,
    /// URL of a JWKS whose keys verify tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_jwks_url: Option<String>,
    /// Longest time between two JWKS refreshes.
    #[serde(
        default,
        with = "de::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_jwks_refresh: Option<Duration>,
    /// Shortest time between two JWKS fetches.
    #[serde(
        default,
        with = "de::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_jwks_min_refresh: Option<Duration>,
    /// Timeout of one JWKS fetch.
    #[serde(
        default,
        with = "de::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_jwks_timeout: Option<Duration>,
    /// Server ping interval.
    #[serde(
        default,
        with = "de::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ping_interval: Option<Duration>,
    /// Ping timeout.
    #[serde(
        default,
        with = "de::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ping_timeout: Option<Duration>,
    /// Handshake timeout.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub handshake_timeout: Option<Duration>,
    /// Default ack timeout of server-side invokes.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub ack_timeout: Option<Duration>,
    /// Largest accepted message, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<usize>,
    /// Outbound queue capacity per socket, frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_queue: Option<usize>,
    /// Outbound queue capacity per socket, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_queue_bytes: Option<usize>,
    /// Inbound messages per second per socket (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_rate: Option<u32>,
    /// Inbound messages in a burst above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_burst: Option<u32>,
    /// Invokes and transmits in flight per socket (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Sockets per node (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Sockets per peer address (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<usize>,
    /// Sockets per user and node (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_user: Option<usize>,
    /// Upgrades per second (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_rate: Option<u32>,
    /// Upgrades in a burst above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake_burst: Option<u32>,
    /// Origins browsers may connect from (empty: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    /// How long running procedures may take on shutdown.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub drain_timeout: Option<Duration>,
    /// Most channels per socket (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_channel_limit: Option<usize>,
    /// Longest channel name, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_channel_name: Option<usize>,
    /// Whether clients may publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_client_publish: Option<bool>,
    /// Default lifetime of signed tokens.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub auth_default_expiry: Option<Duration>,
    /// Broker URL (see `--broker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<String>,
    /// Interval between cluster announcements.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub announce_interval: Option<Duration>,
    /// Token claim naming the user of a socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<String>,
    /// Token claim listing the channels the server subscribes the socket
    /// to (empty: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels_claim: Option<String>,
    /// Node id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// How long presence entries live without a refresh.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub presence_ttl: Option<Duration>,
    /// PEM certificate chain: serve `wss://` (with `tls_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Worker processes sharing the listen port (see `--workers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Base address of each worker's own status listener (see
    /// `--worker-status-listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_status_listen: Option<SocketAddr>,
    /// What an invoke of a procedure nothing serves gets: `error`
    /// (default) or `ignore`.
    #[serde(
        default,
        with = "de::unknown_procedures",
        skip_serializing_if = "Option::is_none"
    )]
    pub unknown_procedures: Option<herald::UnknownProcedures>,
    /// Log format on standard error: `text` or `json`.
    #[serde(
        default,
        with = "de::log_format",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_format: Option<crate::LogFormat>,
    /// Development mode (the demo page, a token route): never in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<bool>,
    /// `[hooks]`: the backend hooks (connect, refresh, RPC) and their
    /// timeout, failure outcome, secret and bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<HooksSection>,
    /// The HTTP server API's key (see `api`); without one the API is off.
    #[serde(default, with = "de::secret", skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Largest HTTP API request body, bytes (needs `api_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_max_body: Option<usize>,
    /// `[channels]`: options of channels without a namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<ChannelsSection>,
    /// `[namespaces.NAME]`: options of the channels `NAME:...`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<NamespaceName, NamespaceSection>,
}

/// The keys that map one to one onto a field of [`herald::Config`] of the
/// same name, for both directions of the mapping.
macro_rules! server_fields {
    ($apply:ident) => {
        $apply!(
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
            channels_claim,
            presence_ttl,
            unknown_procedures
        )
    };
}

impl FileConfig {
    /// Applies the keys that are set to `config`.
    pub fn apply(&self, config: &mut herald::Config) {
        macro_rules! set {
            ($($field:ident),*) => { set_some!(self => config; $($field),*) };
        }
        server_fields!(set);
        if let Some(hooks) = &self.hooks {
            hooks.apply(&mut config.hooks);
        }
        if let Some(channels) = &self.channels {
            config.channels = channels.options();
            if let Some(u) = channels.unknown_namespaces {
                config.unknown_namespaces = u;
            }
        }
        for (name, ns) in &self.namespaces {
            config.namespaces.insert(name.0.clone(), ns.options());
        }
    }

    /// Sets every key that maps onto [`herald::Config`] to its value in
    /// `config` (the reverse of [`FileConfig::apply`], for `print-config`).
    pub fn set_from(&mut self, config: &herald::Config) {
        macro_rules! get {
            ($($field:ident),*) => { $( self.$field = Some(config.$field.clone()); )* };
        }
        server_fields!(get);
        self.hooks = Some(HooksSection::from_config(&config.hooks));
        let channels = self.channels.get_or_insert_with(Default::default);
        channels.set_options(&config.channels);
        channels.unknown_namespaces = Some(config.unknown_namespaces);
        for (name, options) in &config.namespaces {
            self.namespaces
                .entry(NamespaceName(name.clone()))
                .or_default()
                .set_options(options);
        }
    }
}
