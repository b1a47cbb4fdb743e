//! Procedures (invoke handlers) and receivers (transmit handlers).
//!
//! A procedure is an async function from a [`Request`] to
//! `Result<impl Serialize, ErrorPayload>`: the value is the client's reply
//! (a procedure returning `()` is acknowledged without data),
//! the error reaches the client as a rejected call with its `name`. A
//! receiver is an async function of a [`Message`]; transmits have no reply.
//! Each call runs in its own task, so a slow procedure never delays the
//! socket's other traffic, and a panicking one is answered with an
//! `InternalServerError` instead of leaving the client waiting.

use std::future::Future;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use herald_protocol::error::{ErrorPayload, names};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument as _;

use crate::socket::Socket;

/// One invoke of a procedure.
#[derive(Debug, Clone)]
pub struct Request {
    /// The calling socket.
    pub socket: Socket,
    /// The procedure name.
    pub procedure: String,
    /// The call data (`null` when the client sent none).
    pub data: Value,
}

impl Request {
    /// The call data as `T`, or an `InvalidArgumentsError` for the client.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ErrorPayload> {
        T::deserialize(&self.data).map_err(|e| {
            ErrorPayload::new(
                names::INVALID_ARGUMENTS,
                format!("Invalid arguments for {}: {e}", self.procedure),
            )
        })
    }
}

/// One transmit received from a client.
#[derive(Debug, Clone)]
pub struct Message {
    /// The sending socket.
    pub socket: Socket,
    /// The event name.
    pub event: String,
    /// The event data (`null` when none).
    pub data: Value,
}

/// A procedure's reply data: `None` for a procedure returning `()`, which
/// is answered `{"rid":N}` with no data (as socketcluster-server answers
/// `request.end()`).
pub(crate) type BoxProcedure =
    Arc<dyn Fn(Request) -> BoxFuture<'static, Result<Option<Value>, ErrorPayload>> + Send + Sync>;
pub(crate) type BoxReceiver = Arc<dyn Fn(Message) -> BoxFuture<'static, ()> + Send + Sync>;

/// Wraps a typed procedure into the boxed form the server stores.
pub(crate) fn box_procedure<F, Fut, T>(f: F) -> BoxProcedure
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ErrorPayload>> + Send + 'static,
    T: Serialize + 'static,
{
    let unit = std::any::TypeId::of::<T>() == std::any::TypeId::of::<()>();
    Arc::new(move |req: Request| {
        let name = req.procedure.clone();
        // Every line the procedure logs names its socket.
        let span = socket_span(&req.socket);
        let fut = f(req);
        async move {
            match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
                Ok(Ok(_)) if unit => Ok(None),
                Ok(Ok(v)) => serde_json::to_value(v).map(Some).map_err(|e| {
                    tracing::error!(procedure = %name, error = %e, "procedure result is not JSON");
                    ErrorPayload::new(names::INTERNAL, "Procedure returned an unencodable result")
                }),
                Ok(Err(e)) => Err(e),
                Err(_) => {
                    tracing::error!(procedure = %name, "procedure panicked");
                    Err(ErrorPayload::new(names::INTERNAL, "Procedure failed"))
                }
            }
        }
        .instrument(span)
        .boxed()
    })
}

/// Wraps a receiver into the boxed form the server stores.
pub(crate) fn box_receiver<F, Fut>(f: F) -> BoxReceiver
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |msg: Message| {
        let event = msg.event.clone();
        let span = socket_span(&msg.socket);
        let fut = f(msg);
        async move {
            if std::panic::AssertUnwindSafe(fut)
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(%event, "receiver panicked");
            }
        }
        .instrument(span)
        .boxed()
    })
}

/// The span of a handler's task: its log lines carry the socket's id
/// (`handler{socket=...}`), as the connection task's own lines carry it in
/// their `socket` field.
fn socket_span(socket: &Socket) -> tracing::Span {
    tracing::info_span!("handler", socket = %socket.id())
}
