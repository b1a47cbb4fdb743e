//! What an operator watches of `herald serve`, as a process: JSON log lines
//! naming the socket, no colour codes in a log file, and `GET /metrics`.

mod common;

use std::process::Stdio;

use common::{Herald, TempDir, Ws, handshake, http_get, within};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_websockets::{CloseCode, Message};

/// Connects, handshakes with `token`; returns the socket and its id.
async fn handshake_id(url: &str, token: Option<&str>) -> (Ws, String) {
    let (ws, status) = handshake(url, token).await;
    let id = status["id"].as_str().expect("an id").to_owned();
    (ws, id)
}

async fn close(mut ws: Ws) {
    let _ = ws
        .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), "bye"))
        .await;
    // Until the server acknowledges.
    let _ = within("the close", async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[tokio::test]
async fn json_logs_name_the_socket_of_every_line_about_one() {
    let herald = Herald::start(
        &["--log-format", "json", "--auth-secret", "s3cret"],
        "info,herald=debug",
        Stdio::piped(),
    )
    .await;
    let mut herald = herald;
    let stderr = herald.child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // A token that verifies nowhere: its refusal must not print it.
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtdXNlciJ9.c2lnbmF0dXJl";
    let (ws, id) = handshake_id(&herald.ws_url(), Some(token)).await;
    close(ws).await;
    let closed = within("the socket's close in the log", async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read stderr")
                .expect("herald's stderr ended");
            assert!(!line.contains('\u{1b}'), "an escape code in {line:?}");
            assert!(!line.contains(token), "the token in {line:?}");
            assert!(!line.contains("secret-user"), "a claim in {line:?}");
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "no {key} in {line}");
            }
            if v["message"] == "socket closed" {
                return v;
            }
        }
    })
    .await;
    assert_eq!(closed["socket"], id, "{closed}");
    assert_eq!(closed["code"], 1000, "{closed}");
    assert_eq!(closed["level"], "DEBUG", "{closed}");
    assert_eq!(herald.stop().await, Some(0));
}

#[tokio::test]
async fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = TempDir::new("logs");
    let path = dir.path("stderr.log");
    let file = std::fs::File::create(&path).expect("create the log file");
    let herald = Herald::start(&[], "debug", Stdio::from(file)).await;
    let (ws, id) = handshake_id(&herald.ws_url(), None).await;
    close(ws).await;
    assert_eq!(herald.stop().await, Some(0));
    let text = std::fs::read_to_string(&path).expect("read the log file");
    assert!(text.contains("herald stopped"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("socket closed") && l.contains(&id)),
        "no close of {id} in\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in the log file:\n{text}"
    );
}

#[tokio::test]
async fn metrics_are_served_on_the_server_port() {
    let herald = Herald::start(&[], "warn", Stdio::inherit()).await;
    let (ws, _) = handshake_id(&herald.ws_url(), None).await;
    let tcp = TcpStream::connect(herald.addr()).await.expect("connect");
    let page = http_get(tcp, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    for line in [
        "herald_connections 1",
        "herald_handshakes_total 1",
        "herald_broker_up{broker=\"memory\"} 1",
        "# TYPE herald_publish_write_latency_seconds histogram",
    ] {
        assert!(page.lines().any(|l| l == line), "no {line:?} in\n{page}");
    }
    close(ws).await;
    assert_eq!(herald.stop().await, Some(0));
}
