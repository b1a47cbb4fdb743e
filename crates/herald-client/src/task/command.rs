//! What the handles ask of the task, and what the task does with each
//! request depending on whether a connection is open.
//!
//! Online, a command turns into frames at once. Offline (waiting to
//! reconnect, connecting, idle), requests wait in the outbox and
//! subscriptions are registered, to be sent when the next connection opens;
//! unsubscribing needs no server then. The answer of [`Task::handle_offline`]
//! tells the run loop whether the command needs a connection (an idle
//! client then connects).

use herald_protocol::ext::StreamPosition;
use herald_protocol::outbound;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Task;
use crate::error::Error;
use crate::queue::QueueSender;
use crate::subscription::SubItem;

/// What a request frame looks like; the task adds the call id.
#[derive(Debug)]
pub(crate) enum Frame {
    /// `{"event":E,"data":D,"cid":N}`.
    Event {
        event: String,
        data: Option<Box<RawValue>>,
    },
    /// `{"event":"#publish","data":{"channel":C,"data":D},"cid":N}`.
    Publish {
        channel: String,
        data: Option<Box<RawValue>>,
    },
}

/// What the task does with a reply before handing it to the caller.
#[derive(Debug)]
pub(crate) enum ReplyKind {
    Plain,
    /// `#authenticate`: on success the token is stored.
    Authenticate {
        token: String,
    },
}

/// A request to send, with or without a reply.
pub(crate) struct Request {
    pub(crate) frame: Frame,
    pub(crate) reply: Option<oneshot::Sender<Result<Value, Error>>>,
    pub(crate) kind: ReplyKind,
    /// After this the request is not sent any more and a pending reply is
    /// abandoned (the caller has timed out).
    pub(crate) deadline: Instant,
}

impl Request {
    /// Whether nobody waits for this request any more.
    pub(crate) fn abandoned(&self, now: Instant) -> bool {
        now >= self.deadline || self.reply.as_ref().is_some_and(|r| r.is_closed())
    }
}

/// The acknowledgement of a subscribe: the channel's position in its stream
/// when it has history.
pub(crate) type SubscribeAck = oneshot::Sender<Result<Option<StreamPosition>, Error>>;

/// A new [`crate::Subscription`] of a channel.
pub(crate) struct SubscribeCommand {
    pub(crate) channel: String,
    /// Sent with the `#subscribe` (and every resubscribe).
    pub(crate) data: Option<Box<RawValue>>,
    /// Recover from this position on the first subscribe.
    pub(crate) since: Option<StreamPosition>,
    /// The listener's id, to find it when its stream is dropped.
    pub(crate) id: u64,
    pub(crate) sink: QueueSender<SubItem>,
    /// Told when the server acknowledges (when the caller waits for it).
    pub(crate) ack: Option<SubscribeAck>,
}

/// What a handle asks of the task.
pub(crate) enum Command {
    Request(Request),
    Subscribe(SubscribeCommand),
    Unsubscribe {
        channel: String,
    },
    ListenerDropped {
        channel: String,
        id: u64,
    },
    Deauthenticate {
        done: oneshot::Sender<Result<(), Error>>,
    },
    /// Connect now if idle.
    Connect,
    Close {
        done: oneshot::Sender<()>,
    },
}

/// What to do with a command when not connected.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Offline {
    Nothing,
    NeedsServer,
    Shutdown,
}

impl Task {
    /// Handles a command while connected. Returns true when the client must
    /// shut down (`None`: every handle is gone).
    pub(super) fn handle_online(&mut self, cmd: Option<Command>) -> bool {
        let Some(cmd) = cmd else { return true };
        match cmd {
            Command::Request(r) => {
                self.requests
                    .send(r, Instant::now(), &mut self.cids, &mut self.fx.frames)
            }
            Command::Subscribe(s) => {
                let channel = s.channel.clone();
                if self.channels.add_listener(s) {
                    self.channels
                        .subscribe(&channel, &mut self.cids, &mut self.fx);
                }
            }
            Command::Unsubscribe { channel } => self.channels.remove(&channel, true, &mut self.fx),
            Command::ListenerDropped { channel, id } => {
                self.channels
                    .remove_listener(&channel, id, true, &mut self.fx)
            }
            Command::Deauthenticate { done } => {
                self.fx.frames.push(outbound::remove_auth_token());
                self.forget_token(true);
                let _ = done.send(Ok(()));
            }
            Command::Connect => {}
            Command::Close { done } => {
                self.close_done.push(done);
                return true;
            }
        }
        false
    }

    /// Handles a command while not connected.
    pub(super) fn handle_offline(&mut self, cmd: Option<Command>) -> Offline {
        let Some(cmd) = cmd else {
            return Offline::Shutdown;
        };
        match cmd {
            Command::Request(r) => {
                self.requests.enqueue(r, Instant::now());
                Offline::NeedsServer
            }
            Command::Subscribe(s) => {
                self.channels.add_listener(s);
                Offline::NeedsServer
            }
            Command::Unsubscribe { channel } => {
                self.channels.remove(&channel, false, &mut self.fx);
                Offline::Nothing
            }
            Command::ListenerDropped { channel, id } => {
                self.channels
                    .remove_listener(&channel, id, false, &mut self.fx);
                Offline::Nothing
            }
            Command::Deauthenticate { done } => {
                self.forget_token(true);
                let _ = done.send(Ok(()));
                Offline::Nothing
            }
            Command::Connect => Offline::NeedsServer,
            Command::Close { done } => {
                self.close_done.push(done);
                Offline::Shutdown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{frames, task};
    use super::*;
    use crate::queue::queue;
    use serde_json::json;

    fn subscribe(channel: &str, id: u64) -> (Command, crate::queue::QueueReceiver<SubItem>) {
        let (sink, rx) = queue(8);
        let cmd = Command::Subscribe(SubscribeCommand {
            channel: channel.to_owned(),
            data: None,
            since: None,
            id,
            sink,
            ack: None,
        });
        (cmd, rx)
    }

    #[tokio::test]
    async fn offline_commands_wait_for_a_connection_and_online_ones_write_frames() {
        let (mut t, _tx) = task();
        let (cmd, _rx) = subscribe("a", 1);
        assert_eq!(t.handle_offline(Some(cmd)), Offline::NeedsServer);
        assert!(t.fx.frames.is_empty(), "nothing is written offline");
        let (tx, _reply) = oneshot::channel();
        let request = Request {
            frame: Frame::Event {
                event: "e".into(),
                data: None,
            },
            reply: Some(tx),
            kind: ReplyKind::Plain,
            deadline: Instant::now() + std::time::Duration::from_secs(5),
        };
        assert_eq!(
            t.handle_offline(Some(Command::Request(request))),
            Offline::NeedsServer
        );
        assert_eq!(
            t.handle_offline(Some(Command::Unsubscribe {
                channel: "zzz".into()
            })),
            Offline::Nothing
        );
        assert_eq!(t.handle_offline(None), Offline::Shutdown);
        assert!(t.fx.frames.is_empty());

        // Online: a new channel is subscribed at once; a second listener of
        // it sends nothing more; unsubscribing tells the server.
        let (cmd, _rx1) = subscribe("b", 2);
        assert!(!t.handle_online(Some(cmd)));
        let (cmd, _rx2) = subscribe("b", 3);
        assert!(!t.handle_online(Some(cmd)));
        let sent = frames(&mut t.fx);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["event"], "#subscribe");
        assert_eq!(sent[0]["data"], json!({"channel": "b"}));
        assert!(!t.handle_online(Some(Command::Unsubscribe {
            channel: "b".into()
        })));
        assert_eq!(
            frames(&mut t.fx),
            vec![json!({"event": "#unsubscribe", "data": "b"})]
        );
        let (done, _) = oneshot::channel();
        assert!(t.handle_online(Some(Command::Close { done })));
        assert!(t.handle_online(None));
    }
}
