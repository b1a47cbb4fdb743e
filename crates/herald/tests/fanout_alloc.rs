//! The fan-out allocates nothing per delivery: a counting global allocator
//! counts the allocations made on the server's threads while publications
//! reach their subscribers over real sockets, once with few subscribers and
//! once with many. What one publication costs (parsing the publish frame,
//! the shared `Publication` and its frame) is the same in both runs; what
//! the extra subscribers add is the per-delivery cost, which must be zero
//! (within a few allocations over the whole run for the runtime's own
//! bookkeeping).
//!
//! A test binary of its own: the global allocator is the process's.

#[path = "common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Client, TEST, TestServer, fixture, within_for};
use serde_json::json;

/// Counts allocations made on threads that opted in ([`COUNTED`]).
struct Counting;

thread_local! {
    /// Whether this thread's allocations are counted: the server runtime's
    /// worker threads set it when they start.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

fn count() {
    // `try_with`: the thread-local may be gone while a thread exits.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting touches only an atomic and a const-initialized thread-local
// (neither allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Publications per measured run.
const PUBLICATIONS: u64 = 200;

/// Subscribes `n` clients to `channel`.
async fn subscribers(server: &TestServer, channel: &str, n: usize) -> Vec<Client> {
    let mut subs = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = server.client().await;
        let reply = c
            .request("#subscribe", Some(json!({ "channel": channel })))
            .await;
        assert!(reply.get("error").is_none(), "{reply}");
        subs.push(c);
    }
    subs
}

/// Publishes `count` publications on `channel` one at a time (each burst
/// is one frame to every subscriber: one write batch per delivery, the
/// case where a per-batch allocation is a per-delivery one), each read by
/// every subscriber before the next. Returns the allocations the server's
/// threads made meanwhile.
async fn run(publisher: &mut Client, subs: &mut [Client], channel: &str, count: u64) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for i in 0..count {
        publisher
            .send_json(json!({"event": "#publish", "data": {"channel": channel, "data": i}}))
            .await;
        for s in subs.iter_mut() {
            let frame = s.expect_event("#publish").await;
            assert_eq!(frame["data"]["data"], i, "{frame}");
        }
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn a_delivery_allocates_nothing() {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| COUNTED.with(|c| c.set(true)))
        .enable_all()
        .build()
        .expect("server runtime");
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let server = server_rt.block_on(TestServer::start(fixture()));
    clients.block_on(within_for(TEST, "the fan-out runs", async {
        let mut publisher = server.client().await;
        let mut few = subscribers(&server, "alloc/few", 5).await;
        let mut many = subscribers(&server, "alloc/many", 55).await;
        // Warm up: queues, buffers and metric series reach their working
        // size on both channels first.
        run(&mut publisher, &mut few, "alloc/few", 50).await;
        run(&mut publisher, &mut many, "alloc/many", 50).await;

        let with_few = run(&mut publisher, &mut few, "alloc/few", PUBLICATIONS).await;
        let with_many = run(&mut publisher, &mut many, "alloc/many", PUBLICATIONS).await;
        let extra_deliveries = PUBLICATIONS * (55 - 5);
        println!(
            "server allocations: {with_few} for {PUBLICATIONS} publications to 5 subscribers, \
             {with_many} to 55 ({:.4} per extra delivery)",
            with_many.saturating_sub(with_few) as f64 / extra_deliveries as f64
        );
        // 10,000 extra deliveries: at most 20 allocations more, for the
        // runtime's own bookkeeping (timers, a worker's queue growing).
        assert!(
            with_many <= with_few + 20,
            "{with_many} allocations with 55 subscribers against {with_few} with 5: \
             the fan-out allocates per delivery"
        );
        // And a publication costs a bounded, small number of allocations.
        assert!(
            with_few <= PUBLICATIONS * 40,
            "{with_few} allocations for {PUBLICATIONS} publications"
        );
    }));
    drop(server);
    drop(server_rt);
}
