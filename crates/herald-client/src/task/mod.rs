//! The connection task: the one owner of the socket and of all protocol state.
//!
//! Each [`crate::Client`] spawns one task running [`Task::run`]. Handles talk
//! to it only through a bounded command queue ([`Command`]) and read back a
//! shared snapshot ([`Shared`]); no lock is ever held across an `.await`, and
//! the task never waits for a consumer (streams are drop-oldest queues), so a
//! slow consumer cannot stall pings or replies.
//!
//! The task cycles through: connecting (TCP, upgrade, `#handshake` with the
//! stored token) → open (reading frames, answering pings, writing commands,
//! resubscribing every channel) → lost (pending requests fail with
//! `BadConnection`, channels go back to pending) → waiting (jittered backoff)
//! → connecting again; or idle (no automatic reconnect) until a call needs the
//! server. It ends when the user closes the client or drops every handle: it
//! closes the socket with 1000, fails what is pending with `Closed` and ends
//! every stream.
//!
//! Its rooms, each a module:
//! * `run`: the run loop and the connection states (connecting, open,
//!   waiting, idle, closed), writing frames, losing and shutting down.
//! * `command`: what handles send ([`Command`]) and what the task does with
//!   each command online and offline.
//! * `channels`: channel bookkeeping: listeners, (re)subscription with
//!   recovery, delivery, refusals and their retry, kick-outs.
//! * `recovery`: the position in a channel's stream; duplicates and gaps.
//! * `requests`: requests in flight, the offline outbox, expiry and sweeping.
//! * `inbound`: reading frames and dispatching them (replies to their
//!   request or subscribe, pushes, the server's invokes).
//! * `auth`: the auth token: handshake outcome, `#setAuthToken`,
//!   `#removeAuthToken`, `#authenticate` replies.
//!
//! Everything but `run` works on plain data ([`Effects`] collects the frames
//! to write and the events to emit), so it is unit-tested without sockets.

mod auth;
mod channels;
mod command;
mod inbound;
mod recovery;
mod requests;
mod run;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use herald_protocol::ErrorPayload;
use http::Uri;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::events::{ClientEvent, Status};
use crate::handlers::Registry;
use crate::presence::PresenceSinks;
use crate::queue::QueueSender;

use channels::Channels;
use requests::Requests;

pub(crate) use command::{Command, Frame, ReplyKind, Request, SubscribeCommand};

/// State shared between the handles and the task. Every lock is short and
/// never held across an `.await`.
pub(crate) struct Shared {
    pub(crate) status: watch::Sender<Status>,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) events: Mutex<Vec<QueueSender<ClientEvent>>>,
    pub(crate) presence: Mutex<PresenceSinks>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            status: watch::Sender::new(Status::default()),
            registry: Mutex::new(Registry::default()),
            events: Mutex::new(Vec::new()),
            presence: Mutex::new(PresenceSinks::default()),
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn event_sinks(&self) -> MutexGuard<'_, Vec<QueueSender<ClientEvent>>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn presence_sinks(&self) -> MutexGuard<'_, PresenceSinks> {
        self.presence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: ClientEvent) {
        tracing::debug!(?event, "herald-client event");
        self.event_sinks().retain(|s| s.push(event.clone()));
    }
}

/// What handling an input produced: frames to write on the open connection
/// and events to emit, in order. The task writes and emits them after each
/// step; tests read them.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) frames: Vec<Bytes>,
    pub(crate) events: Vec<ClientEvent>,
}

/// The call ids of one client: 1, 2, 3, … (never 0), wrapping.
#[derive(Debug)]
pub(crate) struct Cids {
    next: u64,
}

impl Default for Cids {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl Cids {
    pub(crate) fn next(&mut self) -> u64 {
        let cid = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        cid
    }
}

/// A procedure handler's result, tagged with the connection it belongs to.
struct ProcReply {
    generation: u64,
    cid: herald_protocol::Cid,
    result: Result<Value, ErrorPayload>,
}

/// The connection task. See the module documentation.
pub(crate) struct Task {
    uri: Uri,
    config: ClientConfig,
    shared: Arc<Shared>,
    cmd_rx: mpsc::Receiver<Command>,
    replies_tx: mpsc::UnboundedSender<ProcReply>,
    replies_rx: mpsc::UnboundedReceiver<ProcReply>,
    cids: Cids,
    /// Counts connections, so that a procedure reply meant for a lost
    /// connection is not sent on the next one.
    generation: u64,
    channels: Channels,
    requests: Requests,
    fx: Effects,
    backoff: Backoff,
    /// Told the outcome of the first attempt; set when `connect()` waits.
    first: Option<oneshot::Sender<Result<(), Error>>>,
    close_done: Vec<oneshot::Sender<()>>,
}

impl Task {
    pub(crate) fn new(
        uri: Uri,
        config: ClientConfig,
        shared: Arc<Shared>,
        cmd_rx: mpsc::Receiver<Command>,
        first: Option<oneshot::Sender<Result<(), Error>>>,
    ) -> Self {
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let backoff = Backoff::new(config.reconnect.clone());
        let channels = Channels::new(config.reconnect.clone());
        Self {
            uri,
            config,
            shared,
            cmd_rx,
            replies_tx,
            replies_rx,
            cids: Cids::default(),
            generation: 0,
            channels,
            requests: Requests::default(),
            fx: Effects::default(),
            backoff,
            first,
            close_done: Vec::new(),
        }
    }

    /// Emits the events collected so far, then `event`.
    fn emit(&mut self, event: ClientEvent) {
        self.flush_events();
        self.shared.emit(event);
    }

    /// Emits the events collected in [`Effects`].
    fn flush_events(&mut self) {
        for event in self.fx.events.drain(..) {
            self.shared.emit(event);
        }
    }
}

/// Frame data as a JSON value (`Null` when absent).
pub(crate) fn raw_to_value(raw: Option<&RawValue>) -> Value {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
        .unwrap_or(Value::Null)
}

/// An error object from a reply.
pub(crate) fn raw_to_error(raw: &RawValue) -> ErrorPayload {
    ErrorPayload::from_value(serde_json::from_str(raw.get()).unwrap_or(Value::Null))
}

#[cfg(test)]
pub(crate) mod testing {
    //! Building a task and reading what it wrote, without a socket.

    use super::*;
    use crate::config::ReconnectPolicy;

    /// A task that never connects (nothing runs it), with its command sender.
    pub(crate) fn task() -> (Task, mpsc::Sender<Command>) {
        let (tx, rx) = mpsc::channel(16);
        let config = ClientConfig {
            reconnect: ReconnectPolicy::default(),
            ..ClientConfig::default()
        }
        .sanitized();
        let uri: Uri = "ws://127.0.0.1:1/socketcluster/".parse().expect("uri");
        (
            Task::new(uri, config, Arc::new(Shared::new()), rx, None),
            tx,
        )
    }

    /// The frames written so far, as JSON, and forgets them.
    pub(crate) fn frames(fx: &mut Effects) -> Vec<Value> {
        fx.frames
            .drain(..)
            .map(|b| {
                let text = std::str::from_utf8(&b).expect("utf-8 frame");
                serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()))
            })
            .collect()
    }

    /// Raw JSON for a test input.
    pub(crate) fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("valid JSON")
    }

    #[test]
    fn cids_skip_zero_when_wrapping() {
        let mut c = Cids { next: u64::MAX };
        assert_eq!(c.next(), u64::MAX);
        assert_eq!(c.next(), 1);
        assert_eq!(c.next(), 2);
    }
}
