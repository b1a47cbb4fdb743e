//! The `herald serve --config FILE` format (TOML).
//!
//! Every key is optional; an unknown key is an error that names it, so a
//! typo never silently falls back to a default. The format grows with later
//! features (channel rules, brokers, the HTTP API); see
//! docs/configuration.md for the reference.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

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
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses config text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
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
            socket_channel_limit,
            max_channel_name,
            allow_client_publish,
            auth_default_expiry,
            announce_interval,
            user_claim
        );
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
            "#,
        )
        .unwrap();
        let mut config = herald::Config::default();
        c.apply(&mut config);
        assert_eq!(config.ping_timeout, Duration::from_millis(2500));
        assert_eq!(config.path, "/ws/");
        assert!(!config.allow_client_publish);
        assert_eq!(c.listen.unwrap().port(), 9000);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = FileConfig::parse("ping_intervall = \"1s\"").unwrap_err();
        assert!(format!("{err:#}").contains("ping_intervall"), "{err:#}");
    }
}
