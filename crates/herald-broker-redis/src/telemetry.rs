//! What the broker reports about itself: status, counters, logs.
//!
//! Operators need to see a lost Redis (readiness, alerts) and what it cost
//! (reconnections, publications that failed); tests need the same facts
//! without installing a global metrics recorder. Every event is therefore
//! counted twice: in Herald's metrics (`herald::metrics`, which names every
//! metric and exports through whatever recorder the application installs)
//! and in [`RedisStats`], readable from the broker.
//!
//! Recorded here, all with the label `broker="redis"`: `herald_broker_up`,
//! `herald_broker_reconnects_total`, `herald_broker_publish_errors_total`
//! (`reason`: `error`, `timeout`, `shut_down`),
//! `herald_broker_receive_errors_total` (`reason="invalid"`: a message that
//! is not a Herald publication), `herald_broker_topology_refreshes_total`
//! (Redis Cluster slot map reloads) and `herald_broker_script_errors_total`
//! (history and presence scripts that failed).

use std::sync::atomic::{AtomicU64, Ordering};

use herald::BrokerStatus;
use tokio::sync::watch;

/// The `broker` label, as `Broker::name` says.
const NAME: &str = "redis";

/// Counters of one broker since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Connections re-established after a loss.
    pub reconnects: u64,
    /// Publications that failed.
    pub publish_errors: u64,
    /// Received messages that were not a Herald publication (dropped).
    pub invalid_messages: u64,
    /// Redis Cluster slot map reloads.
    pub topology_refreshes: u64,
    /// Subscribe commands sent again for channels that had already been
    /// confirmed (after a lost connection, a failover, a slot migration; a
    /// redirected attempt counts again).
    pub resubscriptions: u64,
    /// History and presence scripts that failed (an error reply, no reply
    /// in time, or a reply that could not be read).
    pub script_errors: u64,
}

/// The live counters and status of one broker.
pub(crate) struct Telemetry {
    reconnects: AtomicU64,
    publish_errors: AtomicU64,
    invalid_messages: AtomicU64,
    topology_refreshes: AtomicU64,
    resubscriptions: AtomicU64,
    script_errors: AtomicU64,
    status: watch::Sender<BrokerStatus>,
    /// For logs: what this broker is connected to.
    pub(crate) describe: String,
}

impl Telemetry {
    pub(crate) fn new(describe: String) -> Self {
        Self {
            reconnects: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            invalid_messages: AtomicU64::new(0),
            topology_refreshes: AtomicU64::new(0),
            resubscriptions: AtomicU64::new(0),
            script_errors: AtomicU64::new(0),
            status: watch::Sender::new(BrokerStatus::Down),
            describe,
        }
    }

    pub(crate) fn status(&self) -> BrokerStatus {
        *self.status.borrow()
    }

    pub(crate) fn watch_status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.subscribe()
    }

    /// Records a status, logging and exporting transitions only.
    pub(crate) fn set_status(&self, status: BrokerStatus, why: &str) {
        let changed = self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
        if !changed {
            return;
        }
        match status {
            BrokerStatus::Up => {
                tracing::info!(broker = NAME, engine = %self.describe, "redis broker is up");
                herald::metrics::broker_up(NAME, true);
            }
            BrokerStatus::Down => {
                tracing::warn!(broker = NAME, engine = %self.describe, reason = why, "redis broker is down");
                herald::metrics::broker_up(NAME, false);
            }
        }
    }

    /// Down on purpose: logged quietly.
    pub(crate) fn shut_down(&self) {
        let was_up = self.status.send_replace(BrokerStatus::Down) == BrokerStatus::Up;
        if was_up {
            herald::metrics::broker_up(NAME, false);
        }
        tracing::debug!(broker = NAME, engine = %self.describe, "redis broker shut down");
    }

    pub(crate) fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        herald::metrics::broker_reconnected(NAME);
    }

    /// A publication failed, for `reason` (`error`, `timeout`, `shut_down`).
    pub(crate) fn publish_failed(&self, reason: &'static str) {
        self.publish_errors.fetch_add(1, Ordering::Relaxed);
        herald::metrics::broker_publish_errors(NAME, reason, 1);
    }

    pub(crate) fn invalid_message(&self) {
        self.invalid_messages.fetch_add(1, Ordering::Relaxed);
        herald::metrics::broker_receive_error(NAME, "invalid");
    }

    pub(crate) fn topology_refreshed(&self) {
        self.topology_refreshes.fetch_add(1, Ordering::Relaxed);
        herald::metrics::broker_topology_refreshed(NAME);
    }

    pub(crate) fn script_failed(&self) {
        self.script_errors.fetch_add(1, Ordering::Relaxed);
        herald::metrics::broker_script_error(NAME);
    }

    pub(crate) fn resubscribed(&self, n: u64) {
        self.resubscriptions.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> RedisStats {
        RedisStats {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            publish_errors: self.publish_errors.load(Ordering::Relaxed),
            invalid_messages: self.invalid_messages.load(Ordering::Relaxed),
            topology_refreshes: self.topology_refreshes.load(Ordering::Relaxed),
            resubscriptions: self.resubscriptions.load(Ordering::Relaxed),
            script_errors: self.script_errors.load(Ordering::Relaxed),
        }
    }
}
