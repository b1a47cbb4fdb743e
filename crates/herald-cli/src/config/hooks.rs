//! `[hooks]`, and the `subscribe_hook` / `publish_hook` keys of
//! `[channels]` and `[namespaces.NAME]`: the backend hooks of
//! [`herald::hooks`] (docs/hooks.md). A hook is a URL, or a table with the
//! URL and its own timeout and failure outcome.

use std::fmt;
use std::time::Duration;

use herald::{HookEndpoint, HooksConfig, OnFailure};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::channels::set_some;
use super::de as adapters;

/// A hook: `"http://…"` or `{ url = "http://…", timeout = "2s",
/// on_failure = "allow" }`. Written back as the URL alone when it has
/// neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec(pub HookEndpoint);

/// The table spelling of a hook.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HookTable {
    url: String,
    #[serde(
        default,
        with = "adapters::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    timeout: Option<Duration>,
    #[serde(default, with = "on_failure", skip_serializing_if = "Option::is_none")]
    on_failure: Option<OnFailure>,
}

impl<'de> Deserialize<'de> for HookSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Spec;
        impl<'de> Visitor<'de> for Spec {
            type Value = HookEndpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a hook URL, or a table { url = \"http://…\", timeout = \"1s\", on_failure = \"deny\" | \"allow\" }",
                )
            }
            fn visit_str<E: de::Error>(self, url: &str) -> Result<HookEndpoint, E> {
                Ok(HookEndpoint::new(url))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<HookEndpoint, A::Error> {
                let t = HookTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(HookEndpoint {
                    url: t.url,
                    timeout: t.timeout,
                    on_failure: t.on_failure,
                })
            }
        }
        let endpoint = d.deserialize_any(Spec)?;
        endpoint
            .validate("the hook")
            .map_err(<D::Error as de::Error>::custom)?;
        Ok(HookSpec(endpoint))
    }
}

impl Serialize for HookSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.0;
        if e.timeout.is_none() && e.on_failure.is_none() {
            return s.serialize_str(&e.url);
        }
        HookTable {
            url: e.url.clone(),
            timeout: e.timeout,
            on_failure: e.on_failure,
        }
        .serialize(s)
    }
}

/// `OnFailure` as `"deny"` or `"allow"`.
pub mod on_failure {
    use super::*;

    /// Reads the spelling.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OnFailure>, D::Error> {
        String::deserialize(d)?
            .parse()
            .map(Some)
            .map_err(<D::Error as de::Error>::custom)
    }

    /// Writes the spelling.
    pub fn serialize<S: Serializer>(v: &Option<OnFailure>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(o) => s.serialize_str(o.as_str()),
            None => s.serialize_none(),
        }
    }
}

/// `[hooks]`: the global hooks and how every hook behaves (see
/// [`herald::HooksConfig`] for the defaults).
#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSection {
    /// Called on every `#handshake`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<HookSpec>,
    /// Called when a socket's token nears its expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<HookSpec>,
    /// Called for invokes no procedure serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<HookSpec>,
    /// How long a hook may take.
    #[serde(
        default,
        with = "adapters::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// `deny` (default) or `allow`.
    #[serde(default, with = "on_failure", skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<OnFailure>,
    /// Shared secret of the `X-Herald-Signature` header.
    #[serde(
        default,
        with = "adapters::secret",
        skip_serializing_if = "Option::is_none"
    )]
    pub secret: Option<String>,
    /// Hook calls in flight per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// Hook calls in flight per socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_per_socket: Option<usize>,
    /// How long before `exp` a token is refreshed.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_before: Option<Duration>,
    /// How long past `exp` a socket keeps its token while refresh fails.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_grace: Option<Duration>,
    /// Interval between refresh attempts after a failure.
    #[serde(
        default,
        with = "adapters::positive_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_retry: Option<Duration>,
    /// Upgrade request headers passed to the connect hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_headers: Option<Vec<String>>,
}

impl HooksSection {
    /// Applies the keys that are set to `hooks`.
    pub fn apply(&self, hooks: &mut HooksConfig) {
        let endpoint = |s: &HookSpec| s.0.clone();
        if let Some(s) = &self.connect {
            hooks.connect = Some(endpoint(s));
        }
        if let Some(s) = &self.refresh {
            hooks.refresh = Some(endpoint(s));
        }
        if let Some(s) = &self.rpc {
            hooks.rpc = Some(endpoint(s));
        }
        set_some!(self => hooks; timeout, on_failure, max_concurrent, max_concurrent_per_socket, refresh_before, refresh_grace, refresh_retry);
        if let Some(secret) = &self.secret {
            hooks.secret = Some(secret.clone());
        }
        if let Some(headers) = &self.forward_headers {
            hooks.forward_headers = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        }
    }

    /// Every key from `hooks` (the reverse of [`HooksSection::apply`], for
    /// `print-config`).
    pub fn from_config(hooks: &HooksConfig) -> Self {
        let spec = |e: &Option<HookEndpoint>| e.clone().map(HookSpec);
        Self {
            connect: spec(&hooks.connect),
            refresh: spec(&hooks.refresh),
            rpc: spec(&hooks.rpc),
            timeout: Some(hooks.timeout),
            on_failure: Some(hooks.on_failure),
            secret: hooks.secret.clone(),
            max_concurrent: Some(hooks.max_concurrent),
            max_concurrent_per_socket: Some(hooks.max_concurrent_per_socket),
            refresh_before: Some(hooks.refresh_before),
            refresh_grace: Some(hooks.refresh_grace),
            refresh_retry: Some(hooks.refresh_retry),
            forward_headers: Some(hooks.forward_headers.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::FileConfig;
    use std::time::Duration;

    #[test]
    fn hooks_keys() {
        let c = FileConfig::parse(
            r#"
            [hooks]
            connect = "http://127.0.0.1:5000/connect"
            refresh = { url = "http://127.0.0.1:5000/refresh", timeout = "3s" }
            rpc = { url = "https://backend.example/rpc", on_failure = "allow" }
            timeout = "750ms"
            on_failure = "allow"
            secret = "s3cret"
            max_concurrent = 50
            max_concurrent_per_socket = 2
            refresh_before = "2m"
            refresh_grace = "30s"
            refresh_retry = "1s"
            forward_headers = ["Cookie", "x-request-id"]

            [namespaces.chat]
            subscribe_hook = "http://127.0.0.1:5000/subscribe"
            publish_hook = { url = "http://127.0.0.1:5000/publish", on_failure = "deny" }
            "#,
        )
        .unwrap();
        let mut config = herald::Config::default();
        c.apply(&mut config);
        let h = &config.hooks;
        assert_eq!(
            h.connect.as_ref().unwrap().url,
            "http://127.0.0.1:5000/connect"
        );
        assert_eq!(
            h.refresh.as_ref().unwrap().timeout,
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            h.rpc.as_ref().unwrap().on_failure,
            Some(herald::OnFailure::Allow)
        );
        assert_eq!(h.timeout, Duration::from_millis(750));
        assert_eq!(h.on_failure, herald::OnFailure::Allow);
        assert_eq!(h.secret.as_deref(), Some("s3cret"));
        assert_eq!((h.max_concurrent, h.max_concurrent_per_socket), (50, 2));
        assert_eq!(h.refresh_before, Duration::from_secs(120));
        assert_eq!(h.refresh_grace, Duration::from_secs(30));
        assert_eq!(h.refresh_retry, Duration::from_secs(1));
        assert_eq!(h.forward_headers, ["cookie", "x-request-id"]);
        let chat = &config.namespaces["chat"];
        assert!(chat.subscribe_hook.is_some());
        assert_eq!(
            chat.publish_hook.as_ref().unwrap().on_failure,
            Some(herald::OnFailure::Deny)
        );
        // print-config writes what a file may hold: the same hooks back.
        let mut printed = FileConfig::default();
        printed.set_from(&config);
        let text = toml::to_string(&printed).unwrap();
        let again = FileConfig::parse(&text).unwrap();
        let mut config2 = herald::Config::default();
        again.apply(&mut config2);
        assert_eq!(config2.hooks, config.hooks, "{text}");
        assert_eq!(config2.namespaces["chat"], config.namespaces["chat"]);
    }

    #[test]
    fn bad_hooks_are_named() {
        for (text, needle) in [
            ("[hooks]\nconnect = \"ftp://x/\"", "connect"),
            ("[hooks]\non_failure = \"maybe\"", "maybe"),
            ("[hooks]\nconect = \"http://x/\"", "conect"),
            (
                "[hooks]\nrpc = { url = \"http://x/\", retries = 3 }",
                "retries",
            ),
            ("[hooks]\ntimeout = \"0s\"", "timeout"),
            ("[hooks]\nconnect = 5", "hook URL"),
            (
                "[namespaces.chat]\nsubscribe_hook = \"nope\"",
                "subscribe_hook",
            ),
        ] {
            let err = FileConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
