//! Precedence: the flags of `herald serve` over the config file over the
//! defaults, merged into the [`ServeSettings`] of one run.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::FileConfig;
use crate::ServeArgs;

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
    /// Certificate chain and key files, when serving TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Worker processes (1: this process serves; more: it supervises them).
    pub workers: usize,
    /// Base address of each worker's own status listener.
    pub worker_status_listen: Option<SocketAddr>,
}

/// Merges flags, config file and defaults.
pub fn resolve(args: &ServeArgs) -> anyhow::Result<ServeSettings> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let mut config = herald::Config::default();
    file.apply(&mut config);
    if let Some(p) = &args.path {
        config.path = p.clone();
    }
    if let Some(d) = args.ping_interval {
        config.ping_interval = d;
    }
    if let Some(d) = args.ping_timeout {
        config.ping_timeout = d;
    }
    if let Some(n) = args.max_payload {
        config.max_payload = n;
    }
    if !config.path.starts_with('/') {
        anyhow::bail!("path must start with '/': {:?}", config.path);
    }
    if config.ping_interval.is_zero() || config.ping_timeout.is_zero() {
        anyhow::bail!("ping_interval and ping_timeout must be greater than zero");
    }
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000)));
    let auth_secret = args.auth_secret.clone().or(file.auth_secret.clone());
    if auth_secret.as_deref() == Some("") {
        anyhow::bail!("the auth secret must not be empty");
    }
    let broker = args
        .broker
        .clone()
        .or(file.broker.clone())
        .unwrap_or_else(|| "memory".to_owned());
    let node_id = args.node_id.clone().or(file.node_id.clone());
    let tls_cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let tls_key = args.tls_key.clone().or(file.tls_key.clone());
    let tls = match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!("--tls-cert (tls_cert) needs --tls-key (tls_key)"),
        (None, Some(_)) => anyhow::bail!("--tls-key (tls_key) needs --tls-cert (tls_cert)"),
    };
    Ok(ServeSettings {
        listen,
        config,
        auth_secret,
        broker,
        node_id,
        auth_audience: file.auth_audience.clone().unwrap_or_default(),
        auth_issuer: file.auth_issuer.clone().unwrap_or_default(),
        max_auth_token: file.max_auth_token,
        tls,
        workers: args.workers.or(file.workers).unwrap_or(1),
        worker_status_listen: args.worker_status_listen.or(file.worker_status_listen),
    })
}
