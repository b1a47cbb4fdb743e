//! Starting, killing and restarting the server under test.
//!
//! The server is given as a shell command template in which `{port}` is
//! replaced by the port to listen on, e.g.
//! `target/release/herald serve --listen 127.0.0.1:{port}` or
//! `node bench/sc-server.js {port}`. It runs as `sh -c 'exec CMD'`, so the
//! PID the bench samples is the server's own. The server is ready when its
//! port accepts a TCP connection.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep};

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A server process started by the bench. Killed when dropped.
pub struct ManagedServer {
    child: Child,
    pid: u32,
    port: u16,
    command: String,
}

impl ManagedServer {
    /// Starts `template` with `{port}` replaced, with `env` added to its
    /// environment, and waits until the port accepts connections (at most
    /// `ready_timeout`). Output goes to `log` (appended) or nowhere.
    pub async fn start(
        template: &str,
        port: u16,
        env: &[(String, String)],
        log: Option<&Path>,
        ready_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let command = template.replace("{port}", &port.to_string());
        let (out, err) = match log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open server log {}", path.display()))?;
                (Stdio::from(f.try_clone()?), Stdio::from(f))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("exec {command}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start server: {command}"))?;
        let pid = child.id().context("server exited at once")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + ready_timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("server exited before listening ({status}): {command}");
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("server not listening on {addr} after {ready_timeout:?}: {command}");
            }
            sleep(Duration::from_millis(5)).await;
        }
        Ok(Self {
            child,
            pid,
            port,
            command,
        })
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The command line it runs.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// SIGKILLs the server and reaps it.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let _ = self.child.start_kill();
        self.child.wait().await?;
        Ok(())
    }

    /// SIGTERMs the server, then SIGKILLs it if it is still there after
    /// `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) has no memory preconditions; the PID is our own
            // child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.kill().await;
        }
    }
}
