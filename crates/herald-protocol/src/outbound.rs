//! Building frames as ready-to-write bytes.
//!
//! Every function returns [`Bytes`] holding the exact text of one frame, so
//! that a frame built once (a publication) can be queued on any number of
//! sockets without copying. Data given as [`RawValue`] is written verbatim:
//! a publication's data is copied from the publisher's frame into the
//! delivery frame without being decoded.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::ErrorPayload;
use crate::inbound::Cid;

/// The ping (server to client) and the pong (client to server): an empty text
/// message in protocol version 2.
pub const PING: &str = "";

/// Serializing an application value failed (e.g. a map with non-string keys).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode frame data as JSON: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// Writes `s` as a JSON string literal.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    serde_json::to_writer(&mut *buf, s).expect("a str always serializes");
}

fn push_cid(buf: &mut Vec<u8>, cid: &Cid) {
    buf.extend_from_slice(cid.0.to_string().as_bytes());
}

/// `,"<key>":N,"epoch":E`.
fn push_position(buf: &mut Vec<u8>, key: &str, offset: u64, epoch: &str) {
    buf.push(b',');
    push_json_str(buf, key);
    buf.push(b':');
    buf.extend_from_slice(offset.to_string().as_bytes());
    buf.extend_from_slice(b",\"epoch\":");
    push_json_str(buf, epoch);
}

/// `{"event":E,"data":{"channel":C,KEY:V},"cid":N}`: the frames about one
/// channel (publications, publish and subscribe requests, kick-outs), with
/// the channel escaped and the value copied verbatim.
fn channel_frame(
    event: &str,
    channel: &str,
    key: &str,
    value: Option<&RawValue>,
    cid: Option<&Cid>,
) -> Bytes {
    channel_frame_at(event, channel, key, value, None, cid)
}

/// [`channel_frame`] with a stream position (`"offset":N,"epoch":E`) after
/// the value.
fn channel_frame_at(
    event: &str,
    channel: &str,
    key: &str,
    value: Option<&RawValue>,
    position: Option<(u64, &str)>,
    cid: Option<&Cid>,
) -> Bytes {
    let mut buf = Vec::with_capacity(
        64 + event.len()
            + channel.len()
            + value.map_or(0, |v| v.get().len())
            + position.map_or(0, |(_, e)| e.len()),
    );
    buf.extend_from_slice(b"{\"event\":");
    push_json_str(&mut buf, event);
    buf.extend_from_slice(b",\"data\":{\"channel\":");
    push_json_str(&mut buf, channel);
    if let Some(value) = value {
        buf.push(b',');
        push_json_str(&mut buf, key);
        buf.push(b':');
        buf.extend_from_slice(value.get().as_bytes());
    }
    if let Some((offset, epoch)) = position {
        push_position(&mut buf, "offset", offset, epoch);
    }
    buf.push(b'}');
    if let Some(cid) = cid {
        buf.extend_from_slice(b",\"cid\":");
        push_cid(&mut buf, cid);
    }
    buf.push(b'}');
    Bytes::from(buf)
}

/// `{"event":E,"data":D}` with a raw (already encoded) data value.
pub fn event_raw(event: &str, data: Option<&RawValue>) -> Bytes {
    request_raw(event, data, None)
}

/// `{"event":E,"data":D,"cid":N}` (or without `data`/`cid` when `None`).
pub fn request_raw(event: &str, data: Option<&RawValue>, cid: Option<&Cid>) -> Bytes {
    let mut buf = Vec::with_capacity(32 + event.len() + data.map_or(0, |d| d.get().len()));
    buf.extend_from_slice(b"{\"event\":");
    push_json_str(&mut buf, event);
    if let Some(data) = data {
        buf.extend_from_slice(b",\"data\":");
        buf.extend_from_slice(data.get().as_bytes());
    }
    if let Some(cid) = cid {
        buf.extend_from_slice(b",\"cid\":");
        push_cid(&mut buf, cid);
    }
    buf.push(b'}');
    Bytes::from(buf)
}

/// `{"event":E,"data":D,"cid":N}` for any serializable data.
pub fn request<T: Serialize + ?Sized>(
    event: &str,
    data: Option<&T>,
    cid: Option<&Cid>,
) -> Result<Bytes, EncodeError> {
    match data {
        Some(d) => {
            let raw = serde_json::value::to_raw_value(d)?;
            Ok(request_raw(event, Some(&raw), cid))
        }
        None => Ok(request_raw(event, None, cid)),
    }
}

/// `{"event":E,"data":D}` for any serializable data.
pub fn event<T: Serialize + ?Sized>(event: &str, data: Option<&T>) -> Result<Bytes, EncodeError> {
    request(event, data, None)
}

/// The publication delivered to subscribers:
/// `{"event":"#publish","data":{"channel":C,"data":D}}`.
///
/// This is the frame that is built once per publication and shared by every
/// subscriber's queue.
pub fn publication(channel: &str, data: Option<&RawValue>) -> Bytes {
    channel_frame("#publish", channel, "data", data, None)
}

/// **Herald:** a publication on a channel with history, with its place in
/// the channel's stream:
/// `{"event":"#publish","data":{"channel":C,"data":D,"offset":N,"epoch":E}}`.
/// Without a position this is exactly [`publication`].
pub fn publication_at(
    channel: &str,
    data: Option<&RawValue>,
    position: Option<(u64, &str)>,
) -> Bytes {
    channel_frame_at("#publish", channel, "data", data, position, None)
}

/// **Herald:** publications on `channel` were lost for good; the stream goes
/// on after `offset` in `epoch`:
/// `{"event":"#herald/unrecoverable","data":{"channel":C,"offset":N,"epoch":E}}`.
pub fn unrecoverable(channel: &str, offset: u64, epoch: &str) -> Bytes {
    channel_frame_at(
        crate::ext::UNRECOVERABLE,
        channel,
        "",
        None,
        Some((offset, epoch)),
        None,
    )
}

/// A client's publish request: `{"event":"#publish","data":{"channel":C,"data":D},"cid":N}`.
pub fn publish_request(channel: &str, data: Option<&RawValue>, cid: Option<&Cid>) -> Bytes {
    channel_frame("#publish", channel, "data", data, cid)
}

/// A successful reply without data: `{"rid":N}`.
pub fn ack(rid: &Cid) -> Bytes {
    reply_raw(rid, None)
}

/// A successful reply: `{"rid":N,"data":D}`.
pub fn reply_raw(rid: &Cid, data: Option<&RawValue>) -> Bytes {
    let mut buf = Vec::with_capacity(24 + data.map_or(0, |d| d.get().len()));
    buf.extend_from_slice(b"{\"rid\":");
    push_cid(&mut buf, rid);
    if let Some(data) = data {
        buf.extend_from_slice(b",\"data\":");
        buf.extend_from_slice(data.get().as_bytes());
    }
    buf.push(b'}');
    Bytes::from(buf)
}

/// A successful reply with any serializable data.
pub fn reply<T: Serialize + ?Sized>(rid: &Cid, data: &T) -> Result<Bytes, EncodeError> {
    let raw = serde_json::value::to_raw_value(data)?;
    Ok(reply_raw(rid, Some(&raw)))
}

/// A failed reply: `{"rid":N,"error":{...}}`.
pub fn reply_error(rid: &Cid, error: &ErrorPayload) -> Bytes {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(b"{\"rid\":");
    push_cid(&mut buf, rid);
    buf.extend_from_slice(b",\"error\":");
    // An ErrorPayload holds only strings and JSON values: it always encodes.
    serde_json::to_writer(&mut buf, error).expect("an ErrorPayload always serializes");
    buf.push(b'}');
    Bytes::from(buf)
}

/// The handshake reply's data, as socketcluster-server 20 sends it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeStatus {
    /// The socket id chosen by the server.
    pub id: String,
    /// How long the client should wait for a ping before it closes with 4000.
    pub ping_timeout: u64,
    /// Why the handshake token was refused, when one was sent and refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_error: Option<ErrorPayload>,
    /// Whether the handshake token authenticated the socket.
    pub is_authenticated: bool,
}

/// The reply to `#handshake`.
pub fn handshake_reply(rid: &Cid, status: &HandshakeStatus) -> Bytes {
    // HandshakeStatus holds only strings, numbers and an ErrorPayload.
    reply(rid, status).expect("a HandshakeStatus always serializes")
}

/// The reply data of `#authenticate`: `{isAuthenticated, authError}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticateStatus {
    /// Whether the socket is now authenticated.
    pub is_authenticated: bool,
    /// Why the token was refused (`null` on success).
    #[serde(default)]
    pub auth_error: Option<ErrorPayload>,
}

/// `{"event":"#setAuthToken","data":{"token":T}}`.
pub fn set_auth_token(token: &str) -> Bytes {
    #[derive(Serialize)]
    struct Token<'a> {
        token: &'a str,
    }
    event("#setAuthToken", Some(&Token { token })).expect("a token always serializes")
}

/// `{"event":"#removeAuthToken"}`.
pub fn remove_auth_token() -> Bytes {
    Bytes::from_static(b"{\"event\":\"#removeAuthToken\"}")
}

/// `{"event":"#kickOut","data":{"channel":C,"message":M}}`.
pub fn kick_out(channel: &str, message: Option<&RawValue>) -> Bytes {
    channel_frame("#kickOut", channel, "message", message, None)
}

/// A client's handshake: `{"event":"#handshake","data":{"authToken":T},"cid":N}`.
pub fn handshake_request(cid: &Cid, auth_token: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Hs<'a> {
        #[serde(rename = "authToken")]
        auth_token: Option<&'a str>,
    }
    request("#handshake", Some(&Hs { auth_token }), Some(cid)).expect("always serializes")
}

/// A client's subscribe: `{"event":"#subscribe","data":{"channel":C,"data":D},"cid":N}`.
pub fn subscribe_request(channel: &str, data: Option<&RawValue>, cid: Option<&Cid>) -> Bytes {
    channel_frame("#subscribe", channel, "data", data, cid)
}

/// **Herald:** a subscribe that recovers what was published after
/// `recover`: `{"event":"#subscribe","data":{"channel":C,"data":D,"recover":{"offset":N,"epoch":E}},"cid":K}`.
pub fn subscribe_request_recover(
    channel: &str,
    data: Option<&RawValue>,
    recover: Option<(u64, &str)>,
    cid: Option<&Cid>,
) -> Bytes {
    let Some((offset, epoch)) = recover else {
        return subscribe_request(channel, data, cid);
    };
    let mut buf = Vec::with_capacity(96 + channel.len() + data.map_or(0, |d| d.get().len()));
    buf.extend_from_slice(b"{\"event\":\"#subscribe\",\"data\":{\"channel\":");
    push_json_str(&mut buf, channel);
    if let Some(data) = data {
        buf.extend_from_slice(b",\"data\":");
        buf.extend_from_slice(data.get().as_bytes());
    }
    buf.extend_from_slice(b",\"recover\":{");
    // push_position writes a leading comma: write the first field by hand.
    buf.extend_from_slice(b"\"offset\":");
    buf.extend_from_slice(offset.to_string().as_bytes());
    buf.extend_from_slice(b",\"epoch\":");
    push_json_str(&mut buf, epoch);
    buf.extend_from_slice(b"}}");
    if let Some(cid) = cid {
        buf.extend_from_slice(b",\"cid\":");
        push_cid(&mut buf, cid);
    }
    buf.push(b'}');
    Bytes::from(buf)
}

/// A client's unsubscribe: `{"event":"#unsubscribe","data":C,"cid":N}`.
pub fn unsubscribe_request(channel: &str, cid: Option<&Cid>) -> Bytes {
    request("#unsubscribe", Some(channel), cid).expect("a str always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::{Message, Packet, parse};

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn frames_match_socketcluster_capture() {
        let d = raw("\"hi\"");
        assert_eq!(
            &publication("c1", Some(&d))[..],
            br##"{"event":"#publish","data":{"channel":"c1","data":"hi"}}"##
        );
        assert_eq!(&ack(&Cid::from(5))[..], br##"{"rid":5}"##);
        assert_eq!(
            &reply_error(&Cid::from(3), &ErrorPayload::new("MyError", "nope"))[..],
            br##"{"rid":3,"error":{"message":"nope","name":"MyError"}}"##
        );
        assert_eq!(
            &kick_out("c1", Some(&raw("\"bye\"")))[..],
            br##"{"event":"#kickOut","data":{"channel":"c1","message":"bye"}}"##
        );
        assert_eq!(
            &remove_auth_token()[..],
            br##"{"event":"#removeAuthToken"}"##
        );
        let status = HandshakeStatus {
            id: "abc".into(),
            ping_timeout: 2500,
            auth_error: Some(
                ErrorPayload::new("AuthTokenInvalidError", "jwt malformed")
                    .with("isBadToken", true),
            ),
            is_authenticated: false,
        };
        assert_eq!(
            std::str::from_utf8(&handshake_reply(&Cid::from(1), &status)).unwrap(),
            r##"{"rid":1,"data":{"id":"abc","pingTimeout":2500,"authError":{"message":"jwt malformed","name":"AuthTokenInvalidError","isBadToken":true},"isAuthenticated":false}}"##
        );
    }

    #[test]
    fn herald_extension_frames() {
        let d = raw("{\"t\":1}");
        assert_eq!(
            &publication_at("chat:a", Some(&d), Some((42, "Ep")))[..],
            br##"{"event":"#publish","data":{"channel":"chat:a","data":{"t":1},"offset":42,"epoch":"Ep"}}"##
        );
        assert_eq!(
            publication_at("c", Some(&d), None),
            publication("c", Some(&d))
        );
        let join = crate::ext::PresenceEvent {
            channel: "chat:a".into(),
            client: "id1".into(),
            user: None,
        };
        assert_eq!(
            &event(crate::ext::JOIN, Some(&join)).unwrap()[..],
            br##"{"event":"#herald/join","data":{"channel":"chat:a","client":"id1","user":null}}"##
        );
        assert_eq!(
            &unrecoverable("c", 9, "E2")[..],
            br##"{"event":"#herald/unrecoverable","data":{"channel":"c","offset":9,"epoch":"E2"}}"##
        );
        let sub = subscribe_request_recover("c", None, Some((3, "e")), Some(&Cid::from(4)));
        assert_eq!(
            &sub[..],
            br##"{"event":"#subscribe","data":{"channel":"c","recover":{"offset":3,"epoch":"e"}},"cid":4}"##
        );
        match parse(std::str::from_utf8(&sub).unwrap()).unwrap() {
            Message::One(Ok(Packet::Subscribe { recover, .. })) => {
                assert_eq!(recover.unwrap().offset, 3)
            }
            o => panic!("{o:?}"),
        }
        let status = crate::ext::SubscribeStatus {
            offset: 5,
            epoch: "e".into(),
            recovered: Some(true),
        };
        assert_eq!(
            &reply(&Cid::from(2), &status).unwrap()[..],
            br##"{"rid":2,"data":{"offset":5,"epoch":"e","recovered":true}}"##
        );
    }

    #[test]
    fn channel_names_are_escaped() {
        let b = publication("a\"b\\c\n", None);
        let text = std::str::from_utf8(&b).unwrap();
        match parse(text).unwrap() {
            Message::One(Ok(Packet::Publish { channel, data, .. })) => {
                assert_eq!(channel, "a\"b\\c\n");
                assert!(data.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn client_requests_round_trip() {
        let d = raw(r##"{"x":[1,2]}"##);
        let cid = Cid::from(9);
        let cases = [
            publish_request("ch", Some(&d), Some(&cid)),
            subscribe_request("ch", None, Some(&cid)),
            unsubscribe_request("ch", Some(&cid)),
            handshake_request(&cid, Some("tok")),
            request_raw("proc", Some(&d), Some(&cid)),
        ];
        let kinds: Vec<String> = cases
            .iter()
            .map(|b| {
                let t = std::str::from_utf8(b).unwrap();
                match parse(t).unwrap() {
                    Message::One(Ok(p)) => format!("{p:?}")
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_owned(),
                    o => panic!("{o:?}"),
                }
            })
            .collect();
        assert_eq!(
            kinds,
            ["Publish", "Subscribe", "Unsubscribe", "Handshake", "Invoke"]
        );
    }
}
