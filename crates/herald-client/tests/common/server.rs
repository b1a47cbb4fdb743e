//! Starting a server to test against: the reference socketcluster-server 20
//! (`tests/node/reference/sc-server.js`) or Herald's `herald-fixture` binary.
//! Both serve the same fixture procedures, so the same scenarios run on both.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Which server implementation a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The real socketcluster-server 20, run with node.
    Reference,
    /// Herald's `herald-fixture serve` binary.
    Herald,
}

/// Server settings a scenario may need.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Option<Duration>,
    /// Listen on this port (default: a free one).
    pub port: Option<u16>,
}

/// What a scenario needs to know about the server.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
    /// `ws://127.0.0.1:PORT/socketcluster/`
    pub url: String,
    /// HS256 secret the server signs and verifies tokens with.
    pub secret: String,
}

/// A running server, killed when dropped.
pub struct Server {
    target: Target,
    kind: TargetKind,
    options: ServerOptions,
    child: Child,
}

/// How long a server may take to print its address.
const STARTUP: Duration = Duration::from_secs(30);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn herald_fixture_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_FIXTURE_BIN") {
        return PathBuf::from(p);
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target_dir.join("debug").join("herald-fixture")
}

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

impl Server {
    /// Starts a server of `kind` on a free port of 127.0.0.1 and waits until
    /// it listens. Panics (failing the test) if it does not within 30 s.
    pub async fn start(kind: TargetKind, options: ServerOptions) -> Server {
        let secret = format!("test-secret-{:016x}", rand::random::<u64>());
        Self::start_with(kind, options, secret).await
    }

    /// SIGKILLs the server and starts it again on the same port with the
    /// same secret (a crash and a restart: the memory broker's history is
    /// gone).
    pub async fn kill_and_restart(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let port: u16 = self
            .target
            .url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the URL");
        let options = ServerOptions {
            port: Some(port),
            ..self.options.clone()
        };
        *self = Self::start_with(self.kind, options, self.target.secret.clone()).await;
    }

    async fn start_with(kind: TargetKind, options: ServerOptions, secret: String) -> Server {
        let listen = format!("127.0.0.1:{}", options.port.unwrap_or(0));
        let mut cmd = match kind {
            TargetKind::Reference => {
                let mut cmd = Command::new("node");
                cmd.arg("tests/node/reference/sc-server.js")
                    .current_dir(repo_root())
                    .env("PORT", options.port.unwrap_or(0).to_string())
                    .env("AUTH_KEY", &secret);
                if let Some(d) = options.ping_interval {
                    cmd.env("PING_INTERVAL", millis(d));
                }
                if let Some(d) = options.ping_timeout {
                    cmd.env("PING_TIMEOUT", millis(d));
                }
                cmd
            }
            TargetKind::Herald => {
                let mut cmd = Command::new(herald_fixture_bin());
                cmd.args(["serve", "--listen", &listen, "--auth-secret", &secret]);
                if let Some(d) = options.ping_interval {
                    cmd.args(["--ping-interval", &format!("{}ms", d.as_millis())]);
                }
                if let Some(d) = options.ping_timeout {
                    cmd.args(["--ping-timeout", &format!("{}ms", d.as_millis())]);
                }
                cmd
            }
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {kind:?} server: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(STARTUP, async {
            while let Some(line) = lines.next_line().await.expect("read server stdout") {
                if let Some(url) = parse_listen_line(kind, &line) {
                    return url;
                }
            }
            panic!("the {kind:?} server exited without printing its address");
        })
        .await
        .unwrap_or_else(|_| panic!("the {kind:?} server did not start within {STARTUP:?}"));
        // Keep draining stdout so that the server never blocks or fails
        // writing to a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            target: Target { kind, url, secret },
            kind,
            options,
            child,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// The server URL announced on a stdout line, if this line announces it.
fn parse_listen_line(kind: TargetKind, line: &str) -> Option<String> {
    match kind {
        TargetKind::Reference => {
            let port: u16 = line
                .trim()
                .strip_prefix("listening ")?
                .trim()
                .parse()
                .ok()?;
            Some(format!("ws://127.0.0.1:{port}/socketcluster/"))
        }
        TargetKind::Herald => {
            let start = line.find("ws://")?;
            let url: String = line[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
                .collect();
            Some(url)
        }
    }
}

#[test]
fn listen_lines_are_parsed() {
    assert_eq!(
        parse_listen_line(TargetKind::Reference, "listening 4567").as_deref(),
        Some("ws://127.0.0.1:4567/socketcluster/")
    );
    assert_eq!(parse_listen_line(TargetKind::Reference, "hello"), None);
    assert_eq!(
        parse_listen_line(
            TargetKind::Herald,
            "INFO herald: listening on ws://127.0.0.1:39999/socketcluster/ (fixture)"
        )
        .as_deref(),
        Some("ws://127.0.0.1:39999/socketcluster/")
    );
}
