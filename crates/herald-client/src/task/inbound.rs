//! Reading what the server sends and dispatching each frame.
//!
//! A message is a ping (answered with a pong), one frame or a batch of
//! frames; an unreadable one is logged and ignored, never fatal. Each frame
//! goes where it belongs:
//!
//! * a reply, by its call id, to the request waiting for it (`requests`) or
//!   to the channel whose `#subscribe` it answers (`channels`); a reply
//!   nobody waits for (its caller gave up) is dropped;
//! * a publication to its channel's streams (`channels`, which drops
//!   duplicates and reports gaps);
//! * Herald's pushes: `#herald/unrecoverable` to its channel,
//!   `#herald/join` and `#herald/leave` to the presence streams (and, like
//!   every transmit, to the receivers registered under its name);
//! * auth pushes to `auth`; kick-outs to `channels`;
//! * the server's invokes to the procedure handlers, each run on its own
//!   task; the requests a client never serves are answered with an error.

use std::panic::AssertUnwindSafe;

use bytes::Bytes;
use futures_util::FutureExt as _;
use herald_protocol::error::names;
use herald_protocol::ext::{self, PresenceEvent};
use herald_protocol::inbound::{self, Packet};
use herald_protocol::{Cid, ErrorPayload, outbound};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::command::ReplyKind;
use super::{ProcReply, Task, raw_to_error, raw_to_value};
use crate::error::Error;
use crate::presence::PresenceChange;

/// Push data of type `T`, `None` (logged) when it does not fit.
fn push_data<T: DeserializeOwned>(event: &str, data: Option<&RawValue>) -> Option<T> {
    let parsed = data.and_then(|d| serde_json::from_str(d.get()).ok());
    if parsed.is_none() {
        tracing::debug!(%event, "ignoring a push with unreadable data");
    }
    parsed
}

impl Task {
    /// Handles one WebSocket text message.
    pub(super) fn handle_text(&mut self, text: &str) {
        if text.is_empty() {
            // A ping: answer with a pong (also empty).
            self.fx
                .frames
                .push(Bytes::from_static(outbound::PING.as_bytes()));
            return;
        }
        let message = match inbound::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "ignoring an unreadable message");
                return;
            }
        };
        for packet in message.into_packets() {
            match packet {
                Ok(p) => self.handle_packet(p),
                Err(e) => tracing::debug!(error = %e, "ignoring an unreadable frame"),
            }
        }
    }

    fn handle_packet(&mut self, packet: Packet<'_>) {
        match packet {
            Packet::Publish {
                channel,
                data,
                position,
                ..
            } => self
                .channels
                .deliver(&channel, data, position.as_ref(), &mut self.fx),
            Packet::KickOut { channel, message } => {
                self.channels.kicked_out(&channel, message, &mut self.fx)
            }
            Packet::SetAuthToken { cid, token } => {
                self.set_token(token);
                if let Some(cid) = cid {
                    self.fx.frames.push(outbound::ack(&cid));
                }
            }
            Packet::RemoveAuthToken { cid } => {
                self.forget_token(true);
                if let Some(cid) = cid {
                    self.fx.frames.push(outbound::ack(&cid));
                }
            }
            Packet::Response { rid, data, error } => self.on_response(&rid, data, error),
            Packet::Invoke {
                cid,
                procedure,
                data,
            } => self.on_invoke(cid, &procedure, data),
            Packet::Transmit { event, data } => self.on_transmit(&event, data),
            Packet::Invalid {
                cid: Some(cid),
                error,
            } => self.fx.frames.push(outbound::reply_error(&cid, &error)),
            Packet::Handshake { cid: Some(cid), .. }
            | Packet::Authenticate { cid: Some(cid), .. }
            | Packet::Subscribe { cid: Some(cid), .. }
            | Packet::Unsubscribe { cid: Some(cid), .. } => {
                let error = ErrorPayload::new(
                    names::INVALID_ACTION,
                    "A client does not accept this request",
                );
                self.fx.frames.push(outbound::reply_error(&cid, &error));
            }
            _ => {}
        }
    }

    /// A one-way message: Herald's pushes are handled, and every transmit
    /// goes to the receivers of its name.
    fn on_transmit(&mut self, event: &str, data: Option<&RawValue>) {
        match event {
            ext::UNRECOVERABLE => {
                if let Some(push) = push_data::<ext::Unrecoverable>(event, data) {
                    self.channels.unrecoverable(push, &mut self.fx);
                }
            }
            ext::JOIN | ext::LEAVE => {
                if let Some(e) = push_data::<PresenceEvent>(event, data) {
                    let change = if event == ext::JOIN {
                        PresenceChange::Join(e)
                    } else {
                        PresenceChange::Leave(e)
                    };
                    self.shared.presence_sinks().deliver(&change);
                }
            }
            _ => {}
        }
        let delivered = self.shared.registry().deliver(event, raw_to_value(data));
        if !delivered {
            tracing::trace!(%event, "no receiver for a server transmit");
        }
    }

    /// A reply: to the request or the subscribe with its call id.
    fn on_response(&mut self, rid: &Cid, data: Option<&RawValue>, error: Option<&RawValue>) {
        let Some(id) = rid.as_u64() else { return };
        if let Some(request) = self.requests.take(id) {
            let result = match error {
                Some(e) => Err(Error::Remote(raw_to_error(e))),
                None => Ok(raw_to_value(data)),
            };
            let result = match request.kind {
                ReplyKind::Plain => result,
                ReplyKind::Authenticate { token } => self.on_authenticate_reply(token, result),
            };
            let _ = request.reply.send(result);
            return;
        }
        self.channels
            .on_reply(id, data, error, Instant::now(), &mut self.fx);
    }

    fn on_invoke(&mut self, cid: Cid, procedure: &str, data: Option<&RawValue>) {
        let handler = self.shared.registry().procedures.get(procedure).cloned();
        let Some(handler) = handler else {
            let error = ErrorPayload::new(
                names::NO_SUCH_PROCEDURE,
                format!("The client has no handler for procedure {procedure}"),
            );
            self.fx.frames.push(outbound::reply_error(&cid, &error));
            return;
        };
        let data = raw_to_value(data);
        let replies = self.replies_tx.clone();
        let generation = self.generation;
        let procedure = procedure.to_owned();
        tokio::spawn(async move {
            let result = AssertUnwindSafe(async move { handler(data).await })
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(%procedure, "procedure handler panicked");
                    Err(ErrorPayload::new(
                        "InternalError",
                        "The client's procedure handler failed",
                    ))
                });
            let _ = replies.send(ProcReply {
                generation,
                cid,
                result,
            });
        });
    }

    /// A procedure handler finished: send its reply, unless its connection
    /// is gone (the call id means nothing on another one).
    pub(super) fn on_proc_reply(&mut self, reply: ProcReply) {
        if reply.generation != self.generation {
            return;
        }
        let frame = match reply.result {
            Ok(value) => {
                let raw = serde_json::value::to_raw_value(&value).ok();
                outbound::reply_raw(&reply.cid, raw.as_deref())
            }
            Err(error) => outbound::reply_error(&reply.cid, &error),
        };
        self.fx.frames.push(frame);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};
    use tokio::sync::oneshot;

    use super::super::command::{Command, Frame, Request, SubscribeCommand};
    use super::super::testing::{frames, task};
    use super::*;
    use crate::events::ClientEvent;
    use crate::queue::queue;

    fn request(t: &mut Task, event: &str) -> oneshot::Receiver<Result<Value, Error>> {
        let (tx, rx) = oneshot::channel();
        let r = Request {
            frame: Frame::Event {
                event: event.into(),
                data: None,
            },
            reply: Some(tx),
            kind: ReplyKind::Plain,
            deadline: Instant::now() + Duration::from_secs(5),
        };
        assert!(!t.handle_online(Some(Command::Request(r))));
        rx
    }

    #[tokio::test]
    async fn replies_are_routed_by_call_id() {
        let (mut t, _tx) = task();
        let mut a = request(&mut t, "a");
        let mut b = request(&mut t, "b");
        let (sink, _stream) = queue(4);
        let (ack, mut ack_rx) = oneshot::channel();
        let subscribe = SubscribeCommand {
            channel: "c".into(),
            data: None,
            since: None,
            id: 1,
            sink,
            ack: Some(ack),
        };
        assert!(!t.handle_online(Some(Command::Subscribe(subscribe))));
        let sent = frames(&mut t.fx);
        let cids: Vec<u64> = sent.iter().map(|f| f["cid"].as_u64().unwrap()).collect();
        assert_eq!(cids, [1, 2, 3]);

        // Out of order, in one batch, with an unknown id and garbage.
        t.handle_text(
            r#"[{"rid":3,"data":{"offset":4,"epoch":"e"}},{"rid":2,"error":{"name":"E","message":"m"}},{"rid":99},7,{"rid":1,"data":{"x":1}}]"#,
        );
        assert_eq!(a.try_recv().unwrap().unwrap(), json!({"x": 1}));
        assert!(matches!(b.try_recv(), Ok(Err(Error::Remote(e))) if e.name == "E"));
        assert_eq!(ack_rx.try_recv().unwrap().unwrap().unwrap().offset, 4);
        assert!(t.fx.frames.is_empty());
        assert_eq!(t.requests.in_flight(), 0);
    }

    #[tokio::test]
    async fn pings_pushes_and_refused_requests() {
        let (mut t, _tx) = task();
        t.handle_text("");
        t.handle_text(r##"{"event":"#setAuthToken","data":{"token":"a.b.c"},"cid":5}"##);
        t.handle_text(r##"{"event":"#subscribe","data":{"channel":"x"},"cid":6}"##);
        t.handle_text(r##"{"event":"nope","cid":7}"##);
        t.handle_text("not json{");
        let sent = frames(&mut t.fx);
        assert_eq!(sent[0], json!(""), "pong");
        assert_eq!(sent[1], json!({"rid": 5}));
        assert_eq!(sent[2]["error"]["name"], "InvalidActionError");
        assert_eq!(sent[3]["error"]["name"], "NoSuchProcedureError");
        assert_eq!(sent.len(), 4);
        assert!(t.shared.status.borrow().authenticated);
        t.handle_text(r##"{"event":"#removeAuthToken"}"##);
        assert!(!t.shared.status.borrow().authenticated);
    }

    #[tokio::test]
    async fn herald_pushes_reach_channels_presence_and_receivers() {
        let (mut t, _tx) = task();
        let (sink, mut stream) = queue(4);
        t.channels.add_listener(SubscribeCommand {
            channel: "c".into(),
            data: None,
            since: None,
            id: 1,
            sink,
            ack: None,
        });
        let (psink, mut presence) = queue(4);
        t.shared.presence_sinks().add(Some("c".into()), psink);
        let (rsink, mut raw) = queue(4);
        t.shared
            .registry()
            .receivers
            .entry(ext::JOIN.into())
            .or_default()
            .push(rsink);

        t.handle_text(
            r##"{"event":"#publish","data":{"channel":"c","data":1,"offset":3,"epoch":"e"}}"##,
        );
        t.handle_text(
            r##"{"event":"#herald/unrecoverable","data":{"channel":"c","offset":9,"epoch":"e"}}"##,
        );
        t.handle_text(r##"{"event":"#herald/unrecoverable","data":{"channel":"c"}}"##);
        t.handle_text(
            r##"{"event":"#herald/join","data":{"channel":"c","client":"s1","user":"ann"}}"##,
        );
        t.handle_text(
            r##"{"event":"#herald/leave","data":{"channel":"other","client":"s2","user":null}}"##,
        );
        t.handle_text(
            r##"{"event":"#herald/leave","data":{"channel":"c","client":"s1","user":"ann"}}"##,
        );

        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut items = Vec::new();
        while let std::task::Poll::Ready(Some(crate::queue::Delivery::Item(i))) =
            stream.poll_recv(&mut cx)
        {
            items.push(i);
        }
        assert!(
            matches!(&items[0], crate::subscription::SubItem::Publication(p) if p.offset() == Some(3))
        );
        assert!(matches!(&items[1], crate::subscription::SubItem::Gap(g) if g.missed() == Some(6)));
        assert_eq!(items.len(), 2, "the unreadable push is ignored");
        assert!(matches!(t.fx.events.as_slice(), [ClientEvent::Gap(_)]));

        let mut changes = Vec::new();
        while let std::task::Poll::Ready(Some(crate::queue::Delivery::Item(c))) =
            presence.poll_recv(&mut cx)
        {
            changes.push(c);
        }
        assert_eq!(changes.len(), 2, "only channel c: {changes:?}");
        assert!(matches!(&changes[0], PresenceChange::Join(e) if e.client == "s1"));
        assert!(
            matches!(&changes[1], PresenceChange::Leave(e) if e.user.as_deref() == Some("ann"))
        );
        assert!(matches!(
            raw.poll_recv(&mut cx),
            std::task::Poll::Ready(Some(crate::queue::Delivery::Item(v))) if v["client"] == "s1"
        ));
    }
}
