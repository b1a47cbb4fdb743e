//! The server: its builder, its shared state, and how it is run.
//!
//! [`ServerBuilder`] collects settings, auth keys, the broker, procedures,
//! receivers and middleware; [`Server`] is the running result, a cheap
//! handle to mount in an axum app ([`Server::router`]), to run on a listener
//! by itself ([`Server::serve`]), to publish from server code
//! ([`Server::exchange`]) and to shut down cleanly ([`Server::shutdown`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use herald_protocol::ErrorPayload;
use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::auth::AuthEngine;
use crate::broker::{
    Broker, ClientInfo, HistoryPage, HistoryQuery, MemoryBroker, PresenceStats, StreamPosition,
};
use crate::cluster::{self, Cluster, NodeInfo, Users};
use crate::config::{Config, UnknownProcedures};
use crate::handler::{self, BoxProcedure, BoxReceiver, Message, Request};
use crate::metrics::ServerMetrics;
use crate::middleware::{Middleware, PublishOutMiddleware};
use crate::namespace::{ChannelOptions, Namespaces, UnknownNamespaces};
use crate::presence::Presence;
use crate::publish::{Origin, PublishError};
use crate::reads::ReadError;
use crate::registry::Registry;
use crate::socket::{Socket, SocketShared};

type ConnectHook = Arc<dyn Fn(Socket) -> BoxFuture<'static, ()> + Send + Sync>;
type DisconnectHook = Arc<dyn Fn(Socket, u16, String) -> BoxFuture<'static, ()> + Send + Sync>;

/// State shared by every connection of one server.
pub(crate) struct ServerInner {
    pub(crate) node_id: Arc<str>,
    pub(crate) config: Config,
    pub(crate) auth: AuthEngine,
    pub(crate) registry: Arc<Registry>,
    pub(crate) procedures: HashMap<String, BoxProcedure>,
    pub(crate) receivers: HashMap<String, BoxReceiver>,
    pub(crate) middleware: Vec<Arc<dyn Middleware>>,
    pub(crate) publish_out: Vec<Arc<dyn PublishOutMiddleware>>,
    pub(crate) on_connection: Vec<ConnectHook>,
    pub(crate) on_disconnection: Vec<DisconnectHook>,
    pub(crate) sockets: Mutex<HashMap<u64, Socket>>,
    pub(crate) next_key: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) cluster: Cluster,
    pub(crate) namespaces: Arc<Namespaces>,
    pub(crate) presence: Presence,
    /// Hot-path counters, bound to the recorder installed at build time.
    pub(crate) metrics: ServerMetrics,
    /// Connection limits and the handshake budget.
    pub(crate) admission: Admission,
}

impl ServerInner {
    /// Verifies a token as the server accepts it: the engine's checks
    /// (keys, JWKS, leeway, `aud`, `iss`), then the claims Herald reads
    /// (the channels claim must be an array of names).
    pub(crate) async fn verify_token(
        &self,
        token: &str,
    ) -> Result<crate::Claims, crate::TokenError> {
        let claims = self.auth.verify(token).await?;
        crate::auth::claims::channels_of(&claims, &self.config.channels_claim)?;
        Ok(claims)
    }
}

/// The settings given to a [`ServerBuilder`] do not make a server.
#[derive(Debug, thiserror::Error)]
#[error("invalid server configuration: {0}")]
pub struct ConfigError(String);

/// Builds a [`Server`].
///
/// ```no_run
/// use herald::{Server, ErrorPayload};
/// use serde_json::{json, Value};
///
/// # async fn run() -> std::io::Result<()> {
/// let server = Server::builder()
///     .auth_secret("change me")
///     .procedure("echo", |req| async move { Ok::<Value, ErrorPayload>(req.data) })
///     .build();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
/// server.serve(listener, std::future::pending()).await
/// # }
/// ```
#[must_use]
pub struct ServerBuilder {
    node_id: Option<String>,
    config: Config,
    auth: Option<AuthEngine>,
    broker: Option<Arc<dyn Broker>>,
    procedures: HashMap<String, BoxProcedure>,
    receivers: HashMap<String, BoxReceiver>,
    middleware: Vec<Arc<dyn Middleware>>,
    publish_out: Vec<Arc<dyn PublishOutMiddleware>>,
    on_connection: Vec<ConnectHook>,
    on_disconnection: Vec<DisconnectHook>,
    auth_audience: Option<Vec<String>>,
    auth_issuer: Option<Vec<String>>,
    max_auth_token: Option<usize>,
    auth_leeway: Option<Duration>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerBuilder {
    /// A builder with socketcluster-server's defaults, a random auth secret
    /// and the in-process broker.
    pub fn new() -> Self {
        Self {
            node_id: None,
            config: Config::default(),
            auth: None,
            broker: None,
            procedures: HashMap::new(),
            receivers: HashMap::new(),
            middleware: Vec::new(),
            publish_out: Vec::new(),
            on_connection: Vec::new(),
            on_disconnection: Vec::new(),
            auth_audience: None,
            auth_issuer: None,
            max_auth_token: None,
            auth_leeway: None,
        }
    }

    /// This node's id in a cluster (default: 8 random hex digits).
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Replaces all settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Changes settings in place.
    pub fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// The HTTP path of the WebSocket endpoint (default `/socketcluster/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// Server ping interval (default 8 s).
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.ping_interval = d;
        self
    }

    /// Adds namespace `name`: channels `name:...` take `options`.
    pub fn namespace(mut self, name: impl Into<String>, options: ChannelOptions) -> Self {
        self.config.namespaces.insert(name.into(), options);
        self
    }

    /// The options of channels without a namespace (default: no history,
    /// no presence, anyone may subscribe and publish).
    pub fn channels(mut self, options: ChannelOptions) -> Self {
        self.config.channels = options;
        self
    }

    /// What a channel `NAME:rest` is when no namespace `NAME` exists
    /// (default: a plain channel).
    pub fn unknown_namespaces(mut self, policy: UnknownNamespaces) -> Self {
        self.config.unknown_namespaces = policy;
        self
    }

    /// What an invoke of a procedure that nothing serves gets (default
    /// [`UnknownProcedures::Error`]: a `NoSuchProcedureError` reply;
    /// [`UnknownProcedures::Ignore`]: no reply, as socketcluster-server).
    pub fn unknown_procedures(mut self, policy: UnknownProcedures) -> Self {
        self.config.unknown_procedures = policy;
        self
    }

    /// Ping timeout (default 30 s).
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.config.ping_timeout = d;
        self
    }

    /// Signs and verifies tokens with an HS256 secret.
    pub fn auth_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.auth = Some(AuthEngine::hs256(secret));
        self
    }

    /// Uses a configured [`AuthEngine`]: its keys ([`crate::Key`]: HS*,
    /// RS*, PS*, ES256/384, EdDSA, with ids for rotation) and maybe a JWKS
    /// ([`crate::JwksOptions`]).
    pub fn auth(mut self, engine: AuthEngine) -> Self {
        self.auth = Some(engine);
        self
    }

    /// Accepts only tokens whose `aud` claim names one of `audience`
    /// ([`AuthEngine::audience`]); applies to whichever engine the server
    /// ends up with. Default: `aud` is not checked.
    pub fn auth_audience<I, S>(mut self, audience: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.auth_audience = Some(audience.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts only tokens whose `iss` claim is one of `issuer`
    /// ([`AuthEngine::issuer`]). Default: `iss` is not checked.
    pub fn auth_issuer<I, S>(mut self, issuer: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.auth_issuer = Some(issuer.into_iter().map(Into::into).collect());
        self
    }

    /// The longest auth token the server verifies, in bytes; a longer one
    /// is refused (`AuthTokenInvalidError`) before any decoding or crypto
    /// ([`AuthEngine::max_token_len`]). Default 8 KiB.
    pub fn max_auth_token(mut self, bytes: usize) -> Self {
        self.max_auth_token = Some(bytes);
        self
    }

    /// Accepts a token's `exp` and `nbf` up to `leeway` off
    /// ([`AuthEngine::leeway`]); applies to whichever engine the server
    /// ends up with. Default: none, as socketcluster-server.
    pub fn auth_leeway(mut self, leeway: Duration) -> Self {
        self.auth_leeway = Some(leeway);
        self
    }

    /// The broker carrying publications between nodes (default: in-process).
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// [`ServerBuilder::broker`] for a broker chosen at run time.
    pub fn broker_arc(mut self, broker: Arc<dyn Broker>) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Registers a procedure: clients call it with `invoke(name, data)`.
    pub fn procedure<F, Fut, T>(mut self, name: impl Into<String>, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, ErrorPayload>> + Send + 'static,
        T: Serialize + 'static,
    {
        self.procedures
            .insert(name.into(), handler::box_procedure(f));
        self
    }

    /// Registers a receiver: it runs for each `transmit(event, data)`.
    pub fn receiver<F, Fut>(mut self, event: impl Into<String>, f: F) -> Self
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.receivers
            .insert(event.into(), handler::box_receiver(f));
        self
    }

    /// Adds inbound middleware (runs after the ones added before).
    pub fn middleware(mut self, m: impl Middleware) -> Self {
        self.middleware.push(Arc::new(m));
        self
    }

    /// Adds outbound publish middleware (per subscriber).
    pub fn publish_out_middleware(mut self, m: impl PublishOutMiddleware) -> Self {
        self.publish_out.push(Arc::new(m));
        self
    }

    /// Runs `f` for each socket that completes its handshake.
    pub fn on_connection<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_connection.push(Arc::new(move |s| f(s).boxed()));
        self
    }

    /// Runs `f` for each handshaken socket that closes, with the close code
    /// and reason.
    pub fn on_disconnection<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Socket, u16, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on_disconnection
            .push(Arc::new(move |s, c, r| f(s, c, r).boxed()));
        self
    }

    /// Builds the server. Must be called inside a Tokio runtime when the
    /// broker needs one.
    ///
    /// # Panics
    ///
    /// When the settings are invalid (see [`ServerBuilder::try_build`]).
    pub fn build(self) -> Server {
        match self.try_build() {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// Builds the server, or says which setting is invalid (a namespace
    /// with `recover` but no history, a bad namespace name...).
    pub fn try_build(self) -> Result<Server, ConfigError> {
        let namespaces = Arc::new(
            Namespaces::new(
                &self.config.channels,
                &self.config.namespaces,
                self.config.unknown_namespaces,
            )
            .map_err(ConfigError)?,
        );
        let auth = self.auth.unwrap_or_else(|| {
            tracing::warn!(
                "no auth secret configured: using a random one; auth tokens will not survive a restart"
            );
            AuthEngine::random()
        });
        let auth = match self.auth_audience {
            Some(a) => auth.audience(a),
            None => auth,
        };
        let auth = match self.auth_issuer {
            Some(i) => auth.issuer(i),
            None => auth,
        };
        let auth = match self.max_auth_token {
            Some(n) => auth.max_token_len(n),
            None => auth,
        };
        let auth = match self.auth_leeway {
            Some(l) => auth.leeway(l),
            None => auth,
        };
        // The JWKS's first fetch starts now rather than at the first token.
        auth.start();
        let broker = self.broker.unwrap_or_else(|| Arc::new(MemoryBroker::new()));
        let node_id = self
            .node_id
            .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
        tracing::info!(node_id = %node_id, broker = broker.name(), "herald node");
        crate::metrics::describe();
        let admission = Admission::new(&self.config);
        let inner = Arc::new(ServerInner {
            admission,
            node_id: Arc::from(node_id),
            config: self.config,
            auth,
            registry: Registry::new(broker, namespaces.clone()),
            procedures: self.procedures,
            receivers: self.receivers,
            middleware: self.middleware,
            publish_out: self.publish_out,
            on_connection: self.on_connection,
            on_disconnection: self.on_disconnection,
            sockets: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cluster: Cluster::new(),
            namespaces,
            presence: Presence::default(),
            metrics: ServerMetrics::new(),
        });
        let weak = Arc::downgrade(&inner);
        inner.registry.set_control(Box::new(move |publication| {
            if let Some(server) = weak.upgrade() {
                cluster::on_control(&server, publication);
            }
        }));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let interval = inner.config.announce_interval;
                handle.spawn(cluster::run(Arc::downgrade(&inner), interval));
                if inner.namespaces.any_presence() {
                    let ttl = inner.config.presence_ttl;
                    handle.spawn(crate::presence::refresh(Arc::downgrade(&inner), ttl));
                }
            }
            Err(_) => tracing::warn!(
                "ServerBuilder::build called outside a Tokio runtime: cluster announcements and presence refresh are off"
            ),
        }
        Ok(Server(inner))
    }
}

/// A Herald server. Cloning is cheap; all clones are the same server.
#[derive(Clone)]
pub struct Server(pub(crate) Arc<ServerInner>);

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.0.config.path)
            .field("clients", &self.client_count())
            .finish()
    }
}

impl Server {
    /// A [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.0.node_id
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The token engine, to issue tokens outside a socket (e.g. from an HTTP
    /// login route).
    pub fn auth(&self) -> &AuthEngine {
        &self.0.auth
    }

    /// An axum router serving the WebSocket endpoint at the configured path.
    /// Merge it into an application's router to serve both.
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        crate::transport::router(self.clone())
    }

    /// `GET /herald/health`, `/herald/ready` (503 while the broker is down)
    /// and `/herald/info` (this node, its broker, the cluster's nodes).
    /// [`Server::serve`] includes them.
    pub fn status_router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        crate::status::router(self.clone())
    }

    /// `GET /metrics` in the Prometheus text format. Installs Herald's
    /// Prometheus recorder as the process's global `metrics` recorder if
    /// nothing did yet ([`crate::metrics::Prometheus::install`]; install it
    /// before building the server, so that the server's hot-path counters
    /// are bound to it). [`Server::serve`] includes the route once the
    /// recorder is installed.
    pub fn metrics_router<S: Clone + Send + Sync + 'static>(
        &self,
    ) -> Result<axum::Router<S>, crate::metrics::MetricsError> {
        Ok(crate::metrics::Prometheus::install()?.router())
    }

    /// The HTTP server API for backends, `POST /api/<method>` and
    /// `GET /api/openapi.json`, behind the key of `options` (see
    /// [`crate::api`] and docs/api.md). Merge it into the application's
    /// router; [`Server::serve_with`] takes it as extra routes. Without it,
    /// the server has no API.
    pub fn api_router<S: Clone + Send + Sync + 'static>(
        &self,
        options: crate::api::ApiOptions,
    ) -> axum::Router<S> {
        crate::api::router(self, options)
    }

    /// The channels with subscribers on every node of the cluster whose
    /// names match the glob `pattern` (`*`, `?`, `[...]`; `None`: all), at
    /// most `limit`, first by name, with their subscribers. Waits up to
    /// `timeout` for the other nodes' answers and names those that did not
    /// answer.
    pub async fn cluster_channels(
        &self,
        pattern: Option<&str>,
        limit: usize,
        timeout: Duration,
    ) -> Result<crate::cluster::ClusterChannels, crate::cluster::query::PatternError> {
        cluster::query::channels(&self.0, pattern, limit, timeout).await
    }

    /// Publishes from server code.
    pub fn exchange(&self) -> Exchange {
        Exchange(self.0.clone())
    }

    /// Messages addressed to users, on every node.
    pub fn users(&self) -> Users {
        Users(self.0.clone())
    }

    /// The nodes of the cluster as this node sees them, itself included.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        cluster::nodes(&self.0)
    }

    /// The broker's name and reachability.
    pub fn broker_status(&self) -> (&'static str, crate::BrokerStatus) {
        let broker = self.0.registry.broker();
        (broker.name(), broker.status())
    }

    /// Number of sockets that completed their handshake.
    pub fn client_count(&self) -> usize {
        self.0
            .sockets
            .lock()
            .values()
            .filter(|s| s.state() == crate::SocketState::Open)
            .count()
    }

    /// Every open socket.
    pub fn sockets(&self) -> Vec<Socket> {
        self.0.sockets.lock().values().cloned().collect()
    }

    /// The socket with this id, if connected.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        self.0
            .sockets
            .lock()
            .values()
            .find(|s| s.id() == id)
            .cloned()
    }

    /// Reads a channel's history: its position (latest offset and epoch)
    /// and, with a `limit`, publications (after `since`, or the latest).
    pub async fn history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, ReadError> {
        self.0.server_history(channel, query).await
    }

    /// Drops a channel's history; its next publication starts a new epoch.
    pub async fn remove_history(&self, channel: &str) -> Result<(), ReadError> {
        self.0.server_remove_history(channel).await
    }

    /// The subscribers of a channel with presence, on every node, by
    /// socket id.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<std::collections::BTreeMap<String, ClientInfo>, ReadError> {
        self.0.server_presence(channel).await
    }

    /// Counts of [`Server::presence`]: sockets and distinct users.
    pub async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, ReadError> {
        self.0.server_presence_stats(channel).await
    }

    /// Number of local subscribers of a channel.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.0.registry.subscriber_count(channel)
    }

    /// Number of channels with local subscribers.
    pub fn channel_count(&self) -> usize {
        self.0.registry.channel_count()
    }
}

/// Publishes to channels from server code. Publications go through the
/// broker like client publications, so they reach every node.
#[derive(Clone)]
pub struct Exchange(pub(crate) Arc<ServerInner>);

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exchange")
    }
}

impl Exchange {
    /// Publishes `data` on `channel`. On a channel with history, returns the
    /// publication's position (its offset and the stream's epoch).
    ///
    /// Server code is not bound by the namespaces' publish rules, but
    /// reserved channels (`#herald/...`), over-long names and, with
    /// [`UnknownNamespaces::Refuse`], unknown namespaces are refused.
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: &str,
        data: &T,
    ) -> Result<Option<StreamPosition>, PublishError> {
        let raw = serde_json::value::to_raw_value(data)?;
        self.publish_raw(channel, Some(raw)).await
    }

    /// Publishes already-encoded JSON on `channel` (see
    /// [`Exchange::publish`]).
    pub async fn publish_raw(
        &self,
        channel: &str,
        data: Option<Box<serde_json::value::RawValue>>,
    ) -> Result<Option<StreamPosition>, PublishError> {
        self.0.publish(Origin::Server, channel, data).await
    }
}

impl ServerInner {
    pub(crate) fn register(&self, socket: Socket) {
        self.sockets.lock().insert(socket.0.key, socket);
        crate::metrics::connections(1.0);
    }

    pub(crate) fn unregister(&self, socket: &SocketShared) {
        self.sockets.lock().remove(&socket.key);
        crate::metrics::connections(-1.0);
    }

    pub(crate) fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }
}
