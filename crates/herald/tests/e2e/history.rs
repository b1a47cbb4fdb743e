//! Channel history: offsets and epochs on the wire, the subscribe reply on
//! a history channel, and `#herald/history` reads.

use std::time::Duration;

use herald::{ChannelOptions, HistoryQuery, Rule};
use serde_json::{Value, json};

use crate::common::*;

pub fn history(size: usize) -> ChannelOptions {
    ChannelOptions {
        history_size: size,
        history_ttl: Duration::from_secs(600),
        recover: true,
        ..ChannelOptions::default()
    }
}

async fn server() -> TestServer {
    TestServer::start(
        fixture()
            .namespace("chat", history(100))
            .namespace("tiny", history(3))
            .namespace(
                "members",
                ChannelOptions {
                    subscribe: Rule::Authenticated,
                    ..history(10)
                },
            ),
    )
    .await
}

#[tokio::test]
async fn publications_carry_offset_and_epoch_and_plain_channels_do_not() {
    bounded(async {
        let server = server().await;
        let mut c = server.client().await;
        let reply = c.subscribe_with("chat:a", None).await;
        assert_eq!(reply["data"]["offset"], 0, "{reply}");
        let epoch = reply["data"]["epoch"].as_str().expect("an epoch").to_owned();
        assert!(reply["data"].get("recovered").is_none(), "{reply}");
        for n in 1..=3 {
            assert!(c.publish("chat:a", json!({"n": n})).await.get("error").is_none());
            assert_eq!(
                c.recv().await,
                format!(
                    r##"{{"event":"#publish","data":{{"channel":"chat:a","data":{{"n":{n}}},"offset":{n},"epoch":"{epoch}"}}}}"##
                )
            );
        }
        // A channel without history: exactly today's frames.
        c.subscribe("news").await;
        c.publish("news", json!(1)).await;
        assert_eq!(
            c.recv().await,
            r##"{"event":"#publish","data":{"channel":"news","data":1}}"##
        );
        // The position as server code reads it.
        let page = server
            .server
            .history("chat:a", HistoryQuery { since: None, limit: 10 })
            .await
            .unwrap();
        assert_eq!(page.position.offset, 3);
        assert_eq!(&*page.position.epoch, epoch);
        assert_eq!(page.publications.len(), 3);
    })
    .await
}

#[tokio::test]
async fn a_second_subscriber_learns_where_the_stream_stands() {
    bounded(async {
        let server = server().await;
        let mut publisher = server.client().await;
        for n in 1..=4 {
            publisher.publish("chat:b", json!(n)).await;
        }
        let mut c = server.client().await;
        let reply = c.subscribe_with("chat:b", None).await;
        assert_eq!(reply["data"]["offset"], 4, "{reply}");
        publisher.publish("chat:b", json!(5)).await;
        let (_, data, offset, _) = c.recv_positioned().await;
        assert_eq!((data.as_deref(), offset), (Some("5"), 5));
    })
    .await
}

async fn history_call(c: &mut Client, args: Value) -> Result<Value, Value> {
    c.invoke("#herald/history", args).await
}

fn offsets(reply: &Value) -> Vec<u64> {
    reply["publications"]
        .as_array()
        .expect("publications")
        .iter()
        .map(|p| p["offset"].as_u64().expect("offset"))
        .collect()
}

#[tokio::test]
async fn history_reads_latest_since_and_limited() {
    bounded(async {
        let server = server().await;
        let mut c = server.client().await;
        for n in 1..=6 {
            c.publish("chat:h", json!({"n": n})).await;
        }
        let all = history_call(&mut c, json!({"channel": "chat:h"}))
            .await
            .unwrap();
        assert_eq!(offsets(&all), [1, 2, 3, 4, 5, 6]);
        assert_eq!(all["offset"], 6);
        assert_eq!(all["publications"][0]["data"], json!({"n": 1}));
        let epoch = all["epoch"].as_str().unwrap().to_owned();
        let latest = history_call(&mut c, json!({"channel": "chat:h", "limit": 2}))
            .await
            .unwrap();
        assert_eq!(offsets(&latest), [5, 6]);
        let since = history_call(
            &mut c,
            json!({"channel": "chat:h", "limit": 2, "since": {"offset": 2, "epoch": epoch}}),
        )
        .await
        .unwrap();
        assert_eq!(offsets(&since), [3, 4]);
        // The size caps what is kept.
        for n in 1..=5 {
            c.publish("tiny:h", json!(n)).await;
        }
        let tiny = history_call(&mut c, json!({"channel": "tiny:h", "limit": 50}))
            .await
            .unwrap();
        assert_eq!(offsets(&tiny), [3, 4, 5]);
    })
    .await
}

#[tokio::test]
async fn history_reads_are_checked() {
    bounded(async {
        let server = server().await;
        let mut c = server.client().await;
        let e = history_call(&mut c, json!({"channel": "news"}))
            .await
            .unwrap_err();
        assert_eq!(e["name"], "NotAvailableError", "{e}");
        let e = history_call(&mut c, json!({"channel": "members:x"}))
            .await
            .unwrap_err();
        assert_eq!(e["name"], "ForbiddenError", "{e}");
        let e = history_call(&mut c, json!({"nope": 1})).await.unwrap_err();
        assert_eq!(e["name"], "InvalidArgumentsError", "{e}");
        c.publish("chat:e", json!(1)).await;
        let e = history_call(
            &mut c,
            json!({"channel": "chat:e", "since": {"offset": 0, "epoch": "another"}}),
        )
        .await
        .unwrap_err();
        assert_eq!(e["name"], "UnrecoverablePositionError", "{e}");
        // Other reserved procedures do not exist.
        let e = c.invoke("#herald/nothing", json!({})).await.unwrap_err();
        assert_eq!(e["name"], "NoSuchProcedureError", "{e}");
        // Removing the history starts a new epoch.
        let before = history_call(&mut c, json!({"channel": "chat:e"}))
            .await
            .unwrap();
        server.server.remove_history("chat:e").await.unwrap();
        let after = history_call(&mut c, json!({"channel": "chat:e"}))
            .await
            .unwrap();
        assert_ne!(before["epoch"], after["epoch"]);
        assert_eq!(after["offset"], 0);
    })
    .await
}

#[tokio::test]
async fn server_code_gets_positions_from_the_exchange() {
    bounded(async {
        let server = server().await;
        let ex = server.server.exchange();
        let a = ex.publish("chat:x", &1).await.unwrap().expect("a position");
        let b = ex.publish("chat:x", &2).await.unwrap().expect("a position");
        assert_eq!((a.offset, b.offset), (1, 2));
        assert_eq!(a.epoch, b.epoch);
        assert_eq!(ex.publish("news", &1).await.unwrap(), None);
    })
    .await
}
