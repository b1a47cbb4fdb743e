//! The configuration of `herald serve`: a TOML file (`--config`), the
//! `HERALD_` environment variables and the flags, in that order of
//! precedence, over the defaults.
//!
//! One module per concern: `file`, `channels` and `auth` (`[[auth_keys]]`)
//! are the schema (the structs every other part derives from; `auth` also
//! makes the keys and JWKS settings into the server's auth engine), `de` the value adapters and
//! their checks, `keys` the key tree read from the schema, `check` reads a
//! file with the line of every error, `env` the variables, `layer` a set of
//! keys with their origins and the merge, `resolve` the precedence and the
//! checks across keys, `print` `print-config` and its redaction. A new
//! section adds its struct in a module of its own and one field to
//! [`FileConfig`]; its keys then have environment names, are checked,
//! printed and must be documented (the docs test says which). See
//! docs/configuration.md for the reference.

mod api;
pub mod auth;
mod channels;
mod check;
pub mod de;
pub mod env;
mod error;
mod file;
mod hooks;
pub mod keys;
mod layer;
pub mod print;
mod resolve;

use std::path::Path;

pub use channels::{ChannelsSection, NamespaceSection};
pub use error::{ConfigError, ConfigErrors, Origin};
pub use file::FileConfig;
pub use hooks::{HookSpec, HooksSection};
pub use layer::Layer;
pub use resolve::{
    DEFAULT_BROKER, DEFAULT_LISTEN, Resolved, ServeSettings, load, load_layers, read, resolve,
};

/// The commented starter file `herald genconfig` writes.
pub const STARTER: &str = include_str!("starter.toml");

impl FileConfig {
    /// Reads and checks a config file alone (no environment, no flags).
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let (path, text) = read(path).map_err(|e| ConfigErrors(vec![e]))?;
        Ok(load_layers(Some((&path, &text)), [], Layer::default())?.file)
    }

    /// Parses and checks config text alone: every unknown key, wrong type
    /// and bad value, and the checks across keys (such as `recover` without
    /// history), each named with its key and line.
    pub fn parse(text: &str) -> Result<Self, ConfigErrors> {
        Ok(load_layers(Some((Path::new("<config>"), text)), [], Layer::default())?.file)
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
    fn the_starter_file_is_valid_and_mentions_every_key() {
        FileConfig::parse(STARTER).unwrap();
        for key in keys::schema().leaves() {
            let name = key.rsplit('.').next().unwrap();
            assert!(
                STARTER.contains(&format!("{name} = ")),
                "the starter file (crates/herald-cli/src/config/starter.toml) lacks `{key}`: add a commented line `# {name} = DEFAULT` to its section"
            );
        }
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
