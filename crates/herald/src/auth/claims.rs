//! The claims Herald itself reads in a verified token (docs/protocol.md,
//! "Claims"): the user claim (`user_claim`, `sub` by default), the channels
//! claim (`channels_claim`, `channels` by default: channels the socket is
//! subscribed to by the server), `info` (shown in presence) and `exp`.
//! Everything else is the application's.

use std::sync::Arc;

use serde_json::Value;

use super::Claims;
use super::error::TokenError;

/// The claim presence shows as a socket's `info`.
pub const INFO_CLAIM: &str = "info";

/// The user a token names in claim `claim`: a string, or a number written
/// as text; `None` for anything else.
pub(crate) fn user_of(claims: &Claims, claim: &str) -> Option<Arc<str>> {
    match claims.get(claim)? {
        Value::String(s) => Some(Arc::from(s.as_str())),
        Value::Number(n) => Some(Arc::from(n.to_string())),
        _ => None,
    }
}

/// The channels a token grants in claim `claim` (empty name: the claim is
/// off). Missing or null: none. Anything but an array of strings refuses
/// the token: a backend that means to grant channels and spells it wrong
/// should hear about it at once, not find its users without their
/// channels.
pub(crate) fn channels_of<'a>(claims: &'a Claims, claim: &str) -> Result<Vec<&'a str>, TokenError> {
    if claim.is_empty() {
        return Ok(Vec::new());
    }
    match claims.get(claim) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().ok_or_else(|| bad_channels(claim)))
            .collect(),
        Some(_) => Err(bad_channels(claim)),
    }
}

/// Whether `claims` grant `channel` in claim `claim` (a malformed claim
/// grants nothing).
pub(crate) fn grants(claims: &Claims, claim: &str, channel: &str) -> bool {
    channels_of(claims, claim).is_ok_and(|list| list.contains(&channel))
}

fn bad_channels(claim: &str) -> TokenError {
    TokenError::invalid(&format!(
        "jwt claim {claim} must be an array of channel names"
    ))
}

/// The `info` claim, when present and not null.
pub(crate) fn info_of(claims: &Claims) -> Option<Value> {
    claims.get(INFO_CLAIM).filter(|v| !v.is_null()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(v: Value) -> Claims {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn users_are_strings_or_numbers() {
        assert_eq!(
            user_of(&c(json!({"sub": "ada"})), "sub").as_deref(),
            Some("ada")
        );
        assert_eq!(
            user_of(&c(json!({"uid": 42})), "uid").as_deref(),
            Some("42")
        );
        assert_eq!(user_of(&c(json!({"sub": ["x"]})), "sub"), None);
        assert_eq!(user_of(&c(json!({})), "sub"), None);
    }

    #[test]
    fn channels_must_be_an_array_of_names() {
        let claims = c(json!({"channels": ["a", "user:ada"], "bad": "a", "mixed": ["a", 1]}));
        assert_eq!(channels_of(&claims, "channels").unwrap(), ["a", "user:ada"]);
        assert!(channels_of(&claims, "absent").unwrap().is_empty());
        assert!(channels_of(&claims, "").unwrap().is_empty());
        let e = channels_of(&claims, "bad").unwrap_err().payload;
        assert_eq!(e.name, "AuthTokenInvalidError");
        assert!(e.message.contains("array of channel names"));
        assert!(channels_of(&claims, "mixed").is_err());
        assert!(grants(&claims, "channels", "user:ada"));
        assert!(!grants(&claims, "channels", "user:bob"));
        assert!(!grants(&claims, "mixed", "a"));
        assert!(!grants(&claims, "", "a"));
    }

    #[test]
    fn info_is_any_value_but_null() {
        assert_eq!(
            info_of(&c(json!({"info": {"n": 1}}))),
            Some(json!({"n": 1}))
        );
        assert_eq!(info_of(&c(json!({"info": null}))), None);
        assert_eq!(info_of(&c(json!({}))), None);
    }
}
