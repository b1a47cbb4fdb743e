//! Dead peers on both sides, found by heartbeats through the fault proxy:
//! a blackholed link keeps both TCP connections open, so only the ping
//! timeouts can tell.
//!
//! * The server closes a blackholed client with 4001 within its ping
//!   timeout: `on_disconnection` runs, `herald_pong_timeouts_total` and
//!   `herald_disconnections_total{code="4001"}` count it, the socket leaves
//!   the server's sockets and its channels.
//! * The Rust client finds a blackholed server (4000) within the ping
//!   timeout, reconnects within its backoff, resubscribes and receives
//!   publications again; also after the server was unreachable for a while.
//!
//! A test binary of its own: the Prometheus recorder is process-global.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use herald::Server;
use herald::metrics::Prometheus;
use herald_client::{Client, ClientEvent, Events, PingTimeout, ReconnectPolicy, Subscription};
use herald_testkit::fault_proxy::{Fault, FaultProxy};
use serde_json::json;
use tokio::sync::mpsc;

const PING_INTERVAL: Duration = Duration::from_millis(200);
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Scheduling slack on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);
/// Longest wait for anything.
const STEP: Duration = Duration::from_secs(10);
/// Longest test.
const TEST: Duration = Duration::from_secs(60);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?} waiting for {what}"))
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST, f)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST:?}"))
}

/// Polls `cond` (server state without a wire signal) until it holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

struct Closed {
    id: String,
    code: u16,
    at: Instant,
}

/// A fixture server with short heartbeats on 127.0.0.1, and a stream of its
/// disconnections.
async fn start_server() -> (Server, SocketAddr, mpsc::UnboundedReceiver<Closed>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = herald_testkit::fixture(
        Server::builder()
            .ping_interval(PING_INTERVAL)
            .ping_timeout(PING_TIMEOUT),
    )
    .on_disconnection(move |socket, code, _reason| {
        let _ = tx.send(Closed {
            id: socket.id().to_owned(),
            code,
            at: Instant::now(),
        });
        async {}
    })
    .build();
    let listener = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.clone().serve(listener, std::future::pending::<()>()));
    (server, addr, rx)
}

fn url(proxy: &FaultProxy) -> String {
    format!("ws://{}/socketcluster/", proxy.addr())
}

/// The value of `series` in a Prometheus text page (0 when absent).
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn recorder() -> Prometheus {
    Prometheus::installed()
        .unwrap_or_else(|| Prometheus::install().expect("the first recorder of this process"))
}

/// The next event matching `pick`, skipping others.
async fn next_event<T>(
    events: &mut Events,
    what: &str,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    within(what, async {
        loop {
            let ev = events.next().await.expect("the event stream ended");
            if let Some(v) = pick(&ev) {
                return v;
            }
        }
    })
    .await
}

/// Publishes `data` from the server until it arrives on `sub` (the
/// subscription may be on its way back).
async fn delivered(
    server: &Server,
    sub: &mut Subscription,
    channel: &str,
    data: serde_json::Value,
) {
    within("a publication after the reconnect", async {
        loop {
            server.exchange().publish(channel, &data).await.unwrap();
            if let Ok(Some(Ok(p))) =
                tokio::time::timeout(Duration::from_millis(100), sub.next()).await
                && p.data == data
            {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_closes_a_blackholed_client_with_4001_within_its_ping_timeout() {
    bounded(async {
        let metrics = recorder();
        let before = metrics.render();
        let (server, addr, mut closed) = start_server().await;
        let proxy = FaultProxy::start(addr).await.unwrap();

        // The victim never times the server out itself; a healthy client
        // beside it shows the fault is the victim's only.
        let victim = Client::builder(url(&proxy))
            .ping_timeout(PingTimeout::Disabled)
            .reconnect(ReconnectPolicy::disabled())
            .connect()
            .await
            .unwrap();
        let _victim_sub = victim.subscribe("news").await.unwrap();
        let victim_id = victim.id().expect("an open client has an id");
        let healthy = Client::connect(url(&proxy)).await.unwrap();
        let mut healthy_sub = healthy.subscribe("news").await.unwrap();
        let healthy_id = healthy.id().unwrap();
        assert_eq!(server.subscriber_count("news"), 2);

        // The server socket of the victim and its proxy connection.
        let seen_from = server
            .socket(&victim_id)
            .expect("the victim's socket")
            .remote_addr()
            .expect("a TCP peer");
        let conn = proxy
            .connections()
            .into_iter()
            .find(|c| c.upstream_local == seen_from)
            .expect("the victim's proxy connection");

        assert!(proxy.set_fault(conn.id, Fault::Blackhole));
        let blackholed = Instant::now();
        let gone = within("the victim's disconnection", closed.recv())
            .await
            .unwrap();
        let took = gone.at - blackholed;
        assert_eq!(gone.id, victim_id, "only the victim goes");
        assert_eq!(gone.code, 4001, "pong timeout");
        assert!(
            took <= PING_TIMEOUT + PING_INTERVAL + SLACK,
            "found after {took:?}"
        );
        assert!(took >= PING_TIMEOUT - PING_INTERVAL, "too early: {took:?}");
        eventually("the victim's socket to leave the server", || {
            server.socket(&victim_id).is_none() && server.subscriber_count("news") == 1
        })
        .await;
        assert_eq!(server.client_count(), 1);
        assert!(server.socket(&healthy_id).is_some());

        // Both TCP connections are still open: the proxy holds them.
        assert!(proxy.connections().iter().any(|c| c.id == conn.id));

        let page = metrics.render();
        let delta = |series: &str| metric(&page, series) - metric(&before, series);
        assert!(delta("herald_pong_timeouts_total") >= 1.0, "{page}");
        assert!(
            delta(r#"herald_disconnections_total{code="4001"}"#) >= 1.0,
            "{page}"
        );

        // The healthy client was never disturbed.
        server
            .exchange()
            .publish("news", &json!("still here"))
            .await
            .unwrap();
        let p = within("the healthy client's publication", healthy_sub.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.data, json!("still here"));
        assert!(closed.try_recv().is_err(), "no other disconnection");
        victim.close().await;
        healthy.close().await;
    })
    .await;
}

fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        enabled: true,
        initial_delay: Duration::from_millis(100),
        multiplier: 1.5,
        max_delay: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_finds_a_blackholed_server_reconnects_and_resubscribes() {
    bounded(async {
        let (server, addr, mut closed) = start_server().await;
        let proxy = FaultProxy::start(addr).await.unwrap();
        let builder = Client::builder(url(&proxy)).reconnect(fast_reconnect());
        let mut events = builder.events();
        let client = builder.connect().await.unwrap();
        let mut sub = client.subscribe("news").await.unwrap();
        delivered(&server, &mut sub, "news", json!("before")).await;
        let first_id = client.id().unwrap();

        // Only the open connection dies; a new one would get through.
        assert_eq!(proxy.set_fault_live(Fault::Blackhole), 1);
        let blackholed = Instant::now();
        let code = next_event(&mut events, "the client's close", |e| match e {
            ClientEvent::Closed { code, .. } => Some(*code),
            _ => None,
        })
        .await;
        let noticed = blackholed.elapsed();
        assert_eq!(code, 4000, "the client's ping timeout");
        assert!(noticed <= PING_TIMEOUT + SLACK, "noticed after {noticed:?}");
        assert!(
            noticed >= PING_TIMEOUT - PING_INTERVAL,
            "too early: {noticed:?}"
        );
        let new_id = next_event(&mut events, "the reconnect", |e| match e {
            ClientEvent::Open { id, .. } => Some(id.clone()),
            _ => None,
        })
        .await;
        let back = blackholed.elapsed();
        assert_ne!(new_id, first_id);
        assert!(
            back <= PING_TIMEOUT + fast_reconnect().max_delay + SLACK,
            "back after {back:?}"
        );
        delivered(&server, &mut sub, "news", json!("after")).await;

        // The server drops the old socket on its side too (4001).
        let old = within("the old socket's close", closed.recv())
            .await
            .unwrap();
        assert_eq!((old.id.as_str(), old.code), (first_id.as_str(), 4001));
        assert_eq!(server.client_count(), 1);
        client.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_keeps_trying_while_the_server_is_unreachable_and_comes_back() {
    bounded(async {
        let (server, addr, _closed) = start_server().await;
        let proxy = FaultProxy::start(addr).await.unwrap();
        let builder = Client::builder(url(&proxy))
            .reconnect(fast_reconnect())
            .connect_timeout(Duration::from_millis(500));
        let mut events = builder.events();
        let client = builder.connect().await.unwrap();
        let mut sub = client.subscribe("news").await.unwrap();
        delivered(&server, &mut sub, "news", json!(1)).await;

        // Everything blackholed, later connections too: attempts time out.
        proxy.set_fault_all(Fault::Blackhole);
        let code = next_event(&mut events, "the client's close", |e| match e {
            ClientEvent::Closed { code, .. } => Some(*code),
            _ => None,
        })
        .await;
        assert_eq!(code, 4000);
        for n in 1..=2 {
            let code = next_event(&mut events, "a failed attempt", |e| match e {
                ClientEvent::Closed { code, .. } => Some(*code),
                ClientEvent::Open { .. } => panic!("opened through a blackhole"),
                _ => None,
            })
            .await;
            assert_eq!(code, 4007, "attempt {n}: connect timeout");
        }

        proxy.set_fault_all(Fault::Pass);
        let healed = Instant::now();
        next_event(&mut events, "the reconnect", |e| {
            matches!(e, ClientEvent::Open { .. }).then_some(())
        })
        .await;
        // At worst an attempt just started into the blackhole (times out
        // after 500 ms, its bytes are then released) plus one backoff.
        let back = healed.elapsed();
        assert!(
            back <= Duration::from_millis(500) + fast_reconnect().max_delay + SLACK,
            "back after {back:?}"
        );
        delivered(&server, &mut sub, "news", json!(2)).await;
        client.close().await;
    })
    .await;
}
