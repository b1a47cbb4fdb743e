//! The worker side of `herald serve --workers N`: what a worker process is
//! told by its supervisor, and how that changes its `serve` run.
//!
//! The supervisor re-executes its own binary with its own arguments (so
//! that the config file, flags and environment resolve exactly as they did
//! for it) and these environment variables, which make the process a worker:
//!
//! | Variable | Meaning |
//! |---|---|
//! | `HERALD_SUPERVISED_WORKER` | the worker's index, `0` to `N-1` |
//! | `HERALD_SUPERVISED_LISTEN` | the address to listen on, its port resolved once by the supervisor |
//! | `HERALD_SUPERVISED_NODE_ID` | the worker's node id, `<node>-w<index>` |
//! | `HERALD_SUPERVISED_STARTS` | how many times this slot was started before (0 the first time) |
//!
//! A worker binds its listener with `SO_REUSEPORT`, so every worker accepts
//! on the one port and the kernel spreads connections over them. They are
//! internal: an operator sets `--workers`, never these.
//!
//! On the shared port, `/herald/health`, `/herald/ready`, `/herald/info` and
//! `/metrics` answer from whichever worker accepted the connection. With
//! `--worker-status-listen ADDR` each worker also serves them on a port of
//! its own, `ADDR`'s port plus its index ([`status_addr`]), so that a
//! Prometheus scrapes every worker and a health check asks a given one.

use std::net::SocketAddr;

use anyhow::Context as _;

/// The variable naming the worker index.
pub const ENV_INDEX: &str = "HERALD_SUPERVISED_WORKER";
/// The variable naming the listen address.
pub const ENV_LISTEN: &str = "HERALD_SUPERVISED_LISTEN";
/// The variable naming the node id.
pub const ENV_NODE_ID: &str = "HERALD_SUPERVISED_NODE_ID";
/// The variable counting earlier starts of the slot.
pub const ENV_STARTS: &str = "HERALD_SUPERVISED_STARTS";

/// What the supervisor told this worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEnv {
    /// Index among the workers, from 0.
    pub index: usize,
    /// Where to listen (shared with the other workers).
    pub listen: SocketAddr,
    /// This worker's node id.
    pub node_id: String,
    /// Earlier starts of this worker slot (restarts after it died).
    pub starts: u64,
}

impl WorkerEnv {
    /// The worker settings of this process, or `None` when it is not a
    /// supervised worker.
    pub fn from_env() -> anyhow::Result<Option<WorkerEnv>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`WorkerEnv::from_env`] over any variable lookup.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<WorkerEnv>> {
        let Some(index) = get(ENV_INDEX) else {
            return Ok(None);
        };
        let need = |k: &str| get(k).with_context(|| format!("{ENV_INDEX} is set but {k} is not"));
        Ok(Some(WorkerEnv {
            index: index
                .parse()
                .with_context(|| format!("{ENV_INDEX}={index:?} is not an index"))?,
            listen: need(ENV_LISTEN)?
                .parse()
                .with_context(|| format!("{ENV_LISTEN} is not an address"))?,
            node_id: need(ENV_NODE_ID)?,
            starts: get(ENV_STARTS).and_then(|s| s.parse().ok()).unwrap_or(0),
        }))
    }

    /// The environment that makes a child process this worker.
    pub fn vars(&self) -> [(&'static str, String); 4] {
        [
            (ENV_INDEX, self.index.to_string()),
            (ENV_LISTEN, self.listen.to_string()),
            (ENV_NODE_ID, self.node_id.clone()),
            (ENV_STARTS, self.starts.to_string()),
        ]
    }
}

/// The node id of worker `index` of node `node`.
pub fn node_id(node: &str, index: usize) -> String {
    format!("{node}-w{index}")
}

/// Where worker `index` serves its own status routes: `base` with the port
/// moved up by `index` (port 0: a free port for each).
pub fn status_addr(base: SocketAddr, index: usize) -> anyhow::Result<SocketAddr> {
    if base.port() == 0 {
        return Ok(base);
    }
    let port = u16::try_from(usize::from(base.port()) + index)
        .ok()
        .with_context(|| format!("worker {index}'s status port is past 65535 (base {base})"))?;
    Ok(SocketAddr::new(base.ip(), port))
}

/// Serves `server`'s status routes and `/metrics` (when the Prometheus
/// recorder is installed) over plain HTTP on `addr` until the process ends.
/// Returns the bound address.
pub async fn spawn_status(server: &herald::Server, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the worker's status routes"))?;
    let bound = listener.local_addr()?;
    let mut app: axum::Router = server.status_router();
    if let Some(prometheus) = herald::metrics::Prometheus::installed() {
        app = app.merge(prometheus.router());
    }
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the worker's status listener failed");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn round_trips_through_the_environment() {
        let w = WorkerEnv {
            index: 3,
            listen: "127.0.0.1:8123".parse().unwrap(),
            node_id: node_id("edge", 3),
            starts: 2,
        };
        assert_eq!(w.node_id, "edge-w3");
        let env: HashMap<&str, String> = w.vars().into_iter().collect();
        let back = WorkerEnv::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(back, Some(w));
        assert_eq!(WorkerEnv::from_lookup(|_| None).unwrap(), None);
    }

    #[test]
    fn status_ports_follow_the_index() {
        let base: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        assert_eq!(status_addr(base, 0).unwrap().port(), 9100);
        assert_eq!(status_addr(base, 3).unwrap().port(), 9103);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(status_addr(any, 5).unwrap(), any);
        let top: SocketAddr = "127.0.0.1:65535".parse().unwrap();
        assert!(status_addr(top, 1).is_err());
    }

    #[test]
    fn a_partial_environment_is_an_error() {
        let err = WorkerEnv::from_lookup(|k| (k == ENV_INDEX).then(|| "1".to_owned()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(ENV_LISTEN), "{err}");
        let err = WorkerEnv::from_lookup(|k| match k {
            ENV_INDEX => Some("one".to_owned()),
            _ => Some("x".to_owned()),
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("not an index"), "{err}");
    }
}
