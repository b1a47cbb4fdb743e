//! Memory per idle socket, on the server's heap: authenticated, subscribed
//! sockets that answer pings, counted by a global allocator that counts
//! only the server runtime's threads (the clients run on this thread, on
//! a runtime of their own).
//!
//! The figure that matters to operators is RSS per socket at 10,000
//! sockets (`herald-bench conns`, docs/benchmarks.md); this test keeps the
//! heap part of it from growing back, and prints what is held by size
//! (`cargo nextest run -p herald --test memory --no-capture`).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use common::{TestServer, bounded, token, unix_now};
use serde_json::json;

/// Sockets measured.
const SOCKETS: usize = 400;
/// Heap per idle socket the server may hold. Today's figure is printed;
/// the bound leaves room for allocator rounding, not for a new buffer. A
/// debug build's futures are larger (every temporary keeps a slot of its
/// own), hence two bounds.
const BUDGET: isize = if cfg!(debug_assertions) { 6_500 } else { 4_000 };

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

#[test]
fn an_idle_authenticated_subscribed_socket_holds_little_heap() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .enable_all()
        .build()
        .expect("server runtime");
    let clients_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let server = server_rt.block_on(TestServer::fixture_with(|c| {
        c.ping_interval = Duration::from_millis(300);
        c.ping_timeout = Duration::from_secs(30);
    }));
    clients_rt.block_on(bounded(async {
        // Warm up what a server allocates once (thread buffers, maps).
        let mut warm = open(&server, 0, 50).await;
        answer_pings(&mut warm, 2).await;
        let (before, sizes_before) = snapshot();
        let mut clients = open(&server, 50, SOCKETS).await;
        // Two pings: every socket's timer has fired and trimmed it.
        answer_pings(&mut clients, 2).await;
        answer_pings(&mut warm, 2).await;
        let (after, sizes_after) = snapshot();
        let per_socket = (after - before) / SOCKETS as isize;
        println!("heap per idle socket: {per_socket} bytes ({SOCKETS} sockets)");
        println!("allocations held per socket, by size:");
        for (i, (a, b)) in sizes_after.iter().zip(&sizes_before).enumerate() {
            let held = (a - b) as f64 / SOCKETS as f64;
            if held >= 0.5 {
                println!("  {:>6} bytes × {held:.2}", i * 16);
            }
        }
        assert!(
            per_socket <= BUDGET,
            "{per_socket} bytes of heap per idle socket (budget {BUDGET})"
        );
        drop(clients);
        drop(warm);
    }));
    drop(server);
}
