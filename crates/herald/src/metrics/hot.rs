//! The metrics of the hot path, as handles resolved once per server.
//!
//! A facade call by name (`counter!("...")`) looks the series up in the
//! recorder's registry on every call (a hash, a shared read lock, a
//! reference count up and down); a resolved handle is one atomic add.
//! Every message in and every written batch out pays this, so the server
//! resolves these handles when it is built and keeps them.

use std::time::Instant;

use ::metrics::{Counter, counter};

use super::latency::{Batch, publish_write_latency};
use super::names::{BYTES_IN, BYTES_OUT, MESSAGES_IN, MESSAGES_OUT};

/// The hot-path counters of one server, bound to the recorder that was
/// installed when the server was built.
pub(crate) struct ServerMetrics {
    messages_in: Counter,
    bytes_in: Counter,
    messages_out: Counter,
    bytes_out: Counter,
}

impl std::fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerMetrics")
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Handles on the recorder installed now.
    pub(crate) fn new() -> Self {
        Self {
            messages_in: counter!(MESSAGES_IN),
            bytes_in: counter!(BYTES_IN),
            messages_out: counter!(MESSAGES_OUT),
            bytes_out: counter!(BYTES_OUT),
        }
    }

    /// A message of `bytes` payload bytes arrived.
    pub(crate) fn message_in(&self, bytes: usize) {
        self.messages_in.increment(1);
        self.bytes_in.increment(bytes as u64);
    }

    /// A batch was written: `frames` messages of `bytes` payload bytes in
    /// all, among them publications the node had at the instants
    /// `publications` yields.
    pub(crate) fn written(
        &self,
        frames: u64,
        bytes: u64,
        publications: impl Iterator<Item = Instant>,
    ) {
        if frames == 0 {
            return;
        }
        self.messages_out.increment(frames);
        self.bytes_out.increment(bytes);
        let mut batch = Batch::default();
        let mut now = None;
        for since in publications {
            let now = *now.get_or_insert_with(Instant::now);
            batch.add(now, since);
        }
        publish_write_latency().record(&batch);
    }
}
