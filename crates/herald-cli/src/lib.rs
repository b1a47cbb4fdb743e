//! The `herald` command line: argument parsing, the config file, and the
//! `serve` runner.
//!
//! It is a library as well as a binary so that a program can run exactly
//! what `herald serve` runs with extra procedures or middleware registered
//! ([`serve`] takes a function that adjusts the [`ServerBuilder`]); the test
//! fixture `herald-fixture` is built that way.

#![warn(missing_docs)]

pub mod brokers;
pub mod commands;
pub mod config;
pub mod dev;
pub mod supervisor;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use herald::ServerBuilder;

pub use commands::run;
pub use config::{FileConfig, ServeSettings, resolve};

/// Herald: a realtime WebSocket server speaking the SocketCluster v2 protocol.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Herald server.
    Serve(ServeArgs),
    /// Check a config file: print "ok" and a summary, or every error with
    /// its key and line (exit code 1).
    CheckConfig(commands::CheckConfigArgs),
    /// Print the effective configuration (defaults, file, HERALD_
    /// variables and flags merged) as TOML, secrets redacted.
    PrintConfig(ServeArgs),
    /// Write a commented starter config file.
    Genconfig(commands::GenconfigArgs),
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when standard error is a
    /// terminal (and `NO_COLOR` is not set).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`,
    /// `message`, the event's fields (`socket` for a line about a socket),
    /// and the current span's fields under `span`.
    Json,
}

/// `herald serve` options. Flags override the `HERALD_` environment
/// variables, which override the config file, which overrides the
/// defaults. Each flag sets the config key of its name (`--ping-interval`:
/// `ping_interval`, also `HERALD_PING_INTERVAL`); see [`config`].
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8000; port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// WebSocket endpoint path (default /socketcluster/).
    #[arg(long)]
    pub path: Option<String>,
    /// HS256 secret for auth tokens. Without one a random secret is used and
    /// tokens do not survive a restart.
    #[arg(long)]
    pub auth_secret: Option<String>,
    /// URL of a JWKS (an identity provider's keys) whose keys verify
    /// tokens; refreshed periodically and on an unknown `kid`.
    #[arg(long, value_name = "URL")]
    pub auth_jwks_url: Option<String>,
    /// Key of the HTTP server API (`POST /api/...`, see docs/api.md);
    /// without one the API is off.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Config file (TOML); see docs/configuration.md.
    #[arg(long, value_name = "FILE", env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Interval between server pings, e.g. 8s or 500ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ping_interval: Option<Duration>,
    /// Close a socket silent for this long with 4001, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ping_timeout: Option<Duration>,
    /// Largest accepted message in bytes; larger closes with 1009.
    #[arg(long, value_name = "BYTES")]
    pub max_payload: Option<usize>,
    /// Broker carrying publications between nodes: `memory` (default),
    /// `redis://HOST:PORT[,redis://...]`, `redis+cluster://HOST:PORT[,HOST:PORT...]`,
    /// `nats://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// This node's id in a cluster (default: random, logged at start).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Log format on standard error: `text` (default) or `json` (one
    /// object per line).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain (server certificate first): serve `wss://`,
    /// and the status routes and /metrics over https. Needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Development mode: serve the demo chat page at `/`, a token route
    /// (`POST /herald/dev/token {"name"}`: log in as anyone) and the
    /// `demo:` namespace (history, recovery, presence). Never in production.
    #[arg(long)]
    pub dev: bool,
    /// Worker processes sharing the listen port (SO_REUSEPORT), supervised
    /// by this one (default 1: no supervisor). Above 1 needs a broker
    /// between them (redis:// or nats://).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Each worker also serves /herald/health, /herald/ready, /herald/info
    /// and /metrics over plain HTTP on this address, its port plus the
    /// worker's index (port 0: a free port each, logged).
    #[arg(long, value_name = "ADDR")]
    pub worker_status_listen: Option<SocketAddr>,
}

/// Installs the log subscriber: `RUST_LOG` (default `info`) selects the
/// lines, written to standard error in `format`. Text is coloured only when
/// standard error is a terminal and `NO_COLOR` is unset, so that
/// `herald serve 2>file` writes no escape codes.
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Resolves when SIGINT or SIGTERM arrives.
///
/// The signal handlers are installed by this call, not when the future is
/// first polled: a signal sent any time after it returns (e.g. by a
/// supervisor that saw the ready line) stops the server cleanly instead of
/// killing the process. Call it inside a Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async fn recv(s: std::io::Result<Signal>) {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        async move {
            tokio::select! {
                _ = recv(term) => {},
                _ = recv(int) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `herald serve` until SIGINT/SIGTERM. `customize` can register
/// procedures, receivers and middleware before the server is built.
pub async fn serve(
    args: ServeArgs,
    customize: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> anyhow::Result<()> {
    let resolved = config::load(&args, std::env::vars())?;
    init_logging(resolved.settings.log_format);
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    let mut settings = resolved.settings;
    let worker = worker::WorkerEnv::from_env()?;
    match &worker {
        None if settings.workers > 1 => {
            let log = settings.log_format;
            return supervisor::run(&settings, settings.workers, log).await;
        }
        None => supervisor::check_workers(settings.workers, &settings.broker)?,
        Some(w) => {
            settings.listen = w.listen;
            settings.node_id = Some(w.node_id.clone());
        }
    }
    // Before the server is built: it binds its hot-path counters to the
    // recorder installed then.
    if let Err(e) = herald::metrics::Prometheus::install() {
        tracing::warn!(error = %e, "GET /metrics is off");
    }
    let tls = match &settings.tls {
        Some((cert, key)) => Some(
            herald::TlsConfig::from_pem_files(cert, key)
                .context("cannot load the TLS certificate")?,
        ),
        None => None,
    };
    let mut builder = ServerBuilder::new().config(settings.config.clone());
    if let Some(secret) = &settings.auth_secret {
        builder = builder.auth_secret(secret);
    }
    if !settings.auth_audience.is_empty() {
        builder = builder.auth_audience(settings.auth_audience.clone());
    }
    if !settings.auth_issuer.is_empty() {
        builder = builder.auth_issuer(settings.auth_issuer.clone());
    }
    if let Some(n) = settings.max_auth_token {
        builder = builder.max_auth_token(n);
    }
    if !settings.auth_leeway.is_zero() {
        builder = builder.auth_leeway(settings.auth_leeway);
    }
    let jwks = settings.auth.jwks.is_some();
    if let Some(engine) = settings
        .auth
        .engine()
        .map_err(|problems| anyhow::anyhow!("{}", problems[0].1))?
    {
        builder = builder.auth(engine);
    }
    let broker = brokers::connect(&settings.broker)
        .await
        .with_context(|| format!("cannot start broker {}", settings.broker))?;
    builder = builder.broker_arc(broker);
    if let Some(id) = &settings.node_id {
        builder = builder.node_id(id.clone());
    }
    if settings.dev {
        builder = dev::customize(builder);
    }
    let server = customize(builder)
        .try_build()
        .context("invalid configuration")?;
    if jwks {
        // The first fetch runs already; say how it went without holding up
        // the start (tokens wait for it, bounded by auth_jwks_timeout).
        let server = server.clone();
        tokio::spawn(async move {
            let url = server.auth().jwks_options().map(|o| o.url().to_owned());
            match server.auth().jwks_ready().await {
                Ok(keys) => tracing::info!(url, keys, "JWKS loaded"),
                Err(e) => {
                    tracing::warn!(url, error = %e, "JWKS not loaded yet; retrying (tokens of its keys are refused meanwhile)")
                }
            }
        });
    }
    let mut routes = if settings.dev {
        dev::router(&server)
    } else {
        axum::Router::new()
    };
    if let Some(api) = settings.api.clone() {
        routes = routes.merge(server.api_router(api));
    }
    let listener = match &worker {
        Some(_) => herald::Server::bind_reuseport(settings.listen),
        None => herald::Server::bind(settings.listen),
    }
    .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    if let Some(base) = settings.worker_status_listen {
        let index = worker.as_ref().map_or(0, |w| w.index);
        let status = worker::spawn_status(&server, worker::status_addr(base, index)?).await?;
        tracing::info!("status routes and /metrics of worker {index} on http://{status}");
    }
    let open = |o: &herald::ChannelOptions| {
        o.subscribe == herald::Rule::Any && o.publish == herald::Rule::Any
    };
    if open(&settings.config.channels)
        && settings.config.unknown_namespaces == herald::UnknownNamespaces::Plain
    {
        tracing::warn!(
            "channels without a namespace are open: any client may subscribe and publish on them (set [channels] subscribe/publish)"
        );
    }
    // Handlers first: once the ready line is out, a signal must stop the
    // server cleanly.
    let signal = shutdown_signal();
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    println!(
        "herald listening on {scheme}://{addr}{}",
        settings.config.path
    );
    if settings.dev {
        let web = if tls.is_some() { "https" } else { "http" };
        // Without an auth secret the server signs with a random one (it warns).
        tracing::info!("dev mode: open {web}://{addr}/ for the demo chat (log in as any name)");
    }
    if settings.api.is_some() {
        let web = if tls.is_some() { "https" } else { "http" };
        tracing::info!("HTTP API on {web}://{addr}/api/ (see docs/api.md)");
    } else {
        tracing::debug!("HTTP API off: no api_key");
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    match tls {
        Some(tls) => server.serve_tls_with(listener, tls, routes, signal).await?,
        None => server.serve_with(listener, routes, signal).await?,
    }
    tracing::info!("herald stopped");
    Ok(())
}
