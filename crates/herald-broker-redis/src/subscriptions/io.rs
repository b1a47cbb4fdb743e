//! The manager's only way to the network: opening a subscriber connection
//! and loading the slot map.
//!
//! Both run as tasks whose outcome comes back as an [`Event`], so the
//! manager itself never awaits anything but its inputs. The trait is the
//! seam the unit tests use: a fake records what was asked and the test
//! answers with events of its own (fake connections included), so the
//! whole reconciliation logic runs without a socket.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Event;
use crate::cluster::topology;
use crate::connection::{self, NodeAddr};
use crate::shared::Shared;

/// What the manager asks of the network.
pub(crate) trait Io: Send {
    /// Opens a subscriber connection to `addr`; report
    /// [`Event::Connected`] or [`Event::ConnectFailed`] with `generation`.
    fn connect(&self, addr: NodeAddr, generation: u64);

    /// Loads the slot map from the first of `candidates` that answers;
    /// report [`Event::Topology`] with `started`.
    fn load_topology(&self, candidates: Vec<NodeAddr>, started: Instant);
}

/// The real network: tasks on the current runtime.
pub(crate) struct NetworkIo {
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
}

impl NetworkIo {
    /// Reports to `events`; connections deliver through `shared`.
    pub(crate) fn new(shared: Arc<Shared>, events: mpsc::UnboundedSender<Event>) -> Self {
        Self { shared, events }
    }
}

impl Io for NetworkIo {
    fn connect(&self, addr: NodeAddr, generation: u64) {
        let shared = self.shared.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let auth = shared.pool.auth_for(&addr);
            let timeout = shared.options.connect_timeout;
            let event = match connection::open(
                addr.clone(),
                generation,
                &auth,
                timeout,
                shared.clone(),
                events.clone(),
            )
            .await
            {
                Ok(conn) => Event::Connected {
                    addr,
                    generation,
                    conn,
                },
                Err(error) => Event::ConnectFailed {
                    addr,
                    generation,
                    error,
                },
            };
            let _ = events.send(event);
        });
    }

    fn load_topology(&self, candidates: Vec<NodeAddr>, started: Instant) {
        let shared = self.shared.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let timeout = shared.options.request_timeout;
            let result = topology::fetch(&shared.pool, &candidates, timeout).await;
            let _ = events.send(Event::Topology { started, result });
        });
    }
}
