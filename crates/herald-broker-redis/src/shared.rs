//! State shared between the broker handle, the subscription manager, the
//! connection readers and the publish path.
//!
//! Kept apart so that the hot paths (a reader delivering a message, a
//! `publish` call) read it without going through the manager task.

use std::sync::{Arc, OnceLock};

use herald::BrokerSink;
use parking_lot::{Mutex, RwLock};

use crate::cluster::topology::Topology;
use crate::options::RedisOptions;
use crate::publisher::Pool;
use crate::telemetry::Telemetry;

pub(crate) struct Shared {
    /// Prefix of every Redis channel name.
    pub(crate) prefix: String,
    pub(crate) options: RedisOptions,
    /// The node's registry, set by `Broker::start`.
    pub(crate) sink: OnceLock<BrokerSink>,
    pub(crate) telemetry: Telemetry,
    /// Publishing connections (and, for Redis Cluster, topology queries).
    pub(crate) pool: Pool,
    /// Redis Cluster: the slot map, replaced by the manager after each
    /// refresh or redirect. Empty otherwise.
    pub(crate) topology: RwLock<Arc<Topology>>,
    /// The last connection error, quoted when a call times out.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn new(options: RedisOptions, pool: Pool, describe: String) -> Self {
        Self {
            prefix: options.prefix.clone(),
            options,
            sink: OnceLock::new(),
            telemetry: Telemetry::new(describe),
            pool,
            topology: RwLock::new(Arc::new(Topology::empty())),
            last_error: Mutex::new(None),
        }
    }

    pub(crate) fn set_error(&self, error: impl Into<String>) {
        *self.last_error.lock() = Some(error.into());
    }

    pub(crate) fn last_error(&self) -> String {
        self.last_error
            .lock()
            .clone()
            .unwrap_or_else(|| "no error recorded".to_owned())
    }

    pub(crate) fn topology(&self) -> Arc<Topology> {
        self.topology.read().clone()
    }
}
