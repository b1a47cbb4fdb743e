//! Slow consumers: a subscriber that stops reading is closed with 4100 once
//! its bounded queue overflows, without holding up the publisher or the
//! other subscribers.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::common::*;

const PUBLICATIONS: u64 = 300;
const PAD: usize = 256 * 1024;
/// How far the reading subscriber may lag behind the publisher. Below the
/// queue capacity, so that the reader itself is never a slow consumer.
const WINDOW: u64 = 4;
const QUEUE: usize = 8;

const PREFIX: &str = r##"{"event":"#publish","data":{"channel":"firehose","data":{"seq":"##;

/// The sequence number of a firehose publication, checking it is whole.
fn seq_of(frame: &str) -> u64 {
    let rest = frame
        .strip_prefix(PREFIX)
        .unwrap_or_else(|| panic!("not a firehose publication: {:.80}", frame));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let seq: u64 = digits.parse().unwrap();
    let expected_len = PREFIX.len() + digits.len() + r#","pad":""}}}"#.len() + PAD;
    assert_eq!(frame.len(), expected_len, "publication {seq} is truncated");
    seq
}

#[tokio::test]
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
        let mut next = 0;
        for seq in 0..PUBLICATIONS {
            let cid = 1000 + seq;
            publisher
                .send_text(format!(
                    r##"{{"event":"#publish","data":{{"channel":"firehose","data":{{"seq":{seq},"pad":"{pad}"}}}},"cid":{cid}}}"##
                ))
                .await;
            // Acknowledged once queued for every subscriber: the publisher
            // is never held up by the stalled socket.
            assert_eq!(publisher.recv().await, format!(r#"{{"rid":{cid}}}"#));
            while next + WINDOW <= seq {
                assert_eq!(seq_of(&reader.recv().await), next);
                next += 1;
            }
        }
        while next < PUBLICATIONS {
            assert_eq!(seq_of(&reader.recv().await), next);
            next += 1;
        }

        // The stalled socket: what reached it is an in-order prefix, then
        // the 4100 close.
        let mut got = 0;
        let (code, reason) = loop {
            match slow.recv_raw().await {
                Incoming::Text(t) if t.is_empty() => {}
                Incoming::Text(t) => {
                    assert_eq!(seq_of(&t), got, "slow consumer got a gap");
                    got += 1;
                }
                Incoming::Close(code, reason) => break (code, reason),
                Incoming::Eof => panic!("slow consumer dropped without a close frame"),
            }
        };
        assert_eq!(code, 4100, "{reason}");
        assert!(got < PUBLICATIONS, "the slow consumer got everything");
        assert_eq!(
            within("on_disconnection", closed.recv()).await,
            Some((slow.id.clone(), 4100))
        );

        // Everyone else is unaffected.
        assert_eq!(reader.call("echo", json!("ok")).await, json!("ok"));
        assert_eq!(publisher.call("echo", json!("ok")).await, json!("ok"));
        assert_eq!(server.server.subscriber_count("firehose"), 1);
        assert!(closed.try_recv().is_err());
    })
    .await
}
