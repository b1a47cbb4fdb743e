//! Times in tokens: the clock, a token's numeric claims, and the RFC 3339
//! wording of socketcluster's `expiry` and `date` error fields.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Claims;

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A numeric claim of a token, read without verification (only used to word
/// an error about a token whose signature was already checked).
pub(super) fn claim_secs(token: &str, claim: &str) -> Option<u64> {
    let claims: Claims = jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
    claims.get(claim)?.as_f64().map(|f| f.max(0.0) as u64)
}

/// The last second RFC 3339 can write with a four-digit year
/// (9999-12-31T23:59:59Z).
pub(super) const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// A Unix time as JavaScript's `Date.toJSON()` writes it; `None` past the
/// year 9999 (a token may claim any number: found by the fuzzer, a
/// signed `nbf` of 6.5e18 used to panic here).
pub(super) fn iso_time(secs: u64) -> Option<String> {
    if secs > LAST_RFC3339_SECOND {
        return None;
    }
    let time = UNIX_EPOCH.checked_add(Duration::from_secs(secs))?;
    let mut text = String::new();
    use std::fmt::Write as _;
    write!(text, "{}", humantime::format_rfc3339_millis(time)).ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_stops_at_the_year_9999() {
        assert_eq!(
            iso_time(LAST_RFC3339_SECOND).as_deref(),
            Some("9999-12-31T23:59:59.000Z")
        );
        assert_eq!(iso_time(LAST_RFC3339_SECOND + 1), None);
        assert_eq!(iso_time(1000).as_deref(), Some("1970-01-01T00:16:40.000Z"));
    }
}
