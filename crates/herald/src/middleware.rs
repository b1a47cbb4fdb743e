//! Middleware: code that runs where a request enters or leaves a socket and
//! may allow it, refuse it with a named error, or change its data.
//!
//! Implement [`Middleware`] for the inbound points you need (every method has
//! an allow-all default) and register it with
//! [`crate::ServerBuilder::middleware`]; middleware runs in registration
//! order and the first refusal wins. A refused subscribe, publish or invoke
//! is answered with the error (never dropped silently); a refused transmit
//! is dropped (it has no reply). Outbound publications go through
//! [`PublishOutMiddleware`], per subscriber, and only when one is registered:
//! without it a publication's frame is shared untouched by all subscribers.

use async_trait::async_trait;
use herald_protocol::ErrorPayload;
use http::StatusCode;
use serde_json::Value;

use crate::auth::Claims;
use crate::broker::Publication;
use crate::socket::{RequestInfo, Socket};

/// Refusal of an HTTP upgrade: the status and body the client receives.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// HTTP status, e.g. 401 or 403.
    pub status: StatusCode,
    /// Response body.
    pub message: String,
}

impl Rejection {
    /// A refusal with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// A client's `#subscribe`, as middleware sees it.
#[derive(Debug)]
pub struct SubscribeRequest {
    pub(crate) channel: String,
    /// Subscription data sent by the client (`options.data`).
    pub data: Option<Value>,
}

impl SubscribeRequest {
    /// The channel the client asks for.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

/// A client's `#publish`, as middleware sees it. Changing `data` changes what
/// every subscriber receives.
#[derive(Debug)]
pub struct PublishRequest {
    pub(crate) channel: String,
    /// The published data (`None` when the client sent none).
    pub data: Option<Value>,
}

impl PublishRequest {
    /// The channel published to.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

/// A client's invoke of a procedure, as middleware sees it.
#[derive(Debug)]
pub struct InvokeRequest {
    pub(crate) procedure: String,
    /// Call data; the procedure receives it as changed here.
    pub data: Value,
}

impl InvokeRequest {
    /// The procedure called.
    pub fn procedure(&self) -> &str {
        &self.procedure
    }
}

/// A client's transmit, as middleware sees it.
#[derive(Debug)]
pub struct TransmitRequest {
    pub(crate) event: String,
    /// Event data; the receiver gets it as changed here.
    pub data: Value,
}

impl TransmitRequest {
    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }
}

/// Inbound middleware. Every method defaults to allowing the request.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// The HTTP upgrade request (headers, origin, remote address), before the
    /// WebSocket exists. A refusal answers the HTTP request with its status.
    async fn upgrade(&self, request: &RequestInfo) -> Result<(), Rejection> {
        let _ = request;
        Ok(())
    }

    /// The handshake, after the handshake token (if any) was verified;
    /// `claims` are its claims. A refusal is sent as the handshake's error
    /// reply and the socket is closed with 4008.
    async fn handshake(
        &self,
        socket: &Socket,
        claims: Option<&Claims>,
    ) -> Result<(), ErrorPayload> {
        let _ = (socket, claims);
        Ok(())
    }

    /// A verified token is about to authenticate the socket (in the handshake
    /// or through `#authenticate`). A refusal leaves the socket
    /// unauthenticated and is reported to the client as its `authError`.
    async fn authenticate(&self, socket: &Socket, claims: &Claims) -> Result<(), ErrorPayload> {
        let _ = (socket, claims);
        Ok(())
    }

    /// A `#subscribe`.
    async fn subscribe(
        &self,
        socket: &Socket,
        request: &mut SubscribeRequest,
    ) -> Result<(), ErrorPayload> {
        let _ = (socket, request);
        Ok(())
    }

    /// A client `#publish`.
    async fn publish_in(
        &self,
        socket: &Socket,
        request: &mut PublishRequest,
    ) -> Result<(), ErrorPayload> {
        let _ = (socket, request);
        Ok(())
    }

    /// An invoke, before the procedure runs.
    async fn invoke(
        &self,
        socket: &Socket,
        request: &mut InvokeRequest,
    ) -> Result<(), ErrorPayload> {
        let _ = (socket, request);
        Ok(())
    }

    /// A transmit, before its receiver runs.
    async fn transmit(
        &self,
        socket: &Socket,
        request: &mut TransmitRequest,
    ) -> Result<(), ErrorPayload> {
        let _ = (socket, request);
        Ok(())
    }
}

/// What a [`PublishOutMiddleware`] decides for one subscriber.
#[derive(Debug)]
pub enum PublishOut {
    /// Deliver the publication as it is (sharing the common frame).
    Deliver,
    /// Do not deliver it to this subscriber.
    Drop,
    /// Deliver this data instead (the frame is re-encoded for this subscriber).
    Replace(Value),
}

/// Outbound middleware: runs for each publication and each subscriber, in
/// the subscriber's connection task, just before the frame is written.
#[async_trait]
pub trait PublishOutMiddleware: Send + Sync + 'static {
    /// Decides what `socket` receives of `publication`.
    async fn publish_out(&self, socket: &Socket, publication: &Publication) -> PublishOut;
}
