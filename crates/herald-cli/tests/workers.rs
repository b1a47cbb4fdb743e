//! `herald serve --workers N` as processes: two workers share one port and
//! a broker (Redis and NATS, each with a random prefix on the shared
//! services), a publication from a socket on one worker reaches a socket on
//! the other, a killed worker is restarted and serves again, SIGTERM drains
//! every worker (1012) and the supervisor exits 0, and several workers
//! without a broker are refused with the reason.
//!
//! Which worker holds a socket is read from each worker's own status port
//! (`--worker-status-listen`, `/herald/info`'s `sockets`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_websockets::Message;

fn redis_broker() -> String {
    format!(
        "redis://127.0.0.1:6379?prefix=herald-workers-{:x}:",
        random_suffix()
    )
}

fn nats_broker() -> String {
    format!(
        "nats://127.0.0.1:4222?prefix=herald_workers_{:x}",
        random_suffix()
    )
}

/// A running supervisor, its port and its log (JSON lines, the workers'
/// marked with `"worker"`).
struct Supervisor {
    herald: Herald,
    logs: mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Supervisor {
    async fn start(workers: usize, broker: &str, extra: &[&str]) -> Supervisor {
        let workers = workers.to_string();
        let mut args = vec!["--log-format", "json"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--workers", &workers, "--broker", broker]);
        args.extend_from_slice(&["--worker-status-listen", "127.0.0.1:0"]);
        let mut herald = Herald::start_with(&args, &[], "info", Stdio::piped()).await;
        let (tx, logs) = mpsc::unbounded_channel();
        let stderr = herald.child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{line}");
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Supervisor {
            herald,
            logs,
            seen: Vec::new(),
        }
    }

    fn url(&self) -> String {
        self.herald.ws_url()
    }

    /// The first log line (seen since `from`) that `pred` accepts.
    async fn wait_log(&mut self, from: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen[from.min(self.seen.len())..]
            .iter()
            .find(|v| pred(v))
        {
            return v.clone();
        }
        within(what, async {
            loop {
                let v = self.logs.recv().await.expect("the log ended");
                self.seen.push(v.clone());
                if pred(&v) {
                    return v;
                }
            }
        })
        .await
    }

    /// The status port worker `index` logged last (from log line `from` on).
    async fn status_port(&mut self, index: u64, from: usize) -> u16 {
        let line = self
            .wait_log(from, "a worker's status port", |v| {
                v["worker"] == index
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("status routes and /metrics of worker"))
            })
            .await;
        let msg = line["message"].as_str().unwrap();
        msg.rsplit(':').next().unwrap().parse().expect("a port")
    }

    fn pid(&self) -> u32 {
        self.herald.pid()
    }

    /// SIGTERM; the exit code.
    async fn stop(self) -> Option<i32> {
        self.herald.stop().await
    }
}

/// The PIDs whose parent is `pid` (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// An HTTP/1.1 request on 127.0.0.1:`port`; the JSON body of the answer.
async fn http(port: u16, method: &str, path: &str, body: &str) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect over HTTP");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    within("an HTTP response", stream.read_to_string(&mut response))
        .await
        .unwrap();
    let body = response.split_once("\r\n\r\n").expect("a body").1;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// `GET /herald/info` of a worker's status port.
async fn info(port: u16) -> Value {
    http(port, "GET", "/herald/info", "").await
}

/// A token from the dev route on the shared port.
async fn dev_token(port: u16) -> String {
    let reply = http(port, "POST", "/herald/dev/token", r#"{"name":"ada"}"#).await;
    reply["token"].as_str().expect("a token").to_owned()
}

async fn sockets_on(ports: &[u16]) -> Vec<u64> {
    let mut out = Vec::new();
    for port in ports {
        out.push(info(*port).await["sockets"].as_u64().unwrap());
    }
    out
}

/// Connects and handshakes; the socket is authenticated when `token` is
/// given.
async fn authenticated(url: &str, token: Option<&str>) -> Ws {
    let (ws, status) = handshake(url, token).await;
    assert_eq!(status["isAuthenticated"], token.is_some(), "{status}");
    ws
}

/// Sends a request and waits for its reply; returns the publications that
/// arrived meanwhile (a publication may come back over the broker before
/// the publish is acknowledged).
async fn request(ws: &mut Ws, event: &str, data: Value, cid: u64) -> Vec<Value> {
    let frame = json!({"event": event, "data": data, "cid": cid});
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let mut early = Vec::new();
    loop {
        let reply = next_frame(ws).await;
        if reply["rid"] == cid {
            assert!(reply.get("error").is_none(), "{event}: {reply}");
            return early;
        }
        if reply["event"] == "#publish" {
            early.push(reply);
        }
    }
}

/// The next publication on the socket, `early` ones first: (channel, data).
async fn publication(ws: &mut Ws, early: &mut Vec<Value>) -> (String, Value) {
    let frame = if early.is_empty() {
        loop {
            let frame = next_frame(ws).await;
            if frame["event"] == "#publish" {
                break frame;
            }
        }
    } else {
        early.remove(0)
    };
    let channel = frame["data"]["channel"].as_str().unwrap().to_owned();
    (channel, frame["data"]["data"].clone())
}

/// Connects sockets until worker `want` holds one; returns it (the
/// others stay open in `keep`). Each worker's count is read from its own
/// status port, so the placement is known, not assumed.
async fn socket_on(
    url: &str,
    token: Option<&str>,
    ports: &[u16],
    want: usize,
    keep: &mut Vec<Ws>,
) -> Ws {
    for _ in 0..64 {
        let before = sockets_on(ports).await;
        let ws = authenticated(url, token).await;
        let after = within("the socket to be counted", async {
            loop {
                let now = sockets_on(ports).await;
                if now.iter().sum::<u64>() > before.iter().sum::<u64>() {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if after[want] > before[want] {
            return ws;
        }
        keep.push(ws);
    }
    panic!("64 sockets and none on worker {want}: the port is not shared");
}

async fn publications_cross_workers(broker: &str) {
    let mut herald = Supervisor::start(2, broker, &["--dev"]).await;
    let ports = [
        herald.status_port(0, 0).await,
        herald.status_port(1, 0).await,
    ];
    let nodes: Vec<String> = [info(ports[0]).await, info(ports[1]).await]
        .iter()
        .map(|i| i["nodeId"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        nodes[0].ends_with("-w0") && nodes[1].ends_with("-w1"),
        "{nodes:?}"
    );

    let url = herald.url();
    let mut others = Vec::new();
    // One worker signs a token (the dev route), both accept it: they share
    // the supervisor's random secret.
    let token = dev_token(herald.herald.port).await;
    let mut a = socket_on(&url, Some(&token), &ports, 0, &mut others).await;
    let mut b = socket_on(&url, Some(&token), &ports, 1, &mut others).await;
    request(&mut a, "#subscribe", json!({"channel": "news"}), 2).await;
    request(&mut b, "#subscribe", json!({"channel": "news"}), 2).await;
    let mut early = request(
        &mut a,
        "#publish",
        json!({"channel": "news", "data": {"from": "w0"}}),
        3,
    )
    .await;
    let (channel, data) = publication(&mut b, &mut Vec::new()).await;
    assert_eq!((channel.as_str(), &data), ("news", &json!({"from": "w0"})));
    assert_eq!(
        publication(&mut a, &mut early).await.1,
        json!({"from": "w0"})
    );

    // SIGTERM drains every worker: each socket is told to reconnect.
    let pid = herald.pid();
    let stopping = tokio::spawn(herald.stop());
    assert_eq!(close_code(&mut a).await, 1012);
    assert_eq!(close_code(&mut b).await, 1012);
    for ws in &mut others {
        assert_eq!(close_code(ws).await, 1012);
    }
    assert_eq!(stopping.await.unwrap(), Some(0), "the supervisor exits 0");
    assert!(
        children(pid).is_empty(),
        "no worker outlives the supervisor"
    );
}

#[tokio::test]
async fn two_workers_over_redis_share_the_port_and_publications_cross_them() {
    publications_cross_workers(&redis_broker()).await;
}

#[tokio::test]
async fn two_workers_over_nats_share_the_port_and_publications_cross_them() {
    publications_cross_workers(&nats_broker()).await;
}

#[tokio::test]
async fn a_killed_worker_is_restarted_and_serves_again() {
    let mut herald = Supervisor::start(2, &redis_broker(), &[]).await;
    let ports = [
        herald.status_port(0, 0).await,
        herald.status_port(1, 0).await,
    ];
    let workers = children(herald.pid());
    assert_eq!(workers.len(), 2, "{workers:?}");

    let mark = herald.seen.len();
    send_signal(workers[0], "KILL");
    let restart = herald
        .wait_log(mark, "the restart line", |v| {
            v["message"] == "worker exited; restarting it"
        })
        .await;
    let index = restart["worker"].as_u64().unwrap();
    assert_eq!(restart["restarts"], 1);
    herald
        .wait_log(mark, "the restarted worker to listen", |v| {
            v["message"] == "worker listens again" && v["worker"] == index
        })
        .await;
    let mut ports = ports.to_vec();
    ports[index as usize] = herald.status_port(index, mark).await;
    let now = children(herald.pid());
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(!now.contains(&workers[0]), "a new process: {now:?}");

    // The restarted worker takes sockets on the shared port and is in the
    // cluster again: a publication from the other worker reaches it.
    let url = herald.url();
    let mut others = Vec::new();
    let mut fresh = socket_on(&url, None, &ports, index as usize, &mut others).await;
    let mut old = socket_on(&url, None, &ports, 1 - index as usize, &mut others).await;
    request(&mut fresh, "#subscribe", json!({"channel": "after"}), 2).await;
    request(
        &mut old,
        "#publish",
        json!({"channel": "after", "data": "again"}),
        2,
    )
    .await;
    assert_eq!(
        publication(&mut fresh, &mut Vec::new()).await,
        ("after".to_owned(), json!("again"))
    );
    drop((fresh, old, others));
    assert_eq!(herald.stop().await, Some(0));
}

#[tokio::test]
async fn several_workers_without_a_broker_are_refused_with_the_reason() {
    // From the flag, the environment and the config file alike.
    let config = std::env::temp_dir().join(format!("herald-workers-{:x}.toml", random_suffix()));
    std::fs::write(&config, "workers = 2\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let cases: [(&[&str], Option<&str>); 4] = [
        (&["--workers", "2"], None),
        (&["--workers", "2", "--broker", "memory"], None),
        (&[], Some("2")),
        (&["--config", &config], None),
    ];
    for (args, env) in cases {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HERALD_BROKER")
            .env_remove("HERALD_WORKERS")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null());
        if let Some(n) = env {
            cmd.env("HERALD_WORKERS", n);
        }
        let out = within("herald to exit", cmd.output())
            .await
            .expect("run herald");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--workers 2 needs a broker")
                && stderr.contains("does not cross processes"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "no ready line");
    }
    let _ = std::fs::remove_file(&config);
}
