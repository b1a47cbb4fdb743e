//! The `herald serve --config FILE` format (TOML).
//!
//! Every key is optional; an unknown key is an error that names it, so a
//! typo never silently falls back to a default. The format grows with later
//! features (channel rules, brokers, the HTTP API); see
//! docs/configuration.md for the reference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use herald::{ChannelOptions, Rule, UnknownNamespaces};
use serde::{Deserialize, Deserializer};

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
    /// `[channels]`: options of channels without a namespace.
    pub channels: Option<ChannelsSection>,
    /// `[namespaces.NAME]`: options of the channels `NAME:...`.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceSection>,
}

/// The options a namespace table may set (every key optional; see
/// [`herald::ChannelOptions`] for the defaults).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSection {
    /// Publications kept per channel (0: no history).
    pub history_size: Option<usize>,
    /// How long a channel's history lives after its last publication.
    #[serde(default, with = "humantime_serde")]
    pub history_ttl: Option<Duration>,
    /// Whether clients may recover on subscribe (needs history).
    pub recover: Option<bool>,
    /// Whether the namespace keeps presence.
    pub presence: Option<bool>,
    /// Whether subscribers receive join/leave events.
    pub join_leave: Option<bool>,
    /// Who may subscribe: `any`, `authenticated` or `none`.
    #[serde(default, deserialize_with = "rule")]
    pub subscribe: Option<Rule>,
    /// Who may publish: `any`, `authenticated` or `none`.
    #[serde(default, deserialize_with = "rule")]
    pub publish: Option<Rule>,
}

/// `[channels]`: the options of channels without a namespace, and what a
/// channel in an unknown namespace is.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsSection {
    /// The channel options.
    #[serde(flatten)]
    pub options: NamespaceSection,
    /// `plain` (default) or `refuse`.
    #[serde(default, deserialize_with = "unknown_namespaces")]
    pub unknown_namespaces: Option<UnknownNamespaces>,
}

/// A string or an array of strings, as a list.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}

fn rule<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rule>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

fn unknown_namespaces<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<UnknownNamespaces>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "plain" => Ok(Some(UnknownNamespaces::Plain)),
        "refuse" => Ok(Some(UnknownNamespaces::Refuse)),
        other => Err(serde::de::Error::custom(format!(
            "unknown value {other:?}: expected \"plain\" or \"refuse\""
        ))),
    }
}

impl NamespaceSection {
    /// The options with the keys that are set applied over the defaults.
    pub fn options(&self) -> ChannelOptions {
        let mut o = ChannelOptions::default();
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { o.$field = v; } )* };
        }
        set!(
            history_size,
            history_ttl,
            recover,
            presence,
            join_leave,
            subscribe,
            publish
        );
        o
    }
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses config text, and checks the namespaces (a bad combination,
    /// such as `recover` without history, is named with its table).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: Self = toml::from_str(text)?;
        let mut config = herald::Config::default();
        file.apply(&mut config);
        config
            .channels
            .validate("[channels]")
            .map_err(anyhow::Error::msg)?;
        for (name, options) in &config.namespaces {
            if !herald::namespace::valid_namespace_name(name) {
                anyhow::bail!(
                    "[namespaces.{name}]: a namespace name is ASCII letters, digits, '_' and '-'"
                );
            }
            options
                .validate(&format!("[namespaces.{name}]"))
                .map_err(anyhow::Error::msg)?;
        }
        Ok(file)
    }

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
            presence_ttl
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key() {
        let c = FileConfig::parse(
            r#"
            listen = "127.0.0.1:9000"
            path = "/ws/"
            auth_secret = "s"
            ping_interval = "1s"
            ping_timeout = "2500ms"
            max_payload = 1024
            allow_client_publish = false
            outbound_queue_bytes = 65536
            inbound_rate = 50
            inbound_burst = 60
            max_in_flight = 8
            max_connections = 10
            max_connections_per_ip = 3
            max_connections_per_user = 2
            handshake_rate = 100
            handshake_burst = 200
            allowed_origins = ["https://app.example.com", "https://*.example.org"]
            drain_timeout = "3s"
            "#,
        )
        .unwrap();
        let mut config = herald::Config::default();
        c.apply(&mut config);
        assert_eq!(config.ping_timeout, Duration::from_millis(2500));
        assert_eq!(config.path, "/ws/");
        assert!(!config.allow_client_publish);
        assert_eq!(c.listen.unwrap().port(), 9000);
        assert_eq!(config.outbound_queue_bytes, 65536);
        assert_eq!((config.inbound_rate, config.inbound_burst), (50, 60));
        assert_eq!(config.max_in_flight, 8);
        assert_eq!(
            (
                config.max_connections,
                config.max_connections_per_ip,
                config.max_connections_per_user
            ),
            (10, 3, 2)
        );
        assert_eq!((config.handshake_rate, config.handshake_burst), (100, 200));
        assert_eq!(config.allowed_origins.len(), 2);
        assert_eq!(config.drain_timeout, Duration::from_secs(3));
    }

    #[test]
    fn namespaces_and_channels() {
        let c = FileConfig::parse(
            r#"
            presence_ttl = "20s"
            [channels]
            subscribe = "any"
            publish = "authenticated"
            unknown_namespaces = "refuse"

            [namespaces.chat]
            history_size = 1000
            history_ttl = "10m"
            recover = true
            presence = true
            join_leave = true
            subscribe = "authenticated"
            publish = "none"
            "#,
        )
        .unwrap();
        let mut config = herald::Config::default();
        c.apply(&mut config);
        assert_eq!(config.channels.publish, Rule::Authenticated);
        assert_eq!(config.unknown_namespaces, UnknownNamespaces::Refuse);
        assert_eq!(config.presence_ttl, Duration::from_secs(20));
        let chat = &config.namespaces["chat"];
        assert_eq!(chat.history_size, 1000);
        assert_eq!(chat.history_ttl, Duration::from_secs(600));
        assert!(chat.recover && chat.presence && chat.join_leave);
        assert_eq!(
            (chat.subscribe, chat.publish),
            (Rule::Authenticated, Rule::None)
        );
    }

    #[test]
    fn bad_namespace_keys_and_values_are_named() {
        for (text, needle) in [
            ("[namespaces.chat]\nhistory_sise = 3", "history_sise"),
            ("[namespaces.chat]\nsubscribe = \"everyone\"", "everyone"),
            ("[namespaces.chat]\nhistory_size = -1", "history_size"),
            (
                "[namespaces.chat]\nrecover = true",
                "[namespaces.chat]: recover needs history",
            ),
            (
                "[namespaces.chat]\nhistory_size = 5\nhistory_ttl = \"soon\"",
                "history_ttl",
            ),
            ("[channels]\nunknown_namespaces = \"maybe\"", "maybe"),
            ("[channels]\nrecovr = true", "recovr"),
            ("[namespaces.\"a b\"]\npresence = true", "a b"),
        ] {
            let err = format!("{:#}", FileConfig::parse(text).unwrap_err());
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn auth_audience_issuer_and_token_bound() {
        let c = FileConfig::parse(
            r#"
            auth_audience = "app"
            auth_issuer = ["https://a.example", "https://b.example"]
            max_auth_token = 4096
            "#,
        )
        .unwrap();
        assert_eq!(c.auth_audience, Some(vec!["app".to_owned()]));
        assert_eq!(c.auth_issuer.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.max_auth_token, Some(4096));
        let err = FileConfig::parse("auth_audience = 5").unwrap_err();
        assert!(format!("{err:#}").contains("auth_audience"), "{err:#}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = FileConfig::parse("ping_intervall = \"1s\"").unwrap_err();
        assert!(format!("{err:#}").contains("ping_intervall"), "{err:#}");
    }
}
