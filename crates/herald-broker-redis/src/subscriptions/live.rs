//! One subscriber connection's truth, as the server confirmed it.
//!
//! The server answers a connection's commands in order, so the commands in
//! flight are a FIFO; what the connection *will* carry once they are
//! answered (the effective set) is what reconciliation compares against, so
//! a command is never sent twice while one is on its way. Kept apart from
//! the manager so that this bookkeeping reads (and is tested) on its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use crate::connection::{Flavor, SubConnection};

/// A command in flight on a subscriber connection.
pub(super) enum Cmd {
    /// `(S)SUBSCRIBE` of one channel.
    Sub(Arc<str>),
    /// `(S)UNSUBSCRIBE` of one channel.
    Unsub(Arc<str>),
    /// `PING` (health check).
    Ping,
}

/// A subscriber connection and what the server confirmed on it.
pub(super) struct Live {
    pub(super) generation: u64,
    pub(super) conn: SubConnection,
    pub(super) fifo: VecDeque<Cmd>,
    /// Last reply, or when the FIFO last became non-empty.
    pub(super) last_progress: Instant,
    pub(super) subscribed: HashSet<Arc<str>>,
    pub(super) effective: HashSet<Arc<str>>,
    pub(super) inflight: HashMap<Arc<str>, u32>,
}

impl Live {
    pub(super) fn new(generation: u64, conn: SubConnection) -> Self {
        Self {
            generation,
            conn,
            fifo: VecDeque::new(),
            last_progress: Instant::now(),
            subscribed: HashSet::new(),
            effective: HashSet::new(),
            inflight: HashMap::new(),
        }
    }

    pub(super) fn send(&mut self, flavor: Flavor, cmd: Cmd) {
        let packed = match &cmd {
            Cmd::Sub(ch) => {
                self.effective.insert(ch.clone());
                *self.inflight.entry(ch.clone()).or_default() += 1;
                redis::cmd(flavor.subscribe())
                    .arg(&**ch)
                    .get_packed_command()
            }
            Cmd::Unsub(ch) => {
                self.effective.remove(ch);
                *self.inflight.entry(ch.clone()).or_default() += 1;
                redis::cmd(flavor.unsubscribe())
                    .arg(&**ch)
                    .get_packed_command()
            }
            Cmd::Ping => redis::cmd("PING").get_packed_command(),
        };
        if self.fifo.is_empty() {
            self.last_progress = Instant::now();
        }
        self.fifo.push_back(cmd);
        self.conn.send(packed);
    }

    /// One command for `ch` was answered.
    pub(super) fn settle(&mut self, ch: &Arc<str>) {
        if let Some(n) = self.inflight.get_mut(ch) {
            *n -= 1;
            if *n == 0 {
                self.inflight.remove(ch);
                if self.subscribed.contains(ch) {
                    self.effective.insert(ch.clone());
                } else {
                    self.effective.remove(ch);
                }
            }
        }
    }

    /// Subscribed, with nothing in flight that could change it.
    pub(super) fn confirmed(&self, ch: &str) -> bool {
        self.subscribed.contains(ch) && !self.inflight.contains_key(ch)
    }

    pub(super) fn holds(&self, ch: &str) -> bool {
        self.subscribed.contains(ch)
            || self.effective.contains(ch)
            || self.inflight.contains_key(ch)
    }

    pub(super) fn held(&self) -> impl Iterator<Item = &Arc<str>> {
        self.subscribed
            .iter()
            .chain(self.effective.iter())
            .chain(self.inflight.keys())
    }

    pub(super) fn is_idle(&self) -> bool {
        self.fifo.is_empty() && self.subscribed.is_empty() && self.effective.is_empty()
    }
}
