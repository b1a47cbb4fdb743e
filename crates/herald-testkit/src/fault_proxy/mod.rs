//! A TCP proxy that tests put between a client and a server to break the
//! link between them the ways networks do, without touching either peer.
//!
//! Every connection accepted on [`FaultProxy::addr`] is forwarded to the
//! upstream address, under a [`Fault`] that can change at any moment, for
//! one connection ([`FaultProxy::set_fault`]), for those open now
//! ([`FaultProxy::set_fault_live`]) or for those and every later one
//! ([`FaultProxy::set_fault_all`]):
//!
//! * [`Fault::Pass`]: bytes go through as they come;
//! * [`Fault::Delay`]: each chunk goes through that long after it arrived;
//! * [`Fault::Blackhole`]: nothing goes through in either direction (end of
//!   stream included) but both TCP connections stay open: what a peer sees
//!   when the other end's machine freezes or a NAT forgets the flow. Peers
//!   only find out by their own timeouts (heartbeats). Bytes sent meanwhile
//!   are held, not lost, and flow again after [`Fault::Pass`].
//!
//! [`FaultProxy::cut`] and [`FaultProxy::cut_all`] end connections with a
//! TCP reset on both sides (`SO_LINGER` 0), as a crashed middlebox does.
//!
//! With several upstreams ([`FaultProxy::balance`]) it is also the simplest
//! TCP load balancer: new connections go round robin to the upstreams, and
//! one that refuses is skipped (what a balancer does for a node that is
//! restarting), so rolling-restart tests reconnect clients elsewhere.
//!
//! The proxy is a library type for Rust tests; the `herald-fault-proxy`
//! binary serves the same controls over a line-based control socket
//! ([`control`]) for the Node suite. Hand-written: no maintained crate does
//! a controllable in-process blackhole that keeps both sockets open.

pub mod control;
mod pipe;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The listening socket's accept backlog (capped by `net.core.somaxconn`).
const ACCEPT_BACKLOG: u32 = 4096;

/// How long the proxy tries to reach the upstream for a new connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the proxy does with a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Forward everything, each chunk this long after it arrived.
    Delay(Duration),
    /// Forward nothing, in either direction; keep both connections open.
    Blackhole,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Pass => f.write_str("pass"),
            Fault::Delay(d) => write!(f, "delay {}", d.as_millis()),
            Fault::Blackhole => f.write_str("blackhole"),
        }
    }
}

/// A proxied connection, as [`FaultProxy::connections`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The proxy's number for it (1 for the first accepted, then up).
    pub id: u64,
    /// The client's address (the peer of the accepted socket).
    pub client: SocketAddr,
    /// The proxy's local address towards the upstream: the remote address
    /// the server sees for this connection.
    pub upstream_local: SocketAddr,
    /// The upstream it is forwarded to.
    pub upstream: SocketAddr,
    /// Its fault now.
    pub fault: Fault,
}

struct Entry {
    client: SocketAddr,
    upstream_local: SocketAddr,
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    cut: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    upstreams: Mutex<Vec<SocketAddr>>,
    next_upstream: AtomicU64,
    default_fault: Mutex<Fault>,
    entries: Mutex<BTreeMap<u64, Entry>>,
    /// Set (under the `entries` lock) when the proxy is dropped: a
    /// connection still being set up then closes instead of registering.
    stopped: std::sync::atomic::AtomicBool,
    next_id: AtomicU64,
    /// Bumped whenever a connection is added or removed.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }
}

/// A running fault proxy. Dropping it stops accepting and closes every
/// connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy on a free port of 127.0.0.1 forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), upstream).await
    }

    /// A proxy on a free port of 127.0.0.1 spreading new connections over
    /// `upstreams` round robin, skipping any that refuses.
    pub async fn balance(upstreams: Vec<SocketAddr>) -> io::Result<Self> {
        let proxy = Self::start(
            *upstreams
                .first()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no upstream"))?,
        )
        .await?;
        proxy.set_upstreams(upstreams);
        Ok(proxy)
    }

    /// A proxy listening on `listen` forwarding to `upstream`.
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        // As long a backlog as Herald's own (`Server::bind`): thousands of
        // clients reconnecting at once through the proxy must queue here,
        // not in SYN retransmission timeouts of the proxy's making.
        let listener = socket.listen(ACCEPT_BACKLOG)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstreams: Mutex::new(vec![upstream]),
            next_upstream: AtomicU64::new(0),
            default_fault: Mutex::new(Fault::Pass),
            entries: Mutex::new(BTreeMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            changes: watch::Sender::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections are forwarded.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.shared.upstreams.lock().clone()
    }

    /// Forwards connections accepted from now on to `upstream` (a server
    /// restarted on another port); open ones keep theirs.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.set_upstreams(vec![upstream]);
    }

    /// Spreads connections accepted from now on over `upstreams` (ignored
    /// when empty); open ones keep theirs.
    pub fn set_upstreams(&self, upstreams: Vec<SocketAddr>) {
        if !upstreams.is_empty() {
            *self.shared.upstreams.lock() = upstreams;
        }
    }

    /// The fault of every open connection and of every later one.
    pub fn set_fault_all(&self, fault: Fault) {
        *self.shared.default_fault.lock() = fault;
        self.set_fault_live(fault);
    }

    /// The fault of the connections open now only; later ones get the
    /// default ([`Fault::Pass`] unless [`FaultProxy::set_fault_all`] changed
    /// it). Returns how many it changed.
    pub fn set_fault_live(&self, fault: Fault) -> usize {
        let entries = self.shared.entries.lock();
        for e in entries.values() {
            e.fault.send_replace(fault);
        }
        entries.len()
    }

    /// The fault of connection `id`; false when it is not open.
    pub fn set_fault(&self, id: u64, fault: Fault) -> bool {
        match self.shared.entries.lock().get(&id) {
            Some(e) => {
                e.fault.send_replace(fault);
                true
            }
            None => false,
        }
    }

    /// The fault new connections get.
    pub fn default_fault(&self) -> Fault {
        *self.shared.default_fault.lock()
    }

    /// Ends connection `id` with a reset on both sides; false when it is
    /// not open.
    pub fn cut(&self, id: u64) -> bool {
        let cut = self
            .shared
            .entries
            .lock()
            .get_mut(&id)
            .and_then(|e| e.cut.take());
        match cut {
            Some(tx) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }

    /// Ends every open connection with a reset on both sides; returns how
    /// many. Later connections are accepted as usual.
    pub fn cut_all(&self) -> usize {
        let cuts: Vec<_> = self
            .shared
            .entries
            .lock()
            .values_mut()
            .filter_map(|e| e.cut.take())
            .collect();
        let n = cuts.len();
        for tx in cuts {
            let _ = tx.send(());
        }
        n
    }

    /// The connections open now, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared
            .entries
            .lock()
            .iter()
            .map(|(&id, e)| ConnectionInfo {
                id,
                client: e.client,
                upstream_local: e.upstream_local,
                upstream: e.upstream,
                fault: *e.fault.borrow(),
            })
            .collect()
    }

    /// Connections accepted and forwarded since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.next_id.load(Ordering::Relaxed) - 1
    }

    /// Waits until `cond` holds for the open connections (checked at once
    /// and after every connection opened or closed). Unbounded: callers
    /// put a timeout around it.
    pub async fn wait_until(&self, mut cond: impl FnMut(&[ConnectionInfo]) -> bool) {
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.mark_unchanged();
            if cond(&self.connections()) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        let mut entries = self.shared.entries.lock();
        self.shared.stopped.store(true, Ordering::Relaxed);
        for e in entries.values_mut() {
            if let Some(task) = e.task.take() {
                task.abort();
            }
        }
        entries.clear();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors and the like: the next accept may work.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some(upstream) = connect_upstream(&shared).await else {
                // Every upstream down: refuse the client the way a dead
                // server would, with a reset.
                let _ = client.set_zero_linger();
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (Ok(upstream_local), Ok(upstream_addr)) =
                (upstream.local_addr(), upstream.peer_addr())
            else {
                return;
            };
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let fault = *shared.default_fault.lock();
            let (fault_tx, fault_rx) = watch::channel(fault);
            let (cut_tx, cut_rx) = oneshot::channel();
            let (go_tx, go_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(relay(client, upstream, fault_rx, cut_rx, go_rx, {
                let shared = shared.clone();
                move || {
                    shared.entries.lock().remove(&id);
                    shared.changed();
                }
            }));
            {
                let mut entries = shared.entries.lock();
                if shared.stopped.load(Ordering::Relaxed) {
                    task.abort();
                    return;
                }
                entries.insert(
                    id,
                    Entry {
                        client: peer,
                        upstream_local,
                        upstream: upstream_addr,
                        fault: fault_tx,
                        cut: Some(cut_tx),
                        task: Some(task),
                    },
                );
            }
            shared.changed();
            // Only now may the relay end and remove its entry.
            let _ = go_tx.send(());
        });
    }
}

/// A connection to the next upstream that accepts one, round robin.
async fn connect_upstream(shared: &Shared) -> Option<TcpStream> {
    let upstreams = shared.upstreams.lock().clone();
    let first = shared.next_upstream.fetch_add(1, Ordering::Relaxed) as usize;
    for i in 0..upstreams.len() {
        let addr = upstreams[(first + i) % upstreams.len()];
        if let Ok(Ok(s)) =
            tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            return Some(s);
        }
    }
    None
}

/// Forwards both directions until both ended, either failed, or a cut.
async fn relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
    fault: watch::Receiver<Fault>,
    cut: oneshot::Receiver<()>,
    registered: oneshot::Receiver<()>,
    forget: impl FnOnce(),
) {
    let _ = registered.await;
    let reset = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let both = async {
            tokio::try_join!(
                pipe::pump(client_read, upstream_write, fault.clone()),
                pipe::pump(upstream_read, client_write, fault.clone()),
            )
        };
        tokio::select! {
            r = both => r.is_err(),
            Ok(()) = cut => true,
        }
    };
    if reset {
        // A reset on one side (or a cut) is passed on as a reset.
        let _ = client.set_zero_linger();
        let _ = upstream.set_zero_linger();
    }
    drop(client);
    drop(upstream);
    forget();
}

#[cfg(test)]
mod tests;
