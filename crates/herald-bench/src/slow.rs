//! Slow readers for `fanout --slow-readers`: extra subscribers on a small
//! receive buffer that read one message per `--slow-pause` and so fall
//! behind, are disconnected by the server as slow consumers, reconnect and
//! fall behind again.
//!
//! They exist to measure what a slow consumer costs the *other*
//! subscribers: run the same fan-out with and without them and compare the
//! healthy subscribers' latency. They take no part in the run's delivery
//! accounting (the window, the sequence checks): only their connections,
//! their deliveries and how often the server closed them are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::sleep;

use crate::wire::{self, Target};

/// The slow readers' receive buffer: a client on a slow link, whose kernel
/// holds little of what it has not read.
const RECV_BUFFER: u32 = 4096;

/// What the slow readers saw over the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlowReport {
    /// Slow readers (connections at any time).
    pub readers: u64,
    /// Connections they opened (first ones and reconnections).
    pub connections: u64,
    /// Times the server closed one with 4100 (slow consumer).
    pub slow_consumer_closes: u64,
    /// Times one ended otherwise (dropped, other codes).
    pub other_ends: u64,
    /// Messages they read.
    pub messages: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    slow_closes: AtomicU64,
    other_ends: AtomicU64,
    messages: AtomicU64,
}

/// The running slow readers.
pub struct SlowReaders {
    readers: u64,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SlowReaders {
    /// Starts `per_channel` slow readers on each of `channels` (named by
    /// `name`), each reading one message per `pause`, connecting from the
    /// loopback addresses after `first_source`.
    pub fn start(
        target: &Target,
        channels: impl IntoIterator<Item = String>,
        per_channel: u32,
        pause: Duration,
        sources: u8,
    ) -> Self {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut n = 0usize;
        for channel in channels {
            for _ in 0..per_channel {
                let source = wire::source_addr(2, sources, n);
                n += 1;
                let (target, channel) = (target.clone(), channel.clone());
                let (counters, stop) = (counters.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    reader(target, source, channel, pause, counters, stop).await;
                }));
            }
        }
        Self {
            readers: n as u64,
            counters,
            stop,
            tasks,
        }
    }

    /// Stops them and reports.
    pub fn stop(self) -> SlowReport {
        self.stop.store(true, Relaxed);
        for t in &self.tasks {
            t.abort();
        }
        let c = &self.counters;
        SlowReport {
            readers: self.readers,
            connections: c.connections.load(Relaxed),
            slow_consumer_closes: c.slow_closes.load(Relaxed),
            other_ends: c.other_ends.load(Relaxed),
            messages: c.messages.load(Relaxed),
        }
    }
}

async fn reader(
    target: Target,
    source: std::net::IpAddr,
    channel: String,
    pause: Duration,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Relaxed) {
        let Ok(mut ws) = wire::connect_subscribed_with(
            &target,
            Some(source),
            Some(RECV_BUFFER),
            Some(&channel),
            Duration::from_secs(30),
        )
        .await
        else {
            counters.other_ends.fetch_add(1, Relaxed);
            sleep(Duration::from_millis(200)).await;
            continue;
        };
        counters.connections.fetch_add(1, Relaxed);
        loop {
            match ws.next().await {
                Some(Ok(msg)) => {
                    if let Some((code, _)) = msg.as_close() {
                        if u16::from(code) == 4100 {
                            counters.slow_closes.fetch_add(1, Relaxed);
                        } else {
                            counters.other_ends.fetch_add(1, Relaxed);
                        }
                        break;
                    }
                    counters.messages.fetch_add(1, Relaxed);
                    // Pings are answered, or the server would close it for
                    // silence rather than slowness.
                    if msg.as_text() == Some("") {
                        use futures_util::SinkExt as _;
                        let _ = ws.send(wire::pong()).await;
                    }
                    sleep(pause).await;
                }
                Some(Err(_)) | None => {
                    // Dropped without a close frame: a write blocked on it
                    // timed out on the server, which counts it as 4100 too.
                    counters.other_ends.fetch_add(1, Relaxed);
                    break;
                }
            }
        }
        // Back after a moment, as a client with backoff would be.
        sleep(Duration::from_millis(100)).await;
    }
}
