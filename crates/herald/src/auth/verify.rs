//! The checks of a token, in order: what can be refused before any crypto
//! ([`read_header`]), then the signature against the candidate keys and the
//! times ([`check_signature`]), then `aud` and `iss` ([`Audience::check`]).
//!
//! Before any signature check a token is refused when it is longer than the
//! engine's bound, is not three dot-separated parts, says `alg: none` (in
//! any case) or has an empty signature, or names an algorithm Herald does
//! not verify. Which keys are then tried is the key set's business
//! ([`super::keys::KeySet::candidates`]).

use base64::Engine as _;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde_json::Value;

use super::Claims;
use super::error::TokenError;
use super::keys::{Key, Wanted, parse_algorithm};

/// Reads what a token asks for (`alg`, `kid`), refusing what needs no key
/// to refuse.
pub(super) fn read_header(token: &str, max_len: usize) -> Result<Wanted, TokenError> {
    if token.len() > max_len {
        return Err(TokenError::invalid(&format!(
            "jwt too long: {} bytes, the limit is {max_len}",
            token.len(),
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
    let algorithm = parse_algorithm(alg).ok_or_else(|| TokenError::invalid("invalid algorithm"))?;
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::invalid("invalid token")),
    };
    Ok(Wanted { algorithm, kid })
}

/// Checks the signature with each candidate key in turn (the first that
/// verifies wins), then `exp` and `nbf` with `validation`'s leeway.
/// `None` when there was no candidate at all.
pub(super) fn check_signature<'a>(
    token: &str,
    candidates: impl Iterator<Item = &'a Key>,
    validation: &Validation,
) -> Option<Result<Claims, TokenError>> {
    let mut tried = false;
    for key in candidates {
        tried = true;
        match jsonwebtoken::decode::<Claims>(token, key.decoding(), validation) {
            Ok(data) => return Some(Ok(data.claims)),
            // Not this key: try the next one. A key of the right family
            // that cannot check this token (a curve mismatch) is not it
            // either.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::InvalidSignature
                        | ErrorKind::InvalidKeyFormat
                        | ErrorKind::InvalidEcdsaKey
                        | ErrorKind::InvalidRsaKey(_)
                        | ErrorKind::InvalidEddsaKey
                ) => {}
            Err(e) => return Some(Err(TokenError::from_jwt(&e, token))),
        }
    }
    tried.then(|| Err(TokenError::invalid("invalid signature")))
}

/// The `aud` and `iss` a token must carry (empty lists: not checked).
#[derive(Debug, Clone, Default)]
pub(super) struct Audience {
    pub(super) audience: Vec<String>,
    pub(super) issuer: Vec<String>,
}

impl Audience {
    /// The `aud` and `iss` checks of node's `jsonwebtoken`, on claims whose
    /// signature is verified: `aud` (string or array) must name a configured
    /// audience, `iss` must be a configured issuer.
    pub(super) fn check(&self, claims: &Claims) -> Result<(), TokenError> {
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
}

/// The validation of one algorithm: signature, `exp` and `nbf` with
/// `leeway` seconds. node's `jsonwebtoken` (and so socketcluster) accepts
/// tokens without `exp`; `aud` and `iss` are checked by [`Audience`], with
/// node's wording.
pub(super) fn validation(algorithm: jsonwebtoken::Algorithm, leeway: u64) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.leeway = leeway;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
}

/// The last second a token with these claims is valid at, given `leeway`:
/// its `exp` plus the leeway (`None` without `exp`).
pub(crate) fn session_expiry(claims: &Claims, leeway: u64) -> Option<u64> {
    let exp = claims.get("exp")?.as_f64()?;
    Some((exp.max(0.0) as u64).saturating_add(leeway))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn headers_are_refused_before_any_key() {
        let t = |h: Value, sig: &str| format!("{}.{}.{sig}", b64(&h), b64(&serde_json::json!({})));
        let msg = |token: &str| read_header(token, 8192).unwrap_err().payload.message;
        assert_eq!(msg("a.b"), "jwt malformed");
        assert_eq!(msg("a.b.c.d"), "jwt malformed");
        assert_eq!(
            msg(&t(serde_json::json!({"alg":"none"}), "")),
            "jwt signature is required"
        );
        assert_eq!(
            msg(&t(serde_json::json!({"alg":"NONE"}), "x")),
            "jwt signature is required"
        );
        assert_eq!(
            msg(&t(serde_json::json!({"alg":"HS256"}), "")),
            "jwt signature is required"
        );
        assert_eq!(
            msg(&t(serde_json::json!({"alg":"hs256"}), "x")),
            "invalid algorithm"
        );
        assert_eq!(msg(&t(serde_json::json!({}), "x")), "invalid algorithm");
        assert_eq!(
            msg(&t(serde_json::json!({"alg":"HS256","kid":5}), "x")),
            "invalid token"
        );
        assert!(msg(&"a".repeat(9000)).contains("too long"));
        let w = read_header(&t(serde_json::json!({"alg":"ES384","kid":"k1"}), "x"), 8192).unwrap();
        assert_eq!(w.algorithm, jsonwebtoken::Algorithm::ES384);
        assert_eq!(w.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn session_expiry_adds_the_leeway() {
        let c = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            session_expiry(&c(serde_json::json!({"exp": 100})), 5),
            Some(105)
        );
        assert_eq!(
            session_expiry(&c(serde_json::json!({"exp": -3})), 0),
            Some(0)
        );
        assert_eq!(session_expiry(&c(serde_json::json!({})), 5), None);
        assert_eq!(
            session_expiry(&c(serde_json::json!({"exp": 1e300})), 5),
            Some(u64::MAX)
        );
    }
}
