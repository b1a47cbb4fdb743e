//! The JSON bodies of the hooks: what Herald sends and what it reads back.
//! docs/hooks.md documents them field by field; the two must agree.

use std::collections::BTreeMap;

use herald_protocol::ErrorPayload;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::socket::Socket;

/// Which hook a request is (the `hook` field, the `X-Herald-Hook` header
/// and the `hook` label of the latency metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    /// A `#handshake`.
    Connect,
    /// A token near its expiry.
    Refresh,
    /// A `#subscribe`.
    Subscribe,
    /// A client `#publish`.
    Publish,
    /// An invoke no handler serves.
    Rpc,
}

impl HookKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::Connect => "connect",
            HookKind::Refresh => "refresh",
            HookKind::Subscribe => "subscribe",
            HookKind::Publish => "publish",
            HookKind::Rpc => "rpc",
        }
    }
}

/// The socket a hook is about (`socket` in every request).
#[derive(Debug, Serialize)]
pub(crate) struct SocketInfo {
    /// The socket id (as the client got it in the handshake).
    pub(crate) id: String,
    /// The peer address, when known.
    pub(crate) remote_addr: Option<String>,
    /// The user claim of the socket's token, when authenticated.
    pub(crate) user: Option<String>,
    /// The claims of the socket's token, when authenticated.
    pub(crate) claims: Option<Value>,
}

impl SocketInfo {
    pub(crate) fn of(socket: &Socket, user_claim: &str) -> Self {
        let claims = socket.auth_claims();
        Self::with_claims(socket, user_claim, claims.as_deref())
    }

    pub(crate) fn with_claims(
        socket: &Socket,
        user_claim: &str,
        claims: Option<&Map<String, Value>>,
    ) -> Self {
        let user = claims
            .and_then(|c| c.get(user_claim))
            .and_then(|u| match u {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        Self {
            id: socket.id().to_owned(),
            remote_addr: socket.remote_addr().map(|a| a.to_string()),
            user,
            claims: claims.map(|c| Value::Object(c.clone())),
        }
    }
}

/// A hook request: the fields every hook has, then the hook's own.
#[derive(Debug, Serialize)]
pub(crate) struct HookRequest<'a, T: Serialize> {
    pub(crate) hook: HookKind,
    /// The node that calls.
    pub(crate) node: &'a str,
    pub(crate) socket: SocketInfo,
    #[serde(flatten)]
    pub(crate) body: T,
}

/// The connect hook's own fields.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectBody {
    /// The query string of the WebSocket URL (without `?`).
    pub(crate) query: String,
    /// The forwarded headers of the upgrade request (lower-case names).
    pub(crate) headers: BTreeMap<String, String>,
    /// Why the handshake token was refused, when it was.
    pub(crate) auth_error: Option<ErrorPayload>,
}

/// The refresh hook's own fields.
#[derive(Debug, Serialize)]
pub(crate) struct RefreshBody {
    /// The token's `exp` (Unix seconds).
    pub(crate) exp: u64,
}

/// The subscribe and publish hooks' own fields.
#[derive(Debug, Serialize)]
pub(crate) struct ChannelBody {
    /// The channel.
    pub(crate) channel: String,
    /// The subscription's data (subscribe) or the publication's (publish).
    pub(crate) data: Value,
}

/// The RPC hook's own fields.
#[derive(Debug, Serialize)]
pub(crate) struct RpcBody {
    /// The procedure invoked.
    pub(crate) procedure: String,
    /// The invoke's data.
    pub(crate) data: Value,
}

/// What a backend answers. Every field is optional; `error` refuses.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct HookReply {
    /// A refusal (`name`, `message`, any other field), passed to the client
    /// as the SocketCluster error object.
    pub(crate) error: Option<Value>,
    /// RPC: the result. Publish: the data every subscriber receives
    /// instead.
    #[serde(default, deserialize_with = "present")]
    pub(crate) data: Option<Value>,
    /// Connect, refresh, RPC: a signed token for the socket (verified like
    /// any token), pushed as `#setAuthToken`.
    pub(crate) token: Option<String>,
    /// Connect, refresh, RPC: claims Herald signs into the socket's new
    /// token (when there is no `token`).
    pub(crate) claims: Option<Map<String, Value>>,
    /// Connect: the user (its token's user claim), when there is neither
    /// `token` nor `claims`.
    pub(crate) user: Option<Value>,
    /// Connect: the `info` claim (presence) with `user`.
    pub(crate) info: Option<Value>,
    /// Connect: channels to subscribe the socket to.
    #[serde(default)]
    pub(crate) channels: Vec<String>,
}

/// `Some(value)` for a field that is present, even `null`: a publish hook
/// may replace the data with `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl HookReply {
    /// The refusal, as the client receives it: a backend's `error` object
    /// with a string `name` (default `HookDeniedError`) and `message`.
    pub(crate) fn refusal(&self) -> Option<ErrorPayload> {
        let error = self.error.as_ref()?;
        let mut payload = match error {
            Value::Object(_) => ErrorPayload::from_value(error.clone()),
            Value::String(s) => ErrorPayload::new(DENIED, s.clone()),
            _ => ErrorPayload::new(DENIED, "Refused by the backend"),
        };
        if payload.name.is_empty() {
            payload.name = DENIED.to_owned();
        }
        Some(payload)
    }
}

/// Error name of a refusal whose `error` names none.
pub const DENIED: &str = "HookDeniedError";
/// Error name of a hook that did not answer within its timeout.
pub const TIMEOUT: &str = "HookTimeoutError";
/// Error name of a hook that failed (unreachable, not a 2xx, not a JSON
/// object, a token that does not verify).
pub const FAILED: &str = "HookFailedError";
/// Error name of a hook call over a concurrency bound.
pub const OVERLOADED: &str = "HookOverloadedError";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_and_refuse() {
        let r: HookReply = serde_json::from_str("{}").unwrap();
        assert!(r.refusal().is_none() && r.data.is_none() && r.channels.is_empty());
        let r: HookReply = serde_json::from_str(r#"{"data":null}"#).unwrap();
        assert_eq!(r.data, Some(Value::Null));
        let r: HookReply =
            serde_json::from_str(r#"{"error":{"name":"ForbiddenError","message":"no","code":7}}"#)
                .unwrap();
        let e = r.refusal().unwrap();
        assert_eq!(
            (e.name.as_str(), e.message.as_str()),
            ("ForbiddenError", "no")
        );
        assert_eq!(e.extra["code"], 7);
        let r: HookReply = serde_json::from_str(r#"{"error":"go away"}"#).unwrap();
        assert_eq!(r.refusal().unwrap().name, DENIED);
        let r: HookReply = serde_json::from_str(r#"{"error":{"message":"x"}}"#).unwrap();
        assert_eq!(r.refusal().unwrap().name, DENIED);
        let r: HookReply =
            serde_json::from_str(r#"{"user":"ada","info":{"a":1},"channels":["u:ada"]}"#).unwrap();
        assert_eq!(r.channels, ["u:ada"]);
    }
}
