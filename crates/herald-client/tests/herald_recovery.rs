//! Recovery, gaps, history and presence against the real server
//! (`herald-fixture`, whose `hist:` namespace keeps history with recovery,
//! presence and join/leave, and `tiny:` keeps three publications).

#[macro_use]
mod common;

use std::time::Duration;

use common::recovery::{expect_gap, expect_publications};
use common::server::{Server, ServerOptions};
use common::{TargetKind, bounded, builder, connect, wait_event, within};
use futures_util::StreamExt as _;
use herald_client::{ClientEvent, GapCause, HistoryOptions, ReconnectPolicy};
use serde_json::{Value, json};

fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        initial_delay: Duration::from_millis(200),
        ..ReconnectPolicy::default()
    }
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Value)> {
    range.map(|n| (n, json!(n))).collect()
}

#[tokio::test]
async fn a_client_away_for_a_while_gets_what_it_missed() {
    bounded(async {
        let server = Server::start(TargetKind::Herald, ServerOptions::default()).await;
        let t = server.target();
        let client = builder(t)
            .reconnect(fast_reconnect())
            .connect()
            .await
            .unwrap();
        let mut events = client.events();
        let publisher = connect(t).await;
        let mut sub = client.subscribe("hist:away").await.unwrap();
        for n in 1..=3u64 {
            publisher.publish("hist:away", &n).await.unwrap();
        }
        expect_publications(&mut sub, &numbered(1..=3)).await;
        // The server drops the connection; publications go on meanwhile.
        let _ = client
            .invoke("disconnectMe", &json!({"code": 4499, "reason": "away"}))
            .await;
        wait_event(&mut events, "the close", |e| {
            matches!(e, ClientEvent::Closed { .. })
        })
        .await;
        for n in 4..=8u64 {
            publisher.publish("hist:away", &n).await.unwrap();
        }
        // Back by itself: recovered before live, nothing twice, no gap.
        expect_publications(&mut sub, &numbered(4..=8)).await;
        publisher.publish("hist:away", &9u64).await.unwrap();
        expect_publications(&mut sub, &numbered(9..=9)).await;
    })
    .await;
}

#[tokio::test]
async fn a_server_that_lost_its_history_is_reported_not_hidden() {
    bounded(async {
        let mut server = Server::start(TargetKind::Herald, ServerOptions::default()).await;
        let client = builder(server.target())
            .reconnect(fast_reconnect())
            .connect()
            .await
            .unwrap();
        let mut sub = client.subscribe("hist:crash").await.unwrap();
        let publisher = connect(server.target()).await;
        publisher.publish("hist:crash", &1u64).await.unwrap();
        expect_publications(&mut sub, &numbered(1..=1)).await;
        let before = sub.position().cloned().expect("a position");
        drop(publisher);
        // SIGKILL and restart: the memory broker's history is gone.
        server.kill_and_restart().await;
        let gap = expect_gap(&mut sub, GapCause::NotRecovered).await;
        assert_eq!(gap.last.as_ref(), Some(&before));
        assert_ne!(gap.resume.epoch, before.epoch, "a new epoch");
        let publisher = connect(server.target()).await;
        publisher.publish("hist:crash", &2u64).await.unwrap();
        let p = within("the first publication after the restart", sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.offset(), Some(1), "the new stream starts at 1");
        assert_eq!(p.epoch(), Some(gap.resume.epoch.as_str()));
    })
    .await;
}

#[tokio::test]
async fn removed_history_and_trimmed_history_are_gaps() {
    bounded(async {
        let server = Server::start(TargetKind::Herald, ServerOptions::default()).await;
        let t = server.target();
        let client = builder(t)
            .reconnect(fast_reconnect())
            .connect()
            .await
            .unwrap();
        let mut events = client.events();
        let publisher = connect(t).await;
        let mut sub = client.subscribe("tiny:x").await.unwrap();
        publisher.publish("tiny:x", &1u64).await.unwrap();
        expect_publications(&mut sub, &numbered(1..=1)).await;
        let _ = client
            .invoke("disconnectMe", &json!({"code": 4499, "reason": "away"}))
            .await;
        wait_event(&mut events, "the close", |e| {
            matches!(e, ClientEvent::Closed { .. })
        })
        .await;
        // More than the three kept: the client cannot recover 2.
        for n in 2..=6u64 {
            publisher.publish("tiny:x", &n).await.unwrap();
        }
        let gap = expect_gap(&mut sub, GapCause::NotRecovered).await;
        assert_eq!(gap.resume.offset, 6);
        publisher.publish("tiny:x", &7u64).await.unwrap();
        expect_publications(&mut sub, &numbered(7..=7)).await;
    })
    .await;
}

#[tokio::test]
async fn history_presence_and_join_leave_from_the_real_server() {
    bounded(async {
        let server = Server::start(TargetKind::Herald, ServerOptions::default()).await;
        let t = server.target();
        let client = connect(t).await;
        let mut joins = client.presence_events_of("hist:room");
        let _sub = client.subscribe("hist:room").await.unwrap();
        for n in 1..=5u64 {
            client.publish("hist:room", &n).await.unwrap();
        }
        let page = client
            .history(
                "hist:room",
                HistoryOptions {
                    limit: Some(2),
                    ..HistoryOptions::default()
                },
            )
            .await
            .unwrap();
        let offsets: Vec<_> = page.publications.iter().map(|p| p.offset()).collect();
        assert_eq!(offsets, [Some(4), Some(5)]);
        assert_eq!(page.position.offset, 5);
        let other = connect(t).await;
        let _other_sub = other.subscribe("hist:room").await.unwrap();
        let stats = client.presence_stats("hist:room").await.unwrap();
        assert_eq!(stats.clients, 2);
        let list = client.presence("hist:room").await.unwrap();
        assert!(list.contains_key(&other.id().unwrap()));
        // Our own join, then the other's.
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match within("a join", joins.next()).await {
                Some(Ok(change)) => seen.push(format!("{change:?}")),
                other => panic!("{other:?}"),
            }
        }
        assert!(seen.iter().all(|s| s.starts_with("Join")), "{seen:?}");
    })
    .await;
}
