//! One worker slot of the supervisor: the task that starts its worker
//! process, forwards the process's output, restarts it when it dies (with
//! [`Backoff`]) and stops it when told to.
//!
//! The slot reports to the supervisor over a channel ([`Event`]); the
//! supervisor tells every slot what to do next over one `watch` channel
//! ([`Order`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::restart::Backoff;
use crate::worker::WorkerEnv;

/// What the supervisor wants of the slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Order {
    /// Keep the worker running; restart it when it dies.
    Run,
    /// Drain: SIGTERM the worker, do not restart it.
    Drain,
    /// SIGKILL the worker.
    Kill,
}

/// What a slot tells the supervisor.
#[derive(Debug)]
pub enum Event {
    /// Worker `index` printed its ready line (it listens).
    Ready(usize),
    /// Worker `index` exited on its own, or could not be started.
    Exited {
        /// The slot.
        index: usize,
        /// How it ended.
        status: String,
    },
}

/// How the slots start their workers.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary (the supervisor's own).
    pub exe: PathBuf,
    /// Its arguments (the supervisor's own).
    pub args: Vec<OsString>,
    /// Environment added for every worker (beside its [`WorkerEnv`]).
    pub env: Vec<(&'static str, String)>,
    /// Whether log lines are JSON objects (the worker's index is added as a
    /// field) or text (prefixed with `[w<index>]`).
    pub json_logs: bool,
}

/// A slot's shared counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Workers restarted after they died, over every slot.
    pub restarts: AtomicU64,
}

/// Runs slot `env.index` until its worker has exited after a `Drain` or
/// `Kill` order.
pub async fn run(
    launch: Arc<Launch>,
    mut env: WorkerEnv,
    mut orders: watch::Receiver<Order>,
    events: mpsc::UnboundedSender<Event>,
    counters: Arc<Counters>,
) {
    let index = env.index;
    let mut backoff = Backoff::default();
    loop {
        if *orders.borrow() != Order::Run {
            return;
        }
        let started = Instant::now();
        let mut child = match spawn(&launch, &env, events.clone()) {
            Ok(c) => c,
            Err(e) => {
                let _ = events.send(Event::Exited {
                    index,
                    status: format!("could not be started: {e}"),
                });
                tracing::error!(worker = index, error = %e, "cannot start a worker");
                if !wait_for_restart(&mut orders, backoff.next(Duration::ZERO)).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id();
        tracing::debug!(worker = index, pid, "worker started");
        let status = tokio::select! {
            status = child.wait() => status,
            () = until_not_running(&mut orders) => {
                stop(&mut child, pid, &mut orders).await;
                return;
            }
        };
        let lived = started.elapsed();
        let status = describe(status);
        let _ = events.send(Event::Exited {
            index,
            status: status.clone(),
        });
        if *orders.borrow() != Order::Run {
            return;
        }
        let delay = backoff.next(lived);
        let restarts = counters.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            worker = index,
            pid,
            status = %status,
            lived = ?lived,
            restart_in = ?delay,
            restarts,
            "worker exited; restarting it"
        );
        if !wait_for_restart(&mut orders, delay).await {
            return;
        }
        env.starts += 1;
    }
}

/// Sleeps `delay`; false when an order other than `Run` came meanwhile.
async fn wait_for_restart(orders: &mut watch::Receiver<Order>, delay: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => *orders.borrow() == Order::Run,
        () = until_not_running(orders) => false,
    }
}

/// Resolves once the order is no longer `Run`.
async fn until_not_running(orders: &mut watch::Receiver<Order>) {
    if orders.wait_for(|o| *o != Order::Run).await.is_err() {
        // The supervisor is gone: nothing will ever order a stop.
        std::future::pending::<()>().await;
    }
}

/// Drains (SIGTERM) the worker, escalating to SIGKILL on a `Kill` order,
/// and reaps it.
async fn stop(child: &mut Child, pid: Option<u32>, orders: &mut watch::Receiver<Order>) {
    if *orders.borrow() == Order::Drain {
        if let Some(pid) = pid {
            signal(pid, libc::SIGTERM);
        }
        tokio::select! {
            _ = child.wait() => return,
            _ = orders.wait_for(|o| *o == Order::Kill) => {}
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Sends `sig` to our child `pid`.
fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory preconditions; `pid` is our own
        // child, not yet reaped (its `Child` is alive and not waited on).
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot be waited on: {e}"),
    }
}

/// Starts the worker process of `env` and the tasks forwarding its output.
fn spawn(
    launch: &Launch,
    env: &WorkerEnv,
    events: mpsc::UnboundedSender<Event>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(&launch.exe);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    let index = env.index;
    let json = launch.json_logs;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward_stdout(out, index, events));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward_stderr(err, index, json));
    }
    Ok(child)
}

/// Makes the child receive SIGTERM (and drain) when the supervisor dies,
/// even by SIGKILL, so that no orphaned worker keeps the port.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: getpid is async-signal-safe; taken before the fork.
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// The worker's standard output carries its ready line (reported, not
/// repeated: the supervisor prints its own once every worker is ready);
/// anything else is passed through.
async fn forward_stdout(
    out: impl AsyncRead + Unpin,
    index: usize,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut lines = BufReader::new(out).lines();
    let mut ready = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if !ready && line.starts_with("herald listening on ") {
            ready = true;
            let _ = events.send(Event::Ready(index));
            continue;
        }
        println!("{line}");
    }
}

/// Copies the worker's log lines to the supervisor's standard error, each
/// marked with the worker's index.
async fn forward_stderr(err: impl AsyncRead + Unpin, index: usize, json: bool) {
    use std::io::Write as _;
    let mut lines = BufReader::new(err).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let tagged = tag_line(&line, index, json);
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "{tagged}");
    }
}

/// A worker's log line marked with its index: a JSON object gets a
/// `"worker"` field first, a text line a `[w<index>]` prefix.
pub fn tag_line(line: &str, index: usize, json: bool) -> String {
    match line.strip_prefix('{') {
        Some(rest) if json => {
            let sep = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            format!("{{\"worker\":{index}{sep}{rest}")
        }
        _ => format!("[w{index}] {line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_name_their_worker() {
        let json = tag_line(r#"{"level":"INFO","message":"hi"}"#, 2, true);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["worker"], 2);
        assert_eq!(v["message"], "hi");
        assert_eq!(tag_line("{}", 0, true), r#"{"worker":0}"#);
        assert_eq!(
            tag_line("2026-12-02 INFO herald: hi", 1, false),
            "[w1] 2026-12-02 INFO herald: hi"
        );
        // A line that is not an object (a panic message) is prefixed.
        assert_eq!(tag_line("thread panicked", 3, true), "[w3] thread panicked");
    }
}
