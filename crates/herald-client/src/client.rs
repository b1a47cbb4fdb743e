//! The public handle: [`Client`] (built by a [`ClientBuilder`]).
//!
//! A `Client` is a cheap, cloneable handle to one connection task (see the
//! `task` module). Every method turns into a command for that task; replies
//! come back on one-shot channels and are bounded by a timeout on the
//! caller's side, so a call never hangs. Dropping the last handle (or calling
//! [`Client::close`]) stops the task and closes the socket with 1000.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use herald_protocol::ErrorPayload;
use herald_protocol::ext::StreamPosition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::builder::ClientBuilder;
use crate::error::{Error, Result};
use crate::events::{ConnectionState, Events};
use crate::handlers::{Receiver, procedure as make_procedure};
use crate::queue::queue;
use crate::subscription::Subscription;
use crate::task::{Command, Frame, ReplyKind, Request, Shared, SubscribeCommand};
use crate::token_store::{TokenStore, decode_claims};

/// Options of [`Client::subscribe_with`].
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Data sent with the `#subscribe` request (SocketCluster's
    /// `options.data`), for the server's middleware to read. Sent again on
    /// every resubscription.
    pub data: Option<Value>,
    /// Wait for the server to acknowledge the subscription before returning
    /// (default true). When false, `subscribe_with` returns at once and a
    /// refusal arrives on the stream as [`crate::SubscriptionError::Rejected`].
    pub wait_for_ack: bool,
    /// How long to wait for the acknowledgement (default: the client's ack
    /// timeout). If it expires the subscription is abandoned.
    pub ack_timeout: Option<Duration>,
    /// **Herald:** start after this position of the channel's stream (one
    /// an application persisted from [`Subscription::position`] or a
    /// [`crate::Publication::position`]): the server sends every later
    /// publication it still has before the live ones, or the stream starts
    /// with a [`crate::SubscriptionError::Gap`] when it cannot. Default:
    /// start at the live position. Ignored when this client already
    /// subscribes to the channel (the new stream joins at the live
    /// position; read the rest with [`Client::history`]).
    pub since: Option<StreamPosition>,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            data: None,
            wait_for_ack: true,
            ack_timeout: None,
            since: None,
        }
    }
}

/// What every handle of one client shares.
pub(crate) struct Inner {
    pub(crate) cmd: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) ack_timeout: Duration,
    pub(crate) subscription_buffer: usize,
    pub(crate) receiver_buffer: usize,
    pub(crate) event_buffer: usize,
    pub(crate) token_store: Arc<dyn TokenStore>,
    pub(crate) next_id: AtomicU64,
}

/// A connection to a Herald (or socketcluster-server 20) server.
///
/// Cheap to clone; all clones share one connection. The connection closes
/// when [`Client::close`] is called or the last clone is dropped. Procedure
/// handlers that need the client should hold a [`WeakClient`], or the client
/// keeps itself alive through them.
///
/// ```no_run
/// # async fn demo() -> Result<(), herald_client::Error> {
/// use futures_util::StreamExt;
/// let client = herald_client::Client::connect("ws://127.0.0.1:8000/socketcluster/").await?;
/// let mut news = client.subscribe("news").await?;
/// client.publish("news", &serde_json::json!({"title": "hello"})).await?;
/// while let Some(item) = news.next().await {
///     match item {
///         Ok(publication) => println!("{}: {}", publication.channel, publication.data),
///         Err(e) => eprintln!("{e}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &self.state())
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// A handle that does not keep the client alive. From [`Client::downgrade`].
#[derive(Clone)]
pub struct WeakClient {
    inner: Weak<Inner>,
}

impl std::fmt::Debug for WeakClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeakClient").finish_non_exhaustive()
    }
}

impl WeakClient {
    /// The client, if some [`Client`] handle still exists.
    pub fn upgrade(&self) -> Option<Client> {
        self.inner.upgrade().map(|inner| Client { inner })
    }
}

fn to_raw<T: Serialize + ?Sized>(data: &T) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(data).map_err(Error::Encode)
}

impl Client {
    /// Connects with the default settings and waits for the handshake.
    /// See [`ClientBuilder::connect`].
    pub async fn connect(url: impl Into<String>) -> Result<Client> {
        Self::builder(url).connect().await
    }

    /// A builder for a client of the server at `url` (`ws://host:port/path`;
    /// an empty path means `/socketcluster/`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    /// A handle that does not keep the client alive.
    pub fn downgrade(&self) -> WeakClient {
        WeakClient {
            inner: Arc::downgrade(&self.inner),
        }
    }

    // ---- state ----

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.inner.shared.status.borrow().state
    }

    /// The socket id of the open connection.
    pub fn id(&self) -> Option<String> {
        self.inner.shared.status.borrow().id.clone()
    }

    /// Whether the socket is (or, while disconnected, was last) authenticated.
    pub fn is_authenticated(&self) -> bool {
        self.inner.shared.status.borrow().authenticated
    }

    /// The signed token the socket is authenticated with.
    pub fn signed_token(&self) -> Option<String> {
        self.inner.shared.status.borrow().signed_token.clone()
    }

    /// The claims of [`Client::signed_token`], decoded but not verified.
    pub fn claims(&self) -> Option<Value> {
        self.signed_token().as_deref().and_then(decode_claims)
    }

    /// The token in the token store (what the next handshake will send).
    pub fn stored_token(&self) -> Result<Option<String>> {
        self.inner.token_store.load().map_err(Error::TokenStore)
    }

    /// A stream of connection events from now on. See [`Events`].
    pub fn events(&self) -> Events {
        let (tx, rx) = queue(self.inner.event_buffer);
        self.inner.shared.event_sinks().push(tx);
        Events { rx }
    }

    /// Waits until the connection is open, connecting at once if the client
    /// is idle. Fails with [`Error::Closed`] if the client is closed first.
    /// Not bounded in time: wrap it in a timeout.
    pub async fn wait_open(&self) -> Result<()> {
        let mut rx = self.inner.shared.status.subscribe();
        if rx.borrow().state == ConnectionState::Idle {
            let _ = self.inner.cmd.try_send(Command::Connect);
        }
        let status = rx
            .wait_for(|s| matches!(s.state, ConnectionState::Open | ConnectionState::Closed))
            .await
            .map_err(|_| Error::Closed)?;
        match status.state {
            ConnectionState::Open => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    // ---- pub/sub ----

    /// Subscribes to `channel` and waits for the server's acknowledgement.
    ///
    /// Fails with [`Error::Remote`] when the server refuses (e.g.
    /// `ForbiddenError`), [`Error::Timeout`] when no acknowledgement arrives
    /// within the ack timeout. The subscription survives reconnects.
    pub async fn subscribe(&self, channel: impl Into<String>) -> Result<Subscription> {
        self.subscribe_with(channel, SubscribeOptions::default())
            .await
    }

    /// [`Client::subscribe`] with options.
    pub async fn subscribe_with(
        &self,
        channel: impl Into<String>,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        let channel = channel.into();
        let deadline = Instant::now() + options.ack_timeout.unwrap_or(self.inner.ack_timeout);
        let data = options.data.as_ref().map(to_raw).transpose()?;
        let (sink, rx) = queue(self.inner.subscription_buffer);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (ack_tx, ack_rx) = oneshot::channel();
        let mut subscription = Subscription {
            channel: channel.clone(),
            id,
            rx,
            cmd: self.inner.cmd.downgrade(),
            position: options.since.clone(),
        };
        let cmd = Command::Subscribe(SubscribeCommand {
            channel,
            data,
            since: options.since,
            id,
            sink,
            ack: options.wait_for_ack.then_some(ack_tx),
        });
        self.send_by(cmd, deadline).await?;
        if options.wait_for_ack {
            match timeout_at(deadline, ack_rx).await {
                Err(_) => return Err(Error::Timeout),
                Ok(Err(_)) => return Err(Error::Closed),
                Ok(Ok(Err(e))) => return Err(e),
                Ok(Ok(Ok(position))) => {
                    if position.is_some() {
                        subscription.position = position;
                    }
                }
            }
        }
        Ok(subscription)
    }

    /// Unsubscribes from `channel`: every [`Subscription`] of it ends.
    pub async fn unsubscribe(&self, channel: impl Into<String>) -> Result<()> {
        self.send(Command::Unsubscribe {
            channel: channel.into(),
        })
        .await
    }

    /// Publishes `data` on `channel` and waits for the server's
    /// acknowledgement (so a refusal, e.g. `ForbiddenError`, is reported).
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        channel: impl Into<String>,
        data: &T,
    ) -> Result<()> {
        let frame = Frame::Publish {
            channel: channel.into(),
            data: Some(to_raw(data)?),
        };
        self.request(frame, ReplyKind::Plain, self.inner.ack_timeout)
            .await
            .map(drop)
    }

    /// Publishes `data` on `channel` without asking for an acknowledgement.
    /// Returns once the publication is queued for sending.
    pub async fn publish_no_ack<T: Serialize + ?Sized>(
        &self,
        channel: impl Into<String>,
        data: &T,
    ) -> Result<()> {
        let frame = Frame::Publish {
            channel: channel.into(),
            data: Some(to_raw(data)?),
        };
        self.fire(frame).await
    }

    // ---- RPC ----

    /// Invokes `procedure` on the server with `data` and returns its reply
    /// (`Null` when it sent none), waiting at most the ack timeout.
    pub async fn invoke<T: Serialize + ?Sized>(&self, procedure: &str, data: &T) -> Result<Value> {
        self.invoke_with_timeout(procedure, data, self.inner.ack_timeout)
            .await
    }

    /// [`Client::invoke`] with its own ack timeout.
    pub async fn invoke_with_timeout<T: Serialize + ?Sized>(
        &self,
        procedure: &str,
        data: &T,
        ack_timeout: Duration,
    ) -> Result<Value> {
        let frame = Frame::Event {
            event: procedure.to_owned(),
            data: Some(to_raw(data)?),
        };
        self.request(frame, ReplyKind::Plain, ack_timeout).await
    }

    /// [`Client::invoke`], deserializing the reply as `R`.
    pub async fn invoke_as<R: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        procedure: &str,
        data: &T,
    ) -> Result<R> {
        let value = self.invoke(procedure, data).await?;
        serde_json::from_value(value).map_err(Error::Decode)
    }

    /// Sends a one-way message (no reply) to the server's receiver `event`.
    /// Returns once it is queued for sending.
    pub async fn transmit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<()> {
        let frame = Frame::Event {
            event: event.to_owned(),
            data: Some(to_raw(data)?),
        };
        self.fire(frame).await
    }

    /// A stream of the messages the server transmits under `event`. Several
    /// receivers of one event each get every message. See [`Receiver`].
    pub fn receiver(&self, event: impl Into<String>) -> Receiver {
        let event = event.into();
        let (tx, rx) = queue(self.inner.receiver_buffer);
        self.inner
            .shared
            .registry()
            .receivers
            .entry(event.clone())
            .or_default()
            .push(tx);
        Receiver { event, rx }
    }

    /// Serves the server's invokes of `procedure` with `handler`, replacing
    /// any previous handler. The handler runs on its own task; its `Err` is
    /// sent back as the error object. Invokes of procedures without a handler
    /// are answered with a `NoSuchProcedureError`.
    pub fn on_invoke<F, Fut>(&self, procedure: impl Into<String>, handler: F)
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Value, ErrorPayload>> + Send + 'static,
    {
        self.inner
            .shared
            .registry()
            .procedures
            .insert(procedure.into(), make_procedure(handler));
    }

    /// Removes the handler of `procedure`; returns whether there was one.
    pub fn remove_procedure(&self, procedure: &str) -> bool {
        self.inner
            .shared
            .registry()
            .procedures
            .remove(procedure)
            .is_some()
    }

    // ---- auth ----

    /// Authenticates the socket with a signed token (`#authenticate`). On
    /// success the token is stored and sent in later handshakes. A refused
    /// token fails with [`Error::Remote`] (e.g. `AuthTokenInvalidError`) and
    /// leaves the socket unauthenticated.
    pub async fn authenticate(&self, signed_token: &str) -> Result<()> {
        let frame = Frame::Event {
            event: "#authenticate".to_owned(),
            data: Some(to_raw(signed_token)?),
        };
        let kind = ReplyKind::Authenticate {
            token: signed_token.to_owned(),
        };
        self.request(frame, kind, self.inner.ack_timeout)
            .await
            .map(drop)
    }

    /// Drops the token: tells the server (`#removeAuthToken`) when connected
    /// and removes it from memory and from the token store.
    pub async fn deauthenticate(&self) -> Result<()> {
        let deadline = Instant::now() + self.inner.ack_timeout;
        let (tx, rx) = oneshot::channel();
        self.send_by(Command::Deauthenticate { done: tx }, deadline)
            .await?;
        match timeout_at(deadline, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Closed),
            Ok(Ok(r)) => r,
        }
    }

    // ---- lifecycle ----

    /// Closes the connection with 1000 and stops the client: pending calls
    /// fail with [`Error::Closed`], every stream ends, no reconnect follows.
    /// Affects every clone of this client. Closing twice is harmless.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .inner
            .cmd
            .send(Command::Close { done: tx })
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Whether the client was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.cmd.is_closed() || self.state() == ConnectionState::Closed
    }

    // ---- plumbing ----

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn receiver_buffer(&self) -> usize {
        self.inner.receiver_buffer
    }

    async fn send(&self, cmd: Command) -> Result<()> {
        self.inner.cmd.send(cmd).await.map_err(|_| Error::Closed)
    }

    async fn send_by(&self, cmd: Command, deadline: Instant) -> Result<()> {
        match timeout_at(deadline, self.inner.cmd.send(cmd)).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Closed),
            Ok(Ok(())) => Ok(()),
        }
    }

    async fn fire(&self, frame: Frame) -> Result<()> {
        let deadline = Instant::now() + self.inner.ack_timeout;
        let request = Request {
            frame,
            reply: None,
            kind: ReplyKind::Plain,
            deadline,
        };
        self.send_by(Command::Request(request), deadline).await
    }

    async fn request(&self, frame: Frame, kind: ReplyKind, ack_timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + ack_timeout;
        let (tx, rx) = oneshot::channel();
        let request = Request {
            frame,
            reply: Some(tx),
            kind,
            deadline,
        };
        self.send_by(Command::Request(request), deadline).await?;
        match timeout_at(deadline, rx).await {
            Err(_) => Err(Error::Timeout),
            Ok(Err(_)) => Err(Error::Closed),
            Ok(Ok(result)) => result,
        }
    }
}
