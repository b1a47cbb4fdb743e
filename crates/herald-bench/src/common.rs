//! What every scenario shares: how to reach (or start) the server, the
//! output options, progress lines, and a monotonic clock readable across
//! processes.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::server::{ManagedServer, free_port};
use crate::wire::Target;

/// Options shared by the `fanout`, `conns` and `storm` scenarios.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// WebSocket URL of a running server, e.g. ws://127.0.0.1:8000/socketcluster/.
    #[arg(long, conflicts_with = "server_cmd")]
    pub url: Option<String>,
    /// PID of that running server, to sample its CPU and memory.
    #[arg(long, conflicts_with = "server_cmd")]
    pub server_pid: Option<u32>,
    /// Start the server with this shell command instead, `{port}` replaced by
    /// the port to listen on (on 127.0.0.1), e.g.
    /// "target/release/herald serve --listen 127.0.0.1:{port}".
    #[arg(long, value_name = "CMD")]
    pub server_cmd: Option<String>,
    /// Port for --server-cmd (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Append the started server's stdout and stderr to this file.
    #[arg(long, value_name = "FILE")]
    pub server_log: Option<PathBuf>,
    /// WebSocket path for --server-cmd.
    #[arg(long, default_value = "/socketcluster/")]
    pub path: String,
    /// A name for the server under test, carried into the results.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Print one JSON line per result instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Give up (and fail) after this long in total, e.g. 5m. Default: the
    /// scenario's own estimate.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
}

/// The server under test: where it listens and, when known, its PID.
pub struct Harness {
    /// Where to connect.
    pub target: Target,
    /// The PID to sample.
    pub pid: Option<u32>,
    /// The server process when the bench started it.
    pub server: Option<ManagedServer>,
    /// The command template, for restarts.
    pub template: Option<String>,
    /// Environment variables given to the started server (and to it again
    /// on a restart).
    env: Vec<(String, String)>,
    log: Option<PathBuf>,
}

/// How long a started server has to begin listening.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(30);

impl Harness {
    /// Starts the server (`--server-cmd`) or points at a running one (`--url`).
    pub async fn open(c: &Common) -> anyhow::Result<Self> {
        Self::open_with(c, Vec::new()).await
    }

    /// [`Harness::open`], adding `env` to a started server's environment
    /// (ignored for a running one).
    pub async fn open_with(c: &Common, env: Vec<(String, String)>) -> anyhow::Result<Self> {
        match (&c.server_cmd, &c.url) {
            (Some(cmd), _) => {
                let port = match c.port {
                    Some(p) => p,
                    None => free_port().context("no free port")?,
                };
                let server = ManagedServer::start(
                    cmd,
                    port,
                    &env,
                    c.server_log.as_deref(),
                    SERVER_READY_TIMEOUT,
                )
                .await?;
                Ok(Self {
                    target: Target::local(port, &c.path),
                    pid: Some(server.pid()),
                    server: Some(server),
                    template: Some(cmd.clone()),
                    env,
                    log: c.server_log.clone(),
                })
            }
            (None, Some(url)) => Ok(Self {
                target: Target::parse(url)?,
                pid: c.server_pid,
                server: None,
                template: None,
                env: Vec::new(),
                log: None,
            }),
            (None, None) => {
                anyhow::bail!("give the server with --url (and --server-pid) or --server-cmd")
            }
        }
    }

    /// SIGKILLs the started server and starts it again on the same port.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<(Instant, Instant)> {
        let server = self
            .server
            .as_mut()
            .context("restarting needs --server-cmd")?;
        let port = server.port();
        server.kill().await?;
        let killed = Instant::now();
        let template = self
            .template
            .clone()
            .context("restarting needs --server-cmd")?;
        let fresh = ManagedServer::start(
            &template,
            port,
            &self.env,
            self.log.as_deref(),
            SERVER_READY_TIMEOUT,
        )
        .await?;
        let listening = Instant::now();
        self.pid = Some(fresh.pid());
        self.server = Some(fresh);
        Ok((killed, listening))
    }

    /// Stops a started server (SIGTERM, then SIGKILL).
    pub async fn close(self) {
        if let Some(s) = self.server {
            s.stop(Duration::from_secs(3)).await;
        }
    }
}

/// Progress lines on stderr: rewritten in place on a terminal, at most one
/// line every few seconds otherwise (logs).
pub struct Progress {
    enabled: bool,
    tty: bool,
    last: Option<Instant>,
    prefix: String,
}

impl Progress {
    /// A progress printer; `quiet` silences it.
    pub fn new(prefix: impl Into<String>, quiet: bool) -> Self {
        Self {
            enabled: !quiet,
            tty: std::io::stderr().is_terminal(),
            last: None,
            prefix: prefix.into(),
        }
    }

    /// Shows `line`.
    pub fn update(&mut self, line: &str) {
        if !self.enabled {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{} {line}", self.prefix);
            let _ = err.flush();
            self.last = Some(Instant::now());
        } else if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            let _ = writeln!(err, "{} {line}", self.prefix);
            self.last = Some(Instant::now());
        }
    }

    /// Ends the progress line (on a terminal).
    pub fn done(&mut self) {
        if self.enabled && self.tty && self.last.is_some() {
            let _ = writeln!(std::io::stderr());
        }
        self.last = None;
    }
}

/// CLOCK_MONOTONIC in nanoseconds: comparable between the bench and its
/// worker processes.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Raises this process's open-file soft limit to its hard limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and write from.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = mono_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = mono_ns();
        assert!(b >= a + 1_000_000);
        assert!(raise_nofile_limit() >= 256);
    }
}
