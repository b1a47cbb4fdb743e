//! Keys from a JWKS URL: fetched with the pooled HTTP client, cached,
//! refreshed on a schedule and when a token names a key the cache lacks,
//! never more often than a floor, and kept while the JWKS server is down.
//!
//! One task per engine fetches. It refreshes every
//! [`JwksOptions::refresh`], or sooner when the response's `Cache-Control:
//! max-age` says so (never sooner than [`JwksOptions::min_refresh`]);
//! after a failure it retries with a backoff from `min_refresh` doubling up
//! to `refresh`, and meanwhile the last good key set stays in force. It
//! sends `If-None-Match` with the last `ETag`, so an unchanged set costs a
//! 304.
//!
//! A token that no key at hand can check (its `kid` names no key, or no key
//! takes its algorithm) asks for a refresh and waits for it (bounded by the
//! request timeout), unless a fetch was attempted within `min_refresh`:
//! then it is refused at once. So an attacker sending random `kid`s gets
//! Herald to fetch at most once per `min_refresh`, and what waits is the
//! attacker's own socket, never a lock: the key set is an `Arc` swapped
//! under a short lock, and waiters watch a generation counter.
//!
//! Responses are bounded ([`MAX_JWKS_BYTES`], [`MAX_JWKS_KEYS`]); a key the
//! server cannot use (an encryption key, a P-521 curve, a symmetric key) is
//! skipped, and a set with no usable key is a failed refresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{ACCEPT, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use jsonwebtoken::jwk::Jwk;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::error::AuthError;
use super::keys::{Key, KeySet};

/// The largest JWKS response read, in bytes (a real one is a few KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The most keys taken from one JWKS (the rest are ignored).
pub const MAX_JWKS_KEYS: usize = 100;

/// Default of [`JwksOptions::refresh`].
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(600);

/// Default of [`JwksOptions::min_refresh`].
pub const DEFAULT_JWKS_MIN_REFRESH: Duration = Duration::from_secs(10);

/// Default of [`JwksOptions::timeout`].
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how often an engine fetches its JWKS.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    url: String,
    refresh: Duration,
    min_refresh: Duration,
    timeout: Duration,
}

impl JwksOptions {
    /// A JWKS at `url` (`https://` or `http://`), with the default
    /// timings.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh: DEFAULT_JWKS_REFRESH,
            min_refresh: DEFAULT_JWKS_MIN_REFRESH,
            timeout: DEFAULT_JWKS_TIMEOUT,
        }
    }

    /// The longest time between two refreshes (default 10 min), and the
    /// period when the server sends no `Cache-Control: max-age`.
    #[must_use]
    pub fn refresh(mut self, period: Duration) -> Self {
        self.refresh = period;
        self
    }

    /// The shortest time between two fetches (default 10 s): the floor of
    /// `max-age`, the first retry after a failure, and the rate limit of
    /// the refreshes that unknown `kid`s ask for.
    #[must_use]
    pub fn min_refresh(mut self, floor: Duration) -> Self {
        self.min_refresh = floor;
        self
    }

    /// How long one fetch may take, connecting and reading included
    /// (default 5 s); also how long a token waits for the refresh it asked
    /// for.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn validate(&self) -> Result<reqwest::Url, AuthError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| AuthError::Jwks(format!("the URL {:?} does not parse: {e}", self.url)))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(AuthError::Jwks(format!(
                "the URL {:?} is neither https:// nor http://",
                self.url
            )));
        }
        if self.min_refresh.is_zero() || self.timeout.is_zero() {
            return Err(AuthError::Jwks(
                "the minimum refresh interval and the timeout must be above zero".into(),
            ));
        }
        if self.min_refresh > self.refresh {
            return Err(AuthError::Jwks(format!(
                "the minimum refresh interval ({}) is above the refresh interval ({})",
                humantime::format_duration(self.min_refresh),
                humantime::format_duration(self.refresh)
            )));
        }
        Ok(url)
    }
}

/// A fetch of the JWKS failed (the last good key set stays in force).
#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    /// The request failed (connect, TLS, timeout).
    #[error("JWKS request failed: {0}")]
    Http(String),
    /// The server answered with a status other than 200 (or 304).
    #[error("JWKS server answered HTTP {0}")]
    Status(u16),
    /// The response is longer than [`MAX_JWKS_BYTES`].
    #[error("JWKS response over {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// The response is not a JWK set.
    #[error("JWKS response is not a JWK set: {0}")]
    Json(String),
    /// The set holds no key Herald can verify with.
    #[error("JWKS holds no usable signature key")]
    NoUsableKeys,
    /// No fetch has completed yet.
    #[error("JWKS not fetched yet")]
    NotYet,
}

/// Fetch bookkeeping, under a short lock.
#[derive(Debug, Default)]
struct State {
    /// A fetch is asked for or running.
    fetching: bool,
    /// When the last fetch ended.
    last_attempt: Option<Instant>,
    /// The last full response's `ETag` and `max-age` (a 304 without
    /// `Cache-Control` keeps the max-age of the response it confirms).
    etag: Option<String>,
    max_age: Option<Duration>,
    /// The last fetch's outcome: key count, or why it failed.
    last: Option<Result<usize, JwksError>>,
}

struct Shared {
    options: JwksOptions,
    url: reqwest::Url,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    state: Mutex<State>,
    wake: Notify,
    /// Bumped after every fetch, good or bad.
    generation: watch::Sender<u64>,
    started: AtomicBool,
    stop: CancellationToken,
}

/// An engine's JWKS: the current key set and the task that refreshes it
/// (stopped when this is dropped).
pub(crate) struct Jwks {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.shared.options.url)
            .field("keys", &self.shared.keys.read().len())
            .finish()
    }
}

impl Jwks {
    pub(crate) fn new(options: JwksOptions) -> Result<Self, AuthError> {
        let url = options.validate()?;
        let client = crate::http_client::client(options.timeout)
            .map_err(|e| AuthError::Jwks(e.to_string()))?;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            options,
            url,
            client,
            keys: RwLock::new(Arc::new(KeySet::default())),
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            generation: watch::Sender::new(0),
            started: AtomicBool::new(false),
            stop: stop.clone(),
        });
        Ok(Self {
            shared,
            _stop: stop.drop_guard(),
        })
    }

    pub(crate) fn options(&self) -> &JwksOptions {
        &self.shared.options
    }

    /// Starts the refresh task if it is not running (needs a Tokio
    /// runtime; without one, the next call from inside one starts it).
    pub(crate) fn start(&self) {
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(run(self.shared.clone()));
            }
            Err(_) => self.shared.started.store(false, Ordering::Release),
        }
    }

    /// The key set in force.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        self.shared.keys.read().clone()
    }

    /// Asks for a refresh and waits for it, unless one was attempted
    /// within `min_refresh` (then `false` at once). `true` once a fetch
    /// ended (with whatever outcome) after the call.
    pub(crate) async fn refresh_now(&self) -> bool {
        self.start();
        let mut generation = self.shared.generation.subscribe();
        let seen = *generation.borrow_and_update();
        let go = {
            let mut state = self.shared.state.lock();
            if state.fetching {
                true
            } else if state
                .last_attempt
                .is_none_or(|t| t.elapsed() >= self.shared.options.min_refresh)
            {
                state.fetching = true;
                self.shared.wake.notify_one();
                true
            } else {
                false
            }
        };
        if !go {
            crate::metrics::jwks_refresh_limited();
            return false;
        }
        let wait = self.shared.options.timeout + Duration::from_secs(1);
        matches!(
            tokio::time::timeout(wait, generation.wait_for(|g| *g > seen)).await,
            Ok(Ok(_))
        )
    }

    /// Waits (up to the timeout) for the first fetch to end and reports
    /// it: the number of keys, or why it failed.
    pub(crate) async fn first_fetch(&self) -> Result<usize, JwksError> {
        self.start();
        let mut generation = self.shared.generation.subscribe();
        let wait = self.shared.options.timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(wait, generation.wait_for(|g| *g > 0)).await;
        self.shared
            .state
            .lock()
            .last
            .clone()
            .unwrap_or(Err(JwksError::NotYet))
    }
}

/// The refresh task: fetch, sleep until the next refresh or a request,
/// again, until the engine is dropped.
async fn run(shared: Arc<Shared>) {
    let mut next = Instant::now();
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => shared.state.lock().fetching = true,
            () = shared.wake.notified() => {}
        }
        let outcome = fetch(&shared).await;
        let delay = match &outcome {
            Ok((_, max_age)) => {
                failures = 0;
                max_age
                    .unwrap_or(shared.options.refresh)
                    .clamp(shared.options.min_refresh, shared.options.refresh)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(url = %shared.options.url, error = %e, "JWKS refresh failed; keeping the last good keys");
                backoff(&shared.options, failures)
            }
        };
        crate::metrics::jwks_refresh(match &outcome {
            Ok((Fetched::Updated, _)) => "updated",
            Ok((Fetched::Unchanged, _)) => "unchanged",
            Err(_) => "error",
        });
        {
            let mut state = shared.state.lock();
            state.fetching = false;
            state.last_attempt = Some(Instant::now());
            state.last = Some(outcome.map(|_| shared.keys.read().len()));
        }
        shared.generation.send_modify(|g| *g += 1);
        next = Instant::now() + delay;
    }
}

/// The wait after the `failures`-th failure in a row: `min_refresh`,
/// doubling, at most `refresh`.
fn backoff(options: &JwksOptions, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    options
        .min_refresh
        .saturating_mul(factor)
        .min(options.refresh)
}

/// What a successful fetch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Updated,
    Unchanged,
}

/// One fetch: installs the new key set, returns the response's max-age.
async fn fetch(shared: &Shared) -> Result<(Fetched, Option<Duration>), JwksError> {
    let etag = {
        let state = shared.state.lock();
        state
            .etag
            .clone()
            .filter(|_| !shared.keys.read().is_empty())
    };
    let mut request = shared
        .client
        .get(shared.url.clone())
        .header(ACCEPT, "application/jwk-set+json, application/json");
    if let Some(etag) = etag {
        request = request.header(IF_NONE_MATCH, etag);
    }
    let http_err = |e: reqwest::Error| JwksError::Http(e.to_string());
    let mut response = request.send().await.map_err(http_err)?;
    let headers = response.headers();
    let max_age = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age);
    let new_etag = headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        let max_age = max_age.or(shared.state.lock().max_age);
        return Ok((Fetched::Unchanged, max_age));
    }
    if status != reqwest::StatusCode::OK {
        return Err(JwksError::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(JwksError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(http_err)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let set = parse(&body)?;
    let count = set.len();
    *shared.keys.write() = Arc::new(set);
    {
        let mut state = shared.state.lock();
        state.etag = new_etag;
        state.max_age = max_age;
    }
    crate::metrics::jwks_keys(count);
    tracing::debug!(url = %shared.options.url, keys = count, "JWKS refreshed");
    Ok((Fetched::Updated, max_age))
}

/// The `max-age` of one `Cache-Control` value (`no-cache` and `no-store`
/// count as 0, floored by the caller). Written by hand: the header's
/// grammar needed here is a comma-separated list of `name[=value]`.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "max-age" => arg
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs),
            "no-cache" | "no-store" => Some(Duration::ZERO),
            _ => None,
        }
    })
}

/// The usable keys of a JWKS document.
fn parse(body: &[u8]) -> Result<KeySet, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body).map_err(|e| JwksError::Json(e.to_string()))?;
    let mut keys = Vec::new();
    for value in doc.keys.into_iter().take(MAX_JWKS_KEYS) {
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        match serde_json::from_value::<Jwk>(value)
            .map_err(|e| e.to_string())
            .and_then(|jwk| Key::from_jwk(&jwk))
        {
            Ok(key) => keys.push(key),
            Err(why) => tracing::debug!(kid = ?kid, why, "JWKS key skipped"),
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(KeySet::from_jwks(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(max_age("max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(
            max_age("public, MAX-AGE = 60 , must-revalidate"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age("no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn backoff_doubles_from_the_floor_to_the_period() {
        let o = JwksOptions::new("https://x.test/jwks")
            .min_refresh(Duration::from_secs(10))
            .refresh(Duration::from_secs(600));
        let secs: Vec<u64> = (1..=8).map(|n| backoff(&o, n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(backoff(&o, u32::MAX).as_secs(), 600);
    }

    #[test]
    fn options_are_validated() {
        let err = |o: JwksOptions| o.validate().unwrap_err().to_string();
        assert!(err(JwksOptions::new("not a url")).contains("does not parse"));
        assert!(err(JwksOptions::new("ftp://x.test/jwks")).contains("https://"));
        assert!(
            err(JwksOptions::new("https://x.test/").min_refresh(Duration::from_secs(700)))
                .contains("above the refresh interval")
        );
        assert!(err(JwksOptions::new("https://x.test/").timeout(Duration::ZERO)).contains("zero"));
        assert!(
            JwksOptions::new("http://127.0.0.1:1/jwks")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn documents_keep_their_usable_keys() {
        assert!(matches!(parse(b"[]"), Err(JwksError::Json(_))));
        assert!(matches!(
            parse(b"{\"keys\":[]}"),
            Err(JwksError::NoUsableKeys)
        ));
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            {"kty": "weird"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig",
             "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ]});
        let set = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.takes(jsonwebtoken::Algorithm::EdDSA));
    }
}
