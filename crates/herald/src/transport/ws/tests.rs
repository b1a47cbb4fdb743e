//! The codec against a hand-driven client over an in-memory pipe: framing,
//! fragmentation, control frames, the close handshake from both sides,
//! errors and their close codes, partial reads and writes, and that an
//! idle socket keeps no buffer.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::frame::OpCode;
use super::{Message, WebSocket, WsError};

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

/// A client frame: `first` is FIN/opcode, the payload is masked.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    super::frame::masked(first, payload, MASK)
}

fn text(s: &str) -> Vec<u8> {
    frame(0x81, s.as_bytes())
}

fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    frame(0x88, &p)
}

/// Reads one server frame: (first byte, payload).
async fn server_frame(c: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    c.read_exact(&mut h).await.unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7F {
        126 => usize::from(c.read_u16().await.unwrap()),
        127 => c.read_u64().await.unwrap() as usize,
        n => usize::from(n),
    };
    let mut p = vec![0u8; len];
    c.read_exact(&mut p).await.unwrap();
    (h[0], p)
}

fn pair(max_payload: usize) -> (WebSocket<DuplexStream>, DuplexStream) {
    let (server, client) = duplex(1 << 20);
    (WebSocket::new(server, max_payload), client)
}

async fn next(ws: &mut WebSocket<DuplexStream>) -> Option<Result<Message, WsError>> {
    tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("no answer from the codec")
}

async fn expect_close(c: &mut DuplexStream, code: u16) {
    let (first, payload) = server_frame(c).await;
    assert_eq!(first, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
}

#[tokio::test]
async fn pipelined_messages_come_one_by_one_and_nothing_is_kept() {
    let (mut ws, mut c) = pair(1 << 20);
    let mut burst = text("one");
    burst.extend(frame(0x82, &[1, 2, 3]));
    burst.extend(text(""));
    burst.extend(text("κόσμε"));
    c.write_all(&burst).await.unwrap();
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Text("one".into())
    );
    assert!(ws.read.kept_capacity() > 0, "the rest is kept");
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Binary(Bytes::from_static(&[1, 2, 3]))
    );
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Text(String::new())
    );
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Text("κόσμε".into())
    );
    assert_eq!(ws.read.kept_capacity(), 0, "an idle socket keeps no buffer");
}

#[tokio::test]
async fn a_frame_cut_anywhere_is_put_together() {
    let mut all = text("hello, world");
    all.extend(frame(0x82, &vec![7u8; 1000]));
    for cut in 1..all.len() {
        let (mut ws, mut c) = pair(1 << 20);
        c.write_all(&all[..cut]).await.unwrap();
        c.flush().await.unwrap();
        let writer = {
            let rest = all[cut..].to_vec();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                c.write_all(&rest).await.unwrap();
                c
            })
        };
        assert_eq!(
            next(&mut ws).await.unwrap().unwrap(),
            Message::Text("hello, world".into())
        );
        assert_eq!(
            next(&mut ws).await.unwrap().unwrap(),
            Message::Binary(Bytes::from(vec![7u8; 1000]))
        );
        drop(writer.await.unwrap());
        assert_eq!(ws.read.kept_capacity(), 0);
    }
}

#[tokio::test]
async fn fragments_with_a_ping_between_and_the_pong() {
    let (mut ws, mut c) = pair(1 << 20);
    let mut burst = frame(0x01, "frag".as_bytes());
    burst.extend(frame(0x89, b"are you there"));
    burst.extend(frame(0x00, "men".as_bytes()));
    burst.extend(frame(0x80, "ted €".as_bytes()));
    c.write_all(&burst).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::Ping);
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Text("fragmented €".into())
    );
    assert_eq!(
        server_frame(&mut c).await,
        (0x8A, b"are you there".to_vec())
    );
}

#[tokio::test]
async fn a_big_frame_is_read_straight_in() {
    let (mut ws, mut c) = pair(1 << 22);
    let payload: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let bytes = frame(0x82, &payload);
    let writer = tokio::spawn(async move {
        for chunk in bytes.chunks(50_000) {
            c.write_all(chunk).await.unwrap();
        }
        c
    });
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Binary(Bytes::from(payload))
    );
    drop(writer.await.unwrap());
    assert_eq!(ws.read.kept_capacity(), 0);
}

#[tokio::test]
async fn the_peer_closes() {
    let (mut ws, mut c) = pair(1 << 20);
    c.write_all(&close(1000, "bye")).await.unwrap();
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Close(Some(1000), "bye".into())
    );
    assert!(next(&mut ws).await.is_none());
    expect_close(&mut c, 1000).await;
    assert!(matches!(
        ws.send_text(&[Bytes::from_static(b"late")]).await,
        Err(WsError::Closed)
    ));
}

#[tokio::test]
async fn the_server_closes_and_waits_for_the_answer() {
    let (mut ws, mut c) = pair(1 << 20);
    ws.close(4100, "slow").await.unwrap();
    let (first, payload) = server_frame(&mut c).await;
    assert_eq!(first, 0x88);
    assert_eq!(&payload[..2], &4100u16.to_be_bytes());
    assert_eq!(&payload[2..], b"slow");
    // Data still arriving is handed over; the answer ends the stream.
    c.write_all(&text("in flight")).await.unwrap();
    c.write_all(&close(1000, "")).await.unwrap();
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Text("in flight".into())
    );
    assert_eq!(
        next(&mut ws).await.unwrap().unwrap(),
        Message::Close(Some(1000), String::new())
    );
    assert!(next(&mut ws).await.is_none());
}

#[tokio::test]
async fn violations_are_answered_with_their_close_code() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (vec![0x81, 0x03, b'a', b'b', b'c'], 1002), // unmasked
        (frame(0xC1, b"x"), 1002),                  // RSV1
        (frame(0x83, b"x"), 1002),                  // reserved opcode
        (frame(0x80, b"x"), 1002),                  // continuation first
        (frame(0x88, &[3]), 1002),                  // close of one byte
        (close(1005, ""), 1002),                    // reserved close code
        (frame(0x81, &[0xCE, 0xBA, 0xFF]), 1007),   // bad UTF-8
        ([frame(0x01, b"a"), frame(0x81, b"b")].concat(), 1002), // new message inside
        (frame(0x82, &[0u8; 200]), 1009),           // too big
    ];
    for (bytes, code) in cases {
        let (mut ws, mut c) = pair(100);
        c.write_all(&bytes).await.unwrap();
        let got = next(&mut ws).await;
        assert!(matches!(got, Some(Err(_))), "{bytes:?}: {got:?}");
        assert!(next(&mut ws).await.is_none());
        expect_close(&mut c, code).await;
    }
}

#[tokio::test]
async fn invalid_text_fails_before_the_frame_is_in() {
    let (mut ws, mut c) = pair(1 << 20);
    let bytes = frame(
        0x81,
        &[b"valid ".as_slice(), &[0xED, 0xA0, 0x80], &[b'x'; 100]].concat(),
    );
    // Only the start of the frame arrives; the rest never does.
    c.write_all(&bytes[..6 + 9]).await.unwrap();
    assert!(matches!(
        next(&mut ws).await,
        Some(Err(WsError::InvalidUtf8))
    ));
    // The close frame goes out with the next call.
    ws.flush().await.unwrap();
    expect_close(&mut c, 1007).await;
}

#[tokio::test]
async fn a_batch_larger_than_one_write_and_the_pipe_arrives_whole() {
    let (server, mut c) = duplex(512);
    let mut ws = WebSocket::new(server, 1 << 20);
    let payloads: Vec<Bytes> = (0..700)
        .map(|i| Bytes::from(format!("{i:0>width$}", width = i % 300)))
        .collect();
    let expected = payloads.clone();
    let reader = tokio::spawn(async move {
        for p in expected {
            assert_eq!(server_frame(&mut c).await, (0x81, p.to_vec()));
        }
    });
    ws.send_text(&payloads).await.unwrap();
    reader.await.unwrap();
}

#[tokio::test]
async fn an_abandoned_write_leaves_the_stream_unusable() {
    let (server, _c) = duplex(64);
    let mut ws = WebSocket::new(server, 1 << 20);
    let big = [Bytes::from(vec![b'x'; 1000])];
    let blocked = tokio::time::timeout(Duration::from_millis(20), ws.send_text(&big)).await;
    assert!(blocked.is_err(), "the pipe holds 64 bytes");
    assert!(matches!(ws.send_text(&big).await, Err(WsError::Closed)));
    assert!(matches!(ws.close(1000, "").await, Err(WsError::Closed)));
}

#[tokio::test]
async fn binary_and_text_frames_go_out_with_the_right_opcode() {
    let (mut ws, mut c) = pair(1 << 20);
    ws.send(OpCode::Binary, &[Bytes::from_static(&[0, 1])])
        .await
        .unwrap();
    ws.send_text(&[Bytes::from(vec![b'y'; 70_000])])
        .await
        .unwrap();
    assert_eq!(server_frame(&mut c).await, (0x82, vec![0, 1]));
    assert_eq!(server_frame(&mut c).await, (0x81, vec![b'y'; 70_000]));
}

#[tokio::test]
async fn a_dropped_connection_ends_the_stream() {
    let (mut ws, mut c) = pair(1 << 20);
    c.write_all(&text("last")[..4]).await.unwrap();
    drop(c);
    assert!(next(&mut ws).await.is_none());
    assert_eq!(ws.read.kept_capacity(), 0);
}
