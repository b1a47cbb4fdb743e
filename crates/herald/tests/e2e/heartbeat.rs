//! The v2 heartbeat: `""` pings from the server, `""` pongs from the client,
//! 4001 for a silent client.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(300);

async fn heartbeat_server(interval: Duration, timeout: Duration) -> TestServer {
    TestServer::fixture_with(|c| {
        c.ping_interval = interval;
        c.ping_timeout = timeout;
    })
    .await
}

#[tokio::test]
async fn server_pings_every_interval_after_the_handshake() {
    bounded(async {
        let server = heartbeat_server(INTERVAL, Duration::from_secs(30)).await;
        let mut c = server.connect().await;
        // No ping before the handshake, even after several intervals.
        tokio::time::sleep(INTERVAL * 3).await;
        let start = Instant::now();
        c.send_text(r##"{"event":"#handshake","data":{},"cid":1}"##)
            .await;
        // The very first message is the reply: nothing was sent before it.
        let Incoming::Text(reply) = c.recv_raw().await else {
            panic!("expected the handshake reply");
        };
        let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["rid"], 1);
        assert_eq!(reply["data"]["pingTimeout"], 30_000);

        const PINGS: u32 = 5;
        for n in 1..=PINGS {
            assert_eq!(
                c.recv_raw().await,
                Incoming::Text(String::new()),
                "ping {n}"
            );
            // Pings are never early: the n-th comes n intervals after the
            // handshake at the soonest.
            assert!(
                start.elapsed() >= INTERVAL * n,
                "ping {n} after {:?}",
                start.elapsed()
            );
        }
        // ...and keep coming at the interval (generous bound for a busy box).
        assert!(
            start.elapsed() < INTERVAL * PINGS + Duration::from_millis(1500),
            "{PINGS} pings took {:?}",
            start.elapsed()
        );
    })
    .await
}

#[tokio::test]
async fn client_answering_pings_stays_connected_past_several_ping_timeouts() {
    bounded(async {
        let server = heartbeat_server(INTERVAL, TIMEOUT).await;
        let mut c = server.client().await;
        assert!(c.auto_pong);
        let start = Instant::now();
        let mut pings = 0;
        while start.elapsed() < TIMEOUT * 4 {
            match c.recv_raw().await {
                Incoming::Text(t) if t.is_empty() => pings += 1,
                other => panic!("expected only pings, got {other:?}"),
            }
        }
        assert!(pings >= 4, "only {pings} pings in {:?}", start.elapsed());
        assert_eq!(c.call("echo", json!("alive")).await, json!("alive"));
        assert_eq!(server.server.client_count(), 1);
    })
    .await
}

#[tokio::test]
async fn silent_client_is_closed_with_4001() {
    bounded(async {
        let interval = Duration::from_millis(200);
        let timeout = Duration::from_millis(600);
        let server = heartbeat_server(interval, timeout).await;
        let mut c = server.connect().await;
        c.auto_pong = false;
        let start = Instant::now();
        c.handshake(None).await;
        let mut pings = 0;
        let (code, reason) = loop {
            match c.recv_raw().await {
                Incoming::Text(t) if t.is_empty() => pings += 1,
                Incoming::Close(code, reason) => break (code, reason),
                other => panic!("unexpected {other:?}"),
            }
        };
        let elapsed = start.elapsed();
        assert_eq!(code, 4001, "{reason}");
        assert!(pings >= 1, "pings were sent before the close");
        assert!(
            elapsed >= timeout,
            "closed after {elapsed:?}, before the timeout"
        );
        assert!(
            elapsed <= timeout + interval,
            "closed after {elapsed:?}, later than ping_timeout + ping_interval"
        );
    })
    .await
}
