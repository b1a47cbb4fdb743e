//! Malformed and out-of-order input: ignored, limited, or closed with the
//! protocol's close codes.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn malformed_frames_are_ignored_and_socket_keeps_working() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.client().await;
        c.subscribe("c1").await;
        for junk in [
            "not json{",
            "5",
            "\"str\"",
            "[1,",
            "{\"event\":5}",
            "null",
            "{}",
        ] {
            c.send_text(junk).await;
        }
        c.send_binary(vec![0, 1, 2]).await;
        // A batch with one bad frame: the good ones still run.
        c.send_text(r#"[7, {"event":"echo","data":"in batch","cid":50}]"#)
            .await;
        assert_eq!(c.recv().await, r#"{"rid":50,"data":"in batch"}"#);
        // Well-formed frames with wrong arguments get an error reply.
        c.send_text(r##"{"event":"#subscribe","data":"c2","cid":51}"##)
            .await;
        let reply = c.recv_json().await;
        assert_eq!(reply["error"]["name"], "InvalidActionError", "{reply}");
        assert_eq!(c.call("echo", json!("alive")).await, json!("alive"));
        assert!(server.server.socket(&c.id).unwrap().is_subscribed("c1"));
    })
    .await
}

#[tokio::test]
async fn malformed_flood_beyond_burst_closes_with_1003() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.malformed_burst = 4;
            c.malformed_refill = Duration::from_secs(3600);
        })
        .await;
        let mut c = server.client().await;
        // The burst is tolerated...
        for _ in 0..4 {
            c.send_text("not json{").await;
        }
        assert_eq!(c.call("echo", json!(1)).await, json!(1));
        // ...one more is not.
        c.send_text("not json{").await;
        let (code, _) = c.expect_close().await;
        assert_eq!(code, 1003);
    })
    .await
}

#[tokio::test]
async fn message_over_max_payload_closes_with_1009() {
    bounded(async {
        let server = TestServer::fixture_with(|c| c.max_payload = 1024).await;
        let mut c = server.client().await;
        // Just under the limit is fine.
        let fits = json!({"event": "echo", "data": "x".repeat(900), "cid": 2}).to_string();
        assert!(fits.len() <= 1024);
        c.send_text(fits).await;
        assert_eq!(c.recv_json().await["rid"], 2);

        let big = json!({"event": "echo", "data": "x".repeat(4096), "cid": 3}).to_string();
        c.send_text(big).await;
        let (code, _) = c.expect_close().await;
        assert_eq!(code, 1009);
    })
    .await
}

#[tokio::test]
async fn frame_before_handshake_closes_with_4009() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.connect().await;
        c.send_text(r##"{"event":"#subscribe","data":{"channel":"c1"},"cid":1}"##)
            .await;
        assert_eq!(c.expect_close().await.0, 4009);

        // Malformed input and a pong before the handshake too (strict
        // handshake, as socketcluster-server).
        for first in ["not json{", ""] {
            let mut c = server.connect().await;
            c.send_text(first).await;
            assert_eq!(c.expect_close().await.0, 4009, "first message {first:?}");
        }
        assert_eq!(server.server.subscriber_count("c1"), 0);
    })
    .await
}

#[tokio::test]
async fn no_handshake_within_timeout_closes_with_4005() {
    bounded(async {
        let server =
            TestServer::fixture_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
        let start = Instant::now();
        let mut c = server.connect().await;
        let (code, _) = c.expect_close().await;
        assert_eq!(code, 4005);
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "closed early: {:?}",
            start.elapsed()
        );
    })
    .await
}

#[tokio::test]
async fn handshake_without_cid_closes_with_4008() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut c = server.connect().await;
        c.send_text(r##"{"event":"#handshake","data":{}}"##).await;
        assert_eq!(c.expect_close().await.0, 4008);
        assert_eq!(server.server.client_count(), 0);
    })
    .await
}
