//! # Redis brokers for Herald
//!
//! [`herald::Broker`] implementations that carry publications between the
//! nodes of a Herald cluster through Redis:
//!
//! | `--broker` | type | Redis commands |
//! |---|---|---|
//! | `redis://HOST:PORT` | [`RedisBroker`] | `PUBLISH` / `SUBSCRIBE` on one server |
//! | `redis://A:P,redis://B:P,...` | [`RedisBroker`] | the same, channels sharded over independent servers by [`shard_index`] (FNV-1a) |
//! | `redis+cluster://HOST:PORT[,HOST:PORT...]` | [`RedisClusterBroker`] | Redis Cluster sharded pub/sub: `SPUBLISH` / `SSUBSCRIBE` on the primary owning the channel's slot |
//!
//! ```no_run
//! # async fn run() -> Result<(), herald::BrokerError> {
//! let broker = herald_broker_redis::from_url("redis://127.0.0.1:6379").await?;
//! let server = herald::Server::builder().broker_arc(broker).build();
//! # let _ = server; Ok(()) }
//! ```
//!
//! ## Wire format
//!
//! Every publication, local ones included, goes through Redis, on the Redis
//! channel `prefix + channel` ([`RedisOptions::prefix`], default `herald:`).
//! The message is the publication's `#publish` frame, byte for byte, so a
//! receiving node rebuilds it with [`herald::Publication::from_frame`] and
//! hands the very bytes to its subscribers. A message that is not such a
//! frame for the channel it arrived on is dropped and counted
//! (`herald_broker_invalid_messages_total`).
//!
//! ## Guarantees
//!
//! * `subscribe` returns once Redis confirmed the subscription, so every
//!   publication made after it returns is delivered to this node.
//! * Each publication is delivered once per subscribed node, in publish
//!   order per publisher (one pipelined connection per server carries a
//!   node's publications, and a channel lives on exactly one server).
//! * Redis pub/sub does not store messages: a publication made while a
//!   subscription is being re-established (after a failover, a migration, a
//!   lost connection) does not reach the nodes that were not subscribed at
//!   that moment.
//!
//! ## When Redis goes away
//!
//! The node keeps running: clients stay connected, RPCs and everything that
//! does not need another node keep working, and local subscriptions stay in
//! place. Meanwhile:
//!
//! * [`herald::Broker::status`] is [`herald::BrokerStatus::Down`] (the transition is
//!   logged with `tracing` and exported as the `herald_broker_up` gauge);
//! * the broker reconnects by itself, with exponential backoff and jitter
//!   (from [`RedisOptions::min_backoff`] to [`RedisOptions::max_backoff`]),
//!   counting `herald_broker_reconnects_total`, and resubscribes every
//!   channel the node needs as soon as the server (or, in a cluster, the new
//!   owner of the slot) is back;
//! * `publish` fails within [`RedisOptions::publish_timeout`] (at once when
//!   the server refuses connections) with a [`herald::BrokerError`], which
//!   the publishing client receives as its reply, and counts
//!   `herald_broker_publish_errors_total`. Publications are *not* delivered
//!   to local subscribers directly: doing so would deliver them twice, or
//!   out of order, around the moment Redis comes back, and every
//!   publication being either delivered through Redis or reported failed to
//!   its publisher (and counted) is the simpler promise;
//! * `subscribe` of a new channel waits up to
//!   [`RedisOptions::request_timeout`] for Redis and then fails (the client
//!   gets a `BrokerError` reply); `unsubscribe` always succeeds.
//!
//! ## Modules
//!
//! * `subscriptions` (internal): the subscription manager, desired state
//!   and resubscription, for every flavour.
//! * `connection` (internal): one subscriber connection, speaking RESP
//!   through redis-rs's decoder.
//! * `publisher` (internal): the publishing connections.
//! * `single`: [`RedisBroker`]; [`sharded`]: the shard hash.
//! * [`cluster`]: [`RedisClusterBroker`], [`cluster::slots`] and the slot map.
//! * `telemetry`: status, metrics and [`RedisStats`].
//!
//! ## Testing
//!
//! The integration tests start private `redis-server` processes (and build
//! Redis Clusters with `redis-cli --cluster create`), so they need
//! `redis-server` and `redis-cli` (Redis 7.0 or later) on the `PATH`; the
//! single-server conformance test also uses the Redis on `127.0.0.1:6379`
//! with a random prefix.

#![warn(missing_docs)]

mod backoff;
pub mod cluster;
mod connection;
mod engine;
pub mod keys;
mod options;
mod publisher;
mod routed;
mod scripts;
pub mod sharded;
mod shared;
mod single;
mod subscriptions;
mod telemetry;

use std::sync::Arc;

use herald::{Broker, BrokerError};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

pub use cluster::RedisClusterBroker;
pub use options::RedisOptions;
pub use sharded::shard_index;
pub use single::RedisBroker;
pub use telemetry::RedisStats;

use connection::NodeAddr;
use engine::error;

/// URL scheme of Redis Cluster specs.
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Connects the broker a `--broker` spec names, with default options:
///
/// * `redis://HOST:PORT`: one server ([`RedisBroker`]);
/// * `redis://A:P,redis://B:P`: several servers, channels sharded between
///   them ([`RedisBroker`]);
/// * `redis+cluster://HOST:PORT[,HOST:PORT...]`: Redis Cluster
///   ([`RedisClusterBroker`]).
///
/// URLs may carry credentials (`redis://user:password@host:port`).
pub async fn from_url(spec: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    from_url_with(spec, RedisOptions::default()).await
}

/// [`from_url`] with explicit options.
pub async fn from_url_with(
    spec: &str,
    options: RedisOptions,
) -> Result<Arc<dyn Broker>, BrokerError> {
    let spec = spec.trim();
    if let Some(rest) = spec.strip_prefix(CLUSTER_SCHEME) {
        let seeds: Vec<String> = rest
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.strip_prefix(CLUSTER_SCHEME).unwrap_or(s).to_owned())
            .collect();
        return Ok(Arc::new(
            RedisClusterBroker::connect(&seeds, options).await?,
        ));
    }
    let urls: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() || urls.iter().any(|u| !u.starts_with("redis://")) {
        return Err(error(format!(
            "unsupported Redis spec {spec:?}: expected redis://HOST:PORT[,redis://HOST:PORT...] or redis+cluster://HOST:PORT[,HOST:PORT...]"
        )));
    }
    Ok(Arc::new(RedisBroker::connect(&urls, options).await?))
}

/// Reads one `redis://` URL (TCP only).
fn parse_server_url(url: &str) -> Result<(NodeAddr, ConnectionInfo), BrokerError> {
    let info = url
        .into_connection_info()
        .map_err(|e| error(format!("invalid Redis URL {url:?}: {e}")))?;
    match info.addr() {
        ConnectionAddr::Tcp(host, port) => Ok((NodeAddr::new(host, *port), info)),
        _ => Err(error(format!(
            "unsupported Redis URL {url:?}: only redis://HOST:PORT (plain TCP) is supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let (addr, info) = parse_server_url("redis://user:pw@127.0.0.1:7000/2").unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:7000");
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(info.redis_settings().username(), Some("user"));
        assert!(parse_server_url("rediss://127.0.0.1:7000").is_err());
        assert!(parse_server_url("redis+unix:///tmp/redis.sock").is_err());
    }

    #[tokio::test]
    async fn rejects_other_specs() {
        assert!(from_url("nats://127.0.0.1:4222").await.is_err());
        assert!(from_url("").await.is_err());
        assert!(from_url("redis://127.0.0.1:1,http://x").await.is_err());
    }
}
