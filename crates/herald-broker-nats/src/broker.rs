//! [`NatsBroker`]: the [`Broker`] implementation. Channel subscriptions
//! and plain publications go over core NATS here; history and presence are
//! delegated to [`crate::history`] and [`crate::presence`] (JetStream), the
//! background tasks live in [`crate::tasks`] and the state they share with
//! the broker in [`crate::shared`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::{ConnectOptions, jetstream};
use async_trait::async_trait;
use herald::broker::{
    ClientInfo, HistoryPage, HistoryPolicy, HistoryQuery, PresenceRecord, StreamPosition,
};
use herald::{Broker, BrokerError, BrokerSink, BrokerStatus, Publication};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::{NAME, error};
use crate::history::History;
use crate::options::{NatsOptions, redact};
use crate::presence::Presence;
use crate::shared::{Counters, NatsStats, Shared, add, count_publish_error, set_up_gauge};
use crate::subject::SubjectMap;
use crate::tasks::{ChannelTask, confirm_writes, forward, monitor, read_round_trips};

/// A [`Broker`] over core NATS: one subject per channel, one NATS
/// subscription per channel this node has local subscribers for.
///
/// See the [crate documentation](crate) for the subject mapping, the
/// behaviour during outages and the metrics.
pub struct NatsBroker {
    shared: Arc<Shared>,
    channels: Mutex<HashMap<Arc<str>, ChannelTask>>,
    history: History,
    presence: Presence,
}

impl std::fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBroker")
            .field("prefix", &self.shared.options.prefix)
            .field("status", &*self.shared.status.borrow())
            .field("channels", &self.channels.lock().len())
            .finish()
    }
}

impl NatsBroker {
    /// Connects to NATS.
    ///
    /// `url` is one server URL or several separated by commas
    /// (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`; `tls://` for TLS;
    /// credentials as `nats://user:pass@host:4222`). Fails when no server
    /// answers now; once connected, the broker reconnects by itself forever.
    pub async fn connect(url: &str, options: NatsOptions) -> Result<NatsBroker, BrokerError> {
        let subjects = SubjectMap::new(&options.prefix, options.max_subject_len).map_err(error)?;
        let servers = crate::options::split_servers(url);
        if servers.is_empty() {
            return Err(error("no NATS server URL given"));
        }
        let shown: Vec<String> = servers.iter().map(|s| redact(s)).collect();

        let (events_tx, events) = mpsc::unbounded_channel();
        let delays = options.clone();
        let client = ConnectOptions::new()
            .name(&options.name)
            .connection_timeout(options.connection_timeout)
            .ping_interval(options.ping_interval)
            .client_capacity(options.client_capacity)
            .subscription_capacity(options.subscription_capacity)
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| delays.reconnect_delay(attempt))
            .event_callback(move |event| {
                let _ = events_tx.send(event);
                std::future::ready(())
            })
            .connect(servers)
            .await
            .map_err(|e| error(format!("cannot connect to {}: {e}", shown.join(","))))?;

        let id = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let sync_subject = subjects.internal("sync", &id);
        let sync = client
            .subscribe(sync_subject.clone())
            .await
            .map_err(|e| error(format!("cannot subscribe to {sync_subject}: {e}")))?;
        let (status, _) = watch::channel(BrokerStatus::Up);
        let js = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        let bucket = subjects.presence_bucket();
        let shared = Arc::new(Shared {
            client_stats: client.statistics(),
            client,
            js,
            options,
            subjects,
            sink: OnceLock::new(),
            status,
            down_since: Mutex::new(None),
            sync_subject,
            next_token: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
            confirm: Notify::new(),
            confirmed: AtomicU64::new(0),
            counters: Counters::default(),
            cancel: CancellationToken::new(),
        });
        tokio::spawn(read_round_trips(shared.clone(), sync));
        tokio::spawn(monitor(shared.clone(), events));
        tokio::spawn(confirm_writes(shared.clone()));

        if let Err(e) = shared.confirmed_round_trip().await {
            shared.cancel.cancel();
            return Err(error(format!("NATS at {}: {e}", shown.join(","))));
        }
        set_up_gauge(true);
        tracing::info!(
            broker = NAME,
            servers = %shown.join(","),
            prefix = %shared.options.prefix,
            "connected to NATS"
        );
        Ok(NatsBroker {
            shared,
            channels: Mutex::new(HashMap::new()),
            history: History::default(),
            presence: Presence::new(bucket),
        })
    }

    /// Counts of what the broker did so far.
    pub fn stats(&self) -> NatsStats {
        self.shared.stats()
    }

    /// The broker's status, as a watch that changes on every transition
    /// (for readiness probes, and for tests that wait on it).
    pub fn status_watch(&self) -> watch::Receiver<BrokerStatus> {
        self.shared.status.subscribe()
    }

    /// The subject that carries `channel` (see [`crate::subject`]).
    pub fn subject_for(&self, channel: &str) -> String {
        self.shared.subjects.channel(channel)
    }

    /// Number of channels this node is subscribed to on NATS.
    pub fn channel_count(&self) -> usize {
        self.channels.lock().len()
    }

    /// The JetStream stream that keeps the history of `namespace`'s
    /// channels (one per namespace and prefix, see the [crate documentation](crate)).
    pub fn history_stream(&self, namespace: &str) -> String {
        self.shared.subjects.stream_name(namespace)
    }

    /// The JetStream KV bucket that keeps presence (one per prefix).
    pub fn presence_bucket(&self) -> &str {
        self.presence.bucket()
    }

    /// Whether this node is subscribed to `channel` on NATS.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.channels.lock().contains_key(channel)
    }
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

#[async_trait]
impl Broker for NatsBroker {
    fn name(&self) -> &'static str {
        NAME
    }

    fn start(&self, sink: BrokerSink) {
        let _ = self.shared.sink.set(sink);
    }

    async fn subscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let shared = &self.shared;
        if self.channels.lock().contains_key(channel) {
            return Ok(());
        }
        let sink = shared
            .sink
            .get()
            .cloned()
            .ok_or_else(|| error("broker used before start"))?;
        let subject = shared.subjects.channel(channel);
        let subscriber = match tokio::time::timeout(
            shared.options.subscribe_timeout,
            shared.client.subscribe(subject.clone()),
        )
        .await
        {
            Ok(Ok(subscriber)) => subscriber,
            Ok(Err(e)) => return Err(error(format!("cannot subscribe to {channel}: {e}"))),
            Err(_) => {
                return Err(error(format!(
                    "cannot subscribe to {channel}: the NATS client is overloaded"
                )));
            }
        };
        let name: Arc<str> = Arc::from(channel);
        let stop = shared.cancel.child_token();
        let task = ChannelTask {
            task: tokio::spawn(forward(
                shared.clone(),
                sink,
                name.clone(),
                subscriber,
                stop.clone(),
            )),
            stop,
        };
        if shared.is_up() {
            // Return once the server has the subscription: a publication
            // made anywhere after this returns reaches this node. If the
            // connection breaks meanwhile, the client re-sends the
            // subscription on reconnect, before the status turns `Up` again.
            let mut status = shared.status.subscribe();
            let confirmed = tokio::select! {
                r = shared.confirmed_round_trip() => r,
                _ = async { status.wait_for(|s| *s == BrokerStatus::Down).await.map(|_| ()) } => Ok(()),
            };
            if let Err(e) = confirmed {
                task.stop().await;
                return Err(error(format!("cannot subscribe to {channel}: {e}")));
            }
        }
        self.channels.lock().insert(name, task);
        tracing::trace!(channel, subject, "subscribed on NATS");
        Ok(())
    }

    async fn unsubscribe(&self, channel: &str) -> Result<(), BrokerError> {
        let task = self.channels.lock().remove(channel);
        if let Some(task) = task {
            task.stop().await;
        }
        Ok(())
    }

    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        let shared = &self.shared;
        if !shared.is_up() {
            return shared.publish_while_down(publication);
        }
        let subject = shared.subjects.channel(&publication.channel);
        let sent = tokio::time::timeout(
            shared.options.publish_timeout,
            shared.client.publish(subject, publication.encode()),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                add(&shared.counters.published, 1);
                shared.confirm.notify_one();
                Ok(())
            }
            Ok(Err(e)) => {
                add(&shared.counters.publish_failed, 1);
                count_publish_error("rejected", 1);
                Err(error(format!(
                    "cannot publish on {}: {e}",
                    publication.channel
                )))
            }
            Err(_) => {
                add(&shared.counters.publish_failed, 1);
                count_publish_error("timeout", 1);
                Err(error(format!(
                    "cannot publish on {}: the NATS client did not take it within {:?}",
                    publication.channel, shared.options.publish_timeout
                )))
            }
        }
    }

    async fn publish_with_history(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
    ) -> Result<StreamPosition, BrokerError> {
        self.history
            .publish(&self.shared, channel, data, policy)
            .await
            .map_err(|e| e.on("publishing with history", channel))
    }

    async fn history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        self.history
            .read(&self.shared, channel, policy, query)
            .await
            .map_err(|e| e.on("reading history", channel))
    }

    async fn remove_history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
    ) -> Result<(), BrokerError> {
        self.history
            .remove(&self.shared, channel, policy)
            .await
            .map_err(|e| e.on("removing history", channel))
    }

    async fn presence_add(
        &self,
        records: &[PresenceRecord],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let channel = records.first().map_or("", |r| &*r.channel);
        self.presence
            .add(&self.shared, records, ttl)
            .await
            .map_err(|e| e.on("recording presence", channel))
    }

    async fn presence_remove(
        &self,
        channel: &str,
        clients: &[Arc<str>],
    ) -> Result<(), BrokerError> {
        self.presence
            .remove(&self.shared, channel, clients)
            .await
            .map_err(|e| e.on("removing presence", channel))
    }

    async fn presence(&self, channel: &str) -> Result<BTreeMap<String, ClientInfo>, BrokerError> {
        self.presence
            .list(&self.shared, channel)
            .await
            .map_err(|e| e.on("reading presence", channel))
    }

    fn status(&self) -> BrokerStatus {
        if self.shared.is_up() {
            BrokerStatus::Up
        } else {
            BrokerStatus::Down
        }
    }

    async fn shutdown(&self) {
        let shared = &self.shared;
        let tasks: Vec<ChannelTask> = self.channels.lock().drain().map(|(_, t)| t).collect();
        for task in tasks {
            task.stop().await;
        }
        shared.cancel.cancel();
        // Send what was published before the shutdown, then close.
        let grace = shared.options.subscribe_timeout;
        let _ = tokio::time::timeout(grace, shared.client.flush()).await;
        let _ = tokio::time::timeout(grace, shared.client.drain()).await;
        if shared
            .status
            .send_if_modified(|s| std::mem::replace(s, BrokerStatus::Down) == BrokerStatus::Up)
        {
            set_up_gauge(false);
        }
        tracing::info!(broker = NAME, "NATS broker closed");
    }
}
