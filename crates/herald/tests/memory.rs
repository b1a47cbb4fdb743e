//! Memory per idle socket, on the server's heap: authenticated, subscribed
//! sockets that answer pings, counted by a global allocator that counts
//! only the server runtime's threads (the clients run on this thread, on
//! a runtime of their own).
//!
//! The figure that matters to operators is RSS per socket at 10,000
//! sockets (`herald-bench conns`, docs/benchmarks.md); these tests keep the
//! heap part of it from growing back, and print what is held by size
//! (`cargo nextest run -p herald --test memory --no-capture`), over plain
//! TCP and over TLS (rustls keeps buffers of its own per connection).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use common::{TestServer, bounded, token, unix_now};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tls_listener::rustls::{TlsConnector, client::TlsStream};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

/// Sockets measured.
const SOCKETS: usize = 400;
/// Heap per idle socket the server may hold. Today's figure is printed;
/// the bound leaves room for allocator rounding, not for a new buffer. A
/// debug build's futures are larger (every temporary keeps a slot of its
/// own), hence two bounds.
const BUDGET: isize = if cfg!(debug_assertions) { 6_500 } else { 3_700 };

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Live bytes allocated by server threads.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// Live allocations by size (in 16-byte classes up to 64 KiB; the last
/// class holds everything larger).
const CLASSES: usize = 4097;
static BY_SIZE: [AtomicIsize; CLASSES] = [const { AtomicIsize::new(0) }; CLASSES];

struct Counting;

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

fn class(size: usize) -> usize {
    (size / 16).min(CLASSES - 1)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
            BY_SIZE[class(layout.size())].fetch_add(1, Relaxed);
        }
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE.fetch_sub(layout.size() as isize, Relaxed);
            BY_SIZE[class(layout.size())].fetch_sub(1, Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
            BY_SIZE[class(layout.size())].fetch_sub(1, Relaxed);
            BY_SIZE[class(new_size)].fetch_add(1, Relaxed);
        }
        // SAFETY: as for `dealloc`, and `new_size` comes from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn snapshot() -> (isize, Vec<isize>) {
    (
        LIVE.load(Relaxed),
        BY_SIZE.iter().map(|c| c.load(Relaxed)).collect(),
    )
}

/// Opens `n` authenticated sockets subscribed to one of ten channels.
async fn open(server: &TestServer, first: usize, n: usize) -> Vec<common::Client> {
    let mut clients = Vec::with_capacity(n);
    for i in first..first + n {
        let mut c = server.connect().await;
        let t = token(json!({"sub": format!("user{i}"), "exp": unix_now() + 3600}));
        let status = c.handshake(Some(&t)).await;
        assert_eq!(status["isAuthenticated"], true, "{status}");
        c.subscribe(&format!("room{}", i % 10)).await;
        clients.push(c);
    }
    clients
}

/// Every client reads (and answers) `pings` pings.
async fn answer_pings(clients: &mut [common::Client], pings: usize) {
    for c in clients {
        for _ in 0..pings {
            assert_eq!(c.recv_raw().await, common::Incoming::Text(String::new()));
        }
    }
}

/// Heap per idle socket over TLS: rustls's own state per connection comes
/// on top (printed; bounded only loosely, as it is rustls's to change).
const TLS_BUDGET: isize = 48 * 1024;

/// What `before` → `after` holds per socket; printed by allocation size.
fn report(what: &str, before: &(isize, Vec<isize>), after: &(isize, Vec<isize>)) -> isize {
    let per_socket = (after.0 - before.0) / SOCKETS as isize;
    println!("{what}: heap per idle socket: {per_socket} bytes ({SOCKETS} sockets)");
    println!("allocations held per socket, by size:");
    for (i, (a, b)) in after.1.iter().zip(&before.1).enumerate() {
        let held = (a - b) as f64 / SOCKETS as f64;
        if held >= 0.5 {
            println!("  {:>6} bytes × {held:.2}", i * 16);
        }
    }
    per_socket
}

fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .enable_all()
        .build()
        .expect("server runtime");
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    (server, clients)
}

fn configure(c: &mut herald::Config) {
    c.ping_interval = Duration::from_millis(300);
    c.ping_timeout = Duration::from_secs(30);
}

#[test]
fn an_idle_authenticated_subscribed_socket_holds_little_heap() {
    let (server_rt, clients_rt) = runtimes();
    let server = server_rt.block_on(TestServer::fixture_with(configure));
    clients_rt.block_on(bounded(async {
        // Warm up what a server allocates once (thread buffers, maps).
        let mut warm = open(&server, 0, 50).await;
        answer_pings(&mut warm, 2).await;
        let before = snapshot();
        let mut clients = open(&server, 50, SOCKETS).await;
        // Two pings: every socket's timer has fired and trimmed it.
        answer_pings(&mut clients, 2).await;
        answer_pings(&mut warm, 2).await;
        let per_socket = report("ws://", &before, &snapshot());
        assert!(
            per_socket <= BUDGET,
            "{per_socket} bytes of heap per idle socket (budget {BUDGET})"
        );
        drop(clients);
        drop(warm);
    }));
    drop(server);
}

type TlsSocket = WebSocketStream<TlsStream<TcpStream>>;

/// A raw `wss://` client: TLS trusting `pem`, then the upgrade, the
/// handshake with a token and a subscribe.
async fn open_tls(addr: std::net::SocketAddr, pem: &str, i: usize) -> TlsSocket {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
    let tls = TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let uri: http::Uri = format!("wss://localhost:{}/socketcluster/", addr.port())
        .parse()
        .expect("a URI");
    let (mut ws, _) = ClientBuilder::from_uri(uri)
        .connect_on(tls)
        .await
        .expect("upgrade");
    let t = token(json!({"sub": format!("user{i}"), "exp": unix_now() + 3600}));
    let requests = [
        json!({"event": "#handshake", "data": {"authToken": t}, "cid": 1}),
        json!({"event": "#subscribe", "data": {"channel": format!("room{}", i % 10)}, "cid": 2}),
    ];
    for (cid, request) in (1..).zip(requests) {
        ws.send(Message::text(request.to_string()))
            .await
            .expect("send");
        loop {
            let msg = ws.next().await.expect("open").expect("a frame");
            let Some(text) = msg.as_text() else { continue };
            let reply: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if reply["rid"] == cid {
                assert!(reply.get("error").is_none(), "{reply}");
                break;
            }
        }
    }
    ws
}

/// Reads (and answers) `pings` pings on each socket.
async fn answer_tls_pings(sockets: &mut [TlsSocket], pings: usize) {
    for ws in sockets {
        let mut seen = 0;
        while seen < pings {
            let msg = ws.next().await.expect("open").expect("a frame");
            if msg.as_text() == Some("") {
                ws.send(Message::text("")).await.expect("pong");
                seen += 1;
            }
        }
    }
}

#[test]
fn an_idle_socket_over_tls_holds_rustls_state_besides() {
    let (server_rt, clients_rt) = runtimes();
    let (cert, key) = herald_testkit::self_signed_certificate().expect("a certificate");
    let tls = herald::TlsConfig::from_pem(cert.as_bytes(), key.as_bytes()).expect("TLS config");
    let (addr, stop) = server_rt.block_on(async {
        let server = common::fixture().configure(configure).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve_tls(listener, tls, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    });
    clients_rt.block_on(bounded(async {
        let mut warm = Vec::new();
        for i in 0..50 {
            warm.push(open_tls(addr, &cert, i).await);
        }
        answer_tls_pings(&mut warm, 2).await;
        let before = snapshot();
        let mut sockets = Vec::new();
        for i in 50..50 + SOCKETS {
            sockets.push(open_tls(addr, &cert, i).await);
        }
        answer_tls_pings(&mut sockets, 2).await;
        answer_tls_pings(&mut warm, 2).await;
        let per_socket = report("wss://", &before, &snapshot());
        assert!(
            per_socket <= TLS_BUDGET,
            "{per_socket} bytes of heap per idle TLS socket (budget {TLS_BUDGET})"
        );
    }));
    let _ = stop.send(());
}
