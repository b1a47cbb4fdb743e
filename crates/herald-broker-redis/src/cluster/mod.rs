//! The broker over Redis Cluster, with sharded pub/sub.
//!
//! `SPUBLISH` and `SSUBSCRIBE` keep each channel's traffic on the shard that
//! owns its hash slot instead of broadcasting every message over the whole
//! cluster bus as classic pub/sub does. The price is that subscriptions
//! follow the slot: they move on failover and on slot migration, and the
//! server drops them (pushing `sunsubscribe`) when its slot leaves. Herald
//! follows them itself (the crate's internal `subscriptions` manager) with:
//!
//! * [`slots`]: the slot of a channel (CRC16, hash tags);
//! * `topology` (internal): the slot map (`CLUSTER SLOTS`), patched by `MOVED`;
//! * one subscriber connection per primary, managed by the subscription
//!   manager, and one publishing connection per primary.

pub mod slots;
pub(crate) mod topology;

use herald::{BrokerError, BrokerStatus};
use tokio::sync::watch;

use crate::engine::{Engine, error};
use crate::options::RedisOptions;
use crate::subscriptions::Routing;
use crate::telemetry::RedisStats;

/// A [`Broker`](herald::Broker) over Redis Cluster sharded pub/sub
/// (`redis+cluster://HOST:PORT[,HOST:PORT...]`).
///
/// Publications travel with `SPUBLISH` to the primary owning the channel's
/// slot (history scripts run there too: every key of a channel is in its
/// slot); each node keeps one subscriber connection per primary and
/// resubscribes every channel after a connection loss, a failover or a slot
/// migration, reporting a resync for each. Requires Redis 7.0 or later.
pub struct RedisClusterBroker {
    engine: Engine,
}

impl RedisClusterBroker {
    /// Connects through the seed nodes (`HOST:PORT` or
    /// `redis://[user:password@]HOST:PORT`; the credentials of the first seed
    /// are used for every node). Fails when no slot map covering every slot
    /// could be loaded and every primary reached within twice
    /// `options.connect_timeout`.
    pub async fn connect(seeds: &[String], options: RedisOptions) -> Result<Self, BrokerError> {
        if seeds.is_empty() {
            return Err(error("no Redis Cluster seed given"));
        }
        let mut addrs = Vec::new();
        let mut template = None;
        for seed in seeds {
            let url = if seed.contains("://") {
                seed.clone()
            } else {
                format!("redis://{seed}")
            };
            let (addr, info) = crate::parse_server_url(&url)?;
            template.get_or_insert(info);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        let describe = format!(
            "redis cluster {}",
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let engine = Engine::connect(
            Routing::Cluster { seeds: addrs },
            template.expect("at least one seed"),
            Default::default(),
            options,
            describe,
        )
        .await?;
        Ok(Self { engine })
    }

    /// The prefix of Redis channel names.
    pub fn prefix(&self) -> &str {
        self.engine.prefix()
    }

    /// Follows [`Broker::status`](herald::Broker::status) as it changes.
    pub fn watch_status(&self) -> watch::Receiver<BrokerStatus> {
        self.engine.watch_status()
    }

    /// Counters since the broker was created.
    pub fn stats(&self) -> RedisStats {
        self.engine.stats()
    }
}

crate::engine::broker_via_engine!(RedisClusterBroker);
