//! The API's errors: an HTTP status and the body
//! `{"error":{"code":C,"message":M}}`, the same in a batch reply.
//!
//! The status tells whose fault it is: 4xx the caller's (its request can
//! never succeed as sent), 503 the broker's (the same request may succeed
//! later). Nothing a caller sends makes a 500.

use axum::response::{IntoResponse, Response};
use herald_protocol::ErrorPayload;
use herald_protocol::error::names;
use http::StatusCode;
use serde::Serialize;

use crate::namespace::{NOT_AVAILABLE, UNKNOWN_NAMESPACE};
use crate::publish::PublishError;
use crate::reads::{ReadError, UNRECOVERABLE_POSITION};

/// The error codes of the API (`error.code`), each with its HTTP status.
pub(crate) mod codes {
    /// 400: the body is not JSON, or the params do not fit the method.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 401: no API key, or a wrong one.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: a reserved channel (`#herald/...`) or event (`#...`).
    pub const FORBIDDEN: &str = "forbidden";
    /// 404: no such method.
    pub const NOT_FOUND: &str = "not_found";
    /// 405: a method is called with something else than POST.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 413: the body is larger than `api_max_body`.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 422: the channel's name or namespace is refused.
    pub const INVALID_CHANNEL: &str = "invalid_channel";
    /// 422: the channel keeps no history (or presence).
    pub const NOT_AVAILABLE: &str = "not_available";
    /// 422: a history read `since` a position of another epoch.
    pub const UNRECOVERABLE_POSITION: &str = "unrecoverable_position";
    /// 422: a value is out of its range (close code, pattern, batch size).
    pub const INVALID_VALUE: &str = "invalid_value";
    /// 503: the broker failed; the request may succeed later.
    pub const BROKER_UNAVAILABLE: &str = "broker_unavailable";
    /// 500: Herald failed (a bug).
    pub const INTERNAL: &str = "internal";
}

/// An API error: its status, code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

/// `{"code":C,"message":M}`.
#[derive(Serialize)]
pub(crate) struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::BAD_REQUEST, message)
    }

    pub(crate) fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            codes::INVALID_VALUE,
            message,
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, codes::FORBIDDEN, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL, message)
    }

    /// `{"code":C,"message":M}`, for a batch reply.
    pub(crate) fn detail(&self) -> Detail<'_> {
        Detail {
            code: self.code,
            message: &self.message,
        }
    }

    /// A refusal of the publishing, subscribe or read path.
    fn from_payload(p: &ErrorPayload) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match p.name.as_str() {
            NOT_AVAILABLE => Self::new(unprocessable, codes::NOT_AVAILABLE, &p.message),
            UNRECOVERABLE_POSITION => {
                Self::new(unprocessable, codes::UNRECOVERABLE_POSITION, &p.message)
            }
            names::BROKER => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BROKER_UNAVAILABLE,
                &p.message,
            ),
            names::INVALID_ARGUMENTS => Self::bad_request(&p.message),
            names::INVALID_ACTION | UNKNOWN_NAMESPACE => {
                Self::new(unprocessable, codes::INVALID_CHANNEL, &p.message)
            }
            _ => Self::new(unprocessable, codes::INVALID_VALUE, &p.message),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Encode(e) => Self::bad_request(e.to_string()),
            PublishError::Refused(p) => Self::from_payload(&p),
            PublishError::Broker(e) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BROKER_UNAVAILABLE,
                e.to_string(),
            ),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Refused(p) => Self::from_payload(&p),
            ReadError::Broker(e) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::BROKER_UNAVAILABLE,
                e.to_string(),
            ),
        }
    }
}

impl From<ErrorPayload> for ApiError {
    fn from(p: ErrorPayload) -> Self {
        Self::from_payload(&p)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.detail(),
        };
        super::json(self.status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_statuses() {
        let e = ApiError::from(ErrorPayload::new(names::INVALID_ACTION, "bad name"));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.code, codes::INVALID_CHANNEL);
        let e = ApiError::from(ErrorPayload::new(names::BROKER, "down"));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let e = ApiError::from(ErrorPayload::new(NOT_AVAILABLE, "no history"));
        assert_eq!(e.code, codes::NOT_AVAILABLE);
        let e = ApiError::from(ReadError::Broker(crate::BrokerError::new("redis", "gone")));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, codes::BROKER_UNAVAILABLE);
    }

    #[test]
    fn the_body_is_the_documented_envelope() {
        let e = ApiError::forbidden("reserved");
        let body = serde_json::to_value(Body { error: e.detail() }).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "forbidden", "message": "reserved"}})
        );
    }
}
