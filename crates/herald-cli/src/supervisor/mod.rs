//! `herald serve --workers N`: N worker processes on one port, supervised
//! by the process the operator started.
//!
//! One process may hold only so many open files (20,000 on the machines
//! Herald is benchmarked on), and one process is one failure domain; so a
//! node can run as several processes. The supervisor:
//!
//! * resolves the configuration once (errors are reported once, before any
//!   worker starts) and refuses `--workers` above 1 without a broker that
//!   crosses processes: the in-process `memory` broker would split the node
//!   into N islands whose subscribers never see each other's publications;
//! * binds the listen address itself with `SO_REUSEPORT` (without listening,
//!   so it takes no connections), which resolves port 0 once and keeps the
//!   port reserved while workers restart; every worker then binds its own
//!   listener to that port with `SO_REUSEPORT` and the kernel spreads new
//!   connections over them;
//! * re-executes its own binary with its own arguments for each worker (see
//!   [`crate::worker`] for what it adds), each with the node id
//!   `<node>-w<index>`, and forwards their output marked with the index;
//! * prints its ready line once every worker is listening; a worker that
//!   exits before that is a startup failure (the node stops, as a single
//!   process would); one that dies later is restarted with backoff
//!   ([`restart`]), logged and counted;
//! * on SIGTERM or SIGINT drains every worker at once (each runs its own
//!   drain: 503 on upgrades, `drain_timeout` for procedures, 1012) and exits
//!   0 once all have exited; a second signal, or workers still running
//!   `drain_timeout` + 10 s later, SIGKILLs the stragglers (exit status 1).
//!
//! Without a configured auth secret the supervisor draws one random secret
//! and hands it to every worker (`HERALD_AUTH_SECRET`), so that a token
//! signed by one worker is valid on the others.
//!
//! The workers are children that receive SIGTERM if the supervisor dies
//! (`PR_SET_PDEATHSIG`), so none is left holding the port.

pub mod restart;
pub mod slot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::worker::{self, WorkerEnv};
use crate::{LogFormat, ServeSettings};
use slot::{Counters, Event, Launch, Order};

/// How long workers may take beyond their `drain_timeout` before they are
/// killed.
pub const DRAIN_SLACK: Duration = Duration::from_secs(10);

/// Checks a `workers` setting against the broker: `Err` says why it cannot
/// run.
pub fn check_workers(workers: usize, broker: &str) -> anyhow::Result<()> {
    if workers == 0 {
        anyhow::bail!("--workers (workers) must be at least 1");
    }
    let broker = broker.trim();
    if workers > 1 && (broker.is_empty() || broker == "memory" || broker == "memory://") {
        anyhow::bail!(
            "--workers {workers} needs a broker between the worker processes (--broker redis://HOST:PORT or nats://HOST:PORT): the in-process memory broker does not cross processes, so subscribers on one worker would never see publications made on another"
        );
    }
    Ok(())
}

/// Binds `addr` with `SO_REUSEPORT` without listening: the port is resolved
/// and held for the workers.
fn reserve(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// The next SIGTERM or SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Runs the supervisor of `workers` workers until a signal stops them all.
pub async fn run(settings: &ServeSettings, workers: usize, log: LogFormat) -> anyhow::Result<()> {
    check_workers(workers, &settings.broker)?;
    let reserved = reserve(settings.listen)
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = reserved.local_addr()?;
    let node = settings
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{:08x}", rand_u32()));
    let mut env = Vec::new();
    if settings.auth_secret.is_none() {
        tracing::warn!(
            "no auth secret configured: the workers share a random one; auth tokens will not survive a restart"
        );
        env.push(("HERALD_AUTH_SECRET", random_secret()));
    }
    let launch = Arc::new(Launch {
        exe: std::env::current_exe().context("cannot find the herald executable")?,
        args: std::env::args_os().skip(1).collect(),
        env,
        json_logs: log == LogFormat::Json,
    });
    // Handlers first: a signal during startup stops the workers cleanly.
    let mut signals = Signals::install()?;
    tracing::info!(workers, node_id = %node, %addr, broker = %settings.broker, "herald supervisor starting workers");
    let (orders_tx, orders) = watch::channel(Order::Run);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let counters = Arc::new(Counters::default());
    let mut slots = JoinSet::new();
    for index in 0..workers {
        let env = WorkerEnv {
            index,
            listen: addr,
            node_id: worker::node_id(&node, index),
            starts: 0,
        };
        slots.spawn(slot::run(
            launch.clone(),
            env,
            orders.clone(),
            events_tx.clone(),
            counters.clone(),
        ));
    }
    drop(events_tx);

    // Startup: every worker listening, or the node stops.
    let mut ready = vec![false; workers];
    let startup = loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Ready(i)) => {
                    ready[i] = true;
                    if ready.iter().all(|r| *r) {
                        break Ok(());
                    }
                }
                Some(Event::Exited { index, status }) => {
                    break Err(anyhow::anyhow!(
                        "worker {index} exited before it listened ({status}); its log is above"
                    ));
                }
                None => break Err(anyhow::anyhow!("every worker slot ended")),
            },
            sig = signals.next() => {
                tracing::info!(signal = sig, "stopping the workers before they all started");
                break Ok(());
            }
        }
    };
    let started = startup.is_ok() && ready.iter().all(|r| *r);
    if let Err(e) = startup {
        let _ = orders_tx.send(Order::Drain);
        stop_all(&mut slots, &orders_tx, &mut signals, settings).await;
        return Err(e);
    }
    if started {
        let scheme = if settings.tls.is_some() { "wss" } else { "ws" };
        println!(
            "herald listening on {scheme}://{addr}{}",
            settings.config.path
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tracing::info!(workers, "every worker listens");
        let sig = loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Event::Ready(i)) => tracing::info!(worker = i, "worker listens again"),
                    Some(Event::Exited { .. }) => {}
                    None => break "no worker left",
                },
                sig = signals.next() => break sig,
            }
        };
        tracing::info!(signal = sig, workers, "draining every worker");
    }
    let _ = orders_tx.send(Order::Drain);
    let clean = stop_all(&mut slots, &orders_tx, &mut signals, settings).await;
    drop(reserved);
    let restarts = counters.restarts.load(std::sync::atomic::Ordering::Relaxed);
    if clean {
        tracing::info!(restarts, "herald stopped: every worker exited");
        Ok(())
    } else {
        anyhow::bail!("workers still running were killed")
    }
}

/// Waits for every slot to end after a `Drain` order; a second signal or
/// `drain_timeout` + [`DRAIN_SLACK`] escalates to `Kill`. True when no
/// worker had to be killed.
async fn stop_all(
    slots: &mut JoinSet<()>,
    orders: &watch::Sender<Order>,
    signals: &mut Signals,
    settings: &ServeSettings,
) -> bool {
    let grace = settings.config.drain_timeout + DRAIN_SLACK;
    let drained = async { while slots.join_next().await.is_some() {} };
    let clean = tokio::select! {
        () = drained => true,
        sig = signals.next() => {
            tracing::warn!(signal = sig, remaining = slots.len(), "second signal: killing the workers");
            false
        }
        () = tokio::time::sleep(grace) => {
            tracing::warn!(remaining = slots.len(), ?grace, "workers still running after the drain grace: killing them");
            false
        }
    };
    if !clean {
        let _ = orders.send(Order::Kill);
        while slots.join_next().await.is_some() {}
    }
    clean
}

/// A random u32 for a default node id.
fn rand_u32() -> u32 {
    rand::random()
}

/// 256 random bits, hex: the workers' shared secret when none is set.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_workers_need_a_broker_between_them() {
        for broker in ["memory", "", " memory://"] {
            let err = check_workers(2, broker).unwrap_err().to_string();
            assert!(err.contains("does not cross processes"), "{err}");
        }
        assert!(check_workers(1, "memory").is_ok());
        assert!(check_workers(4, "redis://127.0.0.1:6379").is_ok());
        assert!(check_workers(4, "nats://127.0.0.1:4222").is_ok());
        assert!(check_workers(0, "nats://127.0.0.1:4222").is_err());
    }

    #[tokio::test]
    async fn the_reserved_port_is_shared_but_takes_no_connections() {
        let reserved = reserve("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = reserved.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        // Nothing listens yet: a connection is refused, not queued.
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        let a = herald::Server::bind_reuseport(addr).unwrap();
        let b = herald::Server::bind_reuseport(addr).unwrap();
        for _ in 0..8 {
            let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
        }
        drop((a, b));
    }
}
