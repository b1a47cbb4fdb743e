//! A subscriber that stops reading costs `herald serve` at most its queue's
//! byte bound (4 MiB by default), then is closed with 4100, while a reading
//! subscriber gets every publication. Measured on the real binary's RSS:
//! before the byte bound one stalled socket pinned 4,096 frames (375 MB
//! with 500 KB publications).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Herald, within};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

type Ws = WebSocketStream<TcpStream>;

const PUBLICATIONS: usize = 200;
const SIZE: usize = 500 * 1000;

/// A handshaken socket subscribed to `firehose`, over TCP with the given
/// receive buffer (a small one makes a stalled reader's kernel buffers
/// negligible).
async fn subscriber(herald: &Herald, recv_buffer: Option<u32>) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(herald.addr()).await.unwrap();
    let uri: http::Uri = herald.url("127.0.0.1").parse().unwrap();
    let (mut ws, _) = ClientBuilder::from_uri(uri)
        .limits(tokio_websockets::Limits::default().max_payload_len(Some(1 << 20)))
        .connect_on(tcp)
        .await
        .unwrap();
    for frame in [
        json!({"event": "#handshake", "data": {}, "cid": 1}),
        json!({"event": "#subscribe", "data": {"channel": "firehose"}, "cid": 2}),
    ] {
        ws.send(Message::text(frame.to_string())).await.unwrap();
    }
    let mut replies = 0;
    while replies < 2 {
        let msg = within("subscribe replies", ws.next())
            .await
            .unwrap()
            .unwrap();
        if msg.as_text().is_some_and(|t| t.contains("\"rid\"")) {
            replies += 1;
        }
    }
    ws
}

/// The server's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_costs_at_most_its_byte_bound_then_4100() {
    let herald = Herald::start(&[], "warn", Stdio::inherit()).await;
    let pid = herald.child.id().unwrap();
    let mut reader = subscriber(&herald, None).await;
    let mut stalled = subscriber(&herald, Some(4096)).await;
    let uri: http::Uri = herald.url("127.0.0.1").parse().unwrap();
    let (mut publisher, _) = ClientBuilder::from_uri(uri).connect().await.unwrap();
    publisher
        .send(Message::text(
            json!({"event": "#handshake", "data": {}, "cid": 1}).to_string(),
        ))
        .await
        .unwrap();
    within("handshake", publisher.next())
        .await
        .unwrap()
        .unwrap();

    // The reader takes everything, in order, concurrently.
    let reading = tokio::spawn(async move {
        let mut next = 0;
        while next < PUBLICATIONS {
            let msg = within("a publication", reader.next())
                .await
                .unwrap()
                .unwrap();
            let Some(text) = msg.as_text() else { continue };
            if text.is_empty() {
                reader.send(Message::text("")).await.unwrap();
                continue;
            }
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v["data"]["data"]["seq"], json!(next), "in order, none lost");
            next += 1;
        }
    });

    let before = rss_kib(pid);
    let mut peak = before;
    let pad = "x".repeat(SIZE);
    for seq in 0..PUBLICATIONS {
        let frame = json!({"event": "#publish", "data": {"channel": "firehose", "data": {"seq": seq, "pad": pad}}, "cid": 10 + seq});
        publisher
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
        // Acknowledged once queued for every subscriber.
        loop {
            let msg = within("the ack", publisher.next()).await.unwrap().unwrap();
            if msg.as_text().is_some_and(|t| t.contains("\"rid\"")) {
                break;
            }
        }
        peak = peak.max(rss_kib(pid));
    }
    within("the reader", reading).await.unwrap();
    let grown_mib = (peak.saturating_sub(before)) as f64 / 1024.0;
    eprintln!(
        "RSS before {before} KiB, peak {peak} KiB: +{grown_mib:.1} MiB for {PUBLICATIONS} x {SIZE} B with one stalled subscriber"
    );
    // The byte bound (4 MiB) plus a batch in flight, the publisher's
    // message buffers and allocator slack: far below the 100 MB published.
    assert!(grown_mib < 40.0, "RSS grew by {grown_mib:.1} MiB");

    // The stalled socket was disconnected as a slow consumer: its write
    // stayed blocked mid-frame past the write timeout (no close frame can
    // follow half a frame), so read again it may end without one; the
    // server counts it as 4100 either way.
    let ended = within_long(async {
        loop {
            match stalled.next().await {
                Some(Ok(msg)) => {
                    if let Some((code, _)) = msg.as_close() {
                        break Some(u16::from(code));
                    }
                }
                Some(Err(_)) | None => break None,
            }
        }
    })
    .await;
    assert!(matches!(ended, None | Some(4100)), "{ended:?}");
    // The socket's task records its close once it has finished closing:
    // poll the metrics until it has.
    let recorded = |metrics: &str| {
        let slow = metrics
            .lines()
            .any(|l| l.starts_with("herald_slow_consumer_disconnects_total") && l.ends_with(" 1"));
        let closed = metrics
            .lines()
            .any(|l| l.starts_with("herald_disconnections_total{") && l.contains("code=\"4100\""));
        slow && closed
    };
    let metrics = within_long(async {
        loop {
            let metrics =
                common::http_get(TcpStream::connect(herald.addr()).await.unwrap(), "/metrics")
                    .await;
            if recorded(&metrics) {
                break metrics;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(recorded(&metrics));
    assert_eq!(herald.stop().await, Some(0));
}

async fn within_long<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("within 60 s")
}
