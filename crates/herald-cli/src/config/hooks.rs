//! `[hooks]`, and the `subscribe_hook` / `publish_hook` keys of
//! `[channels]` and `[namespaces.NAME]`: the backend hooks of
//! [`herald::hooks`]. A hook is a URL, or a table with the URL and its own
//! timeout and failure outcome.

use std::time::Duration;

use herald::{HookEndpoint, HooksConfig, OnFailure};
use serde::{Deserialize, Deserializer};

/// A hook: `"http://…"` or `{ url = "http://…", timeout = "2s",
/// on_failure = "allow" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec(pub HookEndpoint);

impl<'de> Deserialize<'de> for HookSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            url: String,
            #[serde(default, with = "humantime_serde")]
            timeout: Option<Duration>,
            #[serde(default, deserialize_with = "on_failure")]
            on_failure: Option<OnFailure>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Spec {
            Url(String),
            Table(Table),
        }
        let endpoint = match Spec::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a URL or a table { url = \"…\", timeout = \"1s\", on_failure = \"deny\" | \"allow\" }",
            )
        })? {
            Spec::Url(url) => HookEndpoint::new(url),
            Spec::Table(t) => HookEndpoint {
                url: t.url,
                timeout: t.timeout,
                on_failure: t.on_failure,
            },
        };
        Ok(HookSpec(endpoint))
    }
}

fn on_failure<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OnFailure>, D::Error> {
    String::deserialize(d)?
        .parse()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `[hooks]`: the global hooks and how every hook behaves (see
/// [`herald::HooksConfig`] for the defaults).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// Called on every `#handshake`.
    pub connect: Option<HookSpec>,
    /// Called when a socket's token nears its expiry.
    pub refresh: Option<HookSpec>,
    /// Called for invokes no procedure serves.
    pub rpc: Option<HookSpec>,
    /// How long a hook may take.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// `deny` (default) or `allow`.
    #[serde(default, deserialize_with = "on_failure")]
    pub on_failure: Option<OnFailure>,
    /// Shared secret of the `X-Herald-Signature` header.
    pub secret: Option<String>,
    /// Hook calls in flight per node.
    pub max_concurrent: Option<usize>,
    /// Hook calls in flight per socket.
    pub max_concurrent_per_socket: Option<usize>,
    /// How long before `exp` a token is refreshed.
    #[serde(default, with = "humantime_serde")]
    pub refresh_before: Option<Duration>,
    /// How long past `exp` a socket keeps its token while refresh fails.
    #[serde(default, with = "humantime_serde")]
    pub refresh_grace: Option<Duration>,
    /// Interval between refresh attempts after a failure.
    #[serde(default, with = "humantime_serde")]
    pub refresh_retry: Option<Duration>,
    /// Upgrade request headers passed to the connect hook.
    pub forward_headers: Option<Vec<String>>,
}

impl HooksSection {
    /// Applies the keys that are set to `hooks`.
    pub fn apply(&self, hooks: &mut HooksConfig) {
        let endpoint = |s: &Option<HookSpec>| s.as_ref().map(|s| s.0.clone());
        if self.connect.is_some() {
            hooks.connect = endpoint(&self.connect);
        }
        if self.refresh.is_some() {
            hooks.refresh = endpoint(&self.refresh);
        }
        if self.rpc.is_some() {
            hooks.rpc = endpoint(&self.rpc);
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { hooks.$field = v; } )* };
        }
        set!(
            timeout,
            on_failure,
            max_concurrent,
            max_concurrent_per_socket,
            refresh_before,
            refresh_grace,
            refresh_retry
        );
        if let Some(secret) = &self.secret {
            hooks.secret = Some(secret.clone());
        }
        if let Some(headers) = &self.forward_headers {
            hooks.forward_headers = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        }
    }
}
