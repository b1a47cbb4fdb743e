//! Shared by the process suites of `herald serve`: a running `herald
//! serve` and its ready line, bounded waits, a raw WebSocket client for the
//! protocol's frames (handshake, requests, close codes), plain HTTP.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, Lines,
};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout, Command};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");
/// The longest any one step may take (a start, a reply, an exit).
pub const STEP: Duration = Duration::from_secs(20);

/// A client WebSocket to `herald serve`.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?} waiting for {what}"),
    }
}

/// A running `herald serve` and what its ready line said.
pub struct Herald {
    pub child: Child,
    /// Standard output after the ready line.
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// `ws` or `wss`.
    pub scheme: String,
    pub port: u16,
}

impl Herald {
    /// Starts `herald serve --listen 127.0.0.1:0 ARGS` with `RUST_LOG` and
    /// standard error as given, and reads its ready line.
    pub async fn start(args: &[&str], rust_log: &str, stderr: Stdio) -> Herald {
        Herald::start_with(args, &[], rust_log, stderr).await
    }

    /// [`Herald::start`] with environment variables set (and none of the
    /// `HERALD_…` ones the suite's own environment may hold).
    pub async fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        rust_log: &str,
        stderr: Stdio,
    ) -> Herald {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HERALD_AUTH_SECRET")
            .env_remove("HERALD_LOG_FORMAT")
            .env_remove("HERALD_WORKERS")
            .env_remove("NO_COLOR")
            .env("RUST_LOG", rust_log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn herald");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = within("the ready line", stdout.next_line())
            .await
            .expect("read stdout")
            .expect("herald printed nothing");
        let rest = line
            .strip_prefix("herald listening on ")
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        let (scheme, rest) = rest.split_once("://127.0.0.1:").expect("an address");
        let port = rest
            .strip_suffix("/socketcluster/")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad port in {line:?}"));
        assert_ne!(port, 0, "the ready line names the bound port");
        Herald {
            child,
            stdout,
            scheme: scheme.to_owned(),
            port,
        }
    }

    /// The process id of the server (the supervisor with `--workers`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("herald still running")
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`, …) to the server.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits for the exit; asserts nothing but the ready line was printed.
    pub async fn exit_code(mut self) -> Option<i32> {
        let status = within("herald to exit", self.child.wait())
            .await
            .expect("wait for herald");
        let rest = within("stdout to end", self.stdout.next_line())
            .await
            .expect("read stdout");
        assert_eq!(rest, None, "herald printed more than its ready line");
        status.code()
    }

    pub fn url(&self, host: &str) -> String {
        format!("{}://{host}:{}/socketcluster/", self.scheme, self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The WebSocket URL on 127.0.0.1.
    pub fn ws_url(&self) -> String {
        self.url("127.0.0.1")
    }

    /// SIGTERM, then the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        within("herald to exit", self.child.wait())
            .await
            .expect("wait for herald")
            .code()
    }
}

/// Sends `signal` to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Opens a WebSocket to `url` (no handshake yet).
pub async fn connect(url: &str) -> Ws {
    let (ws, _) = within(
        "the WebSocket upgrade",
        ClientBuilder::from_uri(url.parse().expect("a URL")).connect(),
    )
    .await
    .expect("connect to herald");
    ws
}

/// The next text frame that is not a ping, as JSON (pings are answered).
pub async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let msg = within("a frame", ws.next())
            .await
            .expect("socket open")
            .expect("read frame");
        match msg.as_text() {
            Some("") => ws.send(Message::text("")).await.expect("pong"),
            Some(text) => return serde_json::from_str(text).expect("JSON frame"),
            None => panic!("unexpected message {msg:?}"),
        }
    }
}

/// Sends `frame` (which has a `cid`) and returns the reply to it, dropping
/// what arrives before it.
pub async fn request(ws: &mut Ws, frame: Value) -> Value {
    let cid = frame["cid"].clone();
    ws.send(Message::text(frame.to_string())).await.unwrap();
    loop {
        let reply = next_frame(ws).await;
        if reply.get("rid") == Some(&cid) {
            return reply;
        }
    }
}

/// Connects and handshakes with `token`; returns the socket and the
/// handshake reply's `data`.
pub async fn handshake(url: &str, token: Option<&str>) -> (Ws, Value) {
    let mut ws = connect(url).await;
    let reply = request(
        &mut ws,
        json!({"event": "#handshake", "data": {"authToken": token}, "cid": 1}),
    )
    .await;
    (ws, reply["data"].clone())
}

/// Reads until the server's close frame and returns its code (then reads
/// to the end, so that the close echo goes out).
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let msg = within("the close frame", ws.next())
            .await
            .expect("a close frame before the end")
            .expect("read");
        if let Some((code, _)) = msg.as_close() {
            while let Some(Ok(_)) = within("the end of the stream", ws.next()).await {}
            return code.into();
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `GET path` on an open stream and returns the whole response.
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, path: &str) -> String {
    within("an HTTP response", async {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        // A TLS peer may end without close_notify once the body is sent.
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
}

/// A fresh directory under the system's temporary directory, removed on
/// drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "herald-{what}-{}-{:x}",
            std::process::id(),
            random_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A random number (the standard hasher's keys are random per instance),
/// for names of files, keys and subjects no other run uses.
pub fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
