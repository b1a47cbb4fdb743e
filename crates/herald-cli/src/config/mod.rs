//! The `herald serve --config FILE` format (TOML): loading a file and
//! checking it as a whole.
//!
//! Every key is optional; an unknown key is an error that names it, so a
//! typo never silently falls back to a default. One module per concern:
//! `file` is the top-level schema, `channels` the channel and namespace
//! tables, `de` the shared value deserializers, `resolve` merges the file
//! with the command line into the settings of a run. See
//! docs/configuration.md for the reference.

mod channels;
mod de;
mod file;
mod resolve;

use std::path::Path;

use anyhow::Context as _;

pub use channels::{ChannelsSection, NamespaceSection};
pub use file::FileConfig;
pub use resolve::{ServeSettings, resolve};

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::{Rule, UnknownNamespaces};
    use std::time::Duration;

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
    fn unknown_procedures_policy() {
        let mut config = herald::Config::default();
        FileConfig::parse("unknown_procedures = \"ignore\"")
            .unwrap()
            .apply(&mut config);
        assert_eq!(config.unknown_procedures, herald::UnknownProcedures::Ignore);
        let err = FileConfig::parse("unknown_procedures = \"drop\"").unwrap_err();
        assert!(format!("{err:#}").contains("drop"), "{err:#}");
    }

    #[test]
    fn workers_and_their_status_listener() {
        let c =
            FileConfig::parse("workers = 4\nworker_status_listen = \"127.0.0.1:9100\"").unwrap();
        assert_eq!(c.workers, Some(4));
        assert_eq!(c.worker_status_listen.map(|a| a.port()), Some(9100));
        let err = FileConfig::parse("workers = -1").unwrap_err();
        assert!(format!("{err:#}").contains("workers"), "{err:#}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = FileConfig::parse("ping_intervall = \"1s\"").unwrap_err();
        assert!(format!("{err:#}").contains("ping_intervall"), "{err:#}");
    }
}
