//! Shared by the process suites of `herald serve` (logs, metrics, TLS): a
//! running `herald serve`, its ready line, bounded waits, plain HTTP.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");
pub const STEP: Duration = Duration::from_secs(15);

pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(STEP, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {STEP:?} waiting for {what}"),
    }
}

/// A running `herald serve` and what its ready line said.
pub struct Herald {
    pub child: Child,
    /// `ws` or `wss`.
    pub scheme: String,
    pub port: u16,
}

impl Herald {
    /// Starts `herald serve --listen 127.0.0.1:0 ARGS` with `RUST_LOG` and
    /// standard error as given, and reads its ready line.
    pub async fn start(args: &[&str], rust_log: &str, stderr: Stdio) -> Herald {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HERALD_AUTH_SECRET")
            .env_remove("HERALD_LOG_FORMAT")
            .env_remove("NO_COLOR")
            .env("RUST_LOG", rust_log)
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
        Herald {
            child,
            scheme: scheme.to_owned(),
            port,
        }
    }

    pub fn url(&self, host: &str) -> String {
        format!("{}://{host}:{}/socketcluster/", self.scheme, self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGTERM, then the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().expect("herald still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        within("herald to exit", self.child.wait())
            .await
            .expect("wait for herald")
            .code()
    }
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
            rand_suffix()
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

/// A random number (the standard hasher's keys are random per instance).
fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
