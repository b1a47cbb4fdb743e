//! The machinery behind both public brokers: a subscription manager task,
//! the publish path, and the calls of the [`herald::Broker`] trait mapped
//! onto them with their time bounds.
//!
//! [`crate::RedisBroker`] and [`crate::RedisClusterBroker`] differ only in
//! their [`Routing`]; everything else (timeouts, error accounting, status)
//! lives here once. History ([`history`]) and presence ([`presence`]) are
//! built on the same two paths: the publish path (a publication with
//! history is a publication) and bounded requests ([`crate::routed`]).

mod history;
mod presence;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herald::{BrokerError, BrokerSink, BrokerStatus, Publication};
use redis::{ConnectionInfo, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::connection::NodeAddr;
use crate::keys;
use crate::options::RedisOptions;
use crate::publisher::Pool;
use crate::routed::{Executor, Request};
use crate::shared::Shared;
use crate::subscriptions::{Command, Manager, NetworkIo, Routing};
use crate::telemetry::RedisStats;

const NAME: &str = "redis";

pub(crate) fn error(message: impl Into<String>) -> BrokerError {
    BrokerError {
        broker: NAME,
        message: message.into(),
    }
}

/// A running broker: the manager task plus the publish path.
pub(crate) struct Engine {
    shared: Arc<Shared>,
    /// Every command but subscriptions goes through it.
    exec: Executor,
    commands: mpsc::UnboundedSender<Command>,
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
            exec: Executor::new(shared.clone(), routing, events),
            shared,
            commands,
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
        Arc::from(keys::redis_channel(&self.shared.prefix, channel))
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

    /// Publishes through Redis (see the crate docs): `PUBLISH`/`SPUBLISH`
    /// of the envelope on the channel's Redis name.
    pub(crate) async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        let name = keys::redis_channel(&self.shared.prefix, &publication.channel);
        let mut cmd = redis::cmd(self.exec.routing().flavor().publish());
        cmd.arg(&name).arg(publication.encode().as_ref());
        let request = Request::new(&name, &publication.channel, cmd);
        self.publish_request(&publication.channel, request)
            .await
            .map(|_| ())
    }

    /// The publish path, for plain publications and those with history:
    /// bounded by `publish_timeout`, failures counted and logged.
    async fn publish_request(&self, channel: &str, request: Request) -> Result<Value, BrokerError> {
        let limit = self.shared.options.publish_timeout;
        // The error, and its reason label for the metrics.
        let outcome = if self.closed.load(Ordering::Relaxed) {
            Err(("shut_down", "broker shut down".to_owned()))
        } else {
            let run = self.exec.execute(std::slice::from_ref(&request));
            match tokio::time::timeout(limit, run).await {
                Ok(mut results) => results
                    .pop()
                    .unwrap_or_else(|| Err("no reply".to_owned()))
                    .map_err(|e| ("error", e)),
                Err(_) => Err(("timeout", format!("not accepted within {limit:?}"))),
            }
        };
        outcome.map_err(|(reason, e)| {
            self.shared.telemetry.publish_failed(reason);
            if request.is_script() {
                self.shared.telemetry.script_failed();
            }
            tracing::debug!(channel, error = %e, "redis publish failed");
            error(format!("publish to {channel} failed: {e}"))
        })
    }

    /// Runs `requests` (reads and writes of history and presence) within
    /// `request_timeout`; fails when any of them failed, counting script
    /// failures.
    async fn call(&self, what: &str, requests: &[Request]) -> Result<Vec<Value>, BrokerError> {
        let limit = self.shared.options.request_timeout;
        let failed = |e: String| {
            if requests.iter().any(Request::is_script) {
                self.shared.telemetry.script_failed();
            }
            tracing::debug!(what, error = %e, "redis request failed");
            error(format!("{what} failed: {e}"))
        };
        if self.closed.load(Ordering::Relaxed) {
            return Err(failed("broker shut down".to_owned()));
        }
        let results = tokio::time::timeout(limit, self.exec.execute(requests))
            .await
            .map_err(|_| failed(format!("no reply within {limit:?}")))?;
        results
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)
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

/// The [`Broker`](herald::Broker) implementation of a type whose field
/// `engine` is an [`Engine`]: every call goes to the engine. Both public
/// brokers ([`crate::RedisBroker`], [`crate::RedisClusterBroker`]) are the
/// same machinery with another routing, so they share this one impl.
macro_rules! broker_via_engine {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl herald::Broker for $ty {
            fn name(&self) -> &'static str {
                "redis"
            }

            fn start(&self, sink: herald::BrokerSink) {
                self.engine.start(sink);
            }

            async fn subscribe(&self, channel: &str) -> Result<(), herald::BrokerError> {
                self.engine.subscribe(channel).await
            }

            async fn unsubscribe(&self, channel: &str) -> Result<(), herald::BrokerError> {
                self.engine.unsubscribe(channel).await
            }

            async fn publish(
                &self,
                publication: std::sync::Arc<herald::Publication>,
            ) -> Result<(), herald::BrokerError> {
                self.engine.publish(publication).await
            }

            async fn publish_with_history(
                &self,
                channel: &str,
                data: Option<Box<serde_json::value::RawValue>>,
                policy: &herald::broker::HistoryPolicy,
            ) -> Result<herald::broker::StreamPosition, herald::BrokerError> {
                self.engine
                    .publish_with_history(channel, data, policy)
                    .await
            }

            async fn history(
                &self,
                channel: &str,
                policy: &herald::broker::HistoryPolicy,
                query: &herald::broker::HistoryQuery,
            ) -> Result<herald::broker::HistoryPage, herald::BrokerError> {
                self.engine.history(channel, policy, query).await
            }

            async fn remove_history(
                &self,
                channel: &str,
                _policy: &herald::broker::HistoryPolicy,
            ) -> Result<(), herald::BrokerError> {
                self.engine.remove_history(channel).await
            }

            async fn presence_add(
                &self,
                records: &[herald::broker::PresenceRecord],
                ttl: std::time::Duration,
            ) -> Result<(), herald::BrokerError> {
                self.engine.presence_add(records, ttl).await
            }

            async fn presence_remove(
                &self,
                channel: &str,
                clients: &[std::sync::Arc<str>],
            ) -> Result<(), herald::BrokerError> {
                self.engine.presence_remove(channel, clients).await
            }

            async fn presence(
                &self,
                channel: &str,
            ) -> Result<
                std::collections::BTreeMap<String, herald::broker::ClientInfo>,
                herald::BrokerError,
            > {
                self.engine.presence(channel).await
            }

            async fn presence_stats(
                &self,
                channel: &str,
            ) -> Result<herald::broker::PresenceStats, herald::BrokerError> {
                self.engine.presence_stats(channel).await
            }

            fn status(&self) -> herald::BrokerStatus {
                self.engine.status()
            }

            async fn shutdown(&self) {
                self.engine.shutdown().await;
            }
        }
    };
}
pub(crate) use broker_via_engine;
