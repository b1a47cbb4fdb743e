//! Admission control: which upgrades become sockets, and how fast.
//!
//! A node restarting under thousands of clients gets all of them back within
//! their backoff window. Accepting them as fast as they arrive spends the
//! node's CPU on TLS and handshakes while the sockets it already accepted
//! time out, so the storm feeds itself. Admission control bounds the work
//! instead, per node, before any WebSocket exists:
//!
//! * **handshakes per second**, a token bucket (`handshake_rate`,
//!   `handshake_burst`);
//! * **connections** in all (`max_connections`), per peer address
//!   (`max_connections_per_ip`) and per user (`max_connections_per_user`,
//!   checked once the socket's token names its user);
//! * the **`Origin`** of browser upgrades (`allowed_origins`).
//!
//! An upgrade over a bound is refused with HTTP 503 (429 for the per-address
//! bound) and a `Retry-After` header. The delay is spread: it grows with the
//! refusals of the last second divided by the rate, and is drawn at random
//! below that, so the refused clients come back at the pace the node
//! accepts them rather than all at once. A browser cannot read a refused
//! upgrade's headers, so an upgrade with an `Origin` header is accepted and
//! closed at once with 1013 and the reason `retry after N` instead. Herald's
//! clients add the delay on top of their own backoff with jitter.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use http::HeaderMap;
use parking_lot::Mutex;
use rand::Rng as _;
use tokio::time::Instant;

use crate::config::Config;
use crate::metrics::Refusal;

/// The longest `Retry-After` Herald sends, in seconds.
const MAX_RETRY_AFTER: u64 = 60;

/// Why an upgrade was refused, with the delay to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The `Origin` is not allowed (HTTP 403, never retried).
    Origin,
    /// Over the handshakes-per-second budget.
    RateLimited { retry_after: u64 },
    /// The node holds `max_connections`.
    AtCapacity { retry_after: u64 },
    /// The peer address holds `max_connections_per_ip`.
    PerIp { retry_after: u64 },
}

impl Refused {
    /// The refusal's metric label.
    pub(crate) fn metric(self) -> Refusal {
        match self {
            Refused::Origin => Refusal::Origin,
            Refused::RateLimited { .. } => Refusal::RateLimited,
            Refused::AtCapacity { .. } => Refusal::AtCapacity,
            Refused::PerIp { .. } => Refusal::ConnectionsPerIp,
        }
    }

    /// The `Retry-After` delay, for refusals worth retrying.
    pub(crate) fn retry_after(self) -> Option<u64> {
        match self {
            Refused::Origin => None,
            Refused::RateLimited { retry_after }
            | Refused::AtCapacity { retry_after }
            | Refused::PerIp { retry_after } => Some(retry_after),
        }
    }
}

/// A place in a bounded count; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    counts: Arc<Counts>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.release(&self.key);
    }
}

/// What an admitted socket holds until it closes.
#[derive(Debug)]
pub(crate) struct Admitted {
    node: Option<Arc<AtomicUsize>>,
    _ip: Option<Slot>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(node) = &self.node {
            node.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(Arc<str>),
}

/// Connections per key, bounded.
#[derive(Debug)]
struct Counts {
    limit: usize,
    map: Mutex<HashMap<Key, usize>>,
}

impl Counts {
    fn acquire(self: &Arc<Self>, key: Key) -> Option<Slot> {
        let mut map = self.map.lock();
        let n = map.entry(key.clone()).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        drop(map);
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }

    fn release(&self, key: &Key) {
        let mut map = self.map.lock();
        if let Some(n) = map.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                map.remove(key);
            }
        }
    }
}

/// A token bucket of handshakes.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn take(&self) -> bool {
        let mut state = self.state.lock();
        let now = Instant::now();
        let (tokens, last) = &mut *state;
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The origins browsers may connect from.
#[derive(Debug, Clone)]
pub(crate) struct Origins(Vec<String>);

impl Origins {
    /// From `allowed_origins`: exact origins (`https://app.example.com`,
    /// `http://localhost:3000`), subdomain patterns
    /// (`https://*.example.com`), or `*`. Empty allows every origin.
    pub(crate) fn new(list: &[String]) -> Self {
        Self(
            list.iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        )
    }

    /// Whether an upgrade with these headers may proceed. A request without
    /// `Origin` is not from a browser and is always allowed.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let Some(origin) = headers.get(http::header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim().to_ascii_lowercase();
        self.0
            .iter()
            .any(|allowed| matches_origin(allowed, &origin))
    }
}

fn matches_origin(allowed: &str, origin: &str) -> bool {
    if allowed == "*" || allowed == origin {
        return true;
    }
    // `scheme://*.domain[:port]` matches any subdomain, not the domain itself.
    let Some((scheme, rest)) = allowed.split_once("://*.") else {
        return false;
    };
    let Some(host) = origin
        .strip_prefix(scheme)
        .and_then(|o| o.strip_prefix("://"))
    else {
        return false;
    };
    host.strip_suffix(rest)
        .and_then(|sub| sub.strip_suffix('.'))
        .is_some_and(|sub| !sub.is_empty() && !sub.contains('/'))
}

/// The node's admission state.
#[derive(Debug)]
pub(crate) struct Admission {
    bucket: Option<Bucket>,
    max_connections: usize,
    connections: Arc<AtomicUsize>,
    per_ip: Option<Arc<Counts>>,
    per_user: Option<Arc<Counts>>,
    origins: Origins,
    /// Refusals in the current one-second window, and the window's start
    /// (milliseconds since `epoch`).
    refused: AtomicU64,
    window: AtomicU64,
    epoch: Instant,
}

impl Admission {
    pub(crate) fn new(cfg: &Config) -> Self {
        let counts = |limit: usize| {
            (limit > 0).then(|| {
                Arc::new(Counts {
                    limit,
                    map: Mutex::new(HashMap::new()),
                })
            })
        };
        let rate = f64::from(cfg.handshake_rate);
        let burst = f64::from(cfg.handshake_burst.max(cfg.handshake_rate).max(1));
        Self {
            bucket: (cfg.handshake_rate > 0).then(|| Bucket {
                rate,
                burst,
                state: Mutex::new((burst, Instant::now())),
            }),
            max_connections: cfg.max_connections,
            connections: Arc::new(AtomicUsize::new(0)),
            per_ip: counts(cfg.max_connections_per_ip),
            per_user: counts(cfg.max_connections_per_user),
            origins: Origins::new(&cfg.allowed_origins),
            refused: AtomicU64::new(0),
            window: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Admits an upgrade, or says why not.
    pub(crate) fn admit(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Admitted, Refused> {
        if !self.origins.allows(headers) {
            return Err(Refused::Origin);
        }
        let n = self.connections.fetch_add(1, Ordering::AcqRel);
        let mut admitted = Admitted {
            node: Some(self.connections.clone()),
            _ip: None,
        };
        if self.max_connections > 0 && n >= self.max_connections {
            let spread = 5 + self.backlog_secs();
            return Err(Refused::AtCapacity {
                retry_after: self.retry_after(spread),
            });
        }
        if let (Some(counts), Some(ip)) = (&self.per_ip, peer) {
            match counts.acquire(Key::Ip(ip)) {
                Some(slot) => admitted._ip = Some(slot),
                None => {
                    return Err(Refused::PerIp {
                        retry_after: self.retry_after(10),
                    });
                }
            }
        }
        if let Some(bucket) = &self.bucket
            && !bucket.take()
        {
            let spread = self.backlog_secs();
            return Err(Refused::RateLimited {
                retry_after: self.retry_after(spread),
            });
        }
        Ok(admitted)
    }

    /// A place for `user` in the per-user limit; `None` when the user holds
    /// the most connections already. Unbounded without a limit.
    pub(crate) fn user_slot(&self, user: &Arc<str>) -> Result<Option<Slot>, ()> {
        match &self.per_user {
            None => Ok(None),
            Some(counts) => counts.acquire(Key::User(user.clone())).map(Some).ok_or(()),
        }
    }

    /// Counts a refusal; returns the seconds of backlog the refusals of the
    /// last second represent at the handshake rate.
    fn backlog_secs(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        let window = self.window.load(Ordering::Acquire);
        if now.saturating_sub(window) >= 1000
            && self
                .window
                .compare_exchange(window, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.refused.store(0, Ordering::Release);
        }
        let refused = self.refused.fetch_add(1, Ordering::AcqRel) + 1;
        match &self.bucket {
            Some(bucket) => (refused as f64 / bucket.rate).ceil() as u64,
            None => 1,
        }
    }

    /// A delay drawn in `1..=1 + spread` seconds, at most
    /// [`MAX_RETRY_AFTER`].
    fn retry_after(&self, spread: u64) -> u64 {
        let top = (1 + spread).min(MAX_RETRY_AFTER);
        rand::rng().random_range(1..=top)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = Config::default();
        f(&mut c);
        c
    }

    fn with_origin(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ORIGIN, origin.parse().unwrap());
        h
    }

    #[test]
    fn origins() {
        let o = Origins::new(&[
            "https://app.example.com".into(),
            "https://*.example.org".into(),
            "http://localhost:3000/".into(),
        ]);
        assert!(o.allows(&HeaderMap::new()), "no Origin: not a browser");
        assert!(o.allows(&with_origin("https://app.example.com")));
        assert!(o.allows(&with_origin("HTTPS://APP.EXAMPLE.COM")));
        assert!(o.allows(&with_origin("http://localhost:3000")));
        assert!(o.allows(&with_origin("https://a.b.example.org")));
        assert!(!o.allows(&with_origin("https://example.org")));
        assert!(!o.allows(&with_origin("http://a.example.org")));
        assert!(!o.allows(&with_origin("https://evilexample.org")));
        assert!(!o.allows(&with_origin("https://app.example.com.evil.net")));
        assert!(!o.allows(&with_origin("null")));
        assert!(Origins::new(&[]).allows(&with_origin("https://anything")));
        assert!(Origins::new(&["*".into()]).allows(&with_origin("https://anything")));
    }

    #[test]
    fn connections_are_bounded_and_given_back() {
        let a = Admission::new(&config(|c| {
            c.max_connections = 2;
            c.handshake_rate = 0;
        }));
        let h = HeaderMap::new();
        let one = a.admit(&h, None).unwrap();
        let _two = a.admit(&h, None).unwrap();
        let refused = a.admit(&h, None).unwrap_err();
        assert!(
            matches!(refused, Refused::AtCapacity { retry_after } if (1..=MAX_RETRY_AFTER).contains(&retry_after))
        );
        drop(one);
        assert!(a.admit(&h, None).is_ok());
    }

    #[test]
    fn per_ip_and_per_user() {
        let a = Admission::new(&config(|c| {
            c.max_connections_per_ip = 1;
            c.max_connections_per_user = 2;
            c.handshake_rate = 0;
        }));
        let h = HeaderMap::new();
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let first = a.admit(&h, Some(ip)).unwrap();
        assert!(matches!(a.admit(&h, Some(ip)), Err(Refused::PerIp { .. })));
        assert!(a.admit(&h, Some("127.0.0.10".parse().unwrap())).is_ok());
        drop(first);
        assert!(a.admit(&h, Some(ip)).is_ok());

        let user: Arc<str> = Arc::from("ann");
        let u1 = a.user_slot(&user).unwrap();
        let _u2 = a.user_slot(&user).unwrap();
        assert!(a.user_slot(&user).is_err());
        assert!(a.user_slot(&Arc::from("bob")).is_ok());
        drop(u1);
        assert!(a.user_slot(&user).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_handshake_rate_is_a_token_bucket_with_spread_retry_after() {
        let a = Admission::new(&config(|c| {
            c.handshake_rate = 10;
            c.handshake_burst = 10;
        }));
        let h = HeaderMap::new();
        let mut admitted = Vec::new();
        for _ in 0..10 {
            admitted.push(a.admit(&h, None).unwrap());
        }
        let mut delays = Vec::new();
        for _ in 0..100 {
            match a.admit(&h, None) {
                Err(Refused::RateLimited { retry_after }) => delays.push(retry_after),
                other => panic!("expected a refusal, got {other:?}"),
            }
        }
        // 100 refused at 10/s: spread over about ten seconds.
        assert!(delays.iter().all(|d| (1..=11).contains(d)), "{delays:?}");
        assert!(delays.iter().any(|d| *d > 5), "{delays:?}");
        tokio::time::advance(Duration::from_millis(500)).await;
        let more = (0..10).filter(|_| a.admit(&h, None).is_ok()).count();
        assert_eq!(more, 5, "half a second refills five");
    }
}
