//! Unit tests of the channel bookkeeping: no socket, frames and events read
//! from [`Effects`], stream items read from the queues with a no-op waker.

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use herald_protocol::ErrorPayload;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::*;
use crate::gap::GapCause;
use crate::queue::{Delivery, QueueReceiver, queue};
use crate::task::testing::{frames, raw};

struct Fixture {
    channels: Channels,
    cids: Cids,
    fx: Effects,
    next_id: u64,
}

fn fixture() -> Fixture {
    Fixture {
        channels: Channels::new(ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(1),
        }),
        cids: Cids::default(),
        fx: Effects::default(),
        next_id: 1,
    }
}

type Ack = oneshot::Receiver<Result<Option<StreamPosition>, Error>>;

impl Fixture {
    /// A new listener of `channel` (subscribed at once when the channel is
    /// new), with its stream and its acknowledgement.
    fn listen(
        &mut self,
        channel: &str,
        since: Option<StreamPosition>,
    ) -> (QueueReceiver<SubItem>, Ack) {
        let (sink, rx) = queue(16);
        let (ack, ack_rx) = oneshot::channel();
        let id = self.next_id;
        self.next_id += 1;
        let cmd = SubscribeCommand {
            channel: channel.to_owned(),
            data: None,
            since,
            id,
            sink,
            ack: Some(ack),
        };
        if self.channels.add_listener(cmd) {
            self.channels
                .subscribe(channel, &mut self.cids, &mut self.fx);
        }
        (rx, ack_rx)
    }

    /// The `#subscribe` frames written, with their call ids.
    fn subscribes(&mut self) -> Vec<(u64, Value)> {
        frames(&mut self.fx)
            .into_iter()
            .map(|f| {
                assert_eq!(f["event"], "#subscribe", "{f}");
                (f["cid"].as_u64().expect("cid"), f["data"].clone())
            })
            .collect()
    }

    fn reply(&mut self, cid: u64, data: Option<&str>, error: Option<&str>) -> bool {
        let data = data.map(raw);
        let error = error.map(raw);
        self.channels.on_reply(
            cid,
            data.as_deref(),
            error.as_deref(),
            Instant::now(),
            &mut self.fx,
        )
    }

    fn publish(&mut self, channel: &str, data: Value, at: Option<(u64, &str)>) {
        let data = raw(&data.to_string());
        let position = at.map(|(offset, epoch)| Position {
            offset,
            epoch: epoch.into(),
        });
        self.channels
            .deliver(channel, Some(&data), position.as_ref(), &mut self.fx);
    }

    fn events(&mut self) -> Vec<ClientEvent> {
        self.fx.events.drain(..).collect()
    }
}

/// What a stream holds now: publications as their data, gaps and ends.
#[derive(Debug, PartialEq)]
enum Seen {
    Data(Value, Option<u64>),
    Gap(GapCause, Option<u64>),
    End(String),
    Lagged(u64),
    Closed,
}

fn drain(rx: &mut QueueReceiver<SubItem>) -> Vec<Seen> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut seen = Vec::new();
    loop {
        match rx.poll_recv(&mut cx) {
            Poll::Pending => return seen,
            Poll::Ready(None) => {
                seen.push(Seen::Closed);
                return seen;
            }
            Poll::Ready(Some(Delivery::Lagged(n))) => seen.push(Seen::Lagged(n)),
            Poll::Ready(Some(Delivery::Item(item))) => seen.push(match item {
                SubItem::Publication(p) => Seen::Data(p.data.clone(), p.offset()),
                SubItem::Gap(g) => Seen::Gap(g.cause, g.missed()),
                SubItem::End(e) => Seen::End(e.to_string()),
            }),
        }
    }
}

fn pos(offset: u64, epoch: &str) -> StreamPosition {
    StreamPosition::new(offset, epoch)
}

#[test]
fn resubscribe_recovers_from_the_last_position() {
    let mut f = fixture();
    let (mut rx, mut ack) = f.listen("c", None);
    let [(cid, data)] = f.subscribes().try_into().unwrap();
    assert_eq!(data, json!({"channel": "c"}), "nothing to recover yet");
    assert!(f.reply(cid, Some(r#"{"offset":10,"epoch":"e"}"#), None));
    assert_eq!(ack.try_recv().unwrap().unwrap(), Some(pos(10, "e")));
    f.publish("c", json!("a"), Some((11, "e")));
    f.publish("c", json!("b"), Some((12, "e")));

    f.channels.connection_lost();
    // A reply from the lost connection means nothing any more.
    assert!(!f.reply(cid, None, None));
    f.channels.resubscribe(&mut f.cids, &mut f.fx);
    let [(cid, data)] = f.subscribes().try_into().unwrap();
    assert_eq!(
        data,
        json!({"channel": "c", "recover": {"offset": 12, "epoch": "e"}})
    );
    // Missed publications come before the reply, then a duplicate of one
    // already delivered, then the reply, then live ones.
    f.publish("c", json!("b"), Some((12, "e")));
    f.publish("c", json!("c"), Some((13, "e")));
    f.publish("c", json!("d"), Some((14, "e")));
    f.publish("c", json!("c"), Some((13, "e")));
    assert!(f.reply(
        cid,
        Some(r#"{"offset":14,"epoch":"e","recovered":true}"#),
        None
    ));
    f.publish("c", json!("e"), Some((15, "e")));
    assert_eq!(
        drain(&mut rx),
        ["a", "b", "c", "d", "e"]
            .iter()
            .zip(11..)
            .map(|(d, o)| Seen::Data(json!(d), Some(o)))
            .collect::<Vec<_>>()
    );
    assert!(f.events().is_empty(), "no gap");
    assert_eq!(f.channels.position("c"), Some(&pos(15, "e")));
}

#[test]
fn a_starting_position_is_recovered_on_the_first_subscribe() {
    let mut f = fixture();
    let (mut rx, mut ack) = f.listen("c", Some(pos(3, "e")));
    let [(cid, data)] = f.subscribes().try_into().unwrap();
    assert_eq!(data["recover"], json!({"offset": 3, "epoch": "e"}));
    f.publish("c", json!(4), Some((4, "e")));
    assert!(f.reply(
        cid,
        Some(r#"{"offset":4,"epoch":"e","recovered":true}"#),
        None
    ));
    assert_eq!(ack.try_recv().unwrap().unwrap(), Some(pos(4, "e")));
    assert_eq!(drain(&mut rx), [Seen::Data(json!(4), Some(4))]);
    // A second listener joins at the live position; its `since` is moot.
    let (_rx2, mut ack2) = f.listen("c", Some(pos(0, "x")));
    assert!(f.subscribes().is_empty());
    assert_eq!(ack2.try_recv().unwrap().unwrap(), Some(pos(4, "e")));
}

#[test]
fn not_recovered_unrecoverable_and_jumps_are_reported_in_place() {
    let mut f = fixture();
    let (mut rx, _ack) = f.listen("c", Some(pos(3, "e")));
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    f.reply(
        cid,
        Some(r#"{"offset":50,"epoch":"f","recovered":false}"#),
        None,
    );
    f.publish("c", json!("x"), Some((51, "f")));
    // A jump: 52 and 53 never came.
    f.publish("c", json!("y"), Some((54, "f")));
    let push = ext::Unrecoverable {
        channel: "c".into(),
        offset: 60,
        epoch: "f".into(),
    };
    f.channels.unrecoverable(push, &mut f.fx);
    f.publish("c", json!("z"), Some((61, "f")));
    assert_eq!(
        drain(&mut rx),
        [
            Seen::Gap(GapCause::NotRecovered, None),
            Seen::Data(json!("x"), Some(51)),
            Seen::Gap(GapCause::OffsetJump, Some(2)),
            Seen::Data(json!("y"), Some(54)),
            Seen::Gap(GapCause::Announced, Some(6)),
            Seen::Data(json!("z"), Some(61)),
        ]
    );
    let events = f.events();
    assert_eq!(events.len(), 3);
    assert!(
        matches!(&events[0], ClientEvent::Gap(g) if g.channel == "c" && g.last == Some(pos(3, "e")))
    );
    // A push for a channel the client does not keep is ignored.
    let push = ext::Unrecoverable {
        channel: "other".into(),
        offset: 1,
        epoch: "f".into(),
    };
    f.channels.unrecoverable(push, &mut f.fx);
    assert!(f.events().is_empty());
}

#[test]
fn channels_without_history_just_deliver() {
    let mut f = fixture();
    let (mut rx, mut ack) = f.listen("plain", None);
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    assert!(f.reply(cid, None, None));
    assert_eq!(ack.try_recv().unwrap().unwrap(), None);
    f.publish("plain", json!(1), None);
    f.publish("plain", json!(1), None);
    f.channels.connection_lost();
    f.channels.resubscribe(&mut f.cids, &mut f.fx);
    let [(_, data)] = f.subscribes().try_into().unwrap();
    assert_eq!(
        data,
        json!({"channel": "plain"}),
        "no recover without a position"
    );
    assert_eq!(
        drain(&mut rx),
        [Seen::Data(json!(1), None), Seen::Data(json!(1), None)]
    );
}

#[test]
fn broker_errors_on_resubscribe_are_retried_with_backoff() {
    let mut f = fixture();
    let (mut rx, _ack) = f.listen("c", None);
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    f.reply(cid, Some(r#"{"offset":7,"epoch":"e"}"#), None);
    f.channels.connection_lost();
    f.channels.resubscribe(&mut f.cids, &mut f.fx);
    let broker = r#"{"name":"BrokerError","message":"down"}"#;
    for attempt in 1..=3u32 {
        let [(cid, data)] = f.subscribes().try_into().unwrap();
        assert_eq!(data["recover"], json!({"offset": 7, "epoch": "e"}));
        let before = Instant::now();
        f.reply(cid, None, Some(broker));
        match f.events().as_slice() {
            [
                ClientEvent::SubscribeRetrying {
                    channel,
                    error,
                    attempt: a,
                    delay,
                },
            ] => {
                assert_eq!(
                    (channel.as_str(), error.name.as_str(), *a),
                    ("c", "BrokerError", attempt)
                );
                let ceiling = Duration::from_millis(100 * 2u64.pow(attempt - 1));
                assert!(*delay <= ceiling, "{delay:?} > {ceiling:?}");
            }
            other => panic!("{other:?}"),
        }
        let due = f.channels.next_retry().expect("a retry is scheduled");
        assert!(due >= before);
        f.channels
            .retry_due(due - Duration::from_nanos(1), &mut f.cids, &mut f.fx);
        assert!(f.fx.frames.is_empty(), "not before it is due");
        f.channels.retry_due(due, &mut f.cids, &mut f.fx);
    }
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    assert!(f.reply(
        cid,
        Some(r#"{"offset":7,"epoch":"e","recovered":true}"#),
        None
    ));
    assert_eq!(f.channels.next_retry(), None);
    assert!(drain(&mut rx).is_empty(), "the stream never ended");
    assert!(f.channels.contains("c"));
}

#[test]
fn refusals_end_the_streams() {
    let mut f = fixture();
    // A first subscribe refused with a BrokerError is not retried: the
    // caller is told.
    let (mut rx, mut ack) = f.listen("first", None);
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    f.reply(
        cid,
        None,
        Some(r#"{"name":"BrokerError","message":"down"}"#),
    );
    assert!(matches!(ack.try_recv(), Ok(Err(Error::Remote(e))) if e.name == "BrokerError"));
    assert_eq!(
        drain(&mut rx),
        [
            Seen::End("subscription refused: BrokerError: down".into()),
            Seen::Closed
        ]
    );
    // A resubscribe refused otherwise ends the stream and says so.
    let (mut rx, _ack) = f.listen("c", None);
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    f.reply(cid, None, None);
    f.channels.connection_lost();
    f.channels.resubscribe(&mut f.cids, &mut f.fx);
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    f.reply(
        cid,
        None,
        Some(r#"{"name":"ForbiddenError","message":"no"}"#),
    );
    assert!(matches!(
        drain(&mut rx).as_slice(),
        [Seen::End(_), Seen::Closed]
    ));
    let events = f.events();
    assert!(
        matches!(events.as_slice(), [ClientEvent::SubscribeFailed { channel, .. }, ClientEvent::SubscribeFailed { error, .. }] if channel == "first" && *error == ErrorPayload::new("ForbiddenError", "no"))
    );
    assert!(!f.channels.contains("c"));
}

#[test]
fn listeners_share_a_channel_and_the_last_one_unsubscribes() {
    let mut f = fixture();
    let (mut a, _) = f.listen("c", None);
    let (b, _) = f.listen("c", None);
    let [(cid, _)] = f.subscribes().try_into().unwrap();
    f.reply(cid, None, None);
    f.publish("c", json!(1), None);
    f.channels.remove_listener("c", 2, true, &mut f.fx);
    drop(b);
    assert!(f.fx.frames.is_empty(), "one listener is left");
    f.publish("c", json!(2), None);
    assert_eq!(
        drain(&mut a),
        [Seen::Data(json!(1), None), Seen::Data(json!(2), None)]
    );
    // The last stream dropped without a notice: the next publication (or
    // sweep) finds it gone and unsubscribes.
    drop(a);
    f.publish("c", json!(3), None);
    assert_eq!(
        frames(&mut f.fx),
        [json!({"event": "#unsubscribe", "data": "c"})]
    );
    assert!(!f.channels.contains("c"));

    let (gone, _) = f.listen("d", None);
    f.subscribes();
    drop(gone);
    f.channels.sweep(&mut f.fx);
    assert_eq!(
        frames(&mut f.fx),
        [json!({"event": "#unsubscribe", "data": "d"})]
    );
    // Offline, removing a channel tells nobody.
    let (_e, _) = f.listen("e", None);
    f.subscribes();
    f.channels.connection_lost();
    f.channels.remove("e", false, &mut f.fx);
    assert!(f.fx.frames.is_empty());
}

#[test]
fn kick_out_and_shutdown_end_everything() {
    let mut f = fixture();
    let (mut rx, _) = f.listen("c", None);
    let (mut pending, mut ack) = f.listen("p", None);
    let _ = f.subscribes();
    let message = raw(r#""bye""#);
    f.channels.kicked_out("c", Some(&message), &mut f.fx);
    assert!(matches!(drain(&mut rx).as_slice(), [Seen::End(e), Seen::Closed] if e.contains("bye")));
    assert!(matches!(
        f.events().as_slice(),
        [ClientEvent::KickedOut { channel, message: Some(m) }] if channel == "c" && m == "bye"
    ));
    f.channels.shutdown();
    assert_eq!(drain(&mut pending), [Seen::Closed]);
    assert!(matches!(ack.try_recv(), Ok(Err(Error::Closed))));
}

#[test]
fn a_slow_consumer_keeps_the_gap_notice() {
    let mut f = fixture();
    let (sink, mut rx) = queue(2);
    f.channels.add_listener(SubscribeCommand {
        channel: "c".into(),
        data: None,
        since: Some(pos(1, "e")),
        id: 1,
        sink,
        ack: None,
    });
    f.publish("c", json!("after a jump"), Some((5, "e")));
    for o in 6..10 {
        f.publish("c", json!(o), Some((o, "e")));
    }
    assert_eq!(
        drain(&mut rx),
        [
            Seen::Lagged(4),
            Seen::Gap(GapCause::OffsetJump, Some(3)),
            Seen::Data(json!(9), Some(9))
        ]
    );
}
