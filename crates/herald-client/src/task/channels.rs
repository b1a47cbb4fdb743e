//! Channel bookkeeping: who listens to which channel, where each channel's
//! subscription stands on the current connection, and what reaches its
//! streams.
//!
//! A channel is subscribed once on the server however many
//! [`crate::Subscription`]s the application holds; each is a listener with
//! its own bounded queue. A channel lives while it has a listener (or a
//! caller waiting for its first acknowledgement) and is unsubscribed when
//! the last one goes. Channels outlive connections: after every handshake
//! each one is subscribed again, with `recover` from the last position it
//! saw when its channel has history ([`Tracker`]), so its streams go on with
//! no gap and no duplicate, or with a [`StreamGap`] notice where a gap
//! cannot be avoided.
//!
//! A resubscribe refused with `BrokerError` (the server's broker is down for
//! a while) is retried on the reconnect schedule instead of ending the
//! streams; any other refusal ends them, as does a kick-out.

use std::collections::{HashMap, HashSet};

use herald_protocol::error::names;
use herald_protocol::ext::{self, StreamPosition, SubscribeStatus};
use herald_protocol::{Cid, Position, outbound};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::command::{SubscribeAck, SubscribeCommand};
use super::recovery::{Tracker, Verdict};
use super::{Cids, Effects, raw_to_error, raw_to_value};
use crate::backoff::Backoff;
use crate::config::ReconnectPolicy;
use crate::error::Error;
use crate::events::ClientEvent;
use crate::gap::StreamGap;
use crate::queue::QueueSender;
use crate::subscription::{Publication, SubItem, SubscriptionError};

struct Listener {
    id: u64,
    sink: QueueSender<SubItem>,
}

/// Where a channel's subscription stands on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not asked for on this connection (offline, or not sent yet).
    Idle,
    /// `#subscribe` sent with this call id.
    Subscribing(u64),
    Subscribed,
    /// Refused with a `BrokerError`: subscribe again at this instant.
    Retrying(Instant),
}

/// One subscribed (or subscribing) channel.
struct Channel {
    data: Option<Box<RawValue>>,
    phase: Phase,
    /// Acknowledged at least once: a later `BrokerError` is retried.
    acknowledged: bool,
    tracker: Tracker,
    retry: Backoff,
    listeners: Vec<Listener>,
    /// Callers of `subscribe` waiting for the first acknowledgement.
    waiters: Vec<SubscribeAck>,
}

impl Channel {
    fn prune(&mut self) {
        self.listeners.retain(|l| !l.sink.is_gone());
        self.waiters.retain(|w| !w.is_closed());
    }

    fn is_unused(&self) -> bool {
        self.listeners.is_empty() && self.waiters.is_empty()
    }

    /// Queues the gap on every stream (pinned: a slow consumer's queue drops
    /// publications before it drops this) and reports it as an event.
    fn report(&self, gap: StreamGap, fx: &mut Effects) {
        tracing::debug!(%gap, "publications lost");
        for l in &self.listeners {
            l.sink.push_pinned(SubItem::Gap(gap.clone()));
        }
        fx.events.push(ClientEvent::Gap(gap));
    }

    /// Ends every stream and resolves every waiter.
    fn end(
        self,
        last: Option<SubscriptionError>,
        waiter: impl Fn() -> Result<Option<StreamPosition>, Error>,
    ) {
        for l in self.listeners {
            match &last {
                Some(e) => l.sink.push_last(SubItem::End(e.clone())),
                None => l.sink.close(),
            }
        }
        for w in self.waiters {
            let _ = w.send(waiter());
        }
    }
}

/// Every channel of one client.
pub(crate) struct Channels {
    map: HashMap<String, Channel>,
    /// Call ids of the `#subscribe`s in flight, for their replies.
    in_flight: HashMap<u64, String>,
    /// The channels in [`Phase::Retrying`].
    retrying: HashSet<String>,
    policy: ReconnectPolicy,
}

impl Channels {
    /// No channels; refused resubscribes are retried on `policy`'s schedule.
    pub(crate) fn new(policy: ReconnectPolicy) -> Self {
        Self {
            map: HashMap::new(),
            in_flight: HashMap::new(),
            retrying: HashSet::new(),
            policy,
        }
    }

    /// Registers a listener; returns true when the channel is new (a
    /// `#subscribe` must be sent). `since` counts only for a new channel: a
    /// listener joining a subscribed channel starts at its live position.
    pub(crate) fn add_listener(&mut self, s: SubscribeCommand) -> bool {
        let SubscribeCommand {
            channel,
            data,
            since,
            id,
            sink,
            ack,
        } = s;
        let listener = Listener { id, sink };
        if let Some(ch) = self.map.get_mut(&channel) {
            ch.listeners.push(listener);
            if let Some(ack) = ack {
                if ch.phase == Phase::Subscribed {
                    let _ = ack.send(Ok(ch.tracker.position().cloned()));
                } else {
                    ch.waiters.push(ack);
                }
            }
            return false;
        }
        self.map.insert(
            channel,
            Channel {
                data,
                phase: Phase::Idle,
                acknowledged: false,
                tracker: Tracker::new(since),
                retry: Backoff::new(self.policy.clone()),
                listeners: vec![listener],
                waiters: ack.into_iter().collect(),
            },
        );
        true
    }

    /// Sends `#subscribe` for `name`, recovering from its last position.
    pub(crate) fn subscribe(&mut self, name: &str, cids: &mut Cids, fx: &mut Effects) {
        let Some(ch) = self.map.get_mut(name) else {
            return;
        };
        let cid = cids.next();
        if let Phase::Subscribing(old) = ch.phase {
            self.in_flight.remove(&old);
        }
        self.retrying.remove(name);
        ch.phase = Phase::Subscribing(cid);
        fx.frames.push(outbound::subscribe_request_recover(
            name,
            ch.data.as_deref(),
            ch.tracker.recover(),
            Some(&Cid::from(cid)),
        ));
        self.in_flight.insert(cid, name.to_owned());
    }

    /// After a handshake: subscribes again to every channel still listened to.
    pub(crate) fn resubscribe(&mut self, cids: &mut Cids, fx: &mut Effects) {
        self.map.retain(|_, ch| {
            ch.prune();
            !ch.is_unused()
        });
        let names: Vec<String> = self.map.keys().cloned().collect();
        for name in names {
            self.subscribe(&name, cids, fx);
        }
    }

    /// The connection is gone: nothing is subscribed on the server any more.
    pub(crate) fn connection_lost(&mut self) {
        for ch in self.map.values_mut() {
            ch.phase = Phase::Idle;
            ch.retry.reset();
        }
        self.in_flight.clear();
        self.retrying.clear();
    }

    /// Drops a channel: its streams end. With `online`, tells the server.
    pub(crate) fn remove(&mut self, name: &str, online: bool, fx: &mut Effects) {
        let Some(ch) = self.map.remove(name) else {
            return;
        };
        self.retrying.remove(name);
        let on_server = match ch.phase {
            Phase::Subscribing(cid) => {
                self.in_flight.remove(&cid);
                true
            }
            Phase::Subscribed => true,
            Phase::Idle | Phase::Retrying(_) => false,
        };
        if online && on_server {
            fx.frames.push(outbound::unsubscribe_request(name, None));
        }
        ch.end(None, || Ok(None));
    }

    /// A listener's stream was dropped; the channel goes with its last one.
    pub(crate) fn remove_listener(&mut self, name: &str, id: u64, online: bool, fx: &mut Effects) {
        let Some(ch) = self.map.get_mut(name) else {
            return;
        };
        ch.listeners.retain(|l| l.id != id);
        ch.prune();
        if ch.listeners.is_empty() {
            self.remove(name, online, fx);
        }
    }

    /// Drops the channels whose streams were all dropped (best-effort
    /// notices can be lost when the command queue is full).
    pub(crate) fn sweep(&mut self, fx: &mut Effects) {
        let unused: Vec<String> = self
            .map
            .iter_mut()
            .filter_map(|(name, ch)| {
                ch.prune();
                ch.is_unused().then(|| name.clone())
            })
            .collect();
        for name in unused {
            self.remove(&name, true, fx);
        }
    }

    /// A publication arrived: deliver it, drop it as a duplicate, or report
    /// a gap before it.
    pub(crate) fn deliver(
        &mut self,
        name: &str,
        data: Option<&RawValue>,
        position: Option<&Position<'_>>,
        fx: &mut Effects,
    ) {
        let Some(ch) = self.map.get_mut(name) else {
            return;
        };
        ch.listeners.retain(|l| !l.sink.is_gone());
        if ch.is_unused() {
            self.remove(name, true, fx);
            return;
        }
        match ch.tracker.on_publication(name, position) {
            Verdict::Duplicate => {
                tracing::trace!(channel = %name, ?position, "dropping a duplicate publication");
                return;
            }
            Verdict::AfterGap(gap) => ch.report(gap, fx),
            Verdict::Deliver => {}
        }
        let publication = Publication {
            channel: name.to_owned(),
            data: raw_to_value(data),
            position: position.map(Position::to_owned),
        };
        match ch.listeners.as_slice() {
            [] => {}
            [one] => {
                one.sink.push(SubItem::Publication(publication));
            }
            many => {
                for l in many {
                    l.sink.push(SubItem::Publication(publication.clone()));
                }
            }
        }
    }

    /// The reply to the request with call id `cid`. Returns false when that
    /// was not a subscribe (the reply belongs to someone else).
    pub(crate) fn on_reply(
        &mut self,
        cid: u64,
        data: Option<&RawValue>,
        error: Option<&RawValue>,
        now: Instant,
        fx: &mut Effects,
    ) -> bool {
        let Some(name) = self.in_flight.remove(&cid) else {
            return false;
        };
        let Some(ch) = self.map.get_mut(&name) else {
            return true;
        };
        if ch.phase != Phase::Subscribing(cid) {
            return true;
        }
        let Some(error) = error else {
            ch.phase = Phase::Subscribed;
            ch.acknowledged = true;
            ch.retry.reset();
            let status = data.and_then(|d| serde_json::from_str::<SubscribeStatus>(d.get()).ok());
            if let Some(gap) = ch.tracker.on_subscribed(&name, status.as_ref()) {
                ch.report(gap, fx);
            }
            let position = ch.tracker.position().cloned();
            for w in ch.waiters.drain(..) {
                let _ = w.send(Ok(position.clone()));
            }
            return true;
        };
        let payload = raw_to_error(error);
        if payload.name == names::BROKER && ch.acknowledged {
            let delay = ch.retry.next_delay();
            ch.phase = Phase::Retrying(now + delay);
            tracing::debug!(channel = %name, error = %payload, ?delay, "resubscribe refused; retrying");
            fx.events.push(ClientEvent::SubscribeRetrying {
                channel: name.clone(),
                error: payload,
                attempt: ch.retry.attempt(),
                delay,
            });
            self.retrying.insert(name);
            return true;
        }
        tracing::debug!(channel = %name, error = %payload, "subscription refused");
        if let Some(ch) = self.map.remove(&name) {
            let err = payload.clone();
            ch.end(Some(SubscriptionError::Rejected(payload.clone())), || {
                Err(Error::Remote(err.clone()))
            });
        }
        fx.events.push(ClientEvent::SubscribeFailed {
            channel: name,
            error: payload,
        });
        true
    }

    /// When the next refused resubscribe is due, if any.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.retrying
            .iter()
            .filter_map(|name| match self.map.get(name)?.phase {
                Phase::Retrying(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Subscribes again to the refused channels whose retry is due.
    pub(crate) fn retry_due(&mut self, now: Instant, cids: &mut Cids, fx: &mut Effects) {
        let due: Vec<String> = self
            .retrying
            .iter()
            .filter(|name| {
                self.map
                    .get(*name)
                    .is_none_or(|ch| matches!(ch.phase, Phase::Retrying(at) if at <= now))
            })
            .cloned()
            .collect();
        for name in due {
            self.retrying.remove(&name);
            self.subscribe(&name, cids, fx);
        }
    }

    /// The server removed the client from a channel: its streams end.
    pub(crate) fn kicked_out(&mut self, name: &str, message: Option<&RawValue>, fx: &mut Effects) {
        let Some(ch) = self.map.remove(name) else {
            return;
        };
        self.retrying.remove(name);
        if let Phase::Subscribing(cid) = ch.phase {
            self.in_flight.remove(&cid);
        }
        let message = message.map(|m| raw_to_value(Some(m)));
        ch.end(
            Some(SubscriptionError::KickedOut {
                message: message.clone(),
            }),
            || Ok(None),
        );
        fx.events.push(ClientEvent::KickedOut {
            channel: name.to_owned(),
            message,
        });
    }

    /// The server announced that publications on a channel were lost.
    pub(crate) fn unrecoverable(&mut self, push: ext::Unrecoverable, fx: &mut Effects) {
        let Some(ch) = self.map.get_mut(&push.channel) else {
            return;
        };
        let resume = StreamPosition::new(push.offset, push.epoch);
        let gap = ch.tracker.on_unrecoverable(&push.channel, resume);
        ch.report(gap, fx);
    }

    /// The client is closing: every stream ends, every waiter fails.
    pub(crate) fn shutdown(&mut self) {
        for (_, ch) in self.map.drain() {
            ch.end(None, || Err(Error::Closed));
        }
        self.in_flight.clear();
        self.retrying.clear();
    }

    /// The last known position of a channel's stream.
    #[cfg(test)]
    pub(crate) fn position(&self, name: &str) -> Option<&StreamPosition> {
        self.map.get(name)?.tracker.position()
    }

    /// Whether the client keeps `name`.
    #[cfg(test)]
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }
}

#[cfg(test)]
#[path = "channels_tests.rs"]
mod tests;
