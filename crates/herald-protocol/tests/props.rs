//! Property tests of the codec: inbound parsing never panics and classifies
//! what it reads consistently, every outbound builder writes valid JSON that
//! parses back (with `serde_json` and with the inbound parser) to what it was
//! given, and Herald's extension frames round-trip.
//!
//! Case counts are bounded (`PROPTEST_CASES` overrides the default of 256)
//! so the whole file runs in a few seconds.

use std::collections::BTreeMap;

use herald_protocol::error::ErrorPayload;
use herald_protocol::ext::{
    self, ChannelRequest, ClientInfo, HistoryPublication, HistoryReply, HistoryRequest,
    PresenceEvent, PresenceReply, PresenceStats, StreamPosition, SubscribeStatus, Unrecoverable,
};
use herald_protocol::inbound::{self, Message, Packet};
use herald_protocol::{Cid, outbound};
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{Number, Value};

/// Any JSON value, nested up to a few levels, with strings of any Unicode.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        exact_float().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A float whose decimal text reads back to exactly the same `f64`
/// (serde_json without `float_roundtrip` may be off by one ulp on others):
/// a binary fraction, possibly huge or tiny.
fn exact_float() -> impl Strategy<Value = f64> {
    (any::<i16>(), -10i32..=20).prop_map(|(m, e)| f64::from(m) * 2f64.powi(e))
}

/// A JSON value as raw text, the way a publisher's frame carries it.
fn raw_value() -> impl Strategy<Value = Box<RawValue>> {
    json_value().prop_map(|v| serde_json::value::to_raw_value(&v).expect("a Value encodes"))
}

/// Any JSON number a `cid` may be: unsigned, negative, fractional, huge.
fn cid() -> impl Strategy<Value = Cid> {
    prop_oneof![
        any::<u64>().prop_map(Cid::from),
        any::<i64>().prop_map(|n| Cid(Number::from(n))),
        exact_float()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Cid),
    ]
}

fn position() -> impl Strategy<Value = (u64, String)> {
    (any::<u64>(), any::<String>())
}

fn parse_one(bytes: &[u8]) -> Packet<'_> {
    let text = std::str::from_utf8(bytes).expect("frames are UTF-8");
    match inbound::parse(text) {
        Ok(Message::One(Ok(p))) => p,
        other => panic!("{text}: {other:?}"),
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn raw_eq(a: Option<&RawValue>, b: Option<&RawValue>) -> bool {
    a.map(RawValue::get) == b.map(RawValue::get)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text at all: parsing returns, never panics, and a message that
    /// is not JSON is an error rather than a packet.
    #[test]
    fn parse_never_panics_on_any_text(text in any::<String>()) {
        let r = inbound::parse(&text);
        if serde_json::from_str::<&RawValue>(&text).is_err() && !text.is_empty() {
            let bad = matches!(r, Err(_) | Ok(Message::One(Err(_))));
            prop_assert!(bad, "{text:?} parsed as {r:?}");
        }
    }

    /// Any JSON value: parsing classifies it without panicking; an object
    /// is one frame, an array a batch of as many frames, anything else an
    /// error.
    #[test]
    fn parse_classifies_any_json(v in json_value()) {
        let text = v.to_string();
        match (&v, inbound::parse(&text)) {
            (Value::Object(_), Ok(Message::One(_))) => {}
            (Value::Array(items), Ok(m @ Message::Batch(_))) => {
                let frames: Vec<_> = m.into_packets().collect();
                prop_assert_eq!(items.len(), frames.len());
                for (item, frame) in items.iter().zip(frames) {
                    prop_assert_eq!(item.is_object(), frame.is_ok() || matches!(frame, Err(inbound::ParseError::Field(_))));
                }
            }
            (Value::Object(_) | Value::Array(_), other) => prop_assert!(false, "{text}: {other:?}"),
            (_, other) => prop_assert!(other.is_err(), "{text}: {other:?}"),
        }
    }

    /// A frame object with every field drawn from any JSON: the parser's
    /// classification follows socketcluster's rules (event string or not,
    /// numeric cid or not, rid).
    #[test]
    fn frame_fields_of_any_type(
        event in prop::option::of(prop_oneof![
            json_value(),
            prop::sample::select(vec![
                "#handshake", "#authenticate", "#removeAuthToken", "#subscribe",
                "#unsubscribe", "#publish", "#kickOut", "#setAuthToken", "echo",
                ext::HISTORY, ext::PRESENCE,
            ]).prop_map(Value::from),
        ]),
        data in prop::option::of(json_value()),
        cid in prop::option::of(json_value()),
        rid in prop::option::of(json_value()),
    ) {
        let mut frame = serde_json::Map::new();
        for (k, v) in [("event", &event), ("data", &data), ("cid", &cid), ("rid", &rid)] {
            if let Some(v) = v {
                frame.insert(k.to_owned(), v.clone());
            }
        }
        let text = Value::Object(frame).to_string();
        let packet = inbound::parse_frame(&text);
        match (&event, packet) {
            (Some(Value::String(_)), Ok(Packet::Raw | Packet::Response { .. })) => {
                prop_assert!(false, "an event frame is not a reply: {text}")
            }
            (Some(Value::String(e)), Ok(Packet::Invoke { procedure, cid: c, .. })) => {
                prop_assert_eq!(procedure.as_ref(), e.as_str());
                prop_assert!(cid.as_ref().is_some_and(Value::is_number));
                prop_assert_eq!(&c.0, cid.as_ref().and_then(Value::as_number).unwrap());
            }
            (Some(Value::String(e)), Ok(Packet::Transmit { event: ev, .. })) => {
                prop_assert_eq!(ev.as_ref(), e.as_str());
                prop_assert!(!cid.as_ref().is_some_and(Value::is_number));
            }
            (Some(Value::String(_)), Ok(_)) => {}
            (Some(Value::String(_)), Err(e)) => prop_assert!(false, "{text}: {e}"),
            (Some(_), r) => prop_assert!(matches!(r, Err(inbound::ParseError::Field(_))), "{text}: {r:?}"),
            (None, Ok(Packet::Response { rid: r, .. })) => {
                prop_assert_eq!(Some(&r.0), rid.as_ref().and_then(Value::as_number));
            }
            (None, Ok(Packet::Raw)) => prop_assert!(!rid.as_ref().is_some_and(Value::is_number)),
            (None, other) => prop_assert!(false, "{text}: {other:?}"),
        }
    }

    /// Deep nesting and long batches do not overflow the stack: serde_json
    /// refuses past its recursion limit, the parser reports an error.
    #[test]
    fn deep_nesting_is_refused_or_parsed(depth in 1usize..2000, open in prop::sample::select(vec!['[', '{'])) {
        let text = match open {
            '[' => format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            _ => format!(
                "{}1{}",
                r#"{"event":"e","data":"#.repeat(depth),
                "}".repeat(depth)
            ),
        };
        let _ = inbound::parse(&text);
    }

    /// Publications (with and without a stream position) round-trip.
    #[test]
    fn publications_round_trip(
        channel in any::<String>(),
        data in prop::option::of(raw_value()),
        pos in prop::option::of(position()),
    ) {
        let frame = outbound::publication_at(&channel, data.as_deref(), pos.as_ref().map(|(o, e)| (*o, e.as_str())));
        let v = json_of(&frame);
        prop_assert_eq!(&v["event"], "#publish");
        prop_assert_eq!(&v["data"]["channel"], &Value::from(channel.as_str()));
        match parse_one(&frame) {
            Packet::Publish { cid, channel: c, data: d, position } => {
                prop_assert!(cid.is_none());
                prop_assert_eq!(c.as_ref(), channel.as_str());
                prop_assert!(raw_eq(d, data.as_deref()));
                prop_assert_eq!(position.map(|p| (p.offset, p.epoch.into_owned())), pos.clone());
            }
            p => prop_assert!(false, "{p:?}"),
        }
        if pos.is_none() {
            prop_assert_eq!(frame, outbound::publication(&channel, data.as_deref()));
        }
    }

    /// Client requests round-trip: publish, subscribe (with recover),
    /// unsubscribe, handshake, any invoke or transmit.
    #[test]
    fn client_requests_round_trip(
        channel in any::<String>(),
        data in prop::option::of(raw_value()),
        recover in prop::option::of(position()),
        cid in prop::option::of(cid()),
        token in prop::option::of(any::<String>()),
        event in any::<String>().prop_filter("not a reserved event", |e| !e.starts_with('#')),
    ) {
        match parse_one(&outbound::publish_request(&channel, data.as_deref(), cid.as_ref())) {
            Packet::Publish { cid: c, channel: ch, data: d, .. } => {
                prop_assert_eq!(&c, &cid);
                prop_assert_eq!(ch.as_ref(), channel.as_str());
                prop_assert!(raw_eq(d, data.as_deref()));
            }
            p => prop_assert!(false, "{p:?}"),
        }
        let sub = outbound::subscribe_request_recover(
            &channel,
            data.as_deref(),
            recover.as_ref().map(|(o, e)| (*o, e.as_str())),
            cid.as_ref(),
        );
        match parse_one(&sub) {
            Packet::Subscribe { cid: c, channel: ch, data: d, recover: r } => {
                prop_assert_eq!(&c, &cid);
                prop_assert_eq!(ch.as_ref(), channel.as_str());
                prop_assert!(raw_eq(d, data.as_deref()));
                prop_assert_eq!(r.map(|p| (p.offset, p.epoch.into_owned())), recover);
            }
            p => prop_assert!(false, "{p:?}"),
        }
        match parse_one(&outbound::unsubscribe_request(&channel, cid.as_ref())) {
            Packet::Unsubscribe { cid: c, channel: ch } => {
                prop_assert_eq!(&c, &cid);
                prop_assert_eq!(ch.as_ref(), channel.as_str());
            }
            p => prop_assert!(false, "{p:?}"),
        }
        let hs_cid = cid.clone().unwrap_or(Cid::from(1));
        match parse_one(&outbound::handshake_request(&hs_cid, token.as_deref())) {
            Packet::Handshake { cid: c, auth_token } => {
                prop_assert_eq!(c, Some(hs_cid));
                prop_assert_eq!(auth_token, token);
            }
            p => prop_assert!(false, "{p:?}"),
        }
        match (parse_one(&outbound::request_raw(&event, data.as_deref(), cid.as_ref())), &cid) {
            (Packet::Invoke { cid: c, procedure, data: d }, Some(cid)) => {
                prop_assert_eq!(&c, cid);
                prop_assert_eq!(procedure.as_ref(), event.as_str());
                prop_assert!(raw_eq(d, data.as_deref()));
            }
            (Packet::Transmit { event: e, data: d }, None) => {
                prop_assert_eq!(e.as_ref(), event.as_str());
                prop_assert!(raw_eq(d, data.as_deref()));
            }
            (p, _) => prop_assert!(false, "{p:?}"),
        }
    }

    /// Replies round-trip with any call id the client chose (huge,
    /// negative, fractional): exactly that number comes back.
    #[test]
    fn replies_echo_any_cid(
        rid in cid(),
        data in prop::option::of(raw_value()),
        name in any::<String>(),
        message in any::<String>(),
        extra in prop::collection::btree_map("[a-zA-Z]{1,8}", json_value(), 0..4),
    ) {
        match parse_one(&outbound::reply_raw(&rid, data.as_deref())) {
            Packet::Response { rid: r, data: d, error } => {
                prop_assert_eq!(&r, &rid);
                prop_assert!(raw_eq(d, data.as_deref()));
                prop_assert!(error.is_none());
            }
            p => prop_assert!(false, "{p:?}"),
        }
        prop_assert_eq!(json_of(&outbound::ack(&rid)), serde_json::json!({"rid": rid.0}));
        let mut err = ErrorPayload::new(name, message);
        for (k, v) in extra {
            if k != "name" && k != "message" {
                err = err.with(k, v);
            }
        }
        let frame = outbound::reply_error(&rid, &err);
        match parse_one(&frame) {
            Packet::Response { rid: r, error: Some(e), .. } => {
                prop_assert_eq!(&r, &rid);
                let back = ErrorPayload::from_value(serde_json::from_str(e.get()).unwrap());
                prop_assert_eq!(back, err);
            }
            p => prop_assert!(false, "{p:?}"),
        }
    }

    /// Server pushes round-trip: kick-out, set/remove auth token, events.
    #[test]
    fn server_pushes_round_trip(
        channel in any::<String>(),
        message in prop::option::of(raw_value()),
        token in any::<String>(),
        event in "[a-z]{1,12}",
        data in json_value(),
    ) {
        match parse_one(&outbound::kick_out(&channel, message.as_deref())) {
            Packet::KickOut { channel: c, message: m } => {
                prop_assert_eq!(c.as_ref(), channel.as_str());
                prop_assert!(raw_eq(m, message.as_deref()));
            }
            p => prop_assert!(false, "{p:?}"),
        }
        match parse_one(&outbound::set_auth_token(&token)) {
            Packet::SetAuthToken { token: t, cid } => {
                prop_assert_eq!(t, token);
                prop_assert!(cid.is_none());
            }
            p => prop_assert!(false, "{p:?}"),
        }
        let removed = matches!(parse_one(&outbound::remove_auth_token()), Packet::RemoveAuthToken { cid: None });
        prop_assert!(removed, "#removeAuthToken");
        let frame = outbound::event(&event, Some(&data)).unwrap();
        prop_assert_eq!(json_of(&frame), serde_json::json!({"event": event, "data": data}));
    }

    /// Herald's extension frames: the unrecoverable notice, join/leave
    /// events, and the reply and argument types of the reserved procedures
    /// survive JSON both ways.
    #[test]
    fn extension_frames_round_trip(
        channel in any::<String>(),
        client in any::<String>(),
        user in prop::option::of(any::<String>()),
        (offset, epoch) in position(),
        limit in prop::option::of(any::<usize>()),
        since in prop::option::of(position()),
        recovered in prop::option::of(any::<bool>()),
        clients in prop::collection::btree_map(any::<String>(), (prop::option::of(any::<String>()), prop::option::of(json_value())), 0..4),
        pubs in prop::collection::vec((any::<u64>(), prop::option::of(raw_value())), 0..4),
        stats in (any::<u64>(), any::<u64>()),
    ) {
        let frame = outbound::unrecoverable(&channel, offset, &epoch);
        let v = json_of(&frame);
        prop_assert_eq!(&v["event"], ext::UNRECOVERABLE);
        let u: Unrecoverable = serde_json::from_value(v["data"].clone()).unwrap();
        prop_assert_eq!(u, Unrecoverable { channel: channel.clone(), offset, epoch: epoch.clone() });

        for name in [ext::JOIN, ext::LEAVE] {
            let ev = PresenceEvent { channel: channel.clone(), client: client.clone(), user: user.clone() };
            let frame = outbound::event(name, Some(&ev)).unwrap();
            match parse_one(&frame) {
                Packet::Transmit { event, data: Some(d) } => {
                    prop_assert_eq!(event.as_ref(), name);
                    prop_assert_eq!(serde_json::from_str::<PresenceEvent>(d.get()).unwrap(), ev);
                }
                p => prop_assert!(false, "{p:?}"),
            }
        }

        let req = HistoryRequest {
            channel: channel.clone(),
            limit,
            since: since.map(|(o, e)| StreamPosition::new(o, e)),
        };
        let back: HistoryRequest = serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        prop_assert_eq!(back, req);

        let status = SubscribeStatus { offset, epoch: epoch.clone(), recovered };
        let cid = Cid::from(offset);
        match parse_one(&outbound::reply(&cid, &status).unwrap()) {
            Packet::Response { data: Some(d), .. } => {
                prop_assert_eq!(serde_json::from_str::<SubscribeStatus>(d.get()).unwrap(), status);
            }
            p => prop_assert!(false, "{p:?}"),
        }

        let reply = HistoryReply {
            publications: pubs.into_iter().map(|(offset, data)| HistoryPublication { offset, data }).collect(),
            offset,
            epoch: epoch.clone(),
        };
        let text = serde_json::to_string(&reply).unwrap();
        let back: HistoryReply = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back.offset, reply.offset);
        prop_assert_eq!(&back.epoch, &reply.epoch);
        prop_assert_eq!(back.publications.len(), reply.publications.len());
        for (a, b) in back.publications.iter().zip(&reply.publications) {
            prop_assert_eq!(a.offset, b.offset);
            prop_assert!(raw_eq(a.data.as_deref(), b.data.as_deref()));
        }

        let presence = PresenceReply {
            clients: clients
                .into_iter()
                .map(|(id, (user, info))| {
                    // `info: null` reads back as no info.
                    let info = info.filter(|i| !i.is_null());
                    (id, ClientInfo { user, info })
                })
                .collect::<BTreeMap<_, _>>(),
        };
        let back: PresenceReply = serde_json::from_str(&serde_json::to_string(&presence).unwrap()).unwrap();
        prop_assert_eq!(back, presence);

        let s = PresenceStats { clients: stats.0, users: stats.1 };
        prop_assert_eq!(serde_json::from_str::<PresenceStats>(&serde_json::to_string(&s).unwrap()).unwrap(), s);
        let r = ChannelRequest { channel };
        prop_assert_eq!(serde_json::from_str::<ChannelRequest>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
    }
}
