//! The manager's reconciliation against fakes: no socket, no task. Fake
//! subscriber connections record the packed commands the manager sends; a
//! fake [`Io`] records what it asks of the network; the test feeds the
//! events a server would cause and checks the commands, the waiters and
//! the resyncs.

use std::sync::Arc;

use herald::BrokerSink;
use parking_lot::Mutex;
use redis::{IntoConnectionInfo, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::*;
use crate::cluster::slots::key_slot;
use crate::options::RedisOptions;
use crate::publisher::Pool;

#[derive(Default)]
struct Asked {
    connects: Vec<(NodeAddr, u64)>,
    loads: usize,
}

struct FakeIo(Arc<Mutex<Asked>>);

impl Io for FakeIo {
    fn connect(&self, addr: NodeAddr, generation: u64) {
        self.0.lock().connects.push((addr, generation));
    }

    fn load_topology(&self, _candidates: Vec<NodeAddr>, _started: Instant) {
        self.0.lock().loads += 1;
    }
}

/// A manager over fakes, and what it did.
struct Harness {
    m: Manager,
    asked: Arc<Mutex<Asked>>,
    resyncs: Arc<Mutex<Vec<String>>>,
    /// Per server, the receiving end of its current fake connection.
    wires: HashMap<NodeAddr, mpsc::UnboundedReceiver<Vec<u8>>>,
    _commands: mpsc::UnboundedSender<Command>,
    _events: mpsc::UnboundedSender<Event>,
}

const PREFIX: &str = "p:";

fn addr(port: u16) -> NodeAddr {
    NodeAddr::new("127.0.0.1", port)
}

fn name(channel: &str) -> Arc<str> {
    Arc::from(crate::keys::redis_channel(PREFIX, channel))
}

impl Harness {
    fn new(routing: Routing) -> Self {
        let options = RedisOptions {
            prefix: PREFIX.to_owned(),
            ..RedisOptions::default()
        };
        let template = "redis://127.0.0.1:1".into_connection_info().unwrap();
        let pool = Pool::new(
            template,
            HashMap::new(),
            options.connect_timeout,
            options.publish_timeout,
        );
        let shared = Arc::new(Shared::new(options, pool, "fake".into()));
        let resyncs = Arc::new(Mutex::new(Vec::new()));
        let log = resyncs.clone();
        let _ = shared.sink.set(BrokerSink::with_resync(
            |_| {},
            move |ch| log.lock().push(ch.unwrap_or("*").to_owned()),
        ));
        let asked = Arc::new(Mutex::new(Asked::default()));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let m = Manager::new(
            shared,
            routing,
            commands_rx,
            events_rx,
            Box::new(FakeIo(asked.clone())),
        );
        let mut h = Self {
            m,
            asked,
            resyncs,
            wires: HashMap::new(),
            _commands: commands,
            _events: events,
        };
        h.m.flush();
        h
    }

    /// Answers the pending connect to `at` with a fake connection.
    fn connect(&mut self, at: &NodeAddr) {
        // A server that just became needed is dialled on the next pass
        // (the run loop wakes for it at once).
        self.m.flush();
        let generation = {
            let asked = self.asked.lock();
            asked
                .connects
                .iter()
                .rev()
                .find(|(a, _)| a == at)
                .map(|(_, g)| *g)
                .expect("a connect was asked")
        };
        let (conn, wire) = SubConnection::fake();
        self.wires.insert(at.clone(), wire);
        self.event(Event::Connected {
            addr: at.clone(),
            generation,
            conn,
        });
    }

    fn generation(&self, at: &NodeAddr) -> u64 {
        self.m.live_gen(at).expect("live connection")
    }

    fn event(&mut self, event: Event) {
        self.m.on_event(event);
        self.m.flush();
    }

    fn reply(&mut self, at: &NodeAddr, reply: Reply) {
        let generation = self.generation(at);
        self.event(Event::Reply {
            addr: at.clone(),
            generation,
            reply,
        });
    }

    fn subscribe(&mut self, channel: &str) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        self.m.on_command(Command::Subscribe {
            channel: name(channel),
            herald: Arc::from(channel),
            done,
        });
        self.m.flush();
        rx
    }

    fn unsubscribe(&mut self, channel: &str) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        self.m.on_command(Command::Unsubscribe {
            channel: name(channel),
            done,
        });
        self.m.flush();
        rx
    }

    /// The commands sent to `at` since the last call, as words.
    fn sent(&mut self, at: &NodeAddr) -> Vec<Vec<String>> {
        let Some(wire) = self.wires.get_mut(at) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Ok(packed) = wire.try_recv() {
            let Value::Array(words) = redis::parse_redis_value(&packed).unwrap() else {
                panic!("not a command")
            };
            out.push(
                words
                    .iter()
                    .map(|w| match w {
                        Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
                        other => panic!("{other:?}"),
                    })
                    .collect(),
            );
        }
        out
    }

    /// Lets a lost connection's backoff pass, so the next flush reconnects.
    fn backoff_elapsed(&mut self, at: &NodeAddr) {
        self.m.nodes.get_mut(at).expect("node").retry_at = Instant::now();
        self.m.flush();
    }

    fn resyncs(&self) -> Vec<String> {
        self.resyncs.lock().clone()
    }
}

fn cmd(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn done(rx: &mut oneshot::Receiver<()>) -> bool {
    rx.try_recv().is_ok()
}

/// A `CLUSTER SLOTS` map: `ranges` of (first, last, port).
fn slot_map(ranges: &[(u16, u16, u16)]) -> Topology {
    let value = Value::Array(
        ranges
            .iter()
            .filter(|(a, b, _)| a <= b)
            .map(|&(a, b, port)| {
                Value::Array(vec![
                    Value::Int(a.into()),
                    Value::Int(b.into()),
                    Value::Array(vec![
                        Value::BulkString(b"127.0.0.1".to_vec()),
                        Value::Int(port.into()),
                    ]),
                ])
            })
            .collect(),
    );
    Topology::from_cluster_slots(&value, &addr(1)).unwrap()
}

/// Every slot on `port`, except `slot` on `other`.
fn all_but(port: u16, slot: u16, other: u16) -> Topology {
    let mut ranges = vec![(slot, slot, other)];
    if slot > 0 {
        ranges.push((0, slot - 1, port));
    }
    if slot < 16383 {
        ranges.push((slot + 1, 16383, port));
    }
    slot_map(&ranges)
}

fn topology(h: &mut Harness, map: Topology) {
    h.event(Event::Topology {
        started: Instant::now(),
        result: Ok((map, addr(1))),
    });
}

fn server_error(resp: &str) -> redis::ServerError {
    match redis::parse_redis_value(resp.as_bytes()).unwrap() {
        Value::ServerError(e) => e,
        other => panic!("{other:?}"),
    }
}

#[test]
fn subscribe_waits_for_the_confirmation_and_first_subscribe_needs_no_resync() {
    let a = addr(7000);
    let mut h = Harness::new(Routing::Hashed(vec![a.clone()]));
    assert_eq!(h.asked.lock().connects, [(a.clone(), 1)]);
    let mut sub = h.subscribe("room");
    assert!(!done(&mut sub), "no connection yet");
    h.connect(&a);
    assert_eq!(h.sent(&a), [cmd(&["SUBSCRIBE", "p:{room}"])]);
    assert!(!done(&mut sub), "not confirmed yet");
    h.reply(&a, Reply::Subscribed(name("room")));
    assert!(done(&mut sub));
    assert!(h.sent(&a).is_empty(), "nothing sent twice");
    assert!(h.resyncs().is_empty(), "a first subscribe is no resync");

    let mut unsub = h.unsubscribe("room");
    assert_eq!(h.sent(&a), [cmd(&["UNSUBSCRIBE", "p:{room}"])]);
    assert!(!done(&mut unsub));
    h.reply(&a, Reply::Unsubscribed(name("room")));
    assert!(done(&mut unsub));
    assert!(h.m.channels.is_empty(), "forgotten");
}

#[test]
fn lost_connection_resubscribes_and_resyncs_each_channel_once() {
    let a = addr(7000);
    let mut h = Harness::new(Routing::Hashed(vec![a.clone()]));
    h.connect(&a);
    let mut subs = [h.subscribe("x"), h.subscribe("y")];
    h.sent(&a);
    h.reply(&a, Reply::Subscribed(name("x")));
    h.reply(&a, Reply::Subscribed(name("y")));
    assert!(subs.iter_mut().all(done));

    let generation = h.generation(&a);
    h.event(Event::Closed {
        addr: a.clone(),
        generation,
        error: "EOF".into(),
    });
    assert_eq!(h.asked.lock().connects.len(), 1, "backoff first");
    h.backoff_elapsed(&a);
    assert_eq!(h.asked.lock().connects.len(), 2, "reconnecting");
    h.connect(&a);
    let again = h.sent(&a);
    let mut sorted = again.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [cmd(&["SUBSCRIBE", "p:{x}"]), cmd(&["SUBSCRIBE", "p:{y}"])]
    );
    assert!(h.resyncs().is_empty(), "not before the confirmation");
    // The server confirms in the order sent (the order of a hash set).
    let first = again[0][1].clone();
    let second = again[1][1].clone();
    let herald = |redis: &str| crate::keys::herald_channel(PREFIX, redis.as_bytes()).unwrap();
    h.reply(&a, Reply::Subscribed(Arc::from(first.as_str())));
    assert_eq!(h.resyncs(), [herald(&first)]);
    h.reply(&a, Reply::Subscribed(Arc::from(second.as_str())));
    assert_eq!(h.resyncs(), [herald(&first), herald(&second)]);
    // Later events do not report it again.
    h.m.dirty.extend([name("x"), name("y")]);
    h.m.flush();
    assert_eq!(h.resyncs().len(), 2);
    let stats = h.m.shared.telemetry.stats();
    assert_eq!((stats.reconnects, stats.resubscriptions), (1, 2));
}

#[test]
fn pushed_sunsubscribe_waits_for_the_new_owner_then_resyncs() {
    let (a, b) = (addr(7000), addr(7001));
    let mut h = Harness::new(Routing::Cluster {
        seeds: vec![a.clone()],
    });
    assert_eq!(h.asked.lock().loads, 1, "a cluster loads its map first");
    let slot = key_slot(name("c").as_bytes());
    topology(&mut h, slot_map(&[(0, 16383, 7000)]));
    h.connect(&a);
    let mut sub = h.subscribe("c");
    assert_eq!(h.sent(&a), [cmd(&["SSUBSCRIBE", "p:{c}"])]);
    h.reply(&a, Reply::Subscribed(name("c")));
    assert!(done(&mut sub));

    // A gives the slot up by itself: not subscribed there again.
    h.reply(&a, Reply::Unsubscribed(name("c")));
    assert!(h.sent(&a).is_empty(), "no resubscription on the old owner");
    assert!(h.m.shared.topology().owner(slot).is_none(), "slot disowned");
    // The new map names B.
    topology(&mut h, all_but(7000, slot, 7001));
    h.connect(&b);
    assert_eq!(h.sent(&b), [cmd(&["SSUBSCRIBE", "p:{c}"])]);
    assert!(h.resyncs().is_empty());
    h.reply(&b, Reply::Subscribed(name("c")));
    assert_eq!(h.resyncs(), ["c"], "resync once the new home confirmed");
    assert!(h.sent(&a).is_empty());
}

#[test]
fn slot_move_is_make_before_break() {
    let (a, b) = (addr(7000), addr(7001));
    let mut h = Harness::new(Routing::Cluster {
        seeds: vec![a.clone()],
    });
    topology(&mut h, slot_map(&[(0, 16383, 7000)]));
    h.connect(&a);
    let mut sub = h.subscribe("m");
    h.sent(&a);
    h.reply(&a, Reply::Subscribed(name("m")));
    assert!(done(&mut sub));

    let slot = key_slot(name("m").as_bytes());
    topology(&mut h, all_but(7000, slot, 7001));
    h.connect(&b);
    assert_eq!(h.sent(&b), [cmd(&["SSUBSCRIBE", "p:{m}"])]);
    assert!(
        h.sent(&a).is_empty(),
        "the old home stays until the new one confirms"
    );
    h.reply(&b, Reply::Subscribed(name("m")));
    assert_eq!(h.sent(&a), [cmd(&["SUNSUBSCRIBE", "p:{m}"])], "then break");
    assert_eq!(h.resyncs(), ["m"]);
    h.reply(&a, Reply::Unsubscribed(name("m")));
    assert!(h.sent(&a).is_empty() && h.sent(&b).is_empty());
    assert_eq!(h.resyncs(), ["m"], "once");
}

#[test]
fn moved_reply_follows_the_redirect_without_resync_on_a_first_subscribe() {
    let (a, b) = (addr(7000), addr(7001));
    let mut h = Harness::new(Routing::Cluster {
        seeds: vec![a.clone()],
    });
    topology(&mut h, slot_map(&[(0, 8000, 7000), (8001, 16383, 7001)]));
    h.connect(&a);
    h.connect(&b);
    let slot = key_slot(name("r").as_bytes());
    let (home, other) = if slot <= 8000 { (&a, &b) } else { (&b, &a) };
    let (home, other) = (home.clone(), other.clone());
    let mut sub = h.subscribe("r");
    assert_eq!(h.sent(&home), [cmd(&["SSUBSCRIBE", "p:{r}"])]);
    let moved = format!("-MOVED {slot} {other}\r\n");
    h.reply(&home, Reply::Error(server_error(&moved)));
    assert_eq!(
        h.m.shared.topology().owner(slot),
        Some(&other),
        "map patched"
    );
    assert_eq!(h.sent(&other), [cmd(&["SSUBSCRIBE", "p:{r}"])]);
    assert!(!done(&mut sub));
    h.reply(&other, Reply::Subscribed(name("r")));
    assert!(done(&mut sub));
    assert!(h.resyncs().is_empty(), "never confirmed before: no resync");
    assert!(h.sent(&home).is_empty());
}

#[test]
fn resubscription_after_a_redirect_resyncs_once() {
    let (a, b) = (addr(7000), addr(7001));
    let mut h = Harness::new(Routing::Cluster {
        seeds: vec![a.clone()],
    });
    topology(&mut h, slot_map(&[(0, 16383, 7000)]));
    h.connect(&a);
    h.subscribe("q");
    h.sent(&a);
    h.reply(&a, Reply::Subscribed(name("q")));
    let generation = h.generation(&a);
    h.event(Event::Closed {
        addr: a.clone(),
        generation,
        error: "reset".into(),
    });
    h.backoff_elapsed(&a);
    h.connect(&a);
    assert_eq!(h.sent(&a), [cmd(&["SSUBSCRIBE", "p:{q}"])]);
    // The slot moved meanwhile: redirected, subscribed again elsewhere.
    let slot = key_slot(name("q").as_bytes());
    h.reply(
        &a,
        Reply::Error(server_error(&format!("-MOVED {slot} {b}\r\n"))),
    );
    h.connect(&b);
    assert_eq!(h.sent(&b), [cmd(&["SSUBSCRIBE", "p:{q}"])]);
    h.reply(&b, Reply::Subscribed(name("q")));
    assert_eq!(h.resyncs(), ["q"], "one resync for one resubscription");
}

#[test]
fn subscribing_again_during_an_unsubscription_is_a_first_subscribe() {
    let a = addr(7000);
    let mut h = Harness::new(Routing::Hashed(vec![a.clone()]));
    h.connect(&a);
    h.subscribe("u");
    h.sent(&a);
    h.reply(&a, Reply::Subscribed(name("u")));
    let mut unsub = h.unsubscribe("u");
    assert_eq!(h.sent(&a), [cmd(&["UNSUBSCRIBE", "p:{u}"])]);
    let mut sub = h.subscribe("u");
    assert_eq!(h.sent(&a), [cmd(&["SUBSCRIBE", "p:{u}"])]);
    h.reply(&a, Reply::Unsubscribed(name("u")));
    assert!(!done(&mut sub), "the subscribe in flight decides");
    h.reply(&a, Reply::Subscribed(name("u")));
    assert!(done(&mut sub));
    assert!(unsub.try_recv().is_err(), "superseded, never completed");
    assert!(h.resyncs().is_empty(), "not a resync");
}
