//! What can go wrong with keys and tokens: [`AuthError`] for the server's
//! side (a key that does not load, a token it cannot sign), [`TokenError`]
//! for a refused token, worded as socketcluster-server words it.
//!
//! Refusals carry the names and messages of node's `jsonwebtoken`, as
//! socketcluster-server reports them: `AuthTokenExpiredError` ("jwt
//! expired", with `expiry`), `AuthTokenInvalidError` ("jwt malformed",
//! "invalid signature", "invalid algorithm", "jwt signature is required"),
//! `AuthTokenNotBeforeError` ("jwt not active", not a bad token).

use herald_protocol::error::{ErrorPayload, names};
use jsonwebtoken::errors::ErrorKind;

use super::time::{claim_secs, iso_time};

/// Why keys could not be loaded or a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A key could not be read.
    #[error("invalid {kind} key: {source}")]
    InvalidKey {
        /// Which key (`public`, `private`, `secret`, `JWK`).
        kind: &'static str,
        /// The underlying error.
        source: jsonwebtoken::errors::Error,
    },
    /// A key was given with an algorithm of another family (an RSA PEM
    /// for ES256, a secret for RS256).
    #[error("{algorithm} does not take a {given} key")]
    WrongKeyType {
        /// The algorithm asked for.
        algorithm: &'static str,
        /// The kind of key given.
        given: &'static str,
    },
    /// A private key and a public key were given that are not one pair
    /// (a token signed with the one would not verify with the other).
    #[error(
        "the private key and the public key{id} are not one pair (or not keys for {algorithm})"
    )]
    MismatchedKeys {
        /// The algorithm.
        algorithm: &'static str,
        /// ` "ID"` when the key has an id, else empty.
        id: String,
    },
    /// An HMAC secret was empty.
    #[error("an HMAC secret must not be empty")]
    EmptySecret,
    /// Two keys have the same id: a `kid` would not say which one.
    #[error("two keys have the id {0:?}")]
    DuplicateKeyId(String),
    /// An engine was built with no key at all.
    #[error("an auth engine needs at least one key or a JWKS URL")]
    NoKeys,
    /// The JWKS settings are unusable (a bad URL, bounds the wrong way).
    #[error("invalid JWKS settings: {0}")]
    Jwks(String),
    /// The server has verification keys only.
    #[error("this server has no signing key: it can verify tokens but not issue them")]
    NoSigningKey,
    /// Signing failed.
    #[error("failed to sign auth token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The claims are not a JSON object.
    #[error("auth token claims must be a JSON object")]
    ClaimsNotAnObject,
    /// The signed token would be longer than the engine verifies
    /// ([`super::AuthEngine::max_token_len`]): the server never issues a
    /// token it would refuse.
    #[error("the signed auth token is {len} bytes, over the {limit}-byte limit (max_auth_token)")]
    TokenTooLong {
        /// The token's length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// A refused token, as sent to the client in `authError`.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenError {
    /// The wire error (`name`, `message`, `isBadToken`, maybe `expiry`).
    pub payload: ErrorPayload,
}

impl TokenError {
    /// `AuthTokenInvalidError` with `message`: a bad token.
    pub(crate) fn invalid(message: &str) -> Self {
        Self {
            payload: ErrorPayload::new(names::AUTH_TOKEN_INVALID, message).with("isBadToken", true),
        }
    }

    /// Whether the client should discard the token (every refusal but "not
    /// yet valid").
    pub fn is_bad_token(&self) -> bool {
        self.payload.is_bad_token()
    }

    /// The refusal for a `jsonwebtoken` error on `token` (whose signature
    /// was checked when the error is about time: `jsonwebtoken` checks the
    /// signature first).
    pub(super) fn from_jwt(e: &jsonwebtoken::errors::Error, token: &str) -> Self {
        match e.kind() {
            ErrorKind::ExpiredSignature => {
                let mut payload = ErrorPayload::new(names::AUTH_TOKEN_EXPIRED, "jwt expired");
                if let Some(expiry) = claim_secs(token, "exp").and_then(iso_time) {
                    payload = payload.with("expiry", expiry);
                }
                TokenError {
                    payload: payload.with("isBadToken", true),
                }
            }
            ErrorKind::ImmatureSignature => {
                let mut payload = ErrorPayload::new(names::AUTH_TOKEN_NOT_BEFORE, "jwt not active");
                if let Some(date) = claim_secs(token, "nbf").and_then(iso_time) {
                    payload = payload.with("date", date);
                }
                TokenError {
                    payload: payload.with("isBadToken", false),
                }
            }
            ErrorKind::InvalidSignature => TokenError::invalid("invalid signature"),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                TokenError::invalid("invalid algorithm")
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                TokenError::invalid("jwt malformed")
            }
            ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                TokenError::invalid("invalid token")
            }
            other => TokenError {
                payload: ErrorPayload::new(names::AUTH_TOKEN, format!("{other:?}"))
                    .with("isBadToken", true),
            },
        }
    }
}
