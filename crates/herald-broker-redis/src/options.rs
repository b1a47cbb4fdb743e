//! Settings shared by every Redis broker flavour.
//!
//! One struct so that the single, sharded and cluster brokers take the same
//! knobs (and the CLI can build them the same way); every field has a
//! default that suits a production deployment, and tests shorten the
//! timings.

use std::time::Duration;

/// Settings of a Redis broker. Start from [`RedisOptions::default`] and
/// change what you need:
///
/// ```
/// use herald_broker_redis::RedisOptions;
/// let options = RedisOptions {
///     prefix: "myapp:".into(),
///     ..RedisOptions::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Put in front of every channel name to make the Redis channel name
    /// (default `herald:`), so several applications (or test runs) can share
    /// one Redis. Every node of one Herald cluster must use the same prefix.
    ///
    /// The prefix is escaped like channel names ([`crate::keys`]), so braces
    /// in it never form a hash tag: each channel keeps its own slot.
    pub prefix: String,
    /// Bound on establishing a TCP connection (and its `AUTH`).
    pub connect_timeout: Duration,
    /// Bound on `publish`: the call fails (and is counted in
    /// `herald_broker_publish_errors_total`) when Redis did not accept the
    /// publication within it.
    pub publish_timeout: Duration,
    /// Bound on `subscribe` waiting for the server's confirmation (also when
    /// the broker is down: the call fails after this long rather than hang),
    /// and on `unsubscribe` waiting for its confirmation.
    pub request_timeout: Duration,
    /// How often an idle subscriber connection is checked with `PING`; a
    /// connection that leaves a command unanswered for `request_timeout` is
    /// considered dead and replaced.
    pub health_check_interval: Duration,
    /// First reconnection delay; doubles at each failure (with jitter) up to
    /// `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnection delay.
    pub max_backoff: Duration,
    /// Redis Cluster: how often the slot map is refreshed (`CLUSTER SLOTS`)
    /// when nothing happens. Any sign of change (a `MOVED` reply, a
    /// server-initiated `sunsubscribe`, a lost connection) refreshes it at
    /// once.
    pub topology_refresh_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "herald:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            publish_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            health_check_interval: Duration::from_secs(1),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            topology_refresh_interval: Duration::from_secs(5),
        }
    }
}
