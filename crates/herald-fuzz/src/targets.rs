//! The code under test, one function per target. Each takes the raw input
//! and panics when an invariant fails, so that the runner's
//! `catch_unwind` sees crashes and broken invariants alike.

use herald::{AuthEngine, Publication};
use herald_protocol::error::names;
use herald_protocol::inbound::{self, Packet};
use herald_protocol::outbound;
use serde::de::IgnoredAny;

/// What a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `herald_protocol::inbound::parse` on one WebSocket text message, and
    /// re-encoding what it read with the outbound builders.
    Inbound,
    /// `Publication::decode` of a broker envelope, and re-encoding it.
    Envelope,
    /// `AuthEngine::verify_offline` of a token (HS256 with audience and issuer).
    Jwt,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 3] = [Target::Inbound, Target::Envelope, Target::Jwt];

    /// The target's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Inbound => "inbound",
            Target::Envelope => "envelope",
            Target::Jwt => "jwt",
        }
    }
}

/// The secret of the fuzzed auth engine (the generators sign some tokens
/// with it, so verification reaches the claim checks).
pub const SECRET: &[u8] = b"herald-fuzz-secret";

/// The engine the `jwt` target verifies with.
pub fn engine() -> AuthEngine {
    AuthEngine::hs256(SECRET)
        .audience(["fuzz"])
        .issuer(["https://fuzz.test"])
}

fn assert_json(bytes: &[u8], what: &str) {
    if let Err(e) = serde_json::from_slice::<IgnoredAny>(bytes) {
        panic!(
            "{what} is not JSON ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Parses a message and rebuilds every packet it holds with the outbound
/// builders, which must write valid JSON.
pub fn inbound(input: &[u8]) {
    // The WebSocket layer hands the parser valid UTF-8 only.
    let text = String::from_utf8_lossy(input);
    let Ok(message) = inbound::parse(&text) else {
        return;
    };
    for packet in message.into_packets() {
        let Ok(packet) = packet else { continue };
        let rebuilt = match &packet {
            Packet::Publish {
                cid,
                channel,
                data,
                position,
            } => {
                let delivery = outbound::publication_at(
                    channel,
                    *data,
                    position.as_ref().map(|p| (p.offset, p.epoch.as_ref())),
                );
                assert_json(&delivery, "a delivery frame");
                outbound::publish_request(channel, *data, cid.as_ref())
            }
            Packet::Subscribe {
                cid,
                channel,
                data,
                recover,
            } => outbound::subscribe_request_recover(
                channel,
                *data,
                recover.as_ref().map(|p| (p.offset, p.epoch.as_ref())),
                cid.as_ref(),
            ),
            Packet::Unsubscribe { cid, channel } => {
                outbound::unsubscribe_request(channel, cid.as_ref())
            }
            Packet::Invoke {
                cid,
                procedure,
                data,
            } => outbound::request_raw(procedure, *data, Some(cid)),
            Packet::Transmit { event, data } => outbound::event_raw(event, *data),
            Packet::Response { rid, data, .. } => outbound::reply_raw(rid, *data),
            Packet::KickOut { channel, message } => outbound::kick_out(channel, *message),
            Packet::SetAuthToken { token, .. } => outbound::set_auth_token(token),
            Packet::Handshake { cid, auth_token } => outbound::handshake_request(
                cid.as_ref().unwrap_or(&1.into()),
                auth_token.as_deref(),
            ),
            Packet::Authenticate { cid, .. } | Packet::RemoveAuthToken { cid } => {
                outbound::ack(cid.as_ref().unwrap_or(&1.into()))
            }
            Packet::Invalid { cid, error } => {
                outbound::reply_error(cid.as_ref().unwrap_or(&1.into()), error)
            }
            Packet::Raw => continue,
        };
        assert_json(&rebuilt, "a rebuilt frame");
    }
}

/// Decodes an envelope; a decoded publication must have a JSON frame and
/// survive another encode and decode unchanged.
pub fn envelope(input: &[u8]) {
    let Ok(p) = Publication::decode(input) else {
        return;
    };
    assert_json(&p.frame, "a delivery frame");
    match Publication::decode(&p.encode()) {
        Ok(q) => assert_eq!(q.frame, p.frame, "re-encoded envelope changed its frame"),
        Err(e) => panic!("a decoded envelope does not decode again: {e}"),
    }
}

/// Verifies a token; a refusal must carry one of the documented names.
pub fn jwt(engine: &AuthEngine, input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    match engine.verify_offline(&text) {
        Ok(claims) => {
            // Only a token signed with the secret passes, and then its
            // audience and issuer were checked.
            assert!(
                claims.contains_key("aud") && claims.contains_key("iss"),
                "{claims:?}"
            );
        }
        Err(e) => {
            let name = e.payload.name.as_str();
            assert!(
                [
                    names::AUTH_TOKEN_INVALID,
                    names::AUTH_TOKEN_EXPIRED,
                    names::AUTH_TOKEN_NOT_BEFORE,
                    names::AUTH_TOKEN
                ]
                .contains(&name),
                "undocumented refusal {name}"
            );
        }
    }
}
