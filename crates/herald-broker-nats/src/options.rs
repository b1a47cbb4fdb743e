//! Settings of a [`NatsBroker`](crate::NatsBroker) and the `--broker` URL form.

use std::time::Duration;

use crate::subject::DEFAULT_PREFIX;

/// What [`Broker::publish`](herald::Broker::publish) does while NATS is
/// unreachable (the broker's status is [`Down`](herald::BrokerStatus::Down)).
///
/// Either way the publication is **not** handed to the NATS client: the
/// client would buffer it, then send it after the reconnect, possibly before
/// the other nodes have resubscribed (so they would miss it uncounted), and
/// once its command queue filled up every further publish would wait for the
/// reconnect. Each such publication is counted in
/// `herald_broker_publish_errors_total{reason="down"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenDown {
    /// Deliver to this node's own subscribers (the node keeps serving its
    /// local channels as a standalone server would), count the publication
    /// as dropped for the other nodes, and report success. The default.
    #[default]
    DeliverLocally,
    /// Deliver nowhere and fail the publish with a
    /// [`BrokerError`](herald::BrokerError), so that the publisher is told.
    Fail,
}

/// Settings of a [`NatsBroker`](crate::NatsBroker).
///
/// Start from [`NatsOptions::default`] and change what is needed:
///
/// ```
/// let mut options = herald_broker_nats::NatsOptions::default();
/// options.prefix = "myapp.channels".into();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsOptions {
    /// Subject prefix: channel `c` travels on `<prefix>.<escaped c>` (see
    /// the [`subject`](crate::subject) module). Every node of a cluster must
    /// use the same prefix; different prefixes keep clusters (or test runs)
    /// apart on one NATS. Default `herald.ch`.
    pub prefix: String,
    /// Connection name shown in the NATS server's monitoring. Default `herald`.
    pub name: String,
    /// What a publish does while NATS is unreachable.
    pub when_down: WhenDown,
    /// Longest wait to hand a publication to the NATS client (its command
    /// queue may be full under load); past it the publish fails. Default 5 s.
    pub publish_timeout: Duration,
    /// Longest wait for a subscription to be confirmed by the server (or
    /// for an unsubscribe to be queued). Default 5 s.
    pub subscribe_timeout: Duration,
    /// Longest wait for one TCP connect + handshake with a server. Default 5 s.
    pub connection_timeout: Duration,
    /// First delay between reconnect attempts (the very first attempt is
    /// immediate); doubled on each failure up to
    /// [`reconnect_max_delay`](Self::reconnect_max_delay), with ±20 % jitter.
    /// Default 100 ms.
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnect attempts. Default 5 s.
    pub reconnect_max_delay: Duration,
    /// Interval of the client's PINGs; two unanswered ones mark the
    /// connection dead (how a silent network failure is noticed). Default 10 s.
    pub ping_interval: Duration,
    /// Capacity of the NATS client's command queue. Default 8192.
    pub client_capacity: usize,
    /// Messages buffered per channel subscription before NATS reports a slow
    /// consumer and drops. Default 65536.
    pub subscription_capacity: usize,
    /// How often (at most) the broker confirms with a round trip that what it
    /// sent reached the server, which bounds what a disconnect can lose
    /// uncounted. Default 100 ms.
    pub confirm_interval: Duration,
    /// Longest channel subject; longer ones use a digest token. Keep it well
    /// under the server's `max_control_line` (4 KiB by default). Default 1024.
    pub max_subject_len: usize,
    /// Longest wait for one JetStream answer (a history write's ack, a read,
    /// a stream or bucket creation, one batch of a scan). Default 5 s.
    pub request_timeout: Duration,
    /// Replicas of the history streams and of the presence bucket (1 on a
    /// single server; 3 in a NATS cluster for them to survive a server).
    /// Default 1.
    pub replicas: usize,
    /// Attempts of a publication with history that keeps losing races
    /// with other nodes' publications on the same channel (each retry waits
    /// a random moment of up to 0.5 ms, doubling to 32 ms), before it fails.
    /// Default 32.
    pub history_attempts: u32,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            name: "herald".to_owned(),
            when_down: WhenDown::default(),
            publish_timeout: Duration::from_secs(5),
            subscribe_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(5),
            reconnect_min_delay: Duration::from_millis(100),
            reconnect_max_delay: Duration::from_secs(5),
            ping_interval: Duration::from_secs(10),
            client_capacity: 8192,
            subscription_capacity: 65_536,
            confirm_interval: Duration::from_millis(100),
            max_subject_len: 1024,
            request_timeout: Duration::from_secs(5),
            replicas: 1,
            history_attempts: 32,
        }
    }
}

impl NatsOptions {
    /// These options with another subject prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// These options with another outage behaviour.
    pub fn with_when_down(mut self, when_down: WhenDown) -> Self {
        self.when_down = when_down;
        self
    }

    /// The delay before reconnect attempt `attempt` (1-based).
    pub(crate) fn reconnect_delay(&self, attempt: usize) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(attempt - 2).unwrap_or(u32::MAX).min(30);
        let base = self
            .reconnect_min_delay
            .saturating_mul(1 << doublings)
            .min(self.reconnect_max_delay);
        base.mul_f64(rand::random_range(0.8..1.2))
    }
}

/// The server URLs of a comma-separated list, trimmed, empty entries dropped.
pub(crate) fn split_servers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits a `--broker` spec into the server URLs and the options:
///
/// `nats://HOST:PORT[,nats://HOST:PORT...][?prefix=P&name=N&when_down=local|fail&replicas=R]`
///
/// `tls://` URLs are accepted too. Credentials go in the URLs
/// (`nats://user:pass@host:4222`, percent-encoded).
pub(crate) fn parse_spec(spec: &str) -> Result<(Vec<String>, NatsOptions), String> {
    let spec = spec.trim();
    let (servers, query) = match spec.split_once('?') {
        Some((servers, query)) => (servers, Some(query)),
        None => (spec, None),
    };
    let servers = split_servers(servers);
    if servers.is_empty() {
        return Err("no NATS server in the broker URL".to_owned());
    }
    for server in &servers {
        if !(server.starts_with("nats://") || server.starts_with("tls://")) {
            return Err(format!(
                "{:?} is not a NATS URL (expected nats://HOST:PORT or tls://HOST:PORT)",
                redact(server)
            ));
        }
    }
    let mut options = NatsOptions::default();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "prefix" => options.prefix = value.to_owned(),
            "name" => options.name = value.to_owned(),
            "when_down" => {
                options.when_down = match value {
                    "local" => WhenDown::DeliverLocally,
                    "fail" => WhenDown::Fail,
                    other => {
                        return Err(format!("when_down={other:?}: expected `local` or `fail`"));
                    }
                }
            }
            "replicas" => {
                options.replicas = match value.parse::<usize>() {
                    Ok(n) if (1..=5).contains(&n) => n,
                    _ => return Err(format!("replicas={value:?}: expected 1 to 5")),
                }
            }
            other => {
                return Err(format!(
                    "unknown NATS broker parameter {other:?} (known: prefix, name, when_down, \
                     replicas)"
                ));
            }
        }
    }
    Ok((servers, options))
}

/// A server URL without its credentials, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_with_one_server() {
        let (servers, options) = parse_spec("nats://127.0.0.1:4222").unwrap();
        assert_eq!(servers, ["nats://127.0.0.1:4222"]);
        assert_eq!(options.prefix, "herald.ch");
        assert_eq!(options.when_down, WhenDown::DeliverLocally);
    }

    #[test]
    fn spec_with_servers_and_parameters() {
        let (servers, options) = parse_spec(
            " nats://a:4222, tls://b:4222?prefix=app.ch&name=n1&when_down=fail&replicas=3 ",
        )
        .unwrap();
        assert_eq!(servers, ["nats://a:4222", "tls://b:4222"]);
        assert_eq!(options.prefix, "app.ch");
        assert_eq!(options.name, "n1");
        assert_eq!(options.when_down, WhenDown::Fail);
        assert_eq!(options.replicas, 3);
    }

    #[test]
    fn bad_specs_are_refused() {
        assert!(parse_spec("").is_err());
        assert!(parse_spec("redis://a:6379").is_err());
        assert!(parse_spec("nats://a:4222?color=red").is_err());
        assert!(parse_spec("nats://a:4222?when_down=maybe").is_err());
        assert!(parse_spec("nats://a:4222?replicas=0").is_err());
        assert!(parse_spec("nats://a:4222?replicas=x").is_err());
        let e = parse_spec("nats://a:4222,http://u:secret@b").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact("nats://u:p@h:4222"), "nats://***@h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn reconnect_delays_back_off_with_jitter() {
        let o = NatsOptions::default();
        assert_eq!(o.reconnect_delay(1), Duration::ZERO);
        let d2 = o.reconnect_delay(2);
        assert!(d2 >= Duration::from_millis(80) && d2 <= Duration::from_millis(120));
        let d4 = o.reconnect_delay(4);
        assert!(d4 >= Duration::from_millis(320) && d4 <= Duration::from_millis(480));
        for attempt in [20, 1000, usize::MAX] {
            assert!(o.reconnect_delay(attempt) <= Duration::from_secs(6));
        }
    }
}
