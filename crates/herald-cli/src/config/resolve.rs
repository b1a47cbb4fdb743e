//! Precedence: the defaults, then the config file (`--config`), then the
//! `HERALD_` environment variables, then the flags of `herald serve`,
//! merged into the [`ServeSettings`] of one run.
//!
//! Each layer is checked value by value against the one schema (so every
//! bad value is reported with its line, variable or flag), then the layers
//! merge, and the checks that need several keys (a namespace's `recover`
//! needs its `history_size`, `tls_cert` needs `tls_key`) run on the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;

use super::env::{EnvLayer, env_layer};
use super::error::{ConfigError, ConfigErrors, Origin};
use super::layer::Layer;
use super::{FileConfig, check};
use crate::{LogFormat, ServeArgs};

/// The resolved settings of a `serve` run.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Server settings.
    pub config: herald::Config,
    /// HS256 secret, if any.
    pub auth_secret: Option<String>,
    /// Broker URL.
    pub broker: String,
    /// Node id (random when not set).
    pub node_id: Option<String>,
    /// Audiences a token must name (empty: not checked).
    pub auth_audience: Vec<String>,
    /// Issuers a token must come from (empty: not checked).
    pub auth_issuer: Vec<String>,
    /// Longest accepted auth token, bytes (default 8 KiB).
    pub max_auth_token: Option<usize>,
    /// Clock leeway on `exp` and `nbf` (default none).
    pub auth_leeway: std::time::Duration,
    /// The keys and JWKS (`[[auth_keys]]`, `auth_jwks_url`).
    pub auth: super::auth::AuthSettings,
    /// Certificate chain and key files, when serving TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Log format on standard error.
    pub log_format: LogFormat,
    /// Development mode (`--dev`).
    pub dev: bool,
    /// Worker processes (1: this process serves; more: it supervises them).
    pub workers: usize,
    /// Base address of each worker's own status listener.
    pub worker_status_listen: Option<SocketAddr>,
    /// The HTTP server API, when it has a key.
    pub api: Option<herald::api::ApiOptions>,
}

/// A configuration read from every layer.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The merged keys, as one file would hold them.
    pub file: FileConfig,
    /// The merged layers (keys and where each came from).
    pub layer: Layer,
    /// The settings of a run.
    pub settings: ServeSettings,
    /// What was ignored (unknown `HERALD_` variables that look like no key).
    pub warnings: Vec<String>,
}

/// The default listen address.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8000);

/// The default broker.
pub const DEFAULT_BROKER: &str = "memory";

/// Merges flags, environment, config file and defaults (the process
/// environment).
pub fn resolve(args: &ServeArgs) -> anyhow::Result<ServeSettings> {
    Ok(load(args, std::env::vars())?.settings)
}

/// Merges flags, the variables of `env`, the config file and defaults.
pub fn load(
    args: &ServeArgs,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Resolved, ConfigErrors> {
    let file = match &args.config {
        Some(path) => Some(read(path).map_err(|e| ConfigErrors(vec![e]))?),
        None => None,
    };
    load_layers(
        file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
        env,
        flags_layer(args),
    )
}

/// Reads a config file.
pub fn read(path: &Path) -> Result<(PathBuf, String), ConfigError> {
    std::fs::read_to_string(path)
        .map(|text| (path.to_owned(), text))
        .map_err(|e| ConfigError {
            origin: None,
            key: String::new(),
            message: format!("cannot read config file {}: {e}", path.display()),
        })
}

/// Merges the layers: `file` (its path and text), `env`, then `flags`.
pub fn load_layers(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: Layer,
) -> Result<Resolved, ConfigErrors> {
    let mut errors = Vec::new();
    let mut merged = Layer::default();
    if let Some((path, text)) = file {
        let (layer, file_errors) = check::file_layer(path, text);
        errors.extend(file_errors);
        merged.merge(layer);
    }
    let names: Vec<String> = merged
        .table
        .get("namespaces")
        .and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default();
    let EnvLayer {
        layer: env,
        errors: env_errors,
        warnings,
    } = env_layer(env, &names);
    errors.extend(env_errors);
    merged.merge(env);
    errors.extend(flags.check());
    merged.merge(flags);
    if !errors.is_empty() {
        // The checks across keys still run on the keys that are good, so
        // that one pass reports every error.
        let mut good = merged.table.clone();
        for e in &errors {
            remove(&mut good, &e.key);
        }
        if let Ok(file) = FileConfig::deserialize(toml::Value::Table(good))
            && let Err(more) = settings(&file, &merged)
        {
            errors.extend(more);
        }
        return Err(ConfigErrors(errors));
    }
    let file = FileConfig::deserialize(toml::Value::Table(merged.table.clone())).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            origin: None,
            key: String::new(),
            message: e.message().to_owned(),
        }])
    })?;
    let settings = settings(&file, &merged).map_err(ConfigErrors)?;
    Ok(Resolved {
        file,
        layer: merged,
        settings,
        warnings,
    })
}

/// Removes the key at a dotted path (nothing for an empty path).
fn remove(table: &mut toml::Table, key: &str) {
    let Some((parents, last)) = key.rsplit_once('.').map_or(Some(("", key)), Some) else {
        return;
    };
    let mut table = table;
    for part in parents.split('.').filter(|p| !p.is_empty()) {
        match table.get_mut(part).and_then(toml::Value::as_table_mut) {
            Some(t) => table = t,
            None => return,
        }
    }
    table.remove(last);
}

/// The flags that are set, as a layer. Each flag is named after its key
/// (`--ping-interval` sets `ping_interval`).
fn flags_layer(args: &ServeArgs) -> Layer {
    let flags = FileConfig {
        listen: args.listen,
        path: args.path.clone(),
        auth_secret: args.auth_secret.clone(),
        auth_jwks_url: args.auth_jwks_url.clone(),
        ping_interval: args.ping_interval,
        ping_timeout: args.ping_timeout,
        max_payload: args.max_payload,
        broker: args.broker.clone(),
        node_id: args.node_id.clone(),
        log_format: args.log_format,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        dev: args.dev.then_some(true),
        workers: args.workers,
        worker_status_listen: args.worker_status_listen,
        api_key: args.api_key.clone(),
        ..FileConfig::default()
    };
    let mut layer = Layer::default();
    let table = toml::Table::try_from(&flags).expect("flag values serialize");
    for (key, value) in table {
        let flag = format!("--{}", key.replace('_', "-"));
        layer.insert(&[key], value, Origin::Flag(flag));
    }
    layer
}

/// The settings of a run, and the checks that involve several keys.
fn settings(file: &FileConfig, layer: &Layer) -> Result<ServeSettings, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut fail = |key: &str, message: String| {
        errors.push(ConfigError {
            origin: layer.origin(key).cloned(),
            key: key.to_owned(),
            message,
        });
    };
    let mut config = herald::Config::default();
    file.apply(&mut config);
    if let Err(e) = config.channels.validate("[channels]") {
        fail("channels", e);
    }
    for (name, options) in &config.namespaces {
        if let Err(e) = options.validate(&format!("[namespaces.{name}]")) {
            fail(&format!("namespaces.{name}"), e);
        }
    }
    let tls = match (&file.tls_cert, &file.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        (Some(_), None) => {
            fail(
                "tls_cert",
                "--tls-cert (tls_cert) needs --tls-key (tls_key)".into(),
            );
            None
        }
        (None, Some(_)) => {
            fail(
                "tls_key",
                "--tls-key (tls_key) needs --tls-cert (tls_cert)".into(),
            );
            None
        }
    };
    // The keys are loaded (files read, pairs checked) so that a bad key is
    // an error of the configuration, not of the start.
    let auth = super::auth::AuthSettings::from_file(file).and_then(|a| a.engine().map(|_| a));
    let auth = match auth {
        Ok(auth) => auth,
        Err(problems) => {
            for (key, message) in problems {
                fail(key, message);
            }
            Default::default()
        }
    };
    let api = match super::api::options(file) {
        Ok(api) => api,
        Err((key, message)) => {
            fail(key, message);
            None
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ServeSettings {
        listen: file.listen.unwrap_or(DEFAULT_LISTEN),
        config,
        auth_secret: file.auth_secret.clone(),
        broker: file
            .broker
            .clone()
            .unwrap_or_else(|| DEFAULT_BROKER.to_owned()),
        node_id: file.node_id.clone(),
        auth_audience: file.auth_audience.clone().unwrap_or_default(),
        auth_issuer: file.auth_issuer.clone().unwrap_or_default(),
        max_auth_token: file.max_auth_token,
        auth_leeway: super::auth::leeway(file),
        auth,
        tls,
        log_format: file.log_format.unwrap_or_default(),
        dev: file.dev.unwrap_or(false),
        workers: file.workers.unwrap_or(1),
        worker_status_listen: file.worker_status_listen,
        api,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn flags_over_environment_over_file() {
        let args = ServeArgs {
            ping_interval: Some(std::time::Duration::from_secs(3)),
            ..ServeArgs::default()
        };
        let r = load_layers(
            Some((Path::new("h.toml"), "ping_interval = \"1s\"\nping_timeout = \"11s\"\nmax_payload = 10\n[namespaces.chat]\nhistory_size = 5\n")),
            env(&[
                ("HERALD_PING_INTERVAL", "2s"),
                ("HERALD_PING_TIMEOUT", "12s"),
                ("HERALD_NAMESPACES_CHAT_RECOVER", "true"),
            ]),
            flags_layer(&args),
        )
        .unwrap();
        let c = &r.settings.config;
        assert_eq!(c.ping_interval, std::time::Duration::from_secs(3));
        assert_eq!(c.ping_timeout, std::time::Duration::from_secs(12));
        assert_eq!(c.max_payload, 10);
        let chat = &c.namespaces["chat"];
        assert!(chat.recover && chat.history_size == 5);
        assert_eq!(
            r.layer.origin("ping_interval"),
            Some(&Origin::Flag("--ping-interval".into()))
        );
    }

    #[test]
    fn checks_across_keys_name_where_the_keys_came_from() {
        let e = load_layers(
            Some((Path::new("h.toml"), "\n[namespaces.chat]\nrecover = true\n")),
            env(&[("HERALD_TLS_CERT", "/c.pem")]),
            Layer::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("h.toml:2: key `namespaces.chat`: [namespaces.chat]: recover needs history"),
            "{e}"
        );
        assert!(e.contains("environment variable HERALD_TLS_CERT: key `tls_cert`: --tls-cert (tls_cert) needs --tls-key"), "{e}");
    }

    #[test]
    fn a_bad_flag_is_named() {
        let args = ServeArgs {
            path: Some("ws".into()),
            ..ServeArgs::default()
        };
        let e = load(&args, []).unwrap_err().to_string();
        assert!(
            e.contains("flag --path: key `path`: path must start with '/'"),
            "{e}"
        );
    }
}
