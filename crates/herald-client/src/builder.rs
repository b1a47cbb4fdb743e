//! Setting up a client: [`ClientBuilder`].
//!
//! The builder collects the settings ([`ClientConfig`] and its common knobs
//! as methods), then spawns the connection task and hands out the first
//! [`Client`] handle. Kept apart from the handle because it is the only
//! place that starts a task: everything else talks to one that runs.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use http::Uri;
use tokio::sync::{mpsc, oneshot};

use crate::client::{Client, Inner};
use crate::config::{ClientConfig, PingTimeout, ReconnectPolicy};
use crate::connection::parse_url;
use crate::error::{Error, Result};
use crate::events::Events;
use crate::queue::queue;
use crate::task::{Shared, Task};
use crate::tls::TlsConfig;
use crate::token_store::TokenStore;

/// Sets up a [`Client`]. From [`Client::builder`].
pub struct ClientBuilder {
    url: String,
    config: ClientConfig,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &self.url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            config: ClientConfig::default(),
            shared: Arc::new(Shared::new()),
        }
    }

    /// Replaces every setting.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Default time to wait for a reply (default 10 s).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config.ack_timeout = timeout;
        self
    }

    /// Time allowed to connect and handshake (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Dead-peer detection (default: the server's `pingTimeout`).
    pub fn ping_timeout(mut self, ping_timeout: PingTimeout) -> Self {
        self.config.ping_timeout = ping_timeout;
        self
    }

    /// Reconnect behaviour (default: on, 0.5 s × 1.5 up to 30 s, full jitter).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.config.reconnect = policy;
        self
    }

    /// Where the auth token is kept (default: in memory).
    pub fn token_store(mut self, store: impl TokenStore) -> Self {
        self.config.token_store = Arc::new(store);
        self
    }

    /// Whom `wss://` connections trust (default: the system's root
    /// certificates). For a self-signed server or a private CA:
    /// `.tls(TlsConfig::empty().add_root_pem(&pem)?)`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Capacity of each subscription stream (default 1024).
    pub fn subscription_buffer(mut self, capacity: usize) -> Self {
        self.config.subscription_buffer = capacity;
        self
    }

    /// A stream of connection events that starts before the first connection
    /// attempt, so that it sees `Connecting` and the first `Open`.
    pub fn events(&self) -> Events {
        let (tx, rx) = queue(self.config.event_buffer);
        self.shared.event_sinks().push(tx);
        Events { rx }
    }

    /// Starts the client and waits for the first handshake.
    ///
    /// Fails when the URL is invalid or the first attempt fails
    /// ([`Error::BadConnection`], or [`Error::Timeout`] after the connect
    /// timeout); no background retry is left running then. Once connected,
    /// later losses are handled by reconnecting.
    pub async fn connect(self) -> Result<Client> {
        let (tx, rx) = oneshot::channel();
        let client = self.spawn(Some(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Closed),
        }
    }

    /// Starts the client without waiting: it connects (and reconnects) in
    /// the background, and calls made meanwhile are queued until the
    /// connection opens (each within its own timeout).
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime (like `tokio::spawn`).
    pub fn start(self) -> Result<Client> {
        self.spawn(None)
    }

    fn spawn(self, first: Option<oneshot::Sender<Result<()>>>) -> Result<Client> {
        let uri: Uri = parse_url(&self.url)?;
        let mut config = self.config.sanitized();
        if uri.scheme_str() == Some("wss") && config.tls.is_none() {
            config.tls = Some(TlsConfig::native_roots()?);
        }
        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_buffer);
        let inner = Arc::new(Inner {
            cmd: cmd_tx,
            shared: self.shared.clone(),
            ack_timeout: config.ack_timeout,
            subscription_buffer: config.subscription_buffer,
            receiver_buffer: config.receiver_buffer,
            event_buffer: config.event_buffer,
            token_store: config.token_store.clone(),
            next_id: AtomicU64::new(1),
        });
        let task = Task::new(uri, config, self.shared, cmd_rx, first);
        tokio::spawn(task.run());
        Ok(Client { inner })
    }
}
