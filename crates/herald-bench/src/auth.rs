//! Auth tokens for the bench's clients: HS256 JWTs signed with the secret
//! the server verifies them with (Herald's `auth_secret`).
//!
//! `conns` authenticates every socket by default (a token per socket, each
//! with a `sub` of its own, sent as the handshake's `authToken`), because a
//! production socket carries its token, claims and user-index entry; an
//! anonymous socket would understate the memory per socket. When the bench
//! starts the server itself (`--server-cmd`) and no secret is given, it
//! draws a random one and passes it to the server in the environment as
//! `HERALD_AUTH_SECRET` ([`SECRET_ENV`]), which `herald serve` reads (and
//! `bench/sc-server.js` too, as socketcluster-server's `authKey`).

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The environment variable carrying the secret to a started server (and to
/// the bench's worker processes): Herald's own name for `auth_secret`.
pub const SECRET_ENV: &str = "HERALD_AUTH_SECRET";

/// How long the bench's tokens are valid: longer than any run.
pub const TOKEN_LIFETIME_S: u64 = 24 * 3600;

/// A random secret: 32 random bytes, URL-safe base64.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The current Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HS256 JWT for `sub`, issued at `iat` and expiring
/// [`TOKEN_LIFETIME_S`] later, signed with `secret`.
pub fn token(secret: &str, sub: &str, iat: u64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": sub,
        "iat": iat,
        "exp": iat + TOKEN_LIFETIME_S,
    });
    let payload = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    // HMAC takes a key of any length: `new_from_slice` cannot fail here.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    mac.update(signing_input.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// The `sub` of the bench's client `index`.
pub fn subject(index: usize) -> String {
    format!("bench-user-{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_three_url_safe_parts_with_the_claims() {
        let t = token("s3cret", &subject(7), 1_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "bench-user-7");
        assert_eq!(claims["exp"], 1_000 + TOKEN_LIFETIME_S);
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        // The signature depends on the secret.
        assert_ne!(t, token("other", &subject(7), 1_000));
        assert_ne!(random_secret(), random_secret());
    }
}
