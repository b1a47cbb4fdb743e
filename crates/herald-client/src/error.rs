//! The one error type of the client.
//!
//! Every fallible call returns [`Error`]. It separates what the caller can act
//! on: the server answered with an error ([`Error::Remote`]), no answer came in
//! time ([`Error::Timeout`]), the connection went away while the request was
//! in flight ([`Error::BadConnection`], safe to retry), the client was shut
//! down ([`Error::Closed`], not retryable), or the call itself was malformed
//! ([`Error::InvalidUrl`], [`Error::Encode`]).

use herald_protocol::ErrorPayload;

/// What went wrong with a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a usable `ws://` or `wss://` URL.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The TLS settings cannot be used (no root certificate to trust, an
    /// unreadable PEM).
    #[error("TLS: {0}")]
    Tls(String),
    /// No reply arrived within the ack timeout (or the connect timeout).
    #[error("timed out waiting for a reply")]
    Timeout,
    /// The connection was lost (or could not be established) while the
    /// request was pending. The request may or may not have reached the
    /// server; retrying is up to the caller.
    #[error("bad connection (code {code}): {reason}")]
    BadConnection {
        /// The WebSocket close code (1006 when the socket hung up without one).
        code: u16,
        /// The close reason or the I/O error.
        reason: String,
    },
    /// The server answered the request with an error object.
    #[error("remote error: {0}")]
    Remote(ErrorPayload),
    /// The client was closed (by [`crate::Client::close`] or by dropping
    /// every handle); no further calls can succeed.
    #[error("the client is closed")]
    Closed,
    /// Call data could not be serialized as JSON.
    #[error("cannot encode data as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// Reply or publication data did not have the requested type.
    #[error("cannot decode data: {0}")]
    Decode(#[source] serde_json::Error),
    /// The token store failed to load, save or remove the auth token.
    #[error("token store: {0}")]
    TokenStore(#[source] std::io::Error),
}

impl Error {
    /// The `name` of the remote error object, when this is [`Error::Remote`]
    /// (e.g. `"MyError"`, `"AuthTokenExpiredError"`).
    pub fn remote_name(&self) -> Option<&str> {
        match self {
            Error::Remote(e) => Some(&e.name),
            _ => None,
        }
    }

    pub(crate) fn bad_connection(code: u16, reason: impl Into<String>) -> Self {
        Error::BadConnection {
            code,
            reason: reason.into(),
        }
    }
}

/// Shorthand for `Result<T, herald_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
