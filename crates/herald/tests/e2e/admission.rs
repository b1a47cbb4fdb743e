//! Admission control on the upgrade: the handshake budget, the connection
//! bounds, the `Origin` check, and the retry hints clients get (HTTP 503 or
//! 429 with `Retry-After`; for browsers, a 1013 close with `retry after N`).
//! Also the drain: a procedure in flight finishes before the 1012 close.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::common::*;

fn upgrade_request(addr: std::net::SocketAddr, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    format!(
        "GET /socketcluster/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    )
}

/// The head of the response to an upgrade request (read up to its blank
/// line: an accepted upgrade keeps the connection open).
async fn upgrade_head(addr: std::net::SocketAddr, origin: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    within("the upgrade's response", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(upgrade_request(addr, origin).as_bytes())
            .await
            .expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await.expect("read") == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).into_owned()
    })
    .await
}

/// The status line and the `Retry-After` of a refused upgrade.
async fn refused(addr: std::net::SocketAddr) -> (String, Option<u64>) {
    let response = upgrade_head(addr, None).await;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let retry = response
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok());
    (status, retry)
}

#[tokio::test]
async fn over_the_handshake_rate_upgrades_get_503_with_retry_after() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.handshake_rate = 3;
            c.handshake_burst = 3;
        })
        .await;
        let mut admitted = Vec::new();
        for _ in 0..3 {
            admitted.push(server.client().await);
        }
        let (status, retry) = refused(server.addr).await;
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        let retry = retry.expect("a Retry-After header");
        assert!((1..=60).contains(&retry), "{retry}");
        // The sockets admitted are not affected.
        for c in &mut admitted {
            assert_eq!(c.call("echo", json!(1)).await, json!(1));
        }
    })
    .await
}

#[tokio::test]
async fn a_refused_browser_is_closed_with_1013_and_its_delay() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.max_connections = 1;
            c.handshake_rate = 0;
        })
        .await;
        let _held = server.client().await;
        // Without Origin: a plain 503.
        let (status, retry) = refused(server.addr).await;
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert!(retry.is_some());
        // With Origin (a browser): accepted, then closed with 1013.
        let uri: http::Uri = server.url().parse().unwrap();
        let (mut ws, _) = tokio_websockets::ClientBuilder::from_uri(uri)
            .add_header(
                http::header::ORIGIN,
                http::HeaderValue::from_static("http://app.test"),
            )
            .unwrap()
            .connect()
            .await
            .expect("a browser's upgrade is accepted");
        let msg = within("the close", ws.next()).await.unwrap().unwrap();
        let (code, reason) = msg.as_close().expect("a close frame");
        assert_eq!(u16::from(code), 1013);
        let secs = herald_protocol::close::parse_retry_after(reason)
            .unwrap_or_else(|| panic!("reason {reason:?}"));
        assert!((1..=60).contains(&secs));
    })
    .await
}

#[tokio::test]
async fn connections_per_ip_get_429() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.max_connections_per_ip = 2;
            c.handshake_rate = 0;
        })
        .await;
        let a = server.client().await;
        let _b = server.client().await;
        let (status, retry) = refused(server.addr).await;
        assert!(status.starts_with("HTTP/1.1 429"), "{status}");
        assert!(retry.is_some());
        a.close(1000, "").await;
        eventually("the place freed", || server.server.sockets().len() == 1).await;
        let _c = server.client().await;
    })
    .await
}

#[tokio::test]
async fn origins_outside_the_allowed_list_get_403() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.allowed_origins = vec!["https://app.example.com".into()];
        })
        .await;
        let bad = upgrade_head(server.addr, Some("https://evil.example.net")).await;
        assert!(bad.starts_with("HTTP/1.1 403"), "{bad}");
        let good = upgrade_head(server.addr, Some("https://app.example.com")).await;
        assert!(good.starts_with("HTTP/1.1 101"), "{good}");
        // Not a browser: no Origin, allowed.
        let _c = server.client().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_waits_for_the_servers_retry_after() {
    bounded(async {
        let server = TestServer::fixture_with(|c| {
            c.max_connections = 1;
            c.handshake_rate = 0;
        })
        .await;
        let _held = server.client().await;
        let builder = herald_client::Client::builder(server.url()).reconnect(
            herald_client::ReconnectPolicy {
                initial_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(20),
                ..Default::default()
            },
        );
        let mut events = builder.events();
        let client = builder.start().expect("client");
        let delay = within("a reconnect scheduled", async {
            loop {
                match events.next().await {
                    Some(herald_client::ClientEvent::Reconnecting { delay, .. }) => return delay,
                    Some(_) => {}
                    None => panic!("events ended"),
                }
            }
        })
        .await;
        // Far above the client's own 20 ms cap: the server's hint.
        assert!(delay >= Duration::from_secs(1), "{delay:?}");
        client.close().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_replies_in_flight_then_closes_with_1012() {
    bounded(async {
        let started = std::sync::Arc::new(tokio::sync::Notify::new());
        let signal = started.clone();
        let mut server = TestServer::start(fixture().procedure("slow", move |_req| {
            let signal = signal.clone();
            async move {
                signal.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok::<Value, herald::ErrorPayload>(json!("finished"))
            }
        }))
        .await;
        let mut c = server.client().await;
        let cid = c.cid();
        c.send_json(json!({"event": "slow", "cid": cid})).await;
        // Shut down while the invoke runs.
        within("the procedure to start", started.notified()).await;
        let handle = server.server.clone();
        let stopping = tokio::spawn(async move { handle.shutdown(Duration::from_secs(5)).await });
        let reply = c.reply_to(cid).await;
        assert_eq!(reply["data"], "finished", "{reply}");
        assert_eq!(c.expect_close().await.0, 1012);
        within("shutdown", stopping).await.unwrap();
        server.join().await.unwrap();
    })
    .await
}
