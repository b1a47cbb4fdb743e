//! Signed auth tokens (JWT): the keys a server trusts, issuing tokens,
//! verifying them, and the errors socketcluster-server sends for refused
//! ones.
//!
//! A socket is authenticated when it holds a token this server can verify.
//! An [`AuthEngine`] holds keys ([`Key`]: HS256/384/512 secrets, RS*, PS*,
//! ES256/384 and EdDSA PEM keys, each with an optional id) and maybe a JWKS
//! URL ([`JwksOptions`]) whose keys it fetches and refreshes. The first key
//! that can sign issues the server's tokens (with its id as `kid`); every
//! key verifies, so a rotation adds the new key, moves signing to it, then
//! drops the old one.
//!
//! * [`keys`]: one key, and choosing keys by a token's `alg` and `kid`.
//! * [`jwks`]: the JWKS cache and its refresh task.
//! * `verify` (internal): the order of the checks.
//! * [`claims`]: the claims Herald reads (user, channels, info).
//! * `error` (internal): [`AuthError`], [`TokenError`].
//! * `time` (internal): the clock and RFC 3339 times in errors.

pub mod claims;
mod error;
pub mod jwks;
pub mod keys;
mod time;
mod verify;

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde_json::{Map, Value};

pub use error::{AuthError, TokenError};
pub use jsonwebtoken::Algorithm;
pub use jwks::{JwksError, JwksOptions};
pub use keys::Key;
pub(crate) use time::unix_now;

/// The claims of `token`, read without verification: only for a token that
/// was verified (or signed here) when it became a socket's token, which
/// keeps the signed token alone (`crate::socket::AuthState`). Empty if it
/// does not decode (it always does, having been verified).
pub(crate) fn decode_claims(token: &str) -> Claims {
    jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap_or_default()
}

use jwks::Jwks;
use keys::{KeySet, Wanted};
use verify::Audience;

/// The claims of a verified token (its JSON payload).
pub type Claims = Map<String, Value>;

/// Default of [`AuthEngine::max_token_len`]: 8 KiB, far above any real
/// token (a few hundred bytes) and far below what costs anything to refuse.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// Issues and verifies the auth tokens of one server.
///
/// Verification refuses, in this order and before any signature check: a
/// token longer than [`AuthEngine::max_token_len`], a token that is not three
/// dot-separated parts, `alg: none` or an empty signature, an algorithm no
/// key of the engine takes (so an HS256 token "signed" with an RSA public
/// key never reaches the HMAC code), and a `kid` that names no key of that
/// algorithm. Then the signature (with each key the `alg` and `kid` leave,
/// keys without an id included), `exp` and `nbf` (with the clock leeway,
/// none by default), then the audience and issuer when they are
/// configured. A `kid` only ever selects among keys already loaded: it
/// never names a file, a URL or a database row.
///
/// With a JWKS, a token that no key at hand can check makes the engine
/// refresh the JWKS and try again, at most once per
/// [`JwksOptions::min_refresh`] (see [`jwks`]).
pub struct AuthEngine {
    local: KeySet,
    jwks: Option<Jwks>,
    validations: HashMap<Algorithm, Validation>,
    leeway: u64,
    max_token_len: usize,
    audience: Audience,
}

impl std::fmt::Debug for AuthEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEngine")
            .field("keys", &self.local)
            .field("jwks", &self.jwks)
            .field("leeway", &self.leeway)
            .field("max_token_len", &self.max_token_len)
            .field("audience", &self.audience.audience)
            .field("issuer", &self.audience.issuer)
            .finish()
    }
}

fn validations(leeway: u64) -> HashMap<Algorithm, Validation> {
    keys::ALL
        .iter()
        .map(|a| (*a, verify::validation(*a, leeway)))
        .collect()
}

impl AuthEngine {
    /// An engine with `keys` (the first that can sign issues tokens; ids
    /// must differ). Fails without keys: an engine that only trusts a
    /// JWKS is [`AuthEngine::jwks`].
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Result<Self, AuthError> {
        let local = KeySet::new(keys.into_iter().collect())?;
        if local.is_empty() {
            return Err(AuthError::NoKeys);
        }
        Ok(Self::with_set(local, None))
    }

    /// A verification-only engine whose keys come from a JWKS URL.
    pub fn jwks(options: JwksOptions) -> Result<Self, AuthError> {
        Ok(Self::with_set(KeySet::default(), Some(Jwks::new(options)?)))
    }

    /// Also trusts the keys of a JWKS URL (the engine's own keys still
    /// sign).
    pub fn with_jwks(mut self, options: JwksOptions) -> Result<Self, AuthError> {
        self.jwks = Some(Jwks::new(options)?);
        Ok(self)
    }

    fn with_set(local: KeySet, jwks: Option<Jwks>) -> Self {
        Self {
            local,
            jwks,
            validations: validations(0),
            leeway: 0,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            audience: Audience::default(),
        }
    }

    /// HS256 with a shared secret (what `herald serve --auth-secret` uses).
    ///
    /// # Panics
    ///
    /// When `secret` is empty.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        let key = Key::secret(Algorithm::HS256, secret).expect("an HS256 secret must not be empty");
        Self::with_set(KeySet::new(vec![key]).expect("one key"), None)
    }

    /// HS256 with a random secret. Tokens it signs do not survive a restart.
    pub fn random() -> Self {
        let secret: [u8; 32] = rand::random();
        Self::hs256(secret)
    }

    /// One asymmetric key (RS256/384/512, PS*, ES256/384, EdDSA) from a PEM
    /// public key, and optionally the PEM private key to sign with (checked
    /// to be its pair). A server with only the public key verifies tokens
    /// issued elsewhere.
    pub fn asymmetric(
        algorithm: Algorithm,
        public_pem: &[u8],
        private_pem: Option<&[u8]>,
    ) -> Result<Self, AuthError> {
        let key = match private_pem {
            Some(private) => Key::pem_pair(algorithm, public_pem, private)?,
            None => Key::public_pem(algorithm, public_pem)?,
        };
        Self::from_keys([key])
    }

    /// Accepts `exp` and `nbf` up to `leeway` off (whole seconds; default
    /// none, as socketcluster-server): a token is valid until `exp +
    /// leeway`, also on an open socket, and from `nbf - leeway`.
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self.validations = validations(self.leeway);
        self
    }

    /// The clock leeway, in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
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
        self.audience.audience = audience.into_iter().map(Into::into).collect();
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
        self.audience.issuer = issuer.into_iter().map(Into::into).collect();
        self
    }

    /// The audiences a token must name (empty: not checked).
    pub fn audiences(&self) -> &[String] {
        &self.audience.audience
    }

    /// The issuers a token must come from (empty: not checked).
    pub fn issuers(&self) -> &[String] {
        &self.audience.issuer
    }

    /// The algorithm this engine signs with (`None`: verification only).
    pub fn signing_algorithm(&self) -> Option<Algorithm> {
        self.local.signing().and_then(Key::signing_algorithm)
    }

    /// The JWKS settings, when the engine has a JWKS.
    pub fn jwks_options(&self) -> Option<&JwksOptions> {
        self.jwks.as_ref().map(Jwks::options)
    }

    /// Starts the JWKS refresh task, if there is a JWKS (the server does it
    /// when it is built; verification does it too).
    pub fn start(&self) {
        if let Some(jwks) = &self.jwks {
            jwks.start();
        }
    }

    /// Waits for the JWKS's first fetch (bounded by its timeout) and says
    /// how it went: the number of usable keys, or why it failed. `Ok(0)`
    /// without a JWKS. For a startup log; the server runs either way.
    pub async fn jwks_ready(&self) -> Result<usize, JwksError> {
        match &self.jwks {
            Some(jwks) => jwks.first_fetch().await,
            None => Ok(0),
        }
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
        let key = self.local.signing().ok_or(AuthError::NoSigningKey)?;
        let (algorithm, encoding) = key.encoding().ok_or(AuthError::NoSigningKey)?;
        let now = unix_now();
        claims.entry("iat").or_insert_with(|| Value::from(now));
        claims
            .entry("exp")
            .or_insert_with(|| Value::from(now + expiry.as_secs()));
        let header = Header {
            kid: key.id().map(str::to_owned),
            ..Header::new(algorithm)
        };
        let token = jsonwebtoken::encode(&header, &claims, encoding)?;
        if token.len() > self.max_token_len {
            return Err(AuthError::TokenTooLong {
                len: token.len(),
                limit: self.max_token_len,
            });
        }
        Ok((token, claims))
    }

    /// Verifies a signed token and returns its claims, or the error the
    /// client receives. With a JWKS, may wait for a refresh (see
    /// [`jwks`]); never while holding a lock.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let wanted = verify::read_header(token, self.max_token_len)?;
        let Some(jwks) = &self.jwks else {
            return self.check(token, &wanted, None);
        };
        let remote = jwks.current();
        if self.has_candidate(&wanted, &remote) {
            return self.check(token, &wanted, Some(&remote));
        }
        jwks.refresh_now().await;
        self.check(token, &wanted, Some(&jwks.current()))
    }

    /// [`AuthEngine::verify`] with the keys at hand only: never fetches,
    /// never waits (a token whose key the JWKS cache lacks is refused).
    pub fn verify_offline(&self, token: &str) -> Result<Claims, TokenError> {
        let wanted = verify::read_header(token, self.max_token_len)?;
        let remote = self.jwks.as_ref().map(Jwks::current);
        self.check(token, &wanted, remote.as_deref())
    }

    fn has_candidate(&self, wanted: &Wanted, remote: &KeySet) -> bool {
        self.local.candidates(wanted).next().is_some() || remote.candidates(wanted).next().is_some()
    }

    fn check(
        &self,
        token: &str,
        wanted: &Wanted,
        remote: Option<&KeySet>,
    ) -> Result<Claims, TokenError> {
        let validation = self
            .validations
            .get(&wanted.algorithm)
            .ok_or_else(|| TokenError::invalid("invalid algorithm"))?;
        let candidates = self
            .local
            .candidates(wanted)
            .chain(remote.into_iter().flat_map(|r| r.candidates(wanted)));
        match verify::check_signature(token, candidates, validation) {
            Some(Ok(claims)) => {
                self.audience.check(&claims)?;
                Ok(claims)
            }
            Some(Err(e)) => Err(e),
            None => {
                let takes = self.local.takes(wanted.algorithm)
                    || remote.is_some_and(|r| r.takes(wanted.algorithm));
                Err(TokenError::invalid(if takes {
                    "no key matches the token's kid"
                } else {
                    "invalid algorithm"
                }))
            }
        }
    }

    /// The last second a socket holding `claims` stays authenticated: `exp`
    /// plus the leeway (`None`: the token does not expire).
    pub(crate) fn session_expiry(&self, claims: &Claims) -> Option<u64> {
        verify::session_expiry(claims, self.leeway)
    }
}

#[cfg(test)]
mod tests;
