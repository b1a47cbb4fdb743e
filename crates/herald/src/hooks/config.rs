//! What the hooks are and how they behave: the backend's URLs, the timeout,
//! the outcome of a failure, the shared secret, the concurrency bounds and
//! the refresh timing. Plain data, checked once when the server is built.

use std::time::Duration;

/// Default time a hook may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound on the hook calls in flight on one node.
pub const DEFAULT_MAX_CONCURRENT: usize = 1000;
/// Default bound on the hook calls in flight for one socket.
pub const DEFAULT_MAX_CONCURRENT_PER_SOCKET: usize = 8;
/// Default of [`HooksConfig::refresh_before`].
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Default of [`HooksConfig::refresh_grace`].
pub const DEFAULT_REFRESH_GRACE: Duration = Duration::from_secs(60);
/// Default of [`HooksConfig::refresh_retry`].
pub const DEFAULT_REFRESH_RETRY: Duration = Duration::from_secs(5);
/// Largest response body Herald reads from a hook; a longer one is a
/// failure.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What a hook that fails (times out, cannot be reached, answers anything
/// but a 2xx with a JSON object, or is over a concurrency bound) decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Refuse the request with the failure's named error (the default).
    #[default]
    Deny,
    /// Let the request through as if the backend had allowed it with
    /// nothing to add.
    Allow,
}

impl OnFailure {
    /// The config-file spelling (`deny`, `allow`).
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Deny => "deny",
            OnFailure::Allow => "allow",
        }
    }
}

impl std::str::FromStr for OnFailure {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deny" => Ok(OnFailure::Deny),
            "allow" => Ok(OnFailure::Allow),
            other => Err(format!(
                "unknown failure outcome {other:?}: expected \"deny\" or \"allow\""
            )),
        }
    }
}

/// One hook: where Herald POSTs, and optionally its own timeout and failure
/// outcome (otherwise those of [`HooksConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEndpoint {
    /// `http://` or `https://` URL the hook is POSTed to.
    pub url: String,
    /// This hook's timeout (default [`HooksConfig::timeout`]).
    pub timeout: Option<Duration>,
    /// This hook's failure outcome (default [`HooksConfig::on_failure`]).
    pub on_failure: Option<OnFailure>,
}

impl HookEndpoint {
    /// A hook at `url` with the global timeout and failure outcome.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: None,
            on_failure: None,
        }
    }

    /// With its own timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// With its own failure outcome.
    #[must_use]
    pub fn on_failure(mut self, outcome: OnFailure) -> Self {
        self.on_failure = Some(outcome);
        self
    }

    /// Checks the URL and the timeout; `what` names the hook in the error.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("{what}: invalid URL {:?}: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "{what}: URL {:?} must be http:// or https://",
                self.url
            ));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(format!("{what}: timeout must be greater than zero"));
        }
        Ok(())
    }
}

/// The backend hooks of a server (see [`crate::hooks`]). The channel hooks
/// (subscribe, publish) are set per namespace, in
/// [`crate::ChannelOptions::subscribe_hook`] and
/// [`crate::ChannelOptions::publish_hook`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HooksConfig {
    /// Called on every `#handshake`; may refuse it, authenticate the socket
    /// (a token, or a user and info) and subscribe it to channels.
    pub connect: Option<HookEndpoint>,
    /// Called when a socket's token nears its expiry; may give it a new
    /// token.
    pub refresh: Option<HookEndpoint>,
    /// Called for an invoke of a procedure that no handler serves; answers
    /// its result or an error.
    pub rpc: Option<HookEndpoint>,
    /// How long a hook may take, body included. Default 1 s.
    pub timeout: Duration,
    /// What a failed hook decides. Default [`OnFailure::Deny`].
    pub on_failure: OnFailure,
    /// Shared secret: when set, every request carries
    /// `X-Herald-Signature: sha256=HEX`, the HMAC-SHA256 of
    /// `TIMESTAMP.BODY` under it, and `X-Herald-Timestamp: TIMESTAMP`
    /// (Unix seconds). Default none.
    pub secret: Option<String>,
    /// Most hook calls in flight on this node; one more fails at once
    /// (`HookOverloadedError`). Default 1,000.
    pub max_concurrent: usize,
    /// Most hook calls in flight for one socket; one more fails at once
    /// (`HookOverloadedError`). Default 8.
    pub max_concurrent_per_socket: usize,
    /// How long before a token's `exp` the refresh hook is called (or
    /// halfway through what is left of the token's life, when that is
    /// less than twice this). Default 60 s.
    pub refresh_before: Duration,
    /// How much longer a socket keeps its token past `exp` while the
    /// refresh hook fails. Default 60 s.
    pub refresh_grace: Duration,
    /// Interval between refresh attempts after a failure. Default 5 s.
    pub refresh_retry: Duration,
    /// Headers of the WebSocket upgrade request passed to the connect hook
    /// (lower case). Default `cookie`, `authorization`, `origin`,
    /// `user-agent`, `x-forwarded-for`.
    pub forward_headers: Vec<String>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            connect: None,
            refresh: None,
            rpc: None,
            timeout: DEFAULT_TIMEOUT,
            on_failure: OnFailure::Deny,
            secret: None,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            max_concurrent_per_socket: DEFAULT_MAX_CONCURRENT_PER_SOCKET,
            refresh_before: DEFAULT_REFRESH_BEFORE,
            refresh_grace: DEFAULT_REFRESH_GRACE,
            refresh_retry: DEFAULT_REFRESH_RETRY,
            forward_headers: [
                "cookie",
                "authorization",
                "origin",
                "user-agent",
                "x-forwarded-for",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl HooksConfig {
    /// Checks the hooks' URLs and the timings.
    pub fn validate(&self) -> Result<(), String> {
        for (what, hook) in [
            ("[hooks] connect", &self.connect),
            ("[hooks] refresh", &self.refresh),
            ("[hooks] rpc", &self.rpc),
        ] {
            if let Some(hook) = hook {
                hook.validate(what)?;
            }
        }
        if self.timeout.is_zero() {
            return Err("[hooks] timeout must be greater than zero".into());
        }
        if self.max_concurrent == 0 || self.max_concurrent_per_socket == 0 {
            return Err(
                "[hooks] max_concurrent and max_concurrent_per_socket must be at least 1".into(),
            );
        }
        if self.refresh_retry.is_zero() {
            return Err("[hooks] refresh_retry must be greater than zero".into());
        }
        if self.secret.as_deref() == Some("") {
            return Err("[hooks] secret must not be empty".into());
        }
        Ok(())
    }

    /// Whether any global hook is set.
    pub fn any(&self) -> bool {
        self.connect.is_some() || self.refresh.is_some() || self.rpc.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert!(
            HookEndpoint::new("http://127.0.0.1:5000/h")
                .validate("x")
                .is_ok()
        );
        let e = HookEndpoint::new("ftp://h/")
            .validate("[hooks] rpc")
            .unwrap_err();
        assert!(e.contains("[hooks] rpc") && e.contains("http"), "{e}");
        assert!(HookEndpoint::new("not a url").validate("x").is_err());
        let zero = HookEndpoint::new("http://h/").timeout(Duration::ZERO);
        assert!(zero.validate("x").is_err());
        let bad = HooksConfig {
            rpc: Some(HookEndpoint::new("nope")),
            ..HooksConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("[hooks] rpc"));
        assert!(HooksConfig::default().validate().is_ok());
        assert_eq!("allow".parse::<OnFailure>(), Ok(OnFailure::Allow));
        assert!("maybe".parse::<OnFailure>().is_err());
    }
}
