//! The manager's inputs: what each command of the broker handle, each
//! event of a connection or of the publish path, and each timer does to
//! the state. Nothing here talks to the network; every input ends by
//! marking channels dirty for reconciliation.

use std::sync::Arc;

use redis::ServerErrorKind;
use tokio::time::Instant;

use super::live::Cmd;
use super::nodes::NodeState;
use super::{Chan, Command, Event, MAX_REDIRECTS, Manager, RETRY_DELAY, Routing};
use crate::cluster::slots::key_slot;
use crate::connection::{NodeAddr, Reply};
use crate::sharded::shard_index;

/// What one reply did to a connection's truth.
enum Outcome {
    Nothing,
    Dirty(Arc<str>),
    /// The server dropped the subscription by itself.
    Dropped(Arc<str>),
    Refused(Arc<str>, redis::ServerError),
    Desync(String),
}

impl Manager {
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Subscribe {
                channel,
                herald,
                done,
            } => {
                let slot = key_slot(channel.as_bytes());
                let shard = match &self.routing {
                    Routing::Hashed(servers) => shard_index(&herald, servers.len()),
                    Routing::Cluster { .. } => 0,
                };
                let by_slot = &mut self.by_slot;
                let chan = self.channels.entry(channel.clone()).or_insert_with(|| {
                    by_slot.entry(slot).or_default().insert(channel.clone());
                    Chan {
                        herald,
                        wanted: false,
                        slot,
                        shard,
                        subscribers: Vec::new(),
                        unsubscribers: Vec::new(),
                        redirects: 0,
                        confirmed_once: false,
                        refused: false,
                        resync: false,
                    }
                });
                chan.wanted = true;
                chan.subscribers.push(done);
                self.dirty.insert(channel);
            }
            Command::Unsubscribe { channel, done } => match self.channels.get_mut(&channel) {
                Some(chan) => {
                    chan.wanted = false;
                    chan.subscribers.clear();
                    chan.unsubscribers.push(done);
                    // A later subscribe is the registry's first one again:
                    // nothing of this one is owed a resync.
                    chan.confirmed_once = false;
                    chan.resync = false;
                    self.dirty.insert(channel);
                }
                None => {
                    let _ = done.send(());
                }
            },
            Command::Abandon { channel } => {
                if let Some(chan) = self.channels.get_mut(&channel) {
                    chan.wanted = false;
                    chan.subscribers.clear();
                    chan.confirmed_once = false;
                    chan.resync = false;
                    self.dirty.insert(channel);
                }
            }
            Command::Shutdown { .. } => unreachable!("handled by run"),
        }
    }

    pub(super) fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected {
                addr,
                generation,
                conn,
            } => self.on_connected(addr, generation, conn),
            Event::ConnectFailed {
                addr,
                generation,
                error,
            } => self.on_connect_failed(addr, generation, error),
            Event::Reply {
                addr,
                generation,
                reply,
            } => self.on_reply(addr, generation, reply),
            Event::Closed {
                addr,
                generation,
                error,
            } => {
                if self.live_gen(&addr) == Some(generation) {
                    tracing::warn!(redis = %addr, error = %error, "redis subscriber connection lost");
                    self.shared
                        .set_error(format!("connection to {addr} lost: {error}"));
                    self.drop_connection(&addr, false);
                }
            }
            Event::Topology { started, result } => self.on_topology(started, result),
            Event::Redirect { slot, addr } => self.redirect(slot, &addr),
            Event::Suspect { addr } => {
                if self.is_cluster() {
                    tracing::debug!(redis = %addr, "publish failed at the connection level");
                    self.refresh.requested = true;
                }
            }
        }
    }

    pub(super) fn on_timer(&mut self) {
        let now = Instant::now();
        if now >= self.next_health {
            self.health_check(now);
            self.next_health = now + self.shared.options.health_check_interval;
        }
        if let Some(at) = self.deferred_until
            && now >= at
        {
            self.deferred_until = None;
            self.dirty.extend(self.deferred.drain());
        }
    }

    pub(super) fn on_reply(&mut self, addr: NodeAddr, generation: u64, reply: Reply) {
        let Some(node) = self.nodes.get_mut(&addr) else {
            return;
        };
        let NodeState::Live(live) = &mut node.state else {
            return;
        };
        if live.generation != generation {
            return;
        }
        live.last_progress = Instant::now();
        let outcome = match reply {
            Reply::Subscribed(ch) => match live.fifo.front() {
                Some(Cmd::Sub(c)) if *c == ch => {
                    live.fifo.pop_front();
                    live.subscribed.insert(ch.clone());
                    live.settle(&ch);
                    Outcome::Dirty(ch)
                }
                _ => Outcome::Desync(format!("unexpected subscribe confirmation for {ch}")),
            },
            Reply::Unsubscribed(ch) => match live.fifo.front() {
                Some(Cmd::Unsub(c)) if *c == ch => {
                    live.fifo.pop_front();
                    live.subscribed.remove(&ch);
                    live.settle(&ch);
                    Outcome::Dirty(ch)
                }
                // Not an answer: the server dropped the subscription by
                // itself (slot migrated away, primary demoted).
                _ => {
                    let was = live.subscribed.remove(&ch);
                    if !live.inflight.contains_key(&ch) {
                        live.effective.remove(&ch);
                    }
                    if was {
                        Outcome::Dropped(ch)
                    } else {
                        Outcome::Dirty(ch)
                    }
                }
            },
            Reply::Pong => match live.fifo.front() {
                Some(Cmd::Ping) => {
                    live.fifo.pop_front();
                    Outcome::Nothing
                }
                _ => Outcome::Desync("unexpected PONG".into()),
            },
            Reply::Error(e) => match live.fifo.pop_front() {
                Some(Cmd::Sub(ch)) => {
                    live.settle(&ch);
                    Outcome::Refused(ch, e)
                }
                Some(Cmd::Unsub(ch)) => {
                    // Refused (e.g. MOVED: the slot already left, and the
                    // server dropped the subscription with it).
                    live.subscribed.remove(&ch);
                    live.settle(&ch);
                    Outcome::Dirty(ch)
                }
                Some(Cmd::Ping) => Outcome::Nothing,
                None => Outcome::Desync(format!("unsolicited error: {e}")),
            },
            Reply::Unexpected(what) => Outcome::Desync(format!("unexpected reply: {what}")),
        };
        match outcome {
            Outcome::Nothing => {}
            Outcome::Dirty(ch) => {
                self.dirty.insert(ch);
            }
            Outcome::Dropped(ch) => {
                tracing::debug!(redis = %addr, channel = %ch, "redis dropped a subscription");
                *self.dropped.entry(addr.clone()).or_default() += 1;
                if self.is_cluster() {
                    // The server gave the slot up (migrated away, or demoted
                    // to replica). Do not subscribe there again on the old
                    // map: a replica *accepts* SSUBSCRIBE for its primary's
                    // slots, and the later move to the real primary would
                    // briefly deliver twice.
                    if let Some(chan) = self.channels.get(&ch) {
                        self.disowned.entry(addr).or_default().insert(chan.slot);
                    }
                    self.refresh.requested = true;
                    self.refresh.floor = Some(Instant::now());
                }
                self.dirty.insert(ch);
            }
            Outcome::Refused(ch, e) => self.on_refused(&addr, ch, e),
            Outcome::Desync(why) => {
                tracing::error!(redis = %addr, reason = %why, "redis subscriber connection out of sync; reconnecting");
                self.drop_connection(&addr, true);
            }
        }
    }

    pub(super) fn on_refused(&mut self, addr: &NodeAddr, ch: Arc<str>, e: redis::ServerError) {
        if e.kind() == Some(ServerErrorKind::Moved)
            && let Some((slot, to)) = parse_moved(e.details())
        {
            let redirects = match self.channels.get_mut(&ch) {
                Some(chan) => {
                    chan.redirects += 1;
                    chan.redirects
                }
                None => 0,
            };
            tracing::debug!(redis = %addr, channel = %ch, slot, to = %to, "subscription redirected");
            if redirects > MAX_REDIRECTS {
                self.defer(ch.clone());
            } else {
                self.redirect(slot, &to);
            }
        } else {
            let again = self
                .channels
                .get_mut(&ch)
                .is_some_and(|c| std::mem::replace(&mut c.refused, true));
            if again {
                tracing::debug!(redis = %addr, channel = %ch, error = %e, "redis refused a subscription again");
            } else {
                tracing::warn!(redis = %addr, channel = %ch, error = %e, "redis refused a subscription; retrying");
            }
            self.shared
                .set_error(format!("{addr} refused to subscribe {ch}: {e}"));
            self.defer(ch.clone());
            if self.is_cluster() {
                self.refresh.requested = true;
            }
        }
        self.dirty.insert(ch);
    }

    pub(super) fn defer(&mut self, ch: Arc<str>) {
        self.deferred.insert(ch);
        if self.deferred_until.is_none() {
            self.deferred_until = Some(Instant::now() + RETRY_DELAY);
        }
    }
}

/// `"<slot> <host>:<port>"` of a `MOVED` error.
fn parse_moved(details: Option<&str>) -> Option<(u16, NodeAddr)> {
    let mut parts = details?.split_ascii_whitespace();
    let slot = parts.next()?.parse().ok()?;
    let addr = NodeAddr::parse(parts.next()?)?;
    Some((slot, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_details() {
        let (slot, addr) = parse_moved(Some("3999 127.0.0.1:6381")).unwrap();
        assert_eq!(slot, 3999);
        assert_eq!(addr.to_string(), "127.0.0.1:6381");
        assert!(parse_moved(Some("garbage")).is_none());
        assert!(parse_moved(None).is_none());
    }
}
