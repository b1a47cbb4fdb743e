//! Signed auth tokens (JWT): issuing, verifying, and the error objects that
//! socketcluster-server sends for refused tokens.
//!
//! A socket is authenticated when it holds a token this server can verify.
//! The server signs tokens with one key (HS256 secret by default, or an
//! RS256/ES256/EdDSA private key) and verifies with the matching key; only
//! the configured algorithm is accepted, so `alg: none` and HS/RS confusion
//! are refused before any signature check.
//!
//! Refusals carry the names and messages of node's `jsonwebtoken`, as
//! socketcluster-server reports them: `AuthTokenExpiredError` ("jwt
//! expired", with `expiry`), `AuthTokenInvalidError` ("jwt malformed",
//! "invalid signature", "invalid algorithm", "jwt signature is required"),
//! `AuthTokenNotBeforeError` ("jwt not active", not a bad token).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use herald_protocol::error::{ErrorPayload, names};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

/// The claims of a verified token (its JSON payload).
pub type Claims = Map<String, Value>;

/// Why keys could not be loaded or a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A PEM key could not be read.
    #[error("invalid {kind} key: {source}")]
    InvalidKey {
        /// Which key.
        kind: &'static str,
        /// The underlying error.
        source: jsonwebtoken::errors::Error,
    },
    /// The server was configured with a verification key only.
    #[error("this server has no signing key: it can verify tokens but not issue them")]
    NoSigningKey,
    /// Signing failed.
    #[error("failed to sign auth token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The claims are not a JSON object.
    #[error("auth token claims must be a JSON object")]
    ClaimsNotAnObject,
    /// The signed token would be longer than the engine verifies
    /// ([`AuthEngine::max_token_len`]): the server never issues a token it
    /// would refuse.
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
    fn invalid(message: &str) -> Self {
        Self {
            payload: ErrorPayload::new(names::AUTH_TOKEN_INVALID, message).with("isBadToken", true),
        }
    }

    /// Whether the client should discard the token (every refusal but "not
    /// yet valid").
    pub fn is_bad_token(&self) -> bool {
        self.payload.is_bad_token()
    }
}

/// Default of [`AuthEngine::max_token_len`]: 8 KiB, far above any real
/// token (a few hundred bytes) and far below what costs anything to refuse.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Issues and verifies the auth tokens of one server.
///
/// Verification refuses, in this order and before any signature check: a
/// token longer than [`AuthEngine::max_token_len`], a token that is not three
/// dot-separated parts, `alg: none` or an empty signature, and any algorithm
/// but the engine's own (so an HS256 token "signed" with an RSA public key
/// never reaches the HMAC code). Then the signature, `exp` and `nbf` (no
/// leeway), then the audience and issuer when they are configured. The
/// `kid` header is never read: an engine has exactly one key, so a key id
/// cannot select another key, a file or a database row.
pub struct AuthEngine {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    validation: Validation,
    max_token_len: usize,
    audience: Vec<String>,
    issuer: Vec<String>,
}

impl std::fmt::Debug for AuthEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEngine")
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.encoding.is_some())
            .field("max_token_len", &self.max_token_len)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl AuthEngine {
    fn with_keys(
        algorithm: Algorithm,
        encoding: Option<EncodingKey>,
        decoding: DecodingKey,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        // node's jsonwebtoken (and so socketcluster) accepts tokens without
        // `exp` and has no clock leeway by default.
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Self {
            algorithm,
            encoding,
            decoding,
            validation,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            audience: Vec::new(),
            issuer: Vec::new(),
        }
    }

    /// Refuses tokens longer than `bytes` (default
    /// [`DEFAULT_MAX_TOKEN_LEN`]) with `AuthTokenInvalidError` before
    /// decoding anything, so a megabyte "token" costs a length comparison.
    #[must_use]
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// The longest token this engine verifies.
    pub fn token_len_limit(&self) -> usize {
        self.max_token_len
    }

    /// Accepts only tokens whose `aud` claim (a string, or an array of
    /// strings) names one of `audience`; a token without `aud` is refused.
    /// Empty (the default): `aud` is not checked. Refusals are
    /// `AuthTokenInvalidError` "jwt audience invalid. expected: ...", as
    /// node's `jsonwebtoken` words them.
    #[must_use]
    pub fn audience<I, S>(mut self, audience: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audience = audience.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts only tokens whose `iss` claim is one of `issuer`; a token
    /// without `iss` is refused. Empty (the default): `iss` is not checked.
    /// Refusals are `AuthTokenInvalidError` "jwt issuer invalid. expected:
    /// ...".
    #[must_use]
    pub fn issuer<I, S>(mut self, issuer: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuer = issuer.into_iter().map(Into::into).collect();
        self
    }

    /// The audiences a token must name (empty: not checked).
    pub fn audiences(&self) -> &[String] {
        &self.audience
    }

    /// The issuers a token must come from (empty: not checked).
    pub fn issuers(&self) -> &[String] {
        &self.issuer
    }

    /// The `aud` and `iss` checks of node's `jsonwebtoken`, on claims whose
    /// signature is verified: `aud` (string or array) must name a configured
    /// audience, `iss` must be a configured issuer.
    fn check_audience_and_issuer(&self, claims: &Claims) -> Result<(), TokenError> {
        if !self.audience.is_empty() {
            let wanted = |a: &str| self.audience.iter().any(|w| w == a);
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => wanted(a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(wanted),
                _ => false,
            };
            if !ok {
                return Err(TokenError::invalid(&format!(
                    "jwt audience invalid. expected: {}",
                    self.audience.join(" or ")
                )));
            }
        }
        if !self.issuer.is_empty() {
            let ok = matches!(claims.get("iss"), Some(Value::String(i)) if self.issuer.contains(i));
            if !ok {
                return Err(TokenError::invalid(&format!(
                    "jwt issuer invalid. expected: {}",
                    self.issuer.join(",")
                )));
            }
        }
        Ok(())
    }

    /// HS256 with a shared secret (what `herald serve --auth-secret` uses).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        Self::with_keys(
            Algorithm::HS256,
            Some(EncodingKey::from_secret(secret)),
            DecodingKey::from_secret(secret),
        )
    }

    /// HS256 with a random secret. Tokens it signs do not survive a restart.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::hs256(secret)
    }

    /// An asymmetric algorithm (RS256/384/512, PS*, ES256/384, EdDSA) with a
    /// PEM public key, and optionally the PEM private key to sign with. A
    /// server with only the public key verifies tokens issued elsewhere.
    pub fn asymmetric(
        algorithm: Algorithm,
        public_pem: &[u8],
        private_pem: Option<&[u8]>,
    ) -> Result<Self, AuthError> {
        let key_err = |kind| move |source| AuthError::InvalidKey { kind, source };
        let (decoding, encoding) = match algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                DecodingKey::from_rsa_pem(public_pem).map_err(key_err("public"))?,
                private_pem
                    .map(EncodingKey::from_rsa_pem)
                    .transpose()
                    .map_err(key_err("private"))?,
            ),
            Algorithm::ES256 | Algorithm::ES384 => (
                DecodingKey::from_ec_pem(public_pem).map_err(key_err("public"))?,
                private_pem
                    .map(EncodingKey::from_ec_pem)
                    .transpose()
                    .map_err(key_err("private"))?,
            ),
            Algorithm::EdDSA => (
                DecodingKey::from_ed_pem(public_pem).map_err(key_err("public"))?,
                private_pem
                    .map(EncodingKey::from_ed_pem)
                    .transpose()
                    .map_err(key_err("private"))?,
            ),
            _ => {
                return Err(AuthError::InvalidKey {
                    kind: "public",
                    source: ErrorKind::InvalidAlgorithm.into(),
                });
            }
        };
        Ok(Self::with_keys(algorithm, encoding, decoding))
    }

    /// The algorithm this engine signs and accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Signs `claims`, adding `iat` and, when absent, `exp = now + expiry`.
    pub fn sign(&self, claims: &Claims, expiry: Duration) -> Result<String, AuthError> {
        self.sign_claims(claims.clone(), expiry)
            .map(|(token, _)| token)
    }

    /// Like [`AuthEngine::sign`], also returning the claims as signed.
    pub fn sign_claims(
        &self,
        mut claims: Claims,
        expiry: Duration,
    ) -> Result<(String, Claims), AuthError> {
        let key = self.encoding.as_ref().ok_or(AuthError::NoSigningKey)?;
        let now = unix_now();
        claims.entry("iat").or_insert_with(|| Value::from(now));
        claims
            .entry("exp")
            .or_insert_with(|| Value::from(now + expiry.as_secs()));
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)?;
        if token.len() > self.max_token_len {
            return Err(AuthError::TokenTooLong {
                len: token.len(),
                limit: self.max_token_len,
            });
        }
        Ok((token, claims))
    }

    /// Verifies a signed token and returns its claims, or the error the
    /// client receives.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > self.max_token_len {
            return Err(TokenError::invalid(&format!(
                "jwt too long: {} bytes, the limit is {}",
                token.len(),
                self.max_token_len
            )));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::invalid("jwt malformed"));
        };
        let header: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| TokenError::invalid("invalid token"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if signature.is_empty() || alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::invalid("jwt signature is required"));
        }
        if alg != algorithm_name(self.algorithm) {
            return Err(TokenError::invalid("invalid algorithm"));
        }
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => {
                self.check_audience_and_issuer(&data.claims)?;
                Ok(data.claims)
            }
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => {
                    let exp = claim_secs(token, "exp");
                    let mut payload = ErrorPayload::new(names::AUTH_TOKEN_EXPIRED, "jwt expired");
                    if let Some(expiry) = exp.and_then(iso_time) {
                        payload = payload.with("expiry", expiry);
                    }
                    TokenError {
                        payload: payload.with("isBadToken", true),
                    }
                }
                ErrorKind::ImmatureSignature => {
                    let mut payload =
                        ErrorPayload::new(names::AUTH_TOKEN_NOT_BEFORE, "jwt not active");
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
            }),
        }
    }
}

/// The JOSE name of an algorithm.
fn algorithm_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// A numeric claim of a token, read without verification (only used to word
/// an error about a token whose signature was already checked).
fn claim_secs(token: &str, claim: &str) -> Option<u64> {
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    claims.get(claim)?.as_f64().map(|f| f.max(0.0) as u64)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last second RFC 3339 can write with a four-digit year
/// (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// A Unix time as JavaScript's `Date.toJSON()` writes it; `None` past the
/// year 9999 (a token may claim any number: found by the fuzzer, a
/// signed `nbf` of 6.5e18 used to panic here).
fn iso_time(secs: u64) -> Option<String> {
    if secs > LAST_RFC3339_SECOND {
        return None;
    }
    let time = UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
    let mut text = String::new();
    use std::fmt::Write as _;
    write!(text, "{}", humantime::format_rfc3339_millis(time)).ok()?;
    Some(text)
}

/// The `exp` claim of a token's claims, in Unix seconds.
pub(crate) fn expiry_of(claims: &Claims) -> Option<u64> {
    claims.get("exp")?.as_f64().map(|f| f.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn signs_and_verifies() {
        let engine = AuthEngine::hs256("secret");
        let token = engine
            .sign(&claims(json!({"sub": "u1"})), Duration::from_secs(60))
            .unwrap();
        let c = engine.verify(&token).unwrap();
        assert_eq!(c["sub"], "u1");
        assert!(c["exp"].as_u64().unwrap() > unix_now());
    }

    #[test]
    fn refusals_match_socketcluster() {
        let engine = AuthEngine::hs256("secret");
        let err = |t: &str| engine.verify(t).unwrap_err().payload;

        let e = err("garbage");
        assert_eq!(
            (e.name.as_str(), e.message.as_str()),
            ("AuthTokenInvalidError", "jwt malformed")
        );
        assert!(e.is_bad_token());

        let other = AuthEngine::hs256("other")
            .sign(&claims(json!({"sub": "u"})), Duration::from_secs(60))
            .unwrap();
        assert_eq!(err(&other).message, "invalid signature");

        let expired = engine
            .sign(
                &claims(json!({"sub": "u", "exp": 1000})),
                Duration::from_secs(60),
            )
            .unwrap();
        let e = err(&expired);
        assert_eq!(e.name, "AuthTokenExpiredError");
        assert_eq!(e.extra["expiry"], "1970-01-01T00:16:40.000Z");
        assert!(e.is_bad_token());

        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let none = format!(
            "{}.{}.",
            b64(json!({"alg":"none","typ":"JWT"})),
            b64(json!({"sub":"u"}))
        );
        assert_eq!(err(&none).message, "jwt signature is required");

        let rs = format!(
            "{}.{}.c2ln",
            b64(json!({"alg":"RS256","typ":"JWT"})),
            b64(json!({"sub":"u"}))
        );
        assert_eq!(err(&rs).message, "invalid algorithm");

        let future = engine
            .sign(
                &claims(json!({"sub": "u", "nbf": unix_now() + 3600})),
                Duration::from_secs(7200),
            )
            .unwrap();
        let e = err(&future);
        assert_eq!(e.name, "AuthTokenNotBeforeError");
        assert!(!e.is_bad_token());
    }

    #[test]
    fn far_future_and_odd_times_do_not_panic() {
        let engine = AuthEngine::hs256("secret");
        let odd = engine
            .sign(&claims(json!({"nbf": 1e300})), Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            engine.verify(&odd).unwrap_err().payload.message,
            "invalid token"
        );
        for nbf in [json!(6_516_659_349_664_100_386u64), json!(u64::MAX)] {
            let t = engine
                .sign(&claims(json!({"nbf": nbf})), Duration::from_secs(60))
                .unwrap();
            let e = engine.verify(&t).unwrap_err().payload;
            assert_eq!(e.name, "AuthTokenNotBeforeError", "{nbf}");
            assert!(e.extra.get("date").is_none(), "{e:?}");
        }
        assert_eq!(
            iso_time(LAST_RFC3339_SECOND).as_deref(),
            Some("9999-12-31T23:59:59.000Z")
        );
        assert_eq!(iso_time(LAST_RFC3339_SECOND + 1), None);
    }

    #[test]
    fn long_tokens_are_refused_before_decoding() {
        let engine = AuthEngine::hs256("secret").max_token_len(64);
        let e = engine.verify(&"a".repeat(65)).unwrap_err().payload;
        assert_eq!(e.name, "AuthTokenInvalidError");
        assert!(e.message.contains("too long"), "{}", e.message);
        assert!(e.is_bad_token());
        assert_eq!(
            AuthEngine::hs256("s").token_len_limit(),
            DEFAULT_MAX_TOKEN_LEN
        );
        // Nor does it sign one it would refuse.
        let big = claims(json!({"pad": "x".repeat(100)}));
        assert!(matches!(
            engine.sign(&big, Duration::from_secs(60)),
            Err(AuthError::TokenTooLong { limit: 64, .. })
        ));
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let engine = AuthEngine::hs256("secret")
            .audience(["app", "admin"])
            .issuer(["https://login.example"]);
        let sign = |v: Value| engine.sign(&claims(v), Duration::from_secs(60)).unwrap();
        let iss = "https://login.example";
        assert!(
            engine
                .verify(&sign(json!({"aud": "app", "iss": iss})))
                .is_ok()
        );
        assert!(
            engine
                .verify(&sign(json!({"aud": ["x", "admin"], "iss": iss})))
                .is_ok()
        );
        for (bad, needle) in [
            (json!({"aud": "other", "iss": iss}), "audience"),
            (json!({"aud": ["x", 5], "iss": iss}), "audience"),
            (json!({"iss": iss}), "audience"),
            (
                json!({"aud": "app", "iss": "https://evil.example"}),
                "issuer",
            ),
            (json!({"aud": "app"}), "issuer"),
            (json!({"aud": "app", "iss": [iss]}), "issuer"),
        ] {
            let e = engine.verify(&sign(bad.clone())).unwrap_err().payload;
            assert_eq!(e.name, "AuthTokenInvalidError", "{bad}");
            assert!(e.message.contains(needle), "{bad}: {}", e.message);
            assert!(e.is_bad_token());
        }
        // Not configured: not checked.
        let plain = AuthEngine::hs256("secret");
        let t = plain
            .sign(&claims(json!({"aud": "whatever"})), Duration::from_secs(60))
            .unwrap();
        assert!(plain.verify(&t).is_ok());
    }

    #[test]
    fn verify_only_engine_cannot_sign() {
        let engine = AuthEngine {
            encoding: None,
            ..AuthEngine::hs256("s")
        };
        assert!(matches!(
            engine.sign(&Claims::new(), Duration::from_secs(1)),
            Err(AuthError::NoSigningKey)
        ));
    }
}
