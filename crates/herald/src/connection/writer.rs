//! The writing side of a socket: what is queued becomes frames, in batches,
//! with each history channel's stream kept in order for this client.
//!
//! Writes are batched: when the queue has items, up to [`MAX_BATCH`] frames
//! or [`MAX_BATCH_BYTES`] are fed to the codec (which gathers them into
//! vectored writes) and flushed once; the batch stays counted in the
//! queue's bounds until it is written (`crate::queue`). A write that blocks
//! for `write_timeout` drops the socket.
//!
//! **Streams.** On a channel with history, the client knows its position
//! (offset and epoch) and must see every later publication once, in order.
//! The [`Writer`] keeps that position per channel and drops a publication
//! it already delivered (the registry's fan-out and a recovery can both
//! carry one). While a subscribe on such a channel is answered, the
//! channel's live publications are **held**
//! ([`Outbound::SubscribeBegin`]); at [`Outbound::SubscribeEnd`] the
//! recovered publications go out, then the reply, then what was held after
//! the reply's position: no gap and no duplicate across the switch from
//! history to live.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herald_protocol::outbound;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use super::CLOSE_GRACE;
use crate::broker::{MessageKind, Publication, StreamPosition};
use crate::middleware::PublishOut;
use crate::queue::{Bounds, Event, QueueRx, Taken};
use crate::scratch::{Pool, Scratch};
use crate::server::ServerInner;
use crate::socket::{Notice, Outbound, Socket, SocketShared, SubscribeEnd};
use crate::transport::ws::WebSocket;

/// Most frames written per flush.
pub(super) const MAX_BATCH: usize = 512;
/// Most bytes taken from the queue per flush.
pub(super) const MAX_BATCH_BYTES: usize = 256 * 1024;

thread_local! {
    /// This thread's vectors for what a batch writes (`crate::scratch`).
    static READY: Pool<Ready> = const { std::cell::RefCell::new(Vec::new()) };
    /// This thread's vectors for the frames a batch hands the codec.
    static FRAMES: Pool<Bytes> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What to write for one queued item.
#[derive(Debug)]
pub(super) enum Ready {
    /// A frame as it is.
    Frame(Bytes),
    /// A publication: its shared frame, after publish-out middleware.
    Publication(Arc<Publication>),
}

/// The socket held more publications than its queue's bounds while
/// subscribes were answered.
#[derive(Debug)]
pub(super) struct Overflow;

/// Per-socket stream bookkeeping. See the module documentation.
///
/// Most sockets never subscribe to a channel with history, so the
/// bookkeeping ([`Streams`]) is boxed on first use: an idle socket's task
/// carries a pointer, not two maps.
pub(super) struct Writer {
    streams: Option<Box<Streams>>,
    max_held: Bounds,
}

impl Writer {
    /// A writer that holds at most `max_held` (frames and bytes) during
    /// subscribes.
    pub(super) fn new(max_held: Bounds) -> Self {
        Self {
            streams: None,
            max_held,
        }
    }

    /// Turns one queued item into what to write, appended to `out` in
    /// order. `subscribed` is the socket's set of channels.
    pub(super) fn accept(
        &mut self,
        item: Outbound,
        subscribed: &Mutex<HashSet<Arc<str>>>,
        out: &mut Vec<Ready>,
    ) -> Result<(), Overflow> {
        match (&mut self.streams, item) {
            (None, Outbound::Frame(frame) | Outbound::Reply(frame)) => {
                out.push(Ready::Frame(frame));
                Ok(())
            }
            (None, Outbound::Publication(p)) if p.position.is_none() => {
                Streams::unpositioned(p, out);
                Ok(())
            }
            (Some(streams), item) => streams.accept(item, subscribed, out),
            (None, item) => self
                .streams
                .insert(Box::new(Streams::new(self.max_held)))
                .accept(item, subscribed, out),
        }
    }

    /// Number of channels with a position (for tests).
    #[cfg(test)]
    pub(super) fn tracked(&self) -> usize {
        self.streams.as_ref().map_or(0, |s| s.positions.len())
    }
}

/// The positions and held publications of a socket's history channels.
struct Streams {
    /// The client's position on each history channel it is subscribed to.
    positions: HashMap<Arc<str>, StreamPosition>,
    /// History channels being subscribed, with what arrived meanwhile.
    held: HashMap<Arc<str>, Vec<Outbound>>,
    held_count: usize,
    held_bytes: usize,
    max_held: Bounds,
}

impl Streams {
    fn new(max_held: Bounds) -> Self {
        Self {
            positions: HashMap::new(),
            held: HashMap::new(),
            held_count: 0,
            held_bytes: 0,
            max_held,
        }
    }

    /// A publication without a position (a channel without history).
    fn unpositioned(p: Arc<Publication>, out: &mut Vec<Ready>) {
        match p.kind {
            MessageKind::Publication => out.push(Ready::Publication(p)),
            _ => out.push(Ready::Frame(p.frame.clone())),
        }
    }

    /// Turns one queued item into what to write, appended to `out` in
    /// order. `subscribed` is the socket's set of channels.
    fn accept(
        &mut self,
        item: Outbound,
        subscribed: &Mutex<HashSet<Arc<str>>>,
        out: &mut Vec<Ready>,
    ) -> Result<(), Overflow> {
        let socket = subscribed;
        match item {
            Outbound::Frame(frame) | Outbound::Reply(frame) => out.push(Ready::Frame(frame)),
            Outbound::Publication(p) if p.position.is_none() => Self::unpositioned(p, out),
            Outbound::Publication(p) => {
                if self.held.contains_key(&p.channel) {
                    return self.hold_in(p.channel.clone(), Outbound::Publication(p));
                }
                self.publication(p, socket, out);
            }
            Outbound::Unrecoverable(notice) => {
                if self.held.contains_key(&notice.channel) {
                    return self.hold_in(notice.channel.clone(), Outbound::Unrecoverable(notice));
                }
                self.notice(&notice, out);
            }
            Outbound::SubscribeBegin(channel) => {
                self.held.entry(channel).or_default();
            }
            Outbound::SubscribeEnd(end) => self.end(*end, socket, out)?,
        }
        Ok(())
    }

    fn hold_in(&mut self, channel: Arc<str>, item: Outbound) -> Result<(), Overflow> {
        let cost = item.cost();
        if self.held_count >= self.max_held.frames.max(1)
            || (self.held_count > 0 && self.held_bytes + cost > self.max_held.bytes)
        {
            return Err(Overflow);
        }
        self.held_count += 1;
        self.held_bytes += cost;
        self.held.entry(channel).or_default().push(item);
        Ok(())
    }

    /// A publication with a position: written unless already delivered.
    fn publication(
        &mut self,
        p: Arc<Publication>,
        socket: &Mutex<HashSet<Arc<str>>>,
        out: &mut Vec<Ready>,
    ) {
        let Some(pos) = p.position.as_ref() else {
            out.push(Ready::Publication(p));
            return;
        };
        match self.positions.get_mut(&p.channel) {
            Some(known) if known.epoch == pos.epoch && pos.offset <= known.offset => return,
            Some(known) => *known = pos.clone(),
            None => {
                self.prune(socket);
                self.positions.insert(p.channel.clone(), pos.clone());
            }
        }
        out.push(Ready::Publication(p));
    }

    /// `#herald/unrecoverable`: written unless the client is already past
    /// the position it names.
    fn notice(&mut self, notice: &Notice, out: &mut Vec<Ready>) {
        if let Some(known) = self.positions.get(&notice.channel)
            && known.epoch == notice.position.epoch
            && known.offset >= notice.position.offset
        {
            return;
        }
        self.positions
            .insert(notice.channel.clone(), notice.position.clone());
        out.push(Ready::Frame(notice.frame.clone()));
    }

    fn end(
        &mut self,
        end: SubscribeEnd,
        socket: &Mutex<HashSet<Arc<str>>>,
        out: &mut Vec<Ready>,
    ) -> Result<(), Overflow> {
        let held = self.held.remove(&end.channel).unwrap_or_default();
        self.held_count = self.held_count.saturating_sub(held.len());
        let bytes: usize = held.iter().map(Outbound::cost).sum();
        self.held_bytes = self.held_bytes.saturating_sub(bytes);
        let Some(position) = end.position else {
            // Refused: what was held belongs to no subscription.
            out.extend(end.reply.map(Ready::Frame));
            return Ok(());
        };
        // The recovered publications are exactly those after the client's
        // position, in order: they define where it stands.
        for p in end.recovered {
            if let Some(pos) = &p.position {
                self.positions.insert(end.channel.clone(), pos.clone());
            }
            out.push(Ready::Publication(p));
        }
        out.extend(end.reply.map(Ready::Frame));
        match self.positions.get_mut(&end.channel) {
            Some(known) if known.epoch == position.epoch && known.offset >= position.offset => {}
            Some(known) => *known = position,
            None => {
                self.prune(socket);
                self.positions.insert(end.channel.clone(), position);
            }
        }
        for item in held {
            self.accept(item, socket, out)?;
        }
        Ok(())
    }

    /// Forgets the positions of channels the socket left, once they
    /// outnumber its subscriptions (a client subscribing and unsubscribing
    /// many channels must not grow this map).
    fn prune(&mut self, subscribed: &Mutex<HashSet<Arc<str>>>) {
        if self.positions.len() < 16 {
            return;
        }
        let channels = subscribed.lock();
        if self.positions.len() <= 2 * channels.len() {
            return;
        }
        let held = &self.held;
        self.positions
            .retain(|c, _| channels.contains(c) || held.contains_key(c));
    }
}

/// The writing side of a socket's task: its queue, its streams, and what
/// publish-out middleware needs.
pub(super) struct Out {
    writer: Writer,
    rx: QueueRx,
    /// The socket (its shared state, and through it the server).
    socket: Socket,
}

impl Out {
    pub(super) fn new(socket: Socket, rx: QueueRx, bounds: Bounds) -> Self {
        Self {
            writer: Writer::new(bounds),
            rx,
            socket,
        }
    }

    fn shared(&self) -> &SocketShared {
        &self.socket.0
    }

    fn server(&self) -> &ServerInner {
        &self.socket.0.server
    }

    /// Gives back the room of an empty queue (called while idle).
    pub(super) fn trim(&mut self) {
        self.rx.trim();
    }

    /// The task's next wake-up from its queue: signals, or an item.
    pub(super) async fn next_event(&mut self) -> Event {
        self.rx.next_event().await
    }

    /// Writes a batch of queued frames, starting with `first`, with one
    /// flush. The batch stays counted in the queue's bounds until written.
    pub(super) async fn write_batch<S>(
        &mut self,
        ws: &mut WebSocket<S>,
        first: Outbound,
    ) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut taken = Taken::default();
        // From the thread's pools: no allocation per batch
        // (`crate::scratch`).
        let mut ready = Scratch::take(&READY);
        let result = if self.take_batch(first, &mut taken, &mut ready).is_err() {
            self.shared().condemn_slow_consumer();
            Ok(())
        } else if ready.is_empty() {
            Ok(())
        } else {
            let mut out = Scratch::take(&FRAMES);
            if self.server().publish_out.is_empty() {
                out.extend(ready.iter().map(|r| match r {
                    Ready::Frame(f) => f.clone(),
                    Ready::Publication(p) => p.frame.clone(),
                }));
            } else {
                // Boxed: with publish-out middleware only, so that its
                // futures are not part of every socket's task.
                Box::pin(self.publish_out(&ready, &mut out)).await;
            }
            let result = self.write_frames(ws, &out).await;
            if result.is_ok() {
                let bytes = out.iter().map(|f| f.len() as u64).sum();
                let publications = ready.iter().filter_map(|r| match r {
                    Ready::Publication(p) => Some(p.received),
                    Ready::Frame(_) => None,
                });
                self.server()
                    .metrics
                    .written(out.len() as u64, bytes, publications);
            }
            result
        };
        taken.release(&self.shared().queue);
        result
    }

    /// Takes a batch from the queue, starting with `first`: at most
    /// [`MAX_BATCH`] items or frames and about [`MAX_BATCH_BYTES`], turned
    /// into what to write.
    fn take_batch(
        &mut self,
        first: Outbound,
        taken: &mut Taken,
        ready: &mut Vec<Ready>,
    ) -> Result<(), Overflow> {
        let mut next = Some(first);
        let mut items = 0;
        while let Some(item) = next {
            taken.add(&item);
            self.writer.accept(item, &self.socket.0.channels, ready)?;
            items += 1;
            if items >= MAX_BATCH || ready.len() >= MAX_BATCH || taken.bytes() >= MAX_BATCH_BYTES {
                break;
            }
            next = self.rx.try_recv().ok();
        }
        Ok(())
    }

    /// Writes `frames` as text frames with one flush, within
    /// `write_timeout`: a write blocked on a peer that does not read is
    /// bounded in memory meanwhile (what it writes is still counted in the
    /// queue's bounds), and past the timeout the socket is condemned as a
    /// slow consumer.
    pub(super) async fn write_frames<S>(
        &self,
        ws: &mut WebSocket<S>,
        frames: &[Bytes],
    ) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let write_timeout = self.server().config.write_timeout;
        match Bounded::new(write_timeout, ws.send_text(frames)).await {
            Some(r) => r.map_err(|e| e.to_string()),
            None => {
                // A peer that took nothing for this long is a slow
                // consumer, whether or not its queue overflowed.
                self.shared().condemn_slow_consumer();
                Err(format!("write blocked for more than {write_timeout:?}"))
            }
        }
    }

    /// Writes whatever is queued, within the close grace period.
    pub(super) async fn drain<S>(&mut self, ws: &mut WebSocket<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let work = async {
            while let Ok(item) = self.rx.try_recv() {
                if self.write_batch(ws, item).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, work).await;
    }

    /// The frames this socket receives of a batch, after publish-out
    /// middleware: a publication may be dropped or replaced.
    async fn publish_out(&self, ready: &[Ready], out: &mut Vec<Bytes>) {
        for r in ready {
            let frame = match r {
                Ready::Frame(f) => Some(f.clone()),
                Ready::Publication(p) => self.publication_out(p).await,
            };
            out.extend(frame);
        }
    }

    /// The frame this socket receives of one publication (`None`: not
    /// delivered to it).
    async fn publication_out(&self, p: &Publication) -> Option<Bytes> {
        let mut replaced: Option<Value> = None;
        for m in &self.server().publish_out {
            match m.publish_out(&self.socket, p).await {
                PublishOut::Deliver => {}
                PublishOut::Drop => return None,
                PublishOut::Replace(v) => replaced = Some(v),
            }
        }
        match replaced {
            None => Some(p.frame.clone()),
            Some(v) => {
                let raw = serde_json::value::to_raw_value(&v).ok()?;
                let position = p.position.as_ref().map(|q| (q.offset, &*q.epoch));
                Some(outbound::publication_at(&p.channel, Some(&raw), position))
            }
        }
    }
}

/// `f`, unless it takes longer than `limit` (`None`). Most writes complete
/// without waiting: the timer (a timer-wheel registration, and a box kept
/// out of the task's future) is set up only for one that has to wait. A
/// future of its own rather than an `async fn`, for the size of every
/// socket's task (see [`crate::transport::ws`]'s `Send`).
pub(super) struct Bounded<F> {
    f: F,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<F> Bounded<F> {
    pub(super) fn new(limit: Duration, f: F) -> Self {
        Self {
            f,
            limit,
            timer: None,
        }
    }
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = Pin::new(&mut this.f).poll(cx) {
            return Poll::Ready(Some(v));
        }
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).map(|()| None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(frames: usize) -> Bounds {
        Bounds {
            frames,
            bytes: usize::MAX,
        }
    }

    fn publication(channel: &str, offset: u64, epoch: &str) -> Outbound {
        Outbound::Publication(Arc::new(Publication::at(
            channel,
            None,
            Some(StreamPosition::new(offset, epoch)),
        )))
    }

    /// What the writer lets through, as short strings: `c3` for offset 3
    /// of channel c, `R` for a frame (reply), `!c5` for a notice.
    fn run(
        w: &mut Writer,
        subscribed: &Mutex<HashSet<Arc<str>>>,
        items: Vec<Outbound>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for item in items {
            w.accept(item, subscribed, &mut out).expect("no overflow");
        }
        out.iter()
            .map(|r| match r {
                Ready::Publication(p) => format!(
                    "{}{}",
                    p.channel,
                    p.position.as_ref().map_or(0, |q| q.offset)
                ),
                Ready::Frame(f) if f.starts_with(b"{\"event\":\"#herald/unrecoverable") => {
                    "!".to_owned()
                }
                Ready::Frame(_) => "R".to_owned(),
            })
            .collect()
    }

    fn end(channel: &str, recovered: &[u64], top: Option<u64>) -> Outbound {
        Outbound::SubscribeEnd(Box::new(SubscribeEnd {
            channel: Arc::from(channel),
            recovered: recovered
                .iter()
                .map(|o| {
                    Arc::new(Publication::at(
                        channel,
                        None,
                        Some(StreamPosition::new(*o, "e")),
                    ))
                })
                .collect(),
            reply: Some(Bytes::from_static(b"{\"rid\":1}")),
            position: top.map(|t| StreamPosition::new(t, "e")),
        }))
    }

    #[test]
    fn duplicates_are_dropped_and_epochs_switch() {
        let mut w = Writer::new(bounds(100));
        let subs = Mutex::new(HashSet::new());
        let got = run(
            &mut w,
            &subs,
            vec![
                publication("c", 1, "e"),
                publication("c", 2, "e"),
                publication("c", 2, "e"),
                publication("c", 1, "e"),
                publication("c", 1, "f"),
                publication("d", 1, "e"),
            ],
        );
        assert_eq!(got, ["c1", "c2", "c1", "d1"]);
    }

    #[test]
    fn a_subscribe_sends_recovered_then_reply_then_what_was_held() {
        let mut w = Writer::new(bounds(100));
        let subs = Mutex::new(HashSet::new());
        let got = run(
            &mut w,
            &subs,
            vec![
                Outbound::SubscribeBegin(Arc::from("c")),
                // Live publications arriving while history is read: 5 is
                // also recovered, 6 is not.
                publication("c", 5, "e"),
                publication("c", 6, "e"),
                Outbound::Frame(Bytes::from_static(b"{\"rid\":9}")),
                end("c", &[3, 4, 5], Some(5)),
                publication("c", 6, "e"),
                publication("c", 7, "e"),
            ],
        );
        assert_eq!(got, ["R", "c3", "c4", "c5", "R", "c6", "c7"]);
    }

    #[test]
    fn without_recovery_the_reply_sets_the_position() {
        let mut w = Writer::new(bounds(100));
        let subs = Mutex::new(HashSet::new());
        let got = run(
            &mut w,
            &subs,
            vec![
                Outbound::SubscribeBegin(Arc::from("c")),
                publication("c", 8, "e"),
                publication("c", 9, "e"),
                end("c", &[], Some(8)),
                publication("c", 9, "e"),
            ],
        );
        assert_eq!(got, ["R", "c9"]);
    }

    #[test]
    fn a_refused_subscribe_drops_what_was_held() {
        let mut w = Writer::new(bounds(100));
        let subs = Mutex::new(HashSet::new());
        let got = run(
            &mut w,
            &subs,
            vec![
                Outbound::SubscribeBegin(Arc::from("c")),
                publication("c", 1, "e"),
                end("c", &[], None),
                publication("d", 1, "e"),
            ],
        );
        assert_eq!(got, ["R", "d1"]);
    }

    #[test]
    fn notices_are_written_unless_the_client_is_past_them() {
        let mut w = Writer::new(bounds(100));
        let subs = Mutex::new(HashSet::new());
        let notice = |offset| {
            Outbound::Unrecoverable(Arc::new(Notice::new(
                Arc::from("c"),
                StreamPosition::new(offset, "e"),
            )))
        };
        let got = run(
            &mut w,
            &subs,
            vec![
                publication("c", 5, "e"),
                notice(3),
                notice(8),
                publication("c", 8, "e"),
                publication("c", 9, "e"),
            ],
        );
        assert_eq!(got, ["c5", "!", "c9"]);
    }

    #[test]
    fn holding_too_much_is_an_overflow() {
        let mut w = Writer::new(bounds(2));
        let subs = Mutex::new(HashSet::new());
        let mut out = Vec::new();
        w.accept(Outbound::SubscribeBegin(Arc::from("c")), &subs, &mut out)
            .unwrap();
        w.accept(publication("c", 1, "e"), &subs, &mut out).unwrap();
        w.accept(publication("c", 2, "e"), &subs, &mut out).unwrap();
        assert!(w.accept(publication("c", 3, "e"), &subs, &mut out).is_err());
    }

    #[test]
    fn positions_of_channels_left_are_forgotten() {
        let mut w = Writer::new(bounds(100));
        let subs = Mutex::new(HashSet::new());
        subs.lock().insert(Arc::<str>::from("keep"));
        let mut items = vec![publication("keep", 1, "e")];
        for i in 0..100 {
            items.push(publication(&format!("gone{i}"), 1, "e"));
        }
        run(&mut w, &subs, items);
        assert!(w.tracked() <= 17, "{} positions kept", w.tracked());
        assert!(
            w.streams
                .as_ref()
                .is_some_and(|s| s.positions.contains_key("keep"))
        );
    }
}
