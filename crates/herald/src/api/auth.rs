//! The API key and its check.
//!
//! A request carries the key as `Authorization: apikey KEY` or
//! `X-API-Key: KEY`. Both sides are hashed (SHA-1, only to give them one
//! length) and the digests compared in constant time (`subtle`), so that
//! neither the time a comparison takes nor an early exit tells how much of
//! a guess was right, nor how long the key is.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The key the backend must send with every API call.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 20],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// An empty API key was given.
#[derive(Debug, thiserror::Error)]
#[error("the API key must not be empty")]
pub struct EmptyKey;

fn digest(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

impl ApiKey {
    /// A key; it must not be empty.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, EmptyKey> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(EmptyKey);
        }
        Ok(Self {
            digest: digest(key),
        })
    }

    /// Whether `given` is this key, in constant time.
    pub fn matches(&self, given: &[u8]) -> bool {
        digest(given).ct_eq(&self.digest).into()
    }

    /// Whether the request's headers carry this key.
    pub(crate) fn authorizes(&self, headers: &HeaderMap) -> bool {
        presented(headers).is_some_and(|k| self.matches(k))
    }
}

/// The key a request presents, if any.
fn presented(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.as_bytes();
        let scheme = b"apikey ";
        if v.len() > scheme.len() && v[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(v[scheme.len()..].trim_ascii());
        }
    }
    headers.get("x-api-key").map(|v| v.as_bytes().trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn both_headers_carry_the_key() {
        let key = ApiKey::new("s3cret").unwrap();
        assert!(key.authorizes(&headers("authorization", "apikey s3cret")));
        assert!(key.authorizes(&headers("authorization", "ApiKey s3cret")));
        assert!(key.authorizes(&headers("x-api-key", "s3cret")));
        assert!(!key.authorizes(&headers("authorization", "Bearer s3cret")));
        assert!(!key.authorizes(&headers("authorization", "apikey s3cre")));
        assert!(!key.authorizes(&headers("x-api-key", "s3cret-and-more")));
        assert!(!key.authorizes(&HeaderMap::new()));
    }

    #[test]
    fn keys_are_not_empty_nor_printed() {
        assert!(ApiKey::new("").is_err());
        let key = ApiKey::new("visible?").unwrap();
        assert!(!format!("{key:?}").contains("visible"));
    }
}
