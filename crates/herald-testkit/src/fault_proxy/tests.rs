//! The proxy against real sockets on loopback: an upstream that echoes or
//! records, clients that write and read.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::control::{Command, ParseError, Target};
use super::*;

/// Longest wait for anything expected.
const STEP: Duration = Duration::from_secs(5);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(300);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// An upstream echoing every connection.
async fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// An upstream handing its accepted sockets to the test.
async fn held_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let _ = tx.send(s);
        }
    });
    (addr, rx)
}

async fn roundtrip(s: &mut TcpStream, text: &[u8]) {
    s.write_all(text).await.unwrap();
    let mut buf = vec![0u8; text.len()];
    within("the echo", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(buf, text);
}

/// Asserts nothing (no byte, no end of stream, no error) arrives on `s`
/// for [`QUIET`].
async fn quiet(s: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    if let Ok(r) = tokio::time::timeout(QUIET, s.read(&mut buf)).await {
        panic!("{what}: expected silence, got {r:?}");
    }
}

async fn connected(proxy: &FaultProxy, n: usize) -> Vec<ConnectionInfo> {
    within(
        "the proxy's connections",
        proxy.wait_until(|c| c.len() == n),
    )
    .await;
    proxy.connections()
}

#[tokio::test]
async fn passes_bytes_both_ways_and_the_end_of_stream() {
    let (up, mut accepted) = held_upstream().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut server = within("the upstream connection", accepted.recv())
        .await
        .unwrap();
    let info = connected(&proxy, 1).await;
    assert_eq!(info[0].id, 1);
    assert_eq!(info[0].client, client.local_addr().unwrap());
    assert_eq!(info[0].upstream_local, server.peer_addr().unwrap());
    assert_eq!(info[0].upstream, up);
    assert_eq!(info[0].fault, Fault::Pass);

    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    within("upstream read", server.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").await.unwrap();
    within("client read", client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"pong");

    // A half close travels, and the other direction still works.
    client.shutdown().await.unwrap();
    assert_eq!(
        within("upstream EOF", server.read(&mut buf)).await.unwrap(),
        0
    );
    server.write_all(b"late").await.unwrap();
    within("client read", client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"late");
    drop(server);
    assert_eq!(
        within("client EOF", client.read(&mut buf)).await.unwrap(),
        0
    );
    connected(&proxy, 0).await;
    assert_eq!(proxy.accepted(), 1);
}

#[tokio::test]
async fn delay_holds_each_direction_back() {
    let proxy = FaultProxy::start(echo_upstream().await).await.unwrap();
    let delay = Duration::from_millis(150);
    proxy.set_fault_all(Fault::Delay(delay));
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let start = Instant::now();
    roundtrip(&mut client, b"slow").await;
    assert!(start.elapsed() >= delay * 2, "{:?}", start.elapsed());
    // Many chunks in flight at once: latency, not a throughput cap.
    let start = Instant::now();
    for i in 0..20u8 {
        client.write_all(&[i; 100]).await.unwrap();
    }
    let mut got = vec![0u8; 2000];
    within("the echoes", client.read_exact(&mut got))
        .await
        .unwrap();
    assert!(start.elapsed() < delay * 10, "{:?}", start.elapsed());
    let want: Vec<u8> = (0..20u8).flat_map(|i| [i; 100]).collect();
    assert_eq!(got, want, "order kept");
    proxy.set_fault_all(Fault::Pass);
    let start = Instant::now();
    roundtrip(&mut client, b"fast").await;
    assert!(start.elapsed() < delay, "{:?}", start.elapsed());
}

#[tokio::test]
async fn blackhole_forwards_nothing_keeps_both_open_and_holds_the_bytes() {
    let (up, mut accepted) = held_upstream().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut server = within("upstream", accepted.recv()).await.unwrap();
    connected(&proxy, 1).await;

    assert_eq!(proxy.set_fault_live(Fault::Blackhole), 1);
    assert_eq!(proxy.connections()[0].fault, Fault::Blackhole);
    client.write_all(b"to server").await.unwrap();
    server.write_all(b"to client").await.unwrap();
    quiet(&mut server, "upstream while blackholed").await;
    // Even the server hanging up does not reach the client.
    server.shutdown().await.unwrap();
    quiet(&mut client, "client while blackholed").await;
    assert_eq!(proxy.connections().len(), 1, "still open");

    assert!(proxy.set_fault(1, Fault::Pass));
    let mut buf = [0u8; 9];
    within("held bytes upstream", server.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"to server");
    within("held bytes at the client", client.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"to client");
    assert_eq!(
        within("client EOF", client.read(&mut buf)).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn cut_resets_both_sides() {
    let (up, mut accepted) = held_upstream().await;
    let proxy = FaultProxy::start(up).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut server = within("upstream", accepted.recv()).await.unwrap();
    connected(&proxy, 1).await;
    assert!(proxy.cut(1));
    assert!(!proxy.cut(1), "only once");
    let mut buf = [0u8; 8];
    let e = within("client error", client.read(&mut buf))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    let e = within("upstream error", server.read(&mut buf))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    connected(&proxy, 0).await;
}

#[tokio::test]
async fn cut_all_resets_a_blackholed_connection_too() {
    let proxy = FaultProxy::start(echo_upstream().await).await.unwrap();
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    connected(&proxy, 2).await;
    proxy.set_fault(1, Fault::Blackhole);
    assert_eq!(proxy.cut_all(), 2);
    for s in [&mut a, &mut b] {
        let mut buf = [0u8; 8];
        let e = within("reset", s.read(&mut buf)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    // The proxy still accepts.
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut c, b"again").await;
}

#[tokio::test]
async fn faults_apply_per_connection_live_or_to_all() {
    let proxy = FaultProxy::start(echo_upstream().await).await.unwrap();
    let mut first = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
    let conns = connected(&proxy, 2).await;
    let first_id = conns
        .iter()
        .find(|c| c.client == first.local_addr().unwrap())
        .unwrap()
        .id;
    assert!(proxy.set_fault(first_id, Fault::Blackhole));
    assert!(!proxy.set_fault(999, Fault::Blackhole));
    roundtrip(&mut second, b"other").await;
    first.write_all(b"x").await.unwrap();
    quiet(&mut first, "the blackholed connection").await;

    // `live` leaves later connections alone...
    proxy.set_fault_live(Fault::Blackhole);
    let mut third = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut third, b"new").await;
    // ...`all` does not.
    proxy.set_fault_all(Fault::Blackhole);
    assert_eq!(proxy.default_fault(), Fault::Blackhole);
    let mut fourth = TcpStream::connect(proxy.addr()).await.unwrap();
    fourth.write_all(b"y").await.unwrap();
    quiet(&mut fourth, "a connection made while all are blackholed").await;
    proxy.set_fault_all(Fault::Pass);
    let mut buf = [0u8; 1];
    within("held", fourth.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"y");
}

#[tokio::test]
async fn an_unreachable_upstream_resets_the_client() {
    let gone = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = FaultProxy::start(gone).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 1];
    let e = within("reset", client.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    // Pointed elsewhere, it works.
    proxy.set_upstream(echo_upstream().await);
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut client, b"ok").await;
}

#[tokio::test]
async fn balances_round_robin_and_skips_an_upstream_that_refuses() {
    let (a, mut at_a) = held_upstream().await;
    let (b, mut at_b) = held_upstream().await;
    let proxy = FaultProxy::balance(vec![a, b]).await.unwrap();
    let _one = TcpStream::connect(proxy.addr()).await.unwrap();
    let _two = TcpStream::connect(proxy.addr()).await.unwrap();
    within("one at a", at_a.recv()).await.unwrap();
    within("one at b", at_b.recv()).await.unwrap();
    let down = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    proxy.set_upstreams(vec![down, b]);
    assert_eq!(proxy.upstreams(), vec![down, b]);
    for _ in 0..3 {
        let _c = TcpStream::connect(proxy.addr()).await.unwrap();
        within("the next at b", at_b.recv()).await.unwrap();
    }
}

#[test]
fn control_commands_parse() {
    let ms = Duration::from_millis;
    let cases = [
        ("pass", Command::Set(Fault::Pass, Target::All)),
        ("pass live", Command::Set(Fault::Pass, Target::Live)),
        ("blackhole 7", Command::Set(Fault::Blackhole, Target::Id(7))),
        (
            "  delay 250 all ",
            Command::Set(Fault::Delay(ms(250)), Target::All),
        ),
        ("cut", Command::Cut(Target::All)),
        ("cut 3", Command::Cut(Target::Id(3))),
        ("list", Command::List),
        (
            "upstream 127.0.0.1:9",
            Command::Upstream(vec!["127.0.0.1:9".parse().unwrap()]),
        ),
        (
            "upstream 127.0.0.1:9,127.0.0.1:10",
            Command::Upstream(vec![
                "127.0.0.1:9".parse().unwrap(),
                "127.0.0.1:10".parse().unwrap(),
            ]),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(line.parse::<Command>(), Ok(want.clone()), "{line}");
    }
    assert_eq!("".parse::<Command>(), Err(ParseError::Empty));
    assert_eq!(
        "drop".parse::<Command>(),
        Err(ParseError::Unknown("drop".into()))
    );
    assert_eq!(
        "delay soon".parse::<Command>(),
        Err(ParseError::BadArgument("soon".into()))
    );
    assert_eq!(
        "delay".parse::<Command>(),
        Err(ParseError::BadArgument(String::new()))
    );
    assert_eq!(
        "cut x".parse::<Command>(),
        Err(ParseError::BadArgument("x".into()))
    );
    assert_eq!(
        "list now".parse::<Command>(),
        Err(ParseError::Trailing("now".into()))
    );
    assert_eq!(
        "upstream nowhere".parse::<Command>(),
        Err(ParseError::BadArgument("nowhere".into()))
    );
}

#[tokio::test]
async fn the_control_socket_drives_the_proxy() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let proxy = Arc::new(FaultProxy::start(echo_upstream().await).await.unwrap());
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control_addr = control.local_addr().unwrap();
    let serving = tokio::spawn(control::serve(control, proxy.clone()));

    let mut data = TcpStream::connect(proxy.addr()).await.unwrap();
    connected(&proxy, 1).await;
    let (r, mut w) = TcpStream::connect(control_addr).await.unwrap().into_split();
    let mut replies = BufReader::new(r).lines();
    let mut ask = async |line: &str| {
        w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        within("a reply", replies.next_line())
            .await
            .unwrap()
            .unwrap()
    };
    let list = ask("list").await;
    let json: serde_json::Value = serde_json::from_str(list.strip_prefix("ok ").unwrap()).unwrap();
    assert_eq!(json[0]["id"], 1);
    assert_eq!(json[0]["client"], data.local_addr().unwrap().to_string());
    assert_eq!(json[0]["fault"], "pass");
    assert_eq!(ask("blackhole live").await, "ok 1");
    data.write_all(b"z").await.unwrap();
    quiet(&mut data, "blackholed through the control socket").await;
    assert_eq!(ask("delay 20 1").await, "ok 1");
    let mut buf = [0u8; 1];
    within("held", data.read_exact(&mut buf)).await.unwrap();
    let list = ask("list").await;
    assert!(list.contains(r#""fault":{"delay":20}"#), "{list}");
    assert_eq!(ask("bogus").await, r#"err unknown command "bogus""#);
    assert_eq!(ask("cut 42").await, "err no connection 42");
    assert_eq!(ask("cut").await, "ok 1");
    let e = within("reset", data.read(&mut buf)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    serving.abort();
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = FaultProxy::start(echo_upstream().await).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    roundtrip(&mut client, b"up").await;
    drop(proxy);
    let mut buf = [0u8; 1];
    assert_eq!(within("EOF", client.read(&mut buf)).await.unwrap(), 0);
}
