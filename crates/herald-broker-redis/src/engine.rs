//! The machinery behind both public brokers: a subscription manager task,
//! the publish path, and the calls of the [`herald::Broker`] trait mapped
//! onto them with their time bounds.
//!
//! [`crate::RedisBroker`] and [`crate::RedisClusterBroker`] differ only in
//! their [`Routing`]; everything else (timeouts, error accounting, status)
//! lives here once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use herald::{BrokerError, BrokerSink, BrokerStatus, Publication};
use redis::{ConnectionInfo, ErrorKind, ServerErrorKind, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::slots::key_slot;
use crate::connection::NodeAddr;
use crate::options::RedisOptions;
use crate::publisher::{Pool, connection_broken};
use crate::sharded::shard_index;
use crate::shared::Shared;
use crate::subscriptions::{Command, Event, Manager, NetworkIo, Routing};
use crate::telemetry::RedisStats;

const NAME: &str = "redis";
/// `MOVED` replies followed by one publication.
const MAX_PUBLISH_REDIRECTS: usize = 3;

pub(crate) fn error(message: impl Into<String>) -> BrokerError {
    BrokerError {
        broker: NAME,
        message: message.into(),
    }
}

enum PublishError {
    Moved(NodeAddr),
    Failed(String),
}

/// A running broker: the manager task plus the publish path.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    routing: Routing,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedSender<Event>,
    closed: AtomicBool,
}

impl Engine {
    /// Starts the manager and waits (at most `connect_timeout`, twice that
    /// for a cluster, which needs its slot map first) until it is up.
    pub(crate) async fn connect(
        routing: Routing,
        template: ConnectionInfo,
        known: HashMap<NodeAddr, ConnectionInfo>,
        options: RedisOptions,
        describe: String,
    ) -> Result<Self, BrokerError> {
        let pool = Pool::new(
            template,
            known,
            options.connect_timeout,
            options.publish_timeout,
        );
        let wait = match routing {
            Routing::Hashed(_) => options.connect_timeout,
            Routing::Cluster { .. } => options.connect_timeout * 2,
        };
        let shared = Arc::new(Shared::new(options, pool, describe));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let manager = Manager::new(
            shared.clone(),
            routing.clone(),
            commands_rx,
            events_rx,
            Box::new(NetworkIo::new(shared.clone(), events.clone())),
        );
        tokio::spawn(manager.run());
        let engine = Self {
            shared,
            routing,
            commands,
            events,
            closed: AtomicBool::new(false),
        };
        let mut status = engine.watch_status();
        let up = tokio::time::timeout(wait, status.wait_for(|s| *s == BrokerStatus::Up)).await;
        if !matches!(up, Ok(Ok(_))) {
            let why = engine.shared.last_error();
            engine.shutdown().await;
            return Err(error(format!(
                "{} not reachable within {wait:?}: {why}",
                engine.shared.telemetry.describe
            )));
        }
        Ok(engine)
    }

    pub(crate) fn start(&self, sink: BrokerSink) {
        let _ = self.shared.sink.set(sink);
    }

    fn redis_channel(&self, channel: &str) -> Arc<str> {
        Arc::from(format!("{}{channel}", self.shared.prefix))
    }

    pub(crate) async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let name = self.redis_channel(channel);
        let (done, confirmed) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                channel: name.clone(),
                herald: Arc::from(channel),
                done,
            })
            .map_err(|_| error("broker shut down"))?;
        let limit = self.shared.options.request_timeout;
        match tokio::time::timeout(limit, confirmed).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(error("broker shut down")),
            Err(_) => {
                // Calls for one channel never overlap, so this reaches the
                // manager before any later call for the same channel.
                let _ = self.commands.send(Command::Abandon { channel: name });
                Err(error(format!(
                    "subscription to {channel} not confirmed within {limit:?} ({})",
                    self.shared.last_error()
                )))
            }
        }
    }

    pub(crate) async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let (done, finished) = oneshot::channel();
        if self
            .commands
            .send(Command::Unsubscribe {
                channel: self.redis_channel(channel),
                done,
            })
            .is_err()
        {
            return Ok(());
        }
        let limit = self.shared.options.request_timeout;
        if tokio::time::timeout(limit, finished).await.is_err() {
            // The manager no longer wants the channel and finishes the
            // unsubscription when it can; the registry drops anything that
            // still arrives meanwhile.
            tracing::warn!(channel, timeout = ?limit, "redis unsubscribe not confirmed in time");
        }
        Ok(())
    }

    pub(crate) async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        let limit = self.shared.options.publish_timeout;
        let outcome = if self.closed.load(Ordering::Relaxed) {
            Err("broker shut down".to_owned())
        } else {
            let channel = format!("{}{}", self.shared.prefix, publication.channel);
            match tokio::time::timeout(limit, self.publish_once(&channel, &publication)).await {
                Ok(result) => result,
                Err(_) => Err(format!("not accepted within {limit:?}")),
            }
        };
        outcome.map_err(|e| {
            self.shared.telemetry.publish_failed();
            tracing::debug!(channel = %publication.channel, error = %e, "redis publish failed");
            error(format!("publish to {} failed: {e}", publication.channel))
        })
    }

    async fn publish_once(&self, channel: &str, publication: &Publication) -> Result<(), String> {
        let envelope = publication.encode();
        match &self.routing {
            Routing::Hashed(servers) => {
                let addr = &servers[shard_index(&publication.channel, servers.len())];
                match self.send(addr, channel, &envelope).await {
                    Ok(()) => Ok(()),
                    Err(PublishError::Failed(e)) => Err(e),
                    Err(PublishError::Moved(to)) => Err(format!("unexpected MOVED to {to}")),
                }
            }
            Routing::Cluster { .. } => {
                let slot = key_slot(channel.as_bytes());
                let mut addr = self
                    .shared
                    .topology()
                    .owner(slot)
                    .cloned()
                    .ok_or_else(|| format!("no known primary serves slot {slot}"))?;
                for _ in 0..=MAX_PUBLISH_REDIRECTS {
                    match self.send(&addr, channel, &envelope).await {
                        Ok(()) => return Ok(()),
                        Err(PublishError::Moved(to)) => {
                            let _ = self.events.send(Event::Redirect {
                                slot,
                                addr: to.clone(),
                            });
                            addr = to;
                        }
                        Err(PublishError::Failed(e)) => return Err(e),
                    }
                }
                Err(format!("slot {slot}: too many redirects"))
            }
        }
    }

    async fn send(
        &self,
        addr: &NodeAddr,
        channel: &str,
        frame: &Bytes,
    ) -> Result<(), PublishError> {
        let mut conn = self
            .shared
            .pool
            .get(addr)
            .await
            .map_err(PublishError::Failed)?;
        let result: redis::RedisResult<Value> = redis::cmd(self.routing.flavor().publish())
            .arg(channel)
            .arg(frame.as_ref())
            .query_async(&mut conn)
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if e.kind() == ErrorKind::Server(ServerErrorKind::Moved)
                    && let Some(to) = e.redirect_node().and_then(|(a, _)| NodeAddr::parse(a))
                {
                    return Err(PublishError::Moved(to));
                }
                if connection_broken(&e) {
                    self.shared.pool.invalidate(addr);
                    let _ = self.events.send(Event::Suspect { addr: addr.clone() });
                }
                Err(PublishError::Failed(format!("{addr}: {e}")))
            }
        }
    }

    pub(crate) fn status(&self) -> BrokerStatus {
        self.shared.telemetry.status()
    }

    pub(crate) fn watch_status(&self) -> watch::Receiver<BrokerStatus> {
        self.shared.telemetry.watch_status()
    }

    pub(crate) fn stats(&self) -> RedisStats {
        self.shared.telemetry.stats()
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    pub(crate) async fn shutdown(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).is_ok() {
            let _ = tokio::time::timeout(self.shared.options.request_timeout, finished).await;
        }
        self.shared.pool.clear();
    }
}
