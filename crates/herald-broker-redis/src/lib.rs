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
//! Every publication, local ones included, goes through Redis, as an
//! **envelope** ([`herald::Publication::encode`]):
//!
//! ```text
//! h1|<kind>|<offset>|<epoch>|<channel byte length>|<channel><data>
//! ```
//!
//! with the Herald channel name inside (not the Redis name), offset `0` and
//! an empty epoch for a publication without history, and the JSON data
//! verbatim (empty when there is none). A receiving node rebuilds the
//! delivery frame with [`herald::Publication::decode`] and hands the same
//! bytes to all its subscribers. A message that is not an envelope of the
//! channel it arrived on is dropped and counted
//! (`herald_broker_receive_errors_total{broker="redis",reason="invalid"}`).
//!
//! ## Key scheme
//!
//! A Herald channel `C` is published on the Redis channel
//! `<prefix>{<esc(C)>}` ([`keys::redis_channel`]), and its keys are that
//! name plus a suffix: `:h` its stream, `:m` its meta hash, `:p` and `:px`
//! its presence. `esc` percent-escapes `{`, `}` and `%` (the empty channel
//! becomes `%`), so the hash tag is always the escaped channel name: every
//! name of a channel is in one Redis Cluster slot, and a script may touch
//! them all. The sharded broker sends every name of a channel to the server
//! [`shard_index`] picks for the Herald name. See [`keys`].
//!
//! ## History
//!
//! [`herald::Broker::publish_with_history`] runs one Lua script on the
//! server (or slot owner) of the channel: it reads the channel's epoch
//! (creating it, from a fresh [`herald::broker::history::new_epoch`], when
//! the channel has none, and dropping any stream left without it),
//! increments the offset, appends `XADD <stream> MAXLEN = <size>
//! <offset>-0 d <data>`, sets both keys to expire `ttl` after this
//! publication, and publishes the envelope, all atomically: no subscriber
//! sees offset n+1 before n, and a publication is in the history exactly
//! when it was published. [`herald::Broker::history`] reads with another
//! script (`XRANGE (<offset>-0 + COUNT <limit>` after a position of the
//! current epoch, `XREVRANGE` for the latest), creating the epoch with
//! the ttl when the channel has none; [`herald::Broker::remove_history`]
//! deletes both keys. Scripts go out as `EVALSHA` and are loaded on
//! `NOSCRIPT`; their failures are counted
//! (`herald_broker_script_errors_total`).
//!
//! **Redis restarted without persistence** (or history expired, or
//! removed): the channel has no epoch any more, so the next read or
//! publication creates a new one and offsets start again at 1. A client
//! that knew the old epoch learns that it cannot recover; it is never told
//! that it missed nothing. With persistence (AOF or RDB), the history
//! survives as far as Redis kept it.
//!
//! ## Presence
//!
//! Per channel, a hash (socket id → `ClientInfo` JSON) and a sorted set
//! (socket id scored by its expiry). `presence_add` records a batch with
//! one script call per channel, pipelined per server (servers in
//! parallel); the expiry is computed from the **Redis server's clock**
//! (`TIME` in the script), so nodes with skewed clocks agree, and both keys
//! get at least the ttl as their own lifetime, so an abandoned channel
//! vanishes. Reads (`presence`, `presence_stats`) first drop the expired
//! entries from both keys in the same script; stats count sockets and
//! distinct users.
//!
//! ## Resync
//!
//! Pub/sub keeps nothing: publications made while a subscription was being
//! re-established are lost on the way to this node. Whenever a channel
//! that had been subscribed is subscribed again (a lost or killed
//! connection, a restarted server, a server-pushed `sunsubscribe`, a moved
//! slot, a failover), the broker calls [`herald::BrokerSink::resync`] for
//! it once the new subscription is confirmed, and the node fills the gap
//! from the history. A channel's first subscription is not a resync.
//!
//! ## Guarantees
//!
//! * `subscribe` returns once Redis confirmed the subscription, so every
//!   publication made after it returns is delivered to this node.
//! * Each publication is delivered once per subscribed node, in publish
//!   order per publisher (one pipelined connection per server carries a
//!   node's publications, and a channel lives on exactly one server);
//!   publications with history reach every node in offset order.
//! * Offsets of a channel are 1, 2, 3, … with no hole and no duplicate
//!   within an epoch, whichever nodes publish.
//! * Redis pub/sub does not store messages: a publication made while a
//!   subscription is being re-established does not reach the nodes that
//!   were not subscribed at that moment; for channels with history the
//!   node is told to resync (above) and repairs the gap.
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
//! * `subscriptions` (internal): the subscription manager, desired state,
//!   resubscription and resync, for every flavour.
//! * `connection` (internal): one subscriber connection, speaking RESP
//!   through redis-rs's decoder.
//! * [`keys`]: the Redis names of a Herald channel.
//! * `engine` (internal): the broker calls, their bounds and accounting;
//!   with `engine::history` and `engine::presence`.
//! * `routed` (internal): requests sent to a channel's server, batched per
//!   server, following `MOVED`/`ASK`, loading scripts on `NOSCRIPT`.
//! * `scripts` (internal): the Lua scripts and their replies.
//! * `publisher` (internal): the request/response connections.
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
//! with a random prefix. History and presence are checked by the
//! conformance suite on every flavour, and through faults (a restart
//! without persistence, killed subscriber connections, flushed scripts) in
//! `tests/history_faults.rs`, and through a cluster slot migration (`ASK`,
//! then `MOVED`) in `tests/cluster_history.rs`.

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
/// URLs may carry credentials (`redis://user:password@host:port`). The spec
/// may end in `?prefix=P` to set [`RedisOptions::prefix`] (so that several
/// clusters, or test runs, share one Redis).
pub async fn from_url(spec: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    from_url_with(spec, RedisOptions::default()).await
}

/// [`from_url`] with explicit options.
pub async fn from_url_with(
    spec: &str,
    options: RedisOptions,
) -> Result<Arc<dyn Broker>, BrokerError> {
    let (spec, options) = split_query(spec.trim(), options)?;
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

/// Splits the `?prefix=P` query off a spec and applies it to `options`.
/// Redis URLs have no query of their own here (the database number is the
/// path), so the first `?` starts the spec's parameters.
fn split_query(spec: &str, mut options: RedisOptions) -> Result<(&str, RedisOptions), BrokerError> {
    let Some((servers, query)) = spec.split_once('?') else {
        return Ok((spec, options));
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", value)) if !value.is_empty() => options.prefix = value.to_owned(),
            _ => {
                return Err(error(format!(
                    "unknown Redis broker parameter {pair:?} (known: prefix=P)"
                )));
            }
        }
    }
    Ok((servers, options))
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

    #[test]
    fn prefix_parameter() {
        let base = RedisOptions::default();
        let (spec, o) = split_query("redis://a:1,redis://b:2?prefix=t1:", base.clone()).unwrap();
        assert_eq!(
            (spec, o.prefix.as_str()),
            ("redis://a:1,redis://b:2", "t1:")
        );
        let (spec, o) = split_query("redis://a:1", base.clone()).unwrap();
        assert_eq!((spec, o.prefix.as_str()), ("redis://a:1", "herald:"));
        for bad in [
            "redis://a:1?prefix=",
            "redis://a:1?db=2",
            "redis://a:1?prefix",
        ] {
            let err = split_query(bad, base.clone()).unwrap_err().to_string();
            assert!(err.contains("prefix=P"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn rejects_other_specs() {
        assert!(from_url("nats://127.0.0.1:4222").await.is_err());
        assert!(from_url("").await.is_err());
        assert!(from_url("redis://127.0.0.1:1,http://x").await.is_err());
    }
}
