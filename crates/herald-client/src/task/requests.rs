//! Requests in flight, the offline outbox, and forgetting what nobody waits
//! for any more.
//!
//! A request with a reply gets a call id and waits in [`Requests`] until its
//! reply arrives (routed here by `inbound`), the connection is lost (it fails
//! with `BadConnection`: it may or may not have reached the server), or its
//! caller gives up (timed out or dropped): the periodic [`Requests::sweep`]
//! forgets those, so the table holds only what someone still waits for.
//! Requests made while disconnected wait in the outbox, in order, and are
//! sent when the next connection opens; ones whose caller gave up meanwhile
//! are dropped rather than sent late.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use herald_protocol::{Cid, outbound};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Cids;
use super::command::{Frame, ReplyKind, Request};
use crate::error::Error;

/// A request sent and waiting for its reply.
pub(crate) struct InFlight {
    pub(crate) reply: oneshot::Sender<Result<Value, Error>>,
    pub(crate) kind: ReplyKind,
    deadline: Instant,
}

impl InFlight {
    fn abandoned(&self, now: Instant) -> bool {
        now >= self.deadline || self.reply.is_closed()
    }
}

/// The requests of one client: in flight, and queued while offline.
#[derive(Default)]
pub(crate) struct Requests {
    pending: HashMap<u64, InFlight>,
    outbox: VecDeque<Request>,
}

impl Requests {
    /// Queues a request while disconnected, first dropping the abandoned
    /// ones at the head of the queue: during a long outage the queue would
    /// otherwise grow with every fire-and-forget call.
    pub(crate) fn enqueue(&mut self, r: Request, now: Instant) {
        while self.outbox.front().is_some_and(|q| q.abandoned(now)) {
            if let Some(Request {
                reply: Some(reply), ..
            }) = self.outbox.pop_front()
            {
                let _ = reply.send(Err(Error::Timeout));
            }
        }
        if !r.abandoned(now) {
            self.outbox.push_back(r);
        }
    }

    /// Writes a request's frame to `out`; one with a reply then waits for it.
    /// A request nobody waits for any more is not sent.
    pub(crate) fn send(&mut self, r: Request, now: Instant, cids: &mut Cids, out: &mut Vec<Bytes>) {
        if r.abandoned(now) {
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(Error::Timeout));
            }
            return;
        }
        let cid = r.reply.as_ref().map(|_| cids.next());
        let wire_cid = cid.map(Cid::from);
        let frame = match &r.frame {
            Frame::Event { event, data } => {
                outbound::request_raw(event, data.as_deref(), wire_cid.as_ref())
            }
            Frame::Publish { channel, data } => {
                outbound::publish_request(channel, data.as_deref(), wire_cid.as_ref())
            }
        };
        out.push(frame);
        if let (Some(cid), Some(reply)) = (cid, r.reply) {
            self.pending.insert(
                cid,
                InFlight {
                    reply,
                    kind: r.kind,
                    deadline: r.deadline,
                },
            );
        }
    }

    /// Sends everything queued while offline, in order.
    pub(crate) fn flush_outbox(&mut self, now: Instant, cids: &mut Cids, out: &mut Vec<Bytes>) {
        while let Some(r) = self.outbox.pop_front() {
            self.send(r, now, cids, out);
        }
    }

    /// The request waiting for the reply with call id `cid`, if any.
    pub(crate) fn take(&mut self, cid: u64) -> Option<InFlight> {
        self.pending.remove(&cid)
    }

    /// How many requests wait for a reply.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Forgets the requests whose caller gave up, in flight or queued.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.pending.retain(|_, p| !p.abandoned(now));
        self.outbox.retain(|r| !r.abandoned(now));
    }

    /// Fails every request in flight (the connection is gone).
    pub(crate) fn fail_pending(&mut self, error: impl Fn() -> Error) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(error()));
        }
    }

    /// Fails every queued, unsent request (a connection attempt failed, or
    /// the client is closing).
    pub(crate) fn fail_outbox(&mut self, error: impl Fn() -> Error) {
        for r in self.outbox.drain(..) {
            if let Some(reply) = r.reply {
                let _ = reply.send(Err(error()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(
        event: &str,
        deadline: Instant,
    ) -> (Request, oneshot::Receiver<Result<Value, Error>>) {
        let (tx, rx) = oneshot::channel();
        let r = Request {
            frame: Frame::Event {
                event: event.to_owned(),
                data: None,
            },
            reply: Some(tx),
            kind: ReplyKind::Plain,
            deadline,
        };
        (r, rx)
    }

    fn fire(channel: &str, deadline: Instant) -> Request {
        Request {
            frame: Frame::Publish {
                channel: channel.to_owned(),
                data: None,
            },
            reply: None,
            kind: ReplyKind::Plain,
            deadline,
        }
    }

    fn texts(out: &mut Vec<Bytes>) -> Vec<String> {
        out.drain(..)
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn sent_requests_get_call_ids_and_wait_for_their_reply() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let (mut reqs, mut cids, mut out) = (Requests::default(), Cids::default(), Vec::new());
        let (a, _ra) = request("a", later);
        reqs.send(a, now, &mut cids, &mut out);
        reqs.send(fire("c", later), now, &mut cids, &mut out);
        let (b, _rb) = request("b", later);
        reqs.send(b, now, &mut cids, &mut out);
        assert_eq!(
            texts(&mut out),
            [
                r##"{"event":"a","cid":1}"##,
                r##"{"event":"#publish","data":{"channel":"c"}}"##,
                r##"{"event":"b","cid":2}"##,
            ]
        );
        assert_eq!(reqs.in_flight(), 2);
        assert!(reqs.take(2).is_some());
        assert!(reqs.take(2).is_none(), "a reply is routed once");
        assert!(reqs.take(99).is_none());
    }

    #[test]
    fn expired_requests_are_not_sent_and_fail_with_timeout() {
        let now = Instant::now();
        let (mut reqs, mut cids, mut out) = (Requests::default(), Cids::default(), Vec::new());
        let (r, mut rx) = request("late", now);
        reqs.send(r, now, &mut cids, &mut out);
        assert!(out.is_empty());
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout))));
        // A caller that went away is not sent either.
        let (r, rx) = request("gone", now + Duration::from_secs(1));
        drop(rx);
        reqs.send(r, now, &mut cids, &mut out);
        assert!(out.is_empty());
        assert_eq!(reqs.in_flight(), 0);
    }

    #[test]
    fn sweep_forgets_what_nobody_waits_for() {
        let now = Instant::now();
        let (mut reqs, mut cids, mut out) = (Requests::default(), Cids::default(), Vec::new());
        let (short, _r1) = request("short", now + Duration::from_millis(10));
        let (long, _r2) = request("long", now + Duration::from_secs(60));
        let (dropped, r3) = request("dropped", now + Duration::from_secs(60));
        for r in [short, long, dropped] {
            reqs.send(r, now, &mut cids, &mut out);
        }
        drop(r3);
        reqs.sweep(now + Duration::from_secs(1));
        assert_eq!(reqs.in_flight(), 1);
        assert!(reqs.take(2).is_some(), "only the long request is left");
    }

    #[test]
    fn outbox_keeps_order_drops_expired_and_fails_on_demand() {
        let now = Instant::now();
        let (mut reqs, mut cids, mut out) = (Requests::default(), Cids::default(), Vec::new());
        let (first, mut r1) = request("first", now + Duration::from_millis(10));
        reqs.enqueue(first, now);
        reqs.enqueue(fire("x", now + Duration::from_secs(9)), now);
        // Queued after the first expired: the head is dropped and told.
        let (second, _r2) = request("second", now + Duration::from_secs(9));
        reqs.enqueue(second, now + Duration::from_secs(1));
        assert!(matches!(r1.try_recv(), Ok(Err(Error::Timeout))));
        reqs.flush_outbox(now + Duration::from_secs(1), &mut cids, &mut out);
        assert_eq!(
            texts(&mut out),
            [
                r##"{"event":"#publish","data":{"channel":"x"}}"##,
                r##"{"event":"second","cid":1}"##
            ]
        );

        let (third, mut r3) = request("third", now + Duration::from_secs(9));
        reqs.enqueue(third, now);
        reqs.fail_outbox(|| Error::bad_connection(1006, "gone"));
        assert!(matches!(
            r3.try_recv(),
            Ok(Err(Error::BadConnection { code: 1006, .. }))
        ));
        reqs.fail_pending(|| Error::Closed);
        assert_eq!(reqs.in_flight(), 0);
    }
}
