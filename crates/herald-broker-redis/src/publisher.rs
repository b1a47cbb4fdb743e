//! Publishing connections, one per Redis server, shared by all publishers.
//!
//! Publishing needs ordinary request/response connections (a subscriber
//! connection cannot `PUBLISH`). redis-rs's multiplexed connection fits:
//! one pipelined connection per server carries every publication of the
//! node, in call order, with a response timeout. This pool creates them on
//! first use and forgets one as soon as it fails, so the next publication
//! reconnects; a server that just refused a connection is not retried for a
//! short while, so a node with Redis down fails its publications at once
//! instead of opening a connection per call. The manager clears that gate
//! when its own subscriber connection to the server comes back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo};

use crate::connection::NodeAddr;

/// After a failed connection attempt, calls fail at once for this long.
const FAILURE_GATE: Duration = Duration::from_millis(250);

#[derive(Default)]
struct Entry {
    conn: Mutex<Option<MultiplexedConnection>>,
    connecting: tokio::sync::Mutex<()>,
    failed_at: Mutex<Option<Instant>>,
}

/// Request/response connections by server.
pub(crate) struct Pool {
    /// Credentials for servers not in `known` (cluster nodes discovered from
    /// the slot map use those of the seed URL).
    template: ConnectionInfo,
    /// Servers given by URL, each with its own credentials.
    known: HashMap<NodeAddr, ConnectionInfo>,
    config: AsyncConnectionConfig,
    entries: Mutex<HashMap<NodeAddr, Arc<Entry>>>,
}

impl Pool {
    pub(crate) fn new(
        template: ConnectionInfo,
        known: HashMap<NodeAddr, ConnectionInfo>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        Self {
            template,
            known,
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn info_for(&self, addr: &NodeAddr) -> ConnectionInfo {
        match self.known.get(addr) {
            Some(info) => info.clone(),
            None => self
                .template
                .clone()
                .set_addr(ConnectionAddr::Tcp(addr.host.to_string(), addr.port)),
        }
    }

    /// The credentials to use with `addr`.
    pub(crate) fn auth_for(&self, addr: &NodeAddr) -> redis::RedisConnectionInfo {
        self.info_for(addr).redis_settings().clone()
    }

    fn entry(&self, addr: &NodeAddr) -> Arc<Entry> {
        self.entries.lock().entry(addr.clone()).or_default().clone()
    }

    /// A connection to `addr`, opened if needed.
    pub(crate) async fn get(&self, addr: &NodeAddr) -> Result<MultiplexedConnection, String> {
        let entry = self.entry(addr);
        if let Some(conn) = entry.conn.lock().clone() {
            return Ok(conn);
        }
        let _connecting = entry.connecting.lock().await;
        if let Some(conn) = entry.conn.lock().clone() {
            return Ok(conn);
        }
        if let Some(at) = *entry.failed_at.lock()
            && at.elapsed() < FAILURE_GATE
        {
            return Err(format!("{addr} is unreachable"));
        }
        let info = self.info_for(addr);
        let result = match redis::Client::open(info) {
            Ok(client) => client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
                .map_err(|e| format!("connect to {addr}: {e}")),
            Err(e) => Err(format!("{addr}: {e}")),
        };
        match result {
            Ok(conn) => {
                *entry.conn.lock() = Some(conn.clone());
                *entry.failed_at.lock() = None;
                Ok(conn)
            }
            Err(e) => {
                *entry.failed_at.lock() = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Forgets the connection to `addr` after it failed.
    pub(crate) fn invalidate(&self, addr: &NodeAddr) {
        if let Some(entry) = self.entries.lock().get(addr) {
            entry.conn.lock().take();
        }
    }

    /// `addr` answered again: let the next call try at once.
    pub(crate) fn clear_failure(&self, addr: &NodeAddr) {
        if let Some(entry) = self.entries.lock().get(addr) {
            entry.failed_at.lock().take();
        }
    }

    /// Drops the connections to servers not in `keep`.
    pub(crate) fn retain(&self, keep: &dyn Fn(&NodeAddr) -> bool) {
        self.entries.lock().retain(|addr, _| keep(addr));
    }

    /// Drops every connection.
    pub(crate) fn clear(&self) {
        self.entries.lock().clear();
    }
}

/// Whether a failed request leaves its connection unusable (anything but a
/// reply from the server).
pub(crate) fn connection_broken(e: &redis::RedisError) -> bool {
    !matches!(e.kind(), redis::ErrorKind::Server(_))
}
