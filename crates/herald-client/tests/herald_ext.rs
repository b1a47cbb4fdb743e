//! Herald's protocol extension (history, recovery, presence) end to end
//! through the public API, against the scripted server (`common::scripted`),
//! which plays the server's part frame by frame: it checks what the client
//! sends (`recover` on resubscribe, the history and presence calls) and
//! feeds it what a Herald server would (positioned publications before the
//! reply, `recovered:false`, pushes). The client-side expectations
//! (`common::recovery`) go through the public API only, for reuse against
//! the real server.

use std::time::Duration;

use futures_util::StreamExt as _;
use herald_client::{
    Client, ClientEvent, Error, GapCause, HistoryOptions, PresenceStats, ReconnectPolicy,
    StreamPosition, SubscribeOptions, Subscription, SubscriptionError,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod common;

use common::recovery::{
    expect_gap, expect_nothing_queued, expect_publications, queued_events, wait_gap_event,
};
use common::scripted::{
    Conn, accept_open, close, expect_invoke, expect_subscribe, presence_push, publish, raw_server,
    recover_of, reply, reply_error, roundtrip, unrecoverable,
};
use common::{bounded, wait_event, within};

type Conns = mpsc::UnboundedReceiver<Conn>;

fn fast_builder(url: &str) -> herald_client::ClientBuilder {
    common::builder_for(url).reconnect(ReconnectPolicy {
        enabled: true,
        initial_delay: Duration::from_millis(20),
        multiplier: 2.0,
        max_delay: Duration::from_millis(100),
    })
}

/// A connected client and the server side of its connection.
async fn open(url: &str, conns: &mut Conns) -> (Client, herald_client::Events, Conn) {
    let builder = fast_builder(url);
    let events = builder.events();
    let (client, ws) = tokio::join!(builder.connect(), accept_open(conns));
    (client.expect("connect"), events, ws)
}

/// Subscribes to `channel` with `options`; the server answers `data`.
async fn subscribe(
    client: &Client,
    ws: &mut Conn,
    channel: &str,
    options: SubscribeOptions,
    reply_data: Option<Value>,
) -> (Subscription, Value) {
    let call = tokio::spawn({
        let client = client.clone();
        let channel = channel.to_owned();
        async move { client.subscribe_with(channel, options).await }
    });
    let req = expect_subscribe(ws, channel).await;
    reply(ws, &req, reply_data).await;
    let sub = within("subscribe", call)
        .await
        .unwrap()
        .expect("subscribed");
    (sub, req)
}

fn pos(offset: u64, epoch: &str) -> StreamPosition {
    StreamPosition::new(offset, epoch)
}

#[tokio::test]
async fn resubscribe_recovers_missed_publications_in_order_without_duplicates() {
    bounded(async {
        let (url, mut conns) = raw_server().await;
        let (client, mut events, mut ws) = open(&url, &mut conns).await;
        let (mut sub, req) = subscribe(
            &client,
            &mut ws,
            "chat",
            SubscribeOptions::default(),
            Some(json!({"offset": 10, "epoch": "e1"})),
        )
        .await;
        assert_eq!(
            recover_of(&req),
            None,
            "nothing to recover on a first subscribe"
        );
        assert_eq!(sub.position(), Some(&pos(10, "e1")));
        publish(&mut ws, "chat", json!("a"), Some((11, "e1"))).await;
        publish(&mut ws, "chat", json!("b"), Some((12, "e1"))).await;
        // A live duplicate is dropped too.
        publish(&mut ws, "chat", json!("b"), Some((12, "e1"))).await;
        expect_publications(&mut sub, &[(11, json!("a")), (12, json!("b"))]).await;

        // The server hangs up; the client reconnects and recovers from 12.
        drop(ws);
        let mut ws = accept_open(&mut conns).await;
        let req = expect_subscribe(&mut ws, "chat").await;
        assert_eq!(recover_of(&req), Some((12, "e1".to_owned())));
        // Missed publications come before the reply (with one the client
        // already has), then the reply, then live ones.
        for (offset, data) in [(12, "b"), (13, "c"), (14, "d")] {
            publish(&mut ws, "chat", json!(data), Some((offset, "e1"))).await;
        }
        reply(
            &mut ws,
            &req,
            Some(json!({"offset": 14, "epoch": "e1", "recovered": true})),
        )
        .await;
        publish(&mut ws, "chat", json!("e"), Some((15, "e1"))).await;
        expect_publications(
            &mut sub,
            &[(13, json!("c")), (14, json!("d")), (15, json!("e"))],
        )
        .await;
        roundtrip(&client, &mut ws).await;
        expect_nothing_queued(&mut sub);
        let gaps: Vec<_> = queued_events(&mut events)
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Gap(_)))
            .collect();
        assert!(gaps.is_empty(), "no gap expected: {gaps:?}");

        // Another drop: the next resubscribe starts from the live position.
        drop(ws);
        let mut ws = accept_open(&mut conns).await;
        let req = expect_subscribe(&mut ws, "chat").await;
        assert_eq!(recover_of(&req), Some((15, "e1".to_owned())));
        assert_eq!(close(&client, &mut ws).await, Some(1000));
    })
    .await;
}

#[tokio::test]
async fn unrecoverable_history_is_reported_and_the_stream_goes_on() {
    bounded(async {
        let (url, mut conns) = raw_server().await;
        let (client, mut events, mut ws) = open(&url, &mut conns).await;
        let (mut sub, _) = subscribe(
            &client,
            &mut ws,
            "feed",
            SubscribeOptions::default(),
            Some(json!({"offset": 3, "epoch": "e1"})),
        )
        .await;
        drop(ws);

        // The history is gone (another epoch): recovered:false, nothing sent.
        let mut ws = accept_open(&mut conns).await;
        let req = expect_subscribe(&mut ws, "feed").await;
        assert_eq!(recover_of(&req), Some((3, "e1".to_owned())));
        reply(
            &mut ws,
            &req,
            Some(json!({"offset": 40, "epoch": "e2", "recovered": false})),
        )
        .await;
        let gap = expect_gap(&mut sub, GapCause::NotRecovered).await;
        assert_eq!(
            (gap.last.clone(), gap.resume.clone()),
            (Some(pos(3, "e1")), pos(40, "e2"))
        );
        assert_eq!(gap.missed(), None);
        assert_eq!(wait_gap_event(&mut events, "feed").await, gap);
        publish(&mut ws, "feed", json!("live"), Some((41, "e2"))).await;
        expect_publications(&mut sub, &[(41, json!("live"))]).await;

        // The server announces a loss: reported, and the stream goes on
        // after the position it names.
        unrecoverable(&mut ws, "feed", 50, "e2").await;
        let gap = expect_gap(&mut sub, GapCause::Announced).await;
        assert_eq!(gap.missed(), Some(9));
        assert_eq!(
            wait_gap_event(&mut events, "feed").await.cause,
            GapCause::Announced
        );
        publish(&mut ws, "feed", json!("after"), Some((51, "e2"))).await;
        expect_publications(&mut sub, &[(51, json!("after"))]).await;

        // A jump the client sees by itself: 52 and 53 never arrive.
        publish(&mut ws, "feed", json!("jumped"), Some((54, "e2"))).await;
        let gap = expect_gap(&mut sub, GapCause::OffsetJump).await;
        assert_eq!((gap.missed(), gap.resume.clone()), (Some(2), pos(53, "e2")));
        expect_publications(&mut sub, &[(54, json!("jumped"))]).await;
        // A new epoch without a recovery.
        publish(&mut ws, "feed", json!("reset"), Some((1, "e3"))).await;
        expect_gap(&mut sub, GapCause::EpochChanged).await;
        expect_publications(&mut sub, &[(1, json!("reset"))]).await;
        assert!(!sub.is_terminated());
        assert_eq!(close(&client, &mut ws).await, Some(1000));
    })
    .await;
}

#[tokio::test]
async fn subscribe_since_a_saved_position_recovers_before_returning() {
    bounded(async {
        let (url, mut conns) = raw_server().await;
        let (client, _events, mut ws) = open(&url, &mut conns).await;
        let options = SubscribeOptions {
            since: Some(pos(7, "ep")),
            ..SubscribeOptions::default()
        };
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.subscribe_with("orders", options).await }
        });
        let req = expect_subscribe(&mut ws, "orders").await;
        assert_eq!(recover_of(&req), Some((7, "ep".to_owned())));
        publish(&mut ws, "orders", json!({"n": 8}), Some((8, "ep"))).await;
        publish(&mut ws, "orders", json!({"n": 9}), Some((9, "ep"))).await;
        reply(
            &mut ws,
            &req,
            Some(json!({"offset": 9, "epoch": "ep", "recovered": true})),
        )
        .await;
        let mut sub = within("subscribe", call).await.unwrap().unwrap();
        assert_eq!(sub.position(), Some(&pos(9, "ep")));
        expect_publications(&mut sub, &[(8, json!({"n": 8})), (9, json!({"n": 9}))]).await;
        assert_eq!(sub.position(), Some(&pos(9, "ep")));

        // A channel without history: no position anywhere, and a saved one
        // that the server ignores does no harm.
        let options = SubscribeOptions {
            since: Some(pos(1, "x")),
            ..SubscribeOptions::default()
        };
        let (mut plain, _) = subscribe(&client, &mut ws, "plain", options, None).await;
        publish(&mut ws, "plain", json!(1), None).await;
        let p = within("plain", plain.next()).await.unwrap().unwrap();
        assert_eq!((p.position, p.data), (None, json!(1)));
        assert_eq!(close(&client, &mut ws).await, Some(1000));
    })
    .await;
}

#[tokio::test]
async fn resubscribe_refused_by_a_broker_outage_is_retried() {
    bounded(async {
        let (url, mut conns) = raw_server().await;
        let (client, mut events, mut ws) = open(&url, &mut conns).await;
        let (mut sub, _) = subscribe(
            &client,
            &mut ws,
            "c",
            SubscribeOptions::default(),
            Some(json!({"offset": 5, "epoch": "e"})),
        )
        .await;
        let (mut other, _) =
            subscribe(&client, &mut ws, "d", SubscribeOptions::default(), None).await;
        drop(ws);

        let mut ws = accept_open(&mut conns).await;
        let mut requests = [recv_subscribe(&mut ws).await, recv_subscribe(&mut ws).await];
        requests.sort_by_key(|r| r["data"]["channel"].as_str().map(str::to_owned));
        let [c, d] = requests;
        reply_error(&mut ws, &c, "BrokerError", "the broker is down").await;
        // Any other refusal ends the stream, as before.
        reply_error(&mut ws, &d, "ForbiddenError", "not any more").await;
        match within("the end of d", other.next()).await {
            Some(Err(SubscriptionError::Rejected(e))) => assert_eq!(e.name, "ForbiddenError"),
            other => panic!("{other:?}"),
        }
        assert!(within("end", other.next()).await.is_none());

        match wait_event(&mut events, "a retry", |e| {
            matches!(e, ClientEvent::SubscribeRetrying { .. })
        })
        .await
        {
            ClientEvent::SubscribeRetrying {
                channel,
                error,
                attempt,
                delay,
            } => {
                assert_eq!(
                    (channel.as_str(), error.name.as_str(), attempt),
                    ("c", "BrokerError", 1)
                );
                assert!(delay <= Duration::from_millis(20), "{delay:?}");
            }
            _ => unreachable!(),
        }
        // The retry recovers from where the stream stood.
        let req = expect_subscribe(&mut ws, "c").await;
        assert_eq!(recover_of(&req), Some((5, "e".to_owned())));
        publish(&mut ws, "c", json!("missed"), Some((6, "e"))).await;
        reply(
            &mut ws,
            &req,
            Some(json!({"offset": 6, "epoch": "e", "recovered": true})),
        )
        .await;
        expect_publications(&mut sub, &[(6, json!("missed"))]).await;
        assert!(!sub.is_terminated());
        assert_eq!(close(&client, &mut ws).await, Some(1000));
    })
    .await;
}

async fn recv_subscribe(ws: &mut Conn) -> Value {
    let req = common::scripted::recv_json(ws).await;
    assert_eq!(req["event"], "#subscribe", "{req}");
    req
}

#[tokio::test]
async fn history_and_presence_calls_send_the_extension_and_parse_replies() {
    bounded(async {
        let (url, mut conns) = raw_server().await;
        let (client, _events, mut ws) = open(&url, &mut conns).await;

        let options = HistoryOptions {
            limit: Some(2),
            since: Some(pos(4, "e")),
        };
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.history("chat", options).await }
        });
        let req = expect_invoke(&mut ws, "#herald/history").await;
        assert_eq!(
            req["data"],
            json!({"channel": "chat", "limit": 2, "since": {"offset": 4, "epoch": "e"}})
        );
        reply(
            &mut ws,
            &req,
            Some(json!({"publications": [{"offset": 5, "data": "five"}, {"offset": 6, "data": {"n": 6}}], "offset": 9, "epoch": "e"})),
        )
        .await;
        let page = within("history", call).await.unwrap().unwrap();
        assert_eq!(page.position, pos(9, "e"));
        let got: Vec<_> = page
            .publications
            .iter()
            .map(|p| (p.channel.as_str(), p.position.clone(), p.data.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("chat", Some(pos(5, "e")), json!("five")),
                ("chat", Some(pos(6, "e")), json!({"n": 6}))
            ]
        );
        assert!(!page.recovers(&pos(4, "e")), "cut by the limit");

        // Default options send only the channel; a refusal is a remote error.
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.history("plain", HistoryOptions::default()).await }
        });
        let req = expect_invoke(&mut ws, "#herald/history").await;
        assert_eq!(req["data"], json!({"channel": "plain"}));
        reply_error(&mut ws, &req, "InvalidActionError", "no history").await;
        let r = within("history refused", call).await.unwrap();
        assert_eq!(r.unwrap_err().remote_name(), Some("InvalidActionError"));
        // A reply of the wrong shape is a decode error, not a panic.
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.history("odd", HistoryOptions::default()).await }
        });
        let req = expect_invoke(&mut ws, "#herald/history").await;
        reply(&mut ws, &req, Some(json!({"publications": "no"}))).await;
        let r = within("odd history", call).await.unwrap();
        assert!(matches!(r, Err(Error::Decode(_))), "{r:?}");

        let call = tokio::spawn({
            let client = client.clone();
            async move { client.presence("room").await }
        });
        let req = expect_invoke(&mut ws, "#herald/presence").await;
        assert_eq!(req["data"], json!({"channel": "room"}));
        reply(
            &mut ws,
            &req,
            Some(json!({"clients": {"s1": {"user": "ann", "info": {"role": "admin"}}, "s2": {"user": null, "info": null}}})),
        )
        .await;
        let clients = within("presence", call).await.unwrap().unwrap();
        assert_eq!(clients.len(), 2);
        assert_eq!(clients["s1"].user.as_deref(), Some("ann"));
        assert_eq!(clients["s1"].info, Some(json!({"role": "admin"})));
        assert_eq!(clients["s2"].user, None);

        let call = tokio::spawn({
            let client = client.clone();
            async move { client.presence_stats("room").await }
        });
        let req = expect_invoke(&mut ws, "#herald/presenceStats").await;
        assert_eq!(req["data"], json!({"channel": "room"}));
        reply(&mut ws, &req, Some(json!({"clients": 3, "users": 2}))).await;
        let stats = within("presence stats", call).await.unwrap().unwrap();
        assert_eq!(stats, PresenceStats { clients: 3, users: 2 });
        assert_eq!(close(&client, &mut ws).await, Some(1000));
    })
    .await;
}

#[tokio::test]
async fn joins_and_leaves_arrive_on_presence_streams() {
    bounded(async {
        let (url, mut conns) = raw_server().await;
        let (client, _events, mut ws) = open(&url, &mut conns).await;
        let mut all = client.presence_events();
        let mut room = client.presence_events_of("room");
        let mut raw = client.receiver("#herald/join");
        presence_push(&mut ws, true, "room", "s1", json!("ann")).await;
        presence_push(&mut ws, true, "lobby", "s2", Value::Null).await;
        presence_push(&mut ws, false, "room", "s1", json!("ann")).await;
        // Unreadable pushes are ignored.
        common::scripted::send(&mut ws, json!({"event": "#herald/join", "data": "x"})).await;
        roundtrip(&client, &mut ws).await;

        let mut seen = Vec::new();
        for _ in 0..3 {
            let c = within("a presence change", all.next())
                .await
                .unwrap()
                .unwrap();
            seen.push((
                c.is_join(),
                c.channel().to_owned(),
                c.event().client.clone(),
            ));
        }
        assert_eq!(
            seen,
            [
                (true, "room".to_owned(), "s1".to_owned()),
                (true, "lobby".to_owned(), "s2".to_owned()),
                (false, "room".to_owned(), "s1".to_owned())
            ]
        );
        let first = within("room", room.next()).await.unwrap().unwrap();
        assert!(first.is_join() && first.event().user.as_deref() == Some("ann"));
        let second = within("room", room.next()).await.unwrap().unwrap();
        assert!(!second.is_join());
        // The raw transmit still reaches receivers of its name.
        let v = within("raw join", raw.next()).await.unwrap().unwrap();
        assert_eq!(v["client"], "s1");

        assert_eq!(close(&client, &mut ws).await, Some(1000));
        assert!(within("end", all.next()).await.is_none());
        assert!(within("end", room.next()).await.is_none());
    })
    .await;
}
