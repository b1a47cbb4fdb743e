//! The error object carried by `{"rid": N, "error": {...}}` replies and by
//! handshake `authError`s.
//!
//! SocketCluster serializes a JavaScript `Error` as `{message, name, ...own
//! properties}` (`sc-errors` `dehydrateError`); the official client turns it
//! back into an `Error` whose `name` it keeps. Herald uses the same shape and,
//! where socketcluster-server has a name for a condition, the same name.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Error names used by Herald on the wire. Names shared with
/// socketcluster-server keep their meaning there.
pub mod names {
    /// The token is expired (`isBadToken: true`, with `expiry`).
    pub const AUTH_TOKEN_EXPIRED: &str = "AuthTokenExpiredError";
    /// The token is malformed, wrongly signed or uses a refused algorithm.
    pub const AUTH_TOKEN_INVALID: &str = "AuthTokenInvalidError";
    /// The token is not yet valid (`nbf` in the future); not a bad token.
    pub const AUTH_TOKEN_NOT_BEFORE: &str = "AuthTokenNotBeforeError";
    /// Any other token failure.
    pub const AUTH_TOKEN: &str = "AuthTokenError";
    /// Generic authentication failure (e.g. a token could not be delivered).
    pub const AUTH: &str = "AuthError";
    /// The request is not valid in this state or has malformed arguments.
    pub const INVALID_ACTION: &str = "InvalidActionError";
    /// The arguments of a call are invalid.
    pub const INVALID_ARGUMENTS: &str = "InvalidArgumentsError";
    /// The broker failed to subscribe, unsubscribe or publish.
    pub const BROKER: &str = "BrokerError";
    /// Middleware refused the action without naming an error of its own.
    pub const MIDDLEWARE_BLOCKED: &str = "MiddlewareBlockedError";
    /// Herald: an invoke named a procedure that no handler serves.
    /// (socketcluster-server leaves such an invoke unanswered; Herald replies.)
    pub const NO_SUCH_PROCEDURE: &str = "NoSuchProcedureError";
    /// A request timed out waiting for its reply.
    pub const TIMEOUT: &str = "TimeoutError";
    /// The connection went away while a request was pending.
    pub const BAD_CONNECTION: &str = "BadConnectionError";
    /// Herald: a handler failed in an unexpected way (details are logged,
    /// not sent).
    pub const INTERNAL: &str = "InternalServerError";
    /// Herald: the socket has `max_in_flight` invokes running already; it
    /// must wait for their replies before invoking more.
    pub const IN_FLIGHT_LIMIT: &str = "InFlightLimitError";
}

/// An error as exchanged on the wire: a `name`, a `message` and any other
/// properties (`isBadToken`, `expiry`, application fields...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// Human-readable description. Serialized first, as socketcluster does.
    #[serde(default)]
    pub message: String,
    /// Machine-readable error class, e.g. `AuthTokenExpiredError`.
    #[serde(default)]
    pub name: String,
    /// Every other property of the error object, in order.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ErrorPayload {
    /// An error with a name and a message and no other property.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            name: name.into(),
            extra: Map::new(),
        }
    }

    /// Adds (or replaces) a property of the error object.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }

    /// The value of `isBadToken`, false when absent.
    pub fn is_bad_token(&self) -> bool {
        self.extra
            .get("isBadToken")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Reads an error object from any JSON value. A non-object (socketcluster
    /// allows a bare string) becomes an error named `Error` with that text.
    pub fn from_value(value: Value) -> Self {
        match value {
            Value::Object(_) => serde_json::from_value(value)
                .unwrap_or_else(|_| Self::new("Error", "Invalid error message format")),
            Value::String(s) => Self::new("Error", s),
            other => Self::new("Error", other.to_string()),
        }
    }
}

impl std::fmt::Display for ErrorPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl std::error::Error for ErrorPayload {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_message_first_like_socketcluster() {
        let e =
            ErrorPayload::new(names::AUTH_TOKEN_INVALID, "jwt malformed").with("isBadToken", true);
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r##"{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true}"##
        );
        assert!(e.is_bad_token());
    }

    #[test]
    fn reads_odd_error_values() {
        let e = ErrorPayload::from_value(Value::String("boom".into()));
        assert_eq!((e.name.as_str(), e.message.as_str()), ("Error", "boom"));
        let e = ErrorPayload::from_value(serde_json::json!({"name":"X","message":"y","code":3}));
        assert_eq!(e.extra["code"], 3);
        let e = ErrorPayload::from_value(serde_json::json!({"name": 5}));
        assert_eq!(e.name, "Error");
    }
}
