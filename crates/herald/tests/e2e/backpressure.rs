//! Slow consumers: a subscriber that stops reading is closed with 4100 once
//! its bounded queue overflows, without holding up the publisher or the
//! other subscribers.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::common::*;

const PUBLICATIONS: u64 = 300;
/// Published while the stalled subscriber drains what reached it.
const MORE: u64 = 500;
const PAD: usize = 256 * 1024;
/// How far the reading subscriber may lag behind the publisher. Below the
/// queue capacity, so that the reader itself is never a slow consumer.
const WINDOW: u64 = 4;
const QUEUE: usize = 8;

const PREFIX: &str = r##"{"event":"#publish","data":{"channel":"firehose","data":{"seq":"##;

/// The sequence number and padding length of a firehose publication,
/// checking that it is whole.
fn parse(frame: &str) -> (u64, usize) {
    let rest = frame
        .strip_prefix(PREFIX)
        .unwrap_or_else(|| panic!("not a firehose publication: {:.80}", frame));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let seq: u64 = digits.parse().unwrap();
    let pad = rest[digits.len()..]
        .strip_prefix(r#","pad":""#)
        .and_then(|p| p.strip_suffix(r#""}}}"#))
        .unwrap_or_else(|| panic!("publication {seq} is malformed"));
    assert!(
        pad.bytes().all(|b| b == b'x'),
        "publication {seq} is corrupt"
    );
    (seq, pad.len())
}

/// The sequence number of a large firehose publication.
fn seq_of(frame: &str) -> u64 {
    let (seq, pad) = parse(frame);
    assert_eq!(pad, PAD, "publication {seq} is truncated");
    seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_4100_while_a_reading_subscriber_gets_everything() {
    bounded(async {
        let (tx, mut closed) = mpsc::unbounded_channel();
        let server = TestServer::start(
            fixture()
                .configure(|c| {
                    c.outbound_queue = QUEUE;
                    // The stalled socket's task may sit in a blocked write
                    // until the test reads it again; do not let the write
                    // timeout close it first.
                    c.write_timeout = Duration::from_secs(120);
                    // Nor the liveness deadline: `slow` sends nothing (no
                    // pong) while stalled, and on a loaded machine the
                    // flood can outlast the default 30 s (then it would
                    // close with 4001, not 4100).
                    c.ping_timeout = Duration::from_secs(600);
                })
                .on_disconnection(move |socket, code, _| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send((socket.id().to_owned(), code));
                    }
                }),
        )
        .await;
        let mut reader = server.client().await;
        let mut slow = server.client().await;
        let mut publisher = server.client().await;
        reader.subscribe("firehose").await;
        slow.subscribe("firehose").await;
        // From here on `slow` reads nothing until the flood is over.

        let pad = "x".repeat(PAD);
        let publish = |seq: u64| {
            format!(
                r##"{{"event":"#publish","data":{{"channel":"firehose","data":{{"seq":{seq},"pad":"{pad}"}}}},"cid":{}}}"##,
                1000 + seq
            )
        };
        let mut next = 0;
        // Phase 1: flood while `slow` reads nothing.
        for seq in 0..PUBLICATIONS {
            publisher.send_text(publish(seq)).await;
            // Acknowledged once queued for every subscriber: the publisher
            // is never held up by the stalled socket.
            assert_eq!(publisher.recv().await, format!(r#"{{"rid":{}}}"#, 1000 + seq));
            while next + WINDOW <= seq {
                assert_eq!(seq_of(&reader.recv().await), next);
                next += 1;
            }
        }

        while next < PUBLICATIONS {
            assert_eq!(seq_of(&reader.recv().await), next);
            next += 1;
        }

        // Phase 2: `slow` wakes up and drains what reached it while small
        // publications keep coming (pipelined, the reader out of the way).
        // It must see an in-order prefix without gaps (nothing more is
        // queued for a socket condemned as a slow consumer), then 4100.
        reader.request("#unsubscribe", Some(json!("firehose"))).await;
        let slow_id = slow.id.clone();
        let draining = tokio::spawn(async move {
            let mut got = 0;
            let close = loop {
                match slow.recv_raw().await {
                    Incoming::Text(t) if t.is_empty() => {}
                    Incoming::Text(t) => {
                        assert_eq!(parse(&t).0, got, "slow consumer got a gap");
                        got += 1;
                    }
                    Incoming::Close(code, reason) => break (code, reason),
                    Incoming::Eof => panic!("slow consumer dropped without a close frame"),
                }
            };
            (got, close)
        });
        for seq in PUBLICATIONS..PUBLICATIONS + MORE {
            publisher
                .send_text(format!(
                    r##"{{"event":"#publish","data":{{"channel":"firehose","data":{{"seq":{seq},"pad":""}}}},"cid":{seq}}}"##
                ))
                .await;
            assert_eq!(publisher.recv().await, format!(r#"{{"rid":{seq}}}"#));
        }
        let (got, (code, reason)) = within("the slow consumer's close", draining)
            .await
            .unwrap();
        assert_eq!(code, 4100, "{reason}");
        assert!(got < PUBLICATIONS, "the slow consumer got all {got}");
        assert_eq!(
            within("on_disconnection", closed.recv()).await,
            Some((slow_id, 4100))
        );

        // Everyone else is unaffected.
        assert_eq!(reader.call("echo", json!("ok")).await, json!("ok"));
        assert_eq!(publisher.call("echo", json!("ok")).await, json!("ok"));
        assert_eq!(server.server.subscriber_count("firehose"), 0);
        assert!(closed.try_recv().is_err());
    })
    .await
}
