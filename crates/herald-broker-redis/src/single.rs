//! The broker over one Redis server, or over several independent servers
//! with channels sharded between them.
//!
//! One server is the common deployment: `PUBLISH`/`SUBSCRIBE` on it, one
//! subscriber connection and one publishing connection per Herald node.
//! Several servers (`redis://a,redis://b`) spread the pub/sub load without
//! Redis Cluster: each channel lives on the server picked by the stable hash
//! of [`crate::sharded`], and each server gets its own pair of connections.
//! Both are the same machinery, a [`Routing::Hashed`] over one or more
//! servers.

use std::collections::HashMap;

use herald::{BrokerError, BrokerStatus};
use tokio::sync::watch;

use crate::engine::{Engine, error};
use crate::options::RedisOptions;
use crate::subscriptions::Routing;
use crate::telemetry::RedisStats;

/// A [`Broker`](herald::Broker) over one Redis server (`redis://HOST:PORT`) or several,
/// with channels sharded between them by [`crate::shard_index`].
///
/// Publications travel with `PUBLISH`, carrying their envelope; each node
/// subscribes (`SUBSCRIBE`) to the channels its clients need. History lives
/// in Redis Streams and presence in hashes, on the channel's server. See
/// the [crate docs](crate) for the key scheme, and for the behaviour while
/// Redis is unreachable.
pub struct RedisBroker {
    engine: Engine,
    servers: Vec<String>,
}

impl RedisBroker {
    /// Connects to the servers named by `urls` (`redis://[user:password@]HOST:PORT`),
    /// sharding channels over them in this order when there are several.
    /// Fails when a server is not reachable within
    /// `options.connect_timeout`; once started, the broker rides out
    /// outages by itself.
    pub async fn connect(urls: &[String], options: RedisOptions) -> Result<Self, BrokerError> {
        if urls.is_empty() {
            return Err(error("no redis:// URL given"));
        }
        let mut servers = Vec::new();
        let mut known = HashMap::new();
        let mut template = None;
        for url in urls {
            let (addr, info) = crate::parse_server_url(url)?;
            if known.contains_key(&addr) {
                return Err(error(format!("{addr} is listed twice")));
            }
            template.get_or_insert_with(|| info.clone());
            known.insert(addr.clone(), info);
            servers.push(addr);
        }
        let names: Vec<String> = servers.iter().map(|a| a.to_string()).collect();
        let describe = if names.len() == 1 {
            format!("redis {}", names[0])
        } else {
            format!("sharded redis {}", names.join(","))
        };
        let template = template.expect("at least one URL");
        let engine =
            Engine::connect(Routing::Hashed(servers), template, known, options, describe).await?;
        Ok(Self {
            engine,
            servers: names,
        })
    }

    /// The servers (`host:port`), in shard order.
    pub fn servers(&self) -> &[String] {
        &self.servers
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

crate::engine::broker_via_engine!(RedisBroker);
