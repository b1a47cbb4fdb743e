//! The socket's state machine under random frame sequences.
//!
//! Each case opens a socket to one long-lived fixture server and sends a
//! random sequence of WebSocket messages: well-formed requests (handshake,
//! `#authenticate` with good and bad tokens, subscribe, unsubscribe,
//! publish, invokes, transmits, replies), malformed ones (wrong types,
//! server-only events, huge and fractional cids, string cids), garbage text,
//! binary messages, deep nesting and batches of any of these, before or
//! after the handshake. Then it checks, whatever the sequence was:
//!
//! * nothing panicked anywhere in the process (a panic hook records every
//!   panic, including those tokio catches in the server's tasks);
//! * every frame the server sent is a JSON frame the protocol parser reads;
//! * every call id was answered at most once, and no reply names a call id
//!   that was never sent;
//! * every request with a call id sent after the handshake was answered,
//!   unless the server closed the socket;
//! * the socket ended, if it did, with a close frame whose code is one of
//!   `herald_protocol::close`'s (never a dropped connection);
//! * a witness socket connected alongside still answers a pong and an echo;
//! * once the case's socket is closed the server holds no socket but the
//!   witness's.
//!
//! The case count is bounded (`PROPTEST_CASES`, default 96) so the test
//! takes seconds.

use std::sync::{Mutex, Once};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::protocol::inbound::{self, Message as Parsed};
use herald::protocol::{Cid, close};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Number, Value, json};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

use crate::common::*;

/// Panics seen anywhere in the process since the last [`take_panics`].
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut p) = PANICS.lock() {
                p.push(info.to_string());
            }
            default(info);
        }));
    });
}

fn take_panics() -> Vec<String> {
    PANICS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

/// How a request carries its call id.
#[derive(Debug, Clone)]
enum CidForm {
    None,
    /// A fresh unique number, written in one of several forms.
    Fresh(u8),
    /// A string: not a call id, the frame is a transmit.
    Text,
}

#[derive(Debug, Clone)]
enum Tok {
    Valid(u8),
    Expired,
    NotYet,
    BadSignature,
    AlgNone,
    Garbage(String),
    Huge,
    NotAString,
}

#[derive(Debug, Clone)]
enum Action {
    Handshake(Tok, CidForm),
    Authenticate(Tok, CidForm),
    Subscribe(usize, CidForm, bool),
    Unsubscribe(usize, CidForm),
    Publish(usize, Value, CidForm),
    Invoke(usize, Value),
    Transmit(bool, Value),
    RemoveAuthToken(CidForm),
    Reply(Value, Value),
    ServerOnly(bool, CidForm),
    Pong,
    Garbage(String),
    Junk(usize),
    Deep(usize, bool),
    Binary(Vec<u8>),
    Big(usize),
    Batch(Vec<Action>),
}

const CHANNELS: &[&str] = &[
    "c1",
    "c2",
    "private/p",
    "readonly/r",
    "#herald/nodes",
    "#herald/user/alice",
    "hist:h",
    "tiny:t",
    "",
    "é\"\\\n\u{0}",
];
const PROCEDURES: &[(&str, &str)] = &[
    ("echo", "any"),
    ("fail", "any"),
    ("whoami", "any"),
    ("login", r#"{"user":"u1","ttl":60}"#),
    ("logout", "any"),
    ("nosuch", "any"),
    ("#herald/history", r#"{"channel":"hist:h","limit":5}"#),
    ("#herald/presence", r#"{"channel":"c1"}"#),
    ("#herald/bogus", "any"),
    ("tell", "any"),
];
const JUNK: &[&str] = &[
    "not json{",
    "{",
    "}",
    "[",
    "[1,",
    "null",
    "5",
    "\"s\"",
    "{\"event\":5}",
    "{\"event\":null,\"cid\":1}",
    "{\"rid\":\"x\"}",
    "   ",
    "\u{feff}{}",
    "{\"event\":\"#subscribe\",\"data\":{\"channel\":{\"a\":1}}}",
    "{\"event\":\"#publish\",\"data\":[1,2]}",
    "{\"event\":\"#subscribe\",\"data\":{\"channel\":\"a\",\"recover\":{\"offset\":-1}}}",
    "{\"event\":\"e\",\"cid\":1e999}",
    "{\"event\":\"#handshake\",\"data\":{\"authToken\":\"\u{0}\"}}",
    "[[],[[]],{}]",
];

fn small_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn cid_form() -> impl Strategy<Value = CidForm> {
    prop_oneof![
        1 => Just(CidForm::None),
        6 => any::<u8>().prop_map(CidForm::Fresh),
        1 => Just(CidForm::Text),
    ]
}

/// The cid of a request that closes the socket without one (handshake,
/// authenticate): rarely missing, so cases go deeper.
fn closing_cid_form() -> impl Strategy<Value = CidForm> {
    prop_oneof![
        1 => Just(CidForm::None),
        24 => any::<u8>().prop_map(CidForm::Fresh),
        1 => Just(CidForm::Text),
    ]
}

fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        3 => (0u8..3).prop_map(Tok::Valid),
        1 => Just(Tok::Expired),
        1 => Just(Tok::NotYet),
        1 => Just(Tok::BadSignature),
        1 => Just(Tok::AlgNone),
        1 => any::<String>().prop_map(Tok::Garbage),
        1 => Just(Tok::Huge),
        1 => Just(Tok::NotAString),
    ]
}

fn simple_action() -> impl Strategy<Value = Action> {
    let ch = 0..CHANNELS.len();
    prop_oneof![
        2 => (tok(), closing_cid_form()).prop_map(|(t, c)| Action::Handshake(t, c)),
        3 => (tok(), closing_cid_form()).prop_map(|(t, c)| Action::Authenticate(t, c)),
        4 => (ch.clone(), cid_form(), any::<bool>()).prop_map(|(c, i, r)| Action::Subscribe(c, i, r)),
        2 => (ch.clone(), cid_form()).prop_map(|(c, i)| Action::Unsubscribe(c, i)),
        4 => (ch, small_json(), cid_form()).prop_map(|(c, d, i)| Action::Publish(c, d, i)),
        5 => (0..PROCEDURES.len(), small_json()).prop_map(|(p, d)| Action::Invoke(p, d)),
        2 => (any::<bool>(), small_json()).prop_map(|(k, d)| Action::Transmit(k, d)),
        1 => cid_form().prop_map(Action::RemoveAuthToken),
        1 => (small_json(), small_json()).prop_map(|(r, d)| Action::Reply(r, d)),
        1 => (any::<bool>(), cid_form()).prop_map(|(k, c)| Action::ServerOnly(k, c)),
        1 => Just(Action::Pong),
        1 => any::<String>().prop_map(Action::Garbage),
        1 => (0..JUNK.len()).prop_map(Action::Junk),
        1 => (1usize..3000, any::<bool>()).prop_map(|(d, o)| Action::Deep(d, o)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Action::Binary),
        1 => (1usize..65_536).prop_map(Action::Big),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        9 => simple_action(),
        1 => prop::collection::vec(simple_action(), 0..6).prop_map(Action::Batch),
    ]
}

/// A case: maybe a valid handshake first (most cases, to reach the states
/// after it), then random actions.
fn case() -> impl Strategy<Value = (bool, Vec<Action>)> {
    (
        prop::bool::weighted(0.85),
        prop::collection::vec(action(), 0..20),
    )
}

/// Builds frames and remembers the call ids it wrote.
struct Writer {
    next: u64,
    /// Every numeric call id written, as the server will read it.
    sent: Vec<Number>,
    /// Requests that must be answered while the socket stays open.
    expected: Vec<Number>,
    handshaken: bool,
}

impl Writer {
    /// A fresh call id, in form `form` (a plain integer, a huge integer
    /// beyond u64, a fraction, a negative, exponent notation), unique in
    /// the case; `None` for no or a non-numeric cid.
    fn cid(&mut self, form: &CidForm) -> Option<(String, Number)> {
        let n = self.next;
        self.next += 1;
        let text = match form {
            CidForm::None | CidForm::Text => return None,
            CidForm::Fresh(f) => match f % 7 {
                0 | 1 => n.to_string(),
                2 => format!("{}", u64::MAX - n),
                3 => format!("-{n}"),
                4 => format!("{n}.5"),
                5 => format!("{n}.0e0"),
                _ => format!("{n}e20"),
            },
        };
        let number: Number = serde_json::from_str(&text).expect("a numeric cid");
        self.sent.push(number.clone());
        Some((text, number))
    }

    /// `,"cid":X` (or a string cid, or nothing).
    fn cid_field(&mut self, form: &CidForm, answered: bool) -> String {
        if let CidForm::Text = form {
            let n = self.next;
            self.next += 1;
            return format!(",\"cid\":\"{n}\"");
        }
        match self.cid(form) {
            None => String::new(),
            Some((text, number)) => {
                if answered && self.handshaken {
                    self.expected.push(number);
                }
                format!(",\"cid\":{text}")
            }
        }
    }

    fn token(&self, t: &Tok) -> Value {
        let now = unix_now();
        match t {
            Tok::Valid(u) => json!(token(json!({"sub": format!("user{u}"), "exp": now + 600}))),
            Tok::Expired => json!(token(json!({"sub": "x", "exp": now - 10}))),
            Tok::NotYet => json!(token(json!({"sub": "x", "nbf": now + 600}))),
            Tok::BadSignature => json!(token_with("wrong", json!({"sub": "x"}))),
            Tok::AlgNone => json!(forged_token(
                json!({"alg": "none"}),
                json!({"sub": "x"}),
                ""
            )),
            Tok::Garbage(s) => json!(s),
            Tok::Huge => json!(format!(
                "{}.{}.{}",
                "a".repeat(3000),
                "b".repeat(3000),
                "c".repeat(3000)
            )),
            Tok::NotAString => json!(5),
        }
    }

    /// The text of one action's frame; `None` for a binary message.
    fn frame(&mut self, a: &Action) -> Frame {
        let text = match a {
            Action::Handshake(t, c) => {
                let data = json!({"authToken": self.token(t)});
                // A handshake with a numeric cid is answered and opens the
                // socket; without one it closes the socket (4008).
                if matches!(c, CidForm::Fresh(_)) {
                    self.handshaken = true;
                }
                let cid = self.cid_field(c, true);
                format!("{{\"event\":\"#handshake\",\"data\":{data}{cid}}}")
            }
            Action::Authenticate(t, c) => {
                let data = self.token(t);
                let cid = self.cid_field(c, true);
                format!("{{\"event\":\"#authenticate\",\"data\":{data}{cid}}}")
            }
            Action::Subscribe(ch, c, recover) => {
                let mut data = json!({"channel": CHANNELS[*ch]});
                if *recover {
                    data["recover"] = json!({"offset": 3, "epoch": "nope"});
                }
                let cid = self.cid_field(c, true);
                format!("{{\"event\":\"#subscribe\",\"data\":{data}{cid}}}")
            }
            Action::Unsubscribe(ch, c) => {
                let cid = self.cid_field(c, true);
                format!(
                    "{{\"event\":\"#unsubscribe\",\"data\":{}{cid}}}",
                    json!(CHANNELS[*ch])
                )
            }
            Action::Publish(ch, d, c) => {
                let cid = self.cid_field(c, true);
                let data = json!({"channel": CHANNELS[*ch], "data": d});
                format!("{{\"event\":\"#publish\",\"data\":{data}{cid}}}")
            }
            Action::Invoke(p, d) => {
                let (name, fixed) = PROCEDURES[*p];
                let data = if fixed == "any" {
                    d.to_string()
                } else {
                    fixed.to_owned()
                };
                let cid = self.cid_field(&CidForm::Fresh(0), true);
                format!("{{\"event\":{},\"data\":{data}{cid}}}", json!(name))
            }
            Action::Transmit(known, d) => {
                let event = if *known { "tell" } else { "nobody-listens" };
                format!("{{\"event\":\"{event}\",\"data\":{d}}}")
            }
            Action::RemoveAuthToken(c) => {
                let cid = self.cid_field(c, true);
                format!("{{\"event\":\"#removeAuthToken\"{cid}}}")
            }
            Action::Reply(rid, d) => json!({"rid": rid, "data": d}).to_string(),
            Action::ServerOnly(kick, c) => {
                let cid = self.cid_field(c, false);
                if *kick {
                    format!(
                        "{{\"event\":\"#kickOut\",\"data\":{{\"channel\":\"c1\",\"message\":\"x\"}}{cid}}}"
                    )
                } else {
                    format!("{{\"event\":\"#setAuthToken\",\"data\":{{\"token\":\"t\"}}{cid}}}")
                }
            }
            Action::Pong => String::new(),
            Action::Garbage(s) => s.clone(),
            Action::Junk(i) => JUNK[*i].to_owned(),
            Action::Deep(depth, array) => {
                if *array {
                    format!("{}{}", "[".repeat(*depth), "]".repeat(*depth))
                } else {
                    format!(
                        "{}1{}",
                        "{\"event\":\"e\",\"data\":".repeat(*depth),
                        "}".repeat(*depth)
                    )
                }
            }
            Action::Binary(bytes) => return Frame::Binary(bytes.clone()),
            Action::Big(n) => {
                let cid = self.cid_field(&CidForm::Fresh(0), true);
                format!(
                    "{{\"event\":\"echo\",\"data\":\"{}\"{cid}}}",
                    "x".repeat(*n)
                )
            }
            Action::Batch(items) => {
                let (expected, handshaken) = (self.expected.len(), self.handshaken);
                let texts: Vec<String> = items
                    .iter()
                    .filter_map(|i| match self.frame(i) {
                        Frame::Text(t) => Some(t),
                        Frame::Binary(_) => None,
                    })
                    .collect();
                let text = format!("[{}]", texts.join(","));
                if serde_json::from_str::<Value>(&text).is_err() {
                    // The whole message is unreadable: nothing in it is
                    // handled, nothing is answered.
                    self.expected.truncate(expected);
                    self.handshaken = handshaken;
                }
                text
            }
        };
        Frame::Text(text)
    }
}

enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(url: &str) -> Ws {
    let uri: http::Uri = url.parse().expect("ws url");
    within("WebSocket upgrade", ClientBuilder::from_uri(uri).connect())
        .await
        .expect("connect")
        .0
}

/// How the case's socket ended.
#[derive(Debug)]
enum End {
    /// Still open after every expected reply arrived.
    Open,
    /// The server closed it with this code.
    Closed(u16, String),
}

fn same_cid(a: &Number, b: &Number) -> bool {
    if a == b {
        return true;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_f64() || b.is_f64() => {
            (x - y).abs() <= x.abs().max(y.abs()) * 1e-12
        }
        _ => false,
    }
}

/// What the cases reached, to show the run was not vacuous.
#[derive(Debug, Default)]
struct Tally {
    open: u32,
    closed: std::collections::BTreeMap<u16, u32>,
    replies: u64,
}

/// Runs one case against the server; returns what went wrong.
async fn run_case(
    server: &TestServer,
    witness: &mut Client,
    n: u64,
    (handshake_first, actions): (bool, Vec<Action>),
    tally: &Mutex<Tally>,
) -> Result<(), String> {
    let mut ws = open(&server.url()).await;
    let mut w = Writer {
        next: 1,
        sent: Vec::new(),
        expected: Vec::new(),
        handshaken: false,
    };
    let mut all = Vec::new();
    if handshake_first {
        all.push(Action::Handshake(Tok::Valid(0), CidForm::Fresh(0)));
    }
    all.extend(actions);
    // The sentinel: a subscribe, handled in order with everything before
    // it (invokes run concurrently; their replies are waited for by cid).
    all.push(Action::Subscribe(0, CidForm::Fresh(0), false));
    let mut frames = Vec::with_capacity(all.len());
    for a in &all {
        frames.push(w.frame(a));
    }
    let sentinel = w.sent.last().cloned().expect("the sentinel has a cid");
    for frame in frames {
        let msg = match frame {
            Frame::Text(t) => Message::text(t),
            Frame::Binary(b) => Message::binary(b),
        };
        // The server may close the socket in the middle of the sequence
        // (4009, 1003...): later writes fail, which is fine.
        if within("send", ws.send(msg)).await.is_err() {
            break;
        }
    }
    let mut replies: Vec<Number> = Vec::new();
    let end = loop {
        // Done when the sentinel and every expected request are answered
        // (a socket the model thinks is not handshaken must close instead,
        // but a sentinel reply ends the wait too: the model may be
        // stricter than the server about what a batch holds).
        let answered = |e: &Number| replies.iter().any(|r| same_cid(r, e));
        if answered(&sentinel) && w.expected.iter().all(answered) {
            break End::Open;
        }
        let next = match tokio::time::timeout(STEP, ws.next()).await {
            Ok(n) => n,
            Err(_) => {
                let missing: Vec<_> = w
                    .expected
                    .iter()
                    .filter(|e| !replies.iter().any(|r| same_cid(r, e)))
                    .collect();
                return Err(format!("no reply within {STEP:?} to {missing:?}"));
            }
        };
        match next {
            None => return Err("the connection ended without a close frame".into()),
            Some(Err(e)) => return Err(format!("WebSocket error before any close: {e}")),
            Some(Ok(m)) if m.is_close() => {
                let (code, reason) = m
                    .as_close()
                    .map_or((1005, String::new()), |(c, r)| (u16::from(c), r.to_owned()));
                break End::Closed(code, reason);
            }
            Some(Ok(m)) => {
                let Some(text) = m.as_text() else { continue };
                if text.is_empty() {
                    continue;
                }
                match inbound::parse(text) {
                    Ok(Parsed::One(Ok(inbound::Packet::Response { rid, .. }))) => {
                        let Cid(rid) = rid;
                        if !w.sent.iter().any(|s| same_cid(s, &rid)) {
                            return Err(format!("reply to a cid never sent: {text}"));
                        }
                        if replies.iter().any(|r| same_cid(r, &rid)) {
                            return Err(format!("second reply to cid {rid}: {text}"));
                        }
                        replies.push(rid);
                    }
                    Ok(Parsed::One(Ok(_))) => {}
                    other => return Err(format!("unreadable server frame {text:?}: {other:?}")),
                }
            }
        }
    };
    if let Ok(mut t) = tally.lock() {
        t.replies += replies.len() as u64;
        match &end {
            End::Open => t.open += 1,
            End::Closed(code, _) => *t.closed.entry(*code).or_default() += 1,
        }
    }
    match &end {
        End::Closed(code, reason) => {
            if close::reason(*code).is_empty() {
                return Err(format!("closed with undocumented code {code} ({reason:?})"));
            }
            // Answer the close so the server's task finishes now.
            let _ =
                tokio::time::timeout(STEP, async { while let Some(Ok(_)) = ws.next().await {} })
                    .await;
        }
        End::Open => {
            let _ = ws.close().await;
            let _ =
                tokio::time::timeout(STEP, async { while let Some(Ok(_)) = ws.next().await {} })
                    .await;
        }
    }
    // The witness is unaffected.
    witness.pong().await;
    let probe = json!({"case": n});
    let echoed = witness.call("echo", probe.clone()).await;
    if echoed != probe {
        return Err(format!("witness echo returned {echoed}"));
    }
    // And the case's socket is gone from the server.
    eventually("the case's socket to be dropped", || {
        server.server.sockets().len() == 1
    })
    .await;
    Ok(())
}

#[test]
fn random_frame_sequences_keep_the_server_sound() {
    install_panic_hook();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (server, witness) = rt.block_on(async {
        let server = TestServer::fixture_with(|c| {
            // No server ping during a case: a ping is not a reply.
            c.ping_interval = Duration::from_secs(600);
            c.ping_timeout = Duration::from_secs(1200);
        })
        .await;
        let witness = server.client().await;
        (server, witness)
    });
    let witness = Mutex::new(witness);
    let counter = std::sync::atomic::AtomicU64::new(0);
    let tally = Mutex::new(Tally::default());
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(96);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        max_shrink_time: 60_000,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        take_panics();
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut witness = witness.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = rt.block_on(async {
            tokio::time::timeout(TEST, run_case(&server, &mut witness, n, case, &tally)).await
        });
        let panics = take_panics();
        if !panics.is_empty() {
            return Err(TestCaseError::fail(format!("panicked: {panics:?}")));
        }
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(TestCaseError::fail(e)),
            Err(_) => Err(TestCaseError::fail(format!(
                "case took longer than {TEST:?}"
            ))),
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let tally = tally.into_inner().unwrap_or_else(|p| p.into_inner());
    eprintln!("state machine cases: {tally:?}");
    if cases >= 50 {
        // The generator reaches both ends and the checks had replies to
        // check: the run was not vacuous.
        assert!(tally.open > 0 && !tally.closed.is_empty(), "{tally:?}");
        assert!(tally.replies > u64::from(cases), "{tally:?}");
    }
    rt.block_on(async {
        let witness = witness.into_inner().unwrap_or_else(|p| p.into_inner());
        witness.close(1000, "done").await;
        server.stop().await.expect("server stops cleanly");
    });
}
