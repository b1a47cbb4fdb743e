//! Test support: a private `nats-server` per test, a recording sink, and
//! bounded waits. Every wait is on a signal (a process's output, a watch, a
//! delivery), bounded by [`STEP`] or an explicit limit.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use herald::broker::StreamPosition;
use herald::{Broker, BrokerSink, BrokerStatus, Publication};
use herald_broker_nats::{NatsBroker, NatsOptions};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Longest wait for any single step.
pub const STEP: Duration = Duration::from_secs(15);

/// The shared NATS server of the machine (never stopped by tests).
pub fn shared_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A subject prefix no other run uses.
pub fn random_prefix() -> String {
    format!("herald.test.{:016x}", rand::random::<u64>())
}

/// Awaits `f`, failing the test after `limit` with `what` in the message.
pub async fn within<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Connects a broker with `options`.
pub async fn broker(url: &str, options: NatsOptions) -> Arc<NatsBroker> {
    Arc::new(
        NatsBroker::connect(url, options)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}")),
    )
}

/// Waits until `broker` reports `status`.
pub async fn wait_status(broker: &NatsBroker, status: BrokerStatus, what: &str) {
    let mut watch = broker.status_watch();
    within(STEP, what, async {
        watch
            .wait_for(|s| *s == status)
            .await
            .map(|_| ())
            .expect("status watch open")
    })
    .await;
    // The trait's view agrees once the monitor reported it (it also checks
    // the client's own connection state, which leads the events).
    if status == BrokerStatus::Up {
        assert_eq!(broker.status(), BrokerStatus::Up);
    }
}

/// A publication `{"seq":N}` on `channel`.
pub fn publication(channel: &str, seq: u64) -> Arc<Publication> {
    let raw = RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("valid JSON");
    Arc::new(Publication::new(channel, Some(raw)))
}

/// The `seq` of a publication made by [`publication`].
pub fn seq_of(p: &Publication) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(p.data.as_ref().expect("data").get()).expect("JSON");
    v["seq"].as_u64().expect("seq")
}

/// Records what a broker's sink delivers, per channel (seqs, and stream
/// positions of publications with history), and the resyncs it is asked
/// for; signals every change.
#[derive(Clone)]
pub struct Recorder {
    log: Arc<Mutex<HashMap<String, Vec<u64>>>>,
    positions: Arc<Mutex<HashMap<String, Vec<StreamPosition>>>>,
    resyncs: Arc<Mutex<Vec<Option<String>>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Recorder {
    /// Starts `broker` with a sink recording into a new recorder.
    pub fn start(broker: &dyn Broker) -> Self {
        let recorder = Self {
            log: Arc::default(),
            positions: Arc::default(),
            resyncs: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        };
        let r = recorder.clone();
        let rs = recorder.clone();
        broker.start(BrokerSink::with_resync(
            move |p| {
                r.log
                    .lock()
                    .entry(p.channel.to_string())
                    .or_default()
                    .push(seq_of(&p));
                if let Some(pos) = &p.position {
                    r.positions
                        .lock()
                        .entry(p.channel.to_string())
                        .or_default()
                        .push(pos.clone());
                }
                r.changed.send_modify(|n| *n += 1);
            },
            move |channel| {
                rs.resyncs.lock().push(channel.map(str::to_owned));
                rs.changed.send_modify(|n| *n += 1);
            },
        ));
        recorder
    }

    /// The seqs delivered on `channel` so far.
    pub fn seqs(&self, channel: &str) -> Vec<u64> {
        self.log.lock().get(channel).cloned().unwrap_or_default()
    }

    /// The stream positions delivered on `channel` so far.
    pub fn positions(&self, channel: &str) -> Vec<StreamPosition> {
        self.positions
            .lock()
            .get(channel)
            .cloned()
            .unwrap_or_default()
    }

    /// How many `resync_all` calls the broker made.
    pub fn resyncs_all(&self) -> usize {
        self.resyncs.lock().iter().filter(|c| c.is_none()).count()
    }

    /// How many publications were delivered on `channel`.
    pub fn count(&self, channel: &str) -> usize {
        self.log.lock().get(channel).map_or(0, Vec::len)
    }

    /// Waits until `cond` holds over the log.
    pub async fn wait(&self, what: &str, cond: impl Fn(&HashMap<String, Vec<u64>>) -> bool) {
        let mut changed = self.changed.subscribe();
        within(STEP, what, async {
            loop {
                if cond(&self.log.lock()) {
                    return;
                }
                changed.changed().await.expect("recorder alive");
            }
        })
        .await
    }

    /// Waits until the broker called `resync_all` at least `n` times.
    pub async fn wait_resyncs_all(&self, n: usize) {
        let mut changed = self.changed.subscribe();
        within(STEP, &format!("{n} resync_all calls"), async {
            while self.resyncs_all() < n {
                changed.changed().await.expect("recorder alive");
            }
        })
        .await
    }

    /// Waits until `channel` delivered `seq`.
    pub async fn wait_seq(&self, channel: &str, seq: u64) {
        self.wait(&format!("seq {seq} on {channel}"), |log| {
            log.get(channel).is_some_and(|v| v.contains(&seq))
        })
        .await
    }
}

/// A `nats-server` of this test's own, with JetStream, on a free loopback
/// port, its store in a temporary directory. Killed by its PID when
/// dropped; never the shared one.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    /// The JetStream store directory in use (under `dir`).
    store: PathBuf,
    stores: u32,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port.
    pub async fn start() -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let dir = std::env::temp_dir().join(format!(
            "herald-nats-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = Self {
            port,
            store: dir.join("store-0"),
            dir,
            stores: 0,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits for its "Server is ready" line.
    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server must be installed");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        let ready = tokio::time::timeout(STEP, async {
            while let Ok(Some(line)) = lines.next_line().await {
                let ready = line.contains("Server is ready");
                seen.push(line);
                if ready {
                    return true;
                }
            }
            false
        })
        .await;
        if ready != Ok(true) {
            panic!(
                "nats-server on port {} did not start:\n{}",
                self.port,
                seen.join("\n")
            );
        }
        // Keep draining its output so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// SIGKILLs the server and waits for the process to be gone.
    pub async fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.start_kill().expect("SIGKILL nats-server");
        within(STEP, "nats-server to exit", child.wait())
            .await
            .expect("wait for nats-server");
    }

    /// Starts the server again on the same port, with the same store.
    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// Starts the server again on the same port with an empty store (as a
    /// server without persistence, or one whose disk was lost, would).
    pub async fn restart_fresh(&mut self) {
        self.stores += 1;
        self.store = self.dir.join(format!("store-{}", self.stores));
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // SIGKILL by PID (tokio's kill_on_drop does the same).
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deletes the JetStream state a test made under `broker`'s prefix: the
/// history streams of `namespaces` and the presence bucket (the shared
/// server keeps nothing of a test run). Best effort, bounded.
pub async fn delete_jetstream_state(url: &str, broker: &NatsBroker, namespaces: &[String]) {
    let Ok(client) = async_nats::connect(url).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    let mut streams: Vec<String> = namespaces
        .iter()
        .map(|ns| broker.history_stream(ns))
        .collect();
    streams.push(format!("KV_{}", broker.presence_bucket()));
    for stream in streams {
        let _ = tokio::time::timeout(STEP, js.delete_stream(&stream)).await;
    }
}
