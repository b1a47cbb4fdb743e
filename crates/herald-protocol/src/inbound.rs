//! Parsing one WebSocket text message into protocol packets.
//!
//! A message is either the empty string (a ping or a pong), one JSON frame,
//! or a JSON array of frames (the official client's batching). Payloads are
//! borrowed from the message as [`RawValue`]s so that the server can forward a
//! publication's data without decoding and re-encoding it.
//!
//! The parser is shared by both sides of the wire: the server reads client
//! frames with it and the Rust client reads server frames with it. It decides
//! nothing about state (whether a handshake happened, whether a channel
//! exists); it only says what the peer asked for, and which requests were
//! malformed in a way that deserves an error reply (as socketcluster-server
//! replies `InvalidActionError` to a subscribe without a channel name).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Number;
use serde_json::value::RawValue;

use crate::error::{ErrorPayload, names};

/// A call id (`cid` in a request, `rid` in its reply). SocketCluster accepts
/// any JSON number; Herald echoes back exactly the number it received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cid(pub Number);

impl Cid {
    /// The id as an unsigned integer, when it is one.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.as_u64()
    }
}

impl From<u64> for Cid {
    fn from(v: u64) -> Self {
        Cid(Number::from(v))
    }
}

impl std::fmt::Display for Cid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A place in a channel's stream as a frame carries it: the `recover` of a
/// subscribe, or the `offset` and `epoch` of a publication (Herald's
/// extension, see [`crate::ext`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position<'a> {
    /// The offset.
    pub offset: u64,
    /// The epoch.
    pub epoch: Cow<'a, str>,
}

impl Position<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> crate::ext::StreamPosition {
        crate::ext::StreamPosition::new(self.offset, self.epoch.as_ref())
    }
}

/// Why a message or a frame in it could not be read. Such frames are ignored
/// (as socketcluster-server does) and counted by the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON.
    #[error("message is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an object (nor an array of objects).
    #[error("frame is not a JSON object")]
    NotAnObject,
    /// A field has the wrong type (e.g. a numeric event name).
    #[error("frame has a malformed field: {0}")]
    Field(String),
}

/// One frame, classified. Borrowed fields point into the parsed message.
#[derive(Debug)]
pub enum Packet<'a> {
    /// `#handshake`. `cid` is `None` when the client sent it as a transmit,
    /// which socketcluster-server rejects with close code 4008.
    Handshake {
        /// Call id of the request.
        cid: Option<Cid>,
        /// `data.authToken`, when a string.
        auth_token: Option<String>,
    },
    /// `#authenticate` with a signed token as data.
    Authenticate {
        /// Call id (required by the server; `None` is a protocol violation).
        cid: Option<Cid>,
        /// The signed token, when the data is a string.
        token: Option<String>,
    },
    /// `#removeAuthToken`: the peer drops its token (a client deauthenticating
    /// itself, or the server telling the client to forget its token).
    RemoveAuthToken {
        /// Call id when the sender asked for an acknowledgement
        /// (socketcluster's `deauthenticate({rejectOnFailedDelivery})`).
        cid: Option<Cid>,
    },
    /// `#subscribe` with `{channel, data?, recover?}`.
    Subscribe {
        /// Call id, when the client wants an acknowledgement.
        cid: Option<Cid>,
        /// Channel name.
        channel: Cow<'a, str>,
        /// Subscription data (`options.data` in the official client).
        data: Option<&'a RawValue>,
        /// **Herald:** recover what was published after this position
        /// (`{"offset":N,"epoch":E}`; see [`crate::ext`]).
        recover: Option<Position<'a>>,
    },
    /// `#unsubscribe` with the channel name as data.
    Unsubscribe {
        /// Call id, when acknowledged.
        cid: Option<Cid>,
        /// Channel name.
        channel: Cow<'a, str>,
    },
    /// `#publish` with `{channel, data}`: from a client, a request to publish;
    /// from a server, a publication delivered to a subscriber.
    Publish {
        /// Call id, when the publisher wants an acknowledgement.
        cid: Option<Cid>,
        /// Channel name.
        channel: Cow<'a, str>,
        /// Published data, `None` when absent (JavaScript `undefined`).
        data: Option<&'a RawValue>,
        /// **Herald:** the publication's `offset` and `epoch` on a channel
        /// with history (server to client; ignored from clients).
        position: Option<Position<'a>>,
    },
    /// `#kickOut` with `{channel, message}` (server to client).
    KickOut {
        /// The channel the socket was removed from.
        channel: Cow<'a, str>,
        /// The reason given by the server.
        message: Option<&'a RawValue>,
    },
    /// `#setAuthToken` with `{token}` (server to client).
    SetAuthToken {
        /// Call id when the server asked for an acknowledgement.
        cid: Option<Cid>,
        /// The signed token.
        token: String,
    },
    /// Any other event with a call id: a remote procedure call.
    Invoke {
        /// Call id to reply to.
        cid: Cid,
        /// Procedure name (the event).
        procedure: Cow<'a, str>,
        /// Call data.
        data: Option<&'a RawValue>,
    },
    /// Any other event without a call id: a one-way message.
    Transmit {
        /// Event name.
        event: Cow<'a, str>,
        /// Event data.
        data: Option<&'a RawValue>,
    },
    /// A reply `{rid, data?, error?}` to a request this side made.
    Response {
        /// The id of the request being answered.
        rid: Cid,
        /// Reply data.
        data: Option<&'a RawValue>,
        /// Error object, when the request failed.
        error: Option<&'a RawValue>,
    },
    /// A well-formed frame for a known event with invalid arguments. The
    /// server answers `error` when the frame has a `cid`.
    Invalid {
        /// Call id to reply to.
        cid: Option<Cid>,
        /// What was wrong, as an `InvalidActionError`.
        error: ErrorPayload,
    },
    /// JSON that is neither a request nor a reply (no `event`, no `rid`).
    /// socketcluster-server emits it as a `raw` message; Herald ignores it.
    Raw,
}

/// The result of parsing one WebSocket text message.
#[derive(Debug)]
pub enum Message<'a> {
    /// The empty message: a ping (server to client) or a pong (client to server).
    Ping,
    /// One frame.
    One(Result<Packet<'a>, ParseError>),
    /// A batch: a JSON array of frames, each parsed on its own when the
    /// batch is iterated ([`Message::into_packets`]). Parsing lazily keeps
    /// a batch's cost at 16 bytes per item until the item is handled (a
    /// 1 MiB batch of `{}` would otherwise hold a `Packet` for each of its
    /// 350,000 items at once; found by the fuzzer's allocation bound).
    Batch(Vec<&'a RawValue>),
}

impl<'a> Message<'a> {
    /// The frames of this message in order (none for a ping).
    pub fn into_packets(self) -> Packets<'a> {
        match self {
            Message::Ping => Packets::None,
            Message::One(p) => Packets::One(Some(p)),
            Message::Batch(v) => Packets::Many(v.into_iter()),
        }
    }
}

/// Iterator over the frames of a [`Message`].
#[derive(Debug)]
pub enum Packets<'a> {
    /// No frame (a ping).
    None,
    /// One frame.
    One(Option<Result<Packet<'a>, ParseError>>),
    /// A batch, parsed item by item.
    Many(std::vec::IntoIter<&'a RawValue>),
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<Packet<'a>, ParseError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Packets::None => None,
            Packets::One(p) => p.take(),
            Packets::Many(it) => it.next().map(|raw| parse_frame(raw.get())),
        }
    }
}

/// Parses one WebSocket text message.
///
/// Returns `Err` only when the whole message is unreadable (not JSON, not an
/// object or array). Inside a batch each frame succeeds or fails on its own.
pub fn parse(text: &str) -> Result<Message<'_>, ParseError> {
    if text.is_empty() {
        return Ok(Message::Ping);
    }
    let first = text.bytes().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
            Ok(Message::Batch(items))
        }
        Some(b'{') => Ok(Message::One(parse_frame(text))),
        _ => {
            // Valid JSON that is not an object (a number, a string) is as
            // useless as invalid JSON; tell the two apart for the logs only.
            match serde_json::from_str::<&RawValue>(text) {
                Ok(_) => Err(ParseError::NotAnObject),
                Err(e) => Err(ParseError::Json(e.to_string())),
            }
        }
    }
}

/// Deserializes a present field as `Some(raw)`, keeping `null` as a value
/// (plain `Option<&RawValue>` would turn `null` into `None`).
fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(default, borrow, deserialize_with = "some_raw")]
    event: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    cid: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    rid: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ChannelData<'a> {
    #[serde(default, borrow, deserialize_with = "some_raw")]
    channel: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    message: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    token: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    recover: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    offset: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "some_raw")]
    epoch: Option<&'a RawValue>,
}

/// `{"offset":N,"epoch":E}` with a non-negative integer offset and a
/// string epoch.
fn as_position(raw: &RawValue) -> Option<Position<'_>> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        offset: u64,
        #[serde(borrow)]
        epoch: Cow<'a, str>,
    }
    let p: Raw<'_> = serde_json::from_str(raw.get()).ok()?;
    Some(Position {
        offset: p.offset,
        epoch: p.epoch,
    })
}

/// The `offset` and `epoch` fields of a publication, when both are there.
fn publication_position<'a>(
    offset: Option<&'a RawValue>,
    epoch: Option<&'a RawValue>,
) -> Option<Position<'a>> {
    let offset = serde_json::from_str::<u64>(offset?.get()).ok()?;
    Some(Position {
        offset,
        epoch: as_str(epoch)?,
    })
}

/// A JSON number, as SocketCluster's `typeof cid === 'number'` test.
fn as_cid(raw: Option<&RawValue>) -> Option<Cid> {
    let raw = raw?;
    serde_json::from_str::<Number>(raw.get()).ok().map(Cid)
}

/// A JSON string, borrowed when it has no escapes.
fn as_str(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?;
    serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()
}

fn channel_data(data: Option<&RawValue>) -> Option<ChannelData<'_>> {
    let data = data?;
    serde_json::from_str(data.get()).ok()
}

fn invalid(cid: Option<Cid>, message: &str) -> Packet<'static> {
    Packet::Invalid {
        cid,
        error: ErrorPayload::new(names::INVALID_ACTION, message),
    }
}

/// Parses one frame (a JSON object).
pub fn parse_frame(text: &str) -> Result<Packet<'_>, ParseError> {
    // serde would also read a JSON array into the frame's fields by
    // position (`["#handshake",{},1]` as a handshake): a frame is an object.
    if text.trim_start().as_bytes().first() != Some(&b'{') {
        return Err(match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => ParseError::NotAnObject,
            Err(e) => ParseError::Json(e.to_string()),
        });
    }
    let frame: RawFrame<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            ParseError::NotAnObject
        } else {
            ParseError::Json(e.to_string())
        }
    })?;
    let cid = as_cid(frame.cid);
    let Some(event_raw) = frame.event else {
        // No event: a reply, or raw JSON.
        return Ok(match as_cid(frame.rid) {
            Some(rid) => Packet::Response {
                rid,
                data: frame.data,
                error: frame.error.filter(|e| e.get() != "null"),
            },
            None => Packet::Raw,
        });
    };
    let Some(event) = as_str(Some(event_raw)) else {
        return Err(ParseError::Field("event is not a string".into()));
    };
    let packet = match event.as_ref() {
        "#handshake" => {
            let auth_token = auth_token_of(frame.data).map(Cow::into_owned);
            Packet::Handshake { cid, auth_token }
        }
        "#authenticate" => Packet::Authenticate {
            cid,
            token: as_str(frame.data).map(Cow::into_owned),
        },
        "#removeAuthToken" => Packet::RemoveAuthToken { cid },
        "#subscribe" => match channel_data(frame.data) {
            Some(ChannelData {
                channel: Some(ch),
                data,
                recover,
                ..
            }) => match (as_str(Some(ch)), recover.filter(|r| r.get() != "null")) {
                (None, _) => invalid(cid, "Subscribe channel name was malformatted"),
                (Some(channel), None) => Packet::Subscribe {
                    cid,
                    channel,
                    data,
                    recover: None,
                },
                (Some(channel), Some(r)) => match as_position(r) {
                    Some(position) => Packet::Subscribe {
                        cid,
                        channel,
                        data,
                        recover: Some(position),
                    },
                    None => invalid(cid, "Subscribe recover position was malformatted"),
                },
            },
            _ => invalid(cid, "Subscribe channel name was malformatted"),
        },
        "#unsubscribe" => match as_str(frame.data) {
            Some(channel) => Packet::Unsubscribe { cid, channel },
            None => invalid(cid, "Unsubscribe channel name was malformatted"),
        },
        "#publish" => match channel_data(frame.data) {
            Some(ChannelData {
                channel: Some(ch),
                data,
                offset,
                epoch,
                ..
            }) => match as_str(Some(ch)) {
                Some(channel) => Packet::Publish {
                    cid,
                    channel,
                    data,
                    position: publication_position(offset, epoch),
                },
                None => invalid(cid, "Publish channel name was malformatted"),
            },
            _ => invalid(cid, "Publish channel name was malformatted"),
        },
        "#kickOut" => match channel_data(frame.data) {
            Some(ChannelData {
                channel: Some(ch),
                message,
                ..
            }) => match as_str(Some(ch)) {
                Some(channel) => Packet::KickOut { channel, message },
                None => invalid(cid, "KickOut channel name was malformatted"),
            },
            _ => invalid(cid, "KickOut channel name was malformatted"),
        },
        "#setAuthToken" => match channel_data(frame.data).and_then(|d| as_str(d.token)) {
            Some(token) => Packet::SetAuthToken {
                cid,
                token: token.into_owned(),
            },
            None => invalid(cid, "No token data provided by #setAuthToken event"),
        },
        _ => match cid {
            Some(cid) => Packet::Invoke {
                cid,
                procedure: event,
                data: frame.data,
            },
            None => Packet::Transmit {
                event,
                data: frame.data,
            },
        },
    };
    Ok(packet)
}

fn auth_token_of(data: Option<&RawValue>) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Handshake<'a> {
        #[serde(default, borrow, rename = "authToken", deserialize_with = "some_raw")]
        auth_token: Option<&'a RawValue>,
    }
    let hs: Handshake<'_> = serde_json::from_str(data?.get()).ok()?;
    as_str(hs.auth_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Packet<'_> {
        match parse(text).unwrap() {
            Message::One(p) => p.unwrap(),
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    #[test]
    fn empty_message_is_ping() {
        assert!(matches!(parse("").unwrap(), Message::Ping));
    }

    #[test]
    fn handshake_with_and_without_token() {
        match one(r##"{"event":"#handshake","data":{"authToken":"abc"},"cid":1}"##) {
            Packet::Handshake { cid, auth_token } => {
                assert_eq!(cid, Some(Cid::from(1)));
                assert_eq!(auth_token.as_deref(), Some("abc"));
            }
            p => panic!("{p:?}"),
        }
        match one(r##"{"event":"#handshake","data":{"authToken":null},"cid":1}"##) {
            Packet::Handshake { auth_token, .. } => assert_eq!(auth_token, None),
            p => panic!("{p:?}"),
        }
        match one(r##"{"event":"#handshake","data":{}}"##) {
            Packet::Handshake { cid, .. } => assert_eq!(cid, None),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn publish_keeps_raw_data_and_null() {
        match one(r##"{"event":"#publish","data":{"channel":"c1","data":{"a": [1, 2]}},"cid":6}"##)
        {
            Packet::Publish {
                cid, channel, data, ..
            } => {
                assert_eq!(cid, Some(Cid::from(6)));
                assert_eq!(channel, "c1");
                assert_eq!(data.unwrap().get(), r##"{"a": [1, 2]}"##);
            }
            p => panic!("{p:?}"),
        }
        match one(r##"{"event":"#publish","data":{"channel":"c1","data":null}}"##) {
            Packet::Publish { data, cid, .. } => {
                assert_eq!(data.unwrap().get(), "null");
                assert_eq!(cid, None);
            }
            p => panic!("{p:?}"),
        }
        match one(r##"{"event":"#publish","data":{"channel":"c1"}}"##) {
            Packet::Publish { data, .. } => assert!(data.is_none()),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn subscribe_with_recover_position() {
        match one(
            r##"{"event":"#subscribe","data":{"channel":"chat:a","recover":{"offset":41,"epoch":"xY"}},"cid":2}"##,
        ) {
            Packet::Subscribe {
                channel, recover, ..
            } => {
                assert_eq!(channel, "chat:a");
                assert_eq!(
                    recover,
                    Some(Position {
                        offset: 41,
                        epoch: "xY".into()
                    })
                );
            }
            p => panic!("{p:?}"),
        }
        match one(r##"{"event":"#subscribe","data":{"channel":"a","recover":null},"cid":2}"##) {
            Packet::Subscribe { recover, .. } => assert_eq!(recover, None),
            p => panic!("{p:?}"),
        }
        for bad in [
            r##"{"event":"#subscribe","data":{"channel":"a","recover":{"offset":-1,"epoch":"e"}},"cid":2}"##,
            r##"{"event":"#subscribe","data":{"channel":"a","recover":{"offset":1}},"cid":2}"##,
            r##"{"event":"#subscribe","data":{"channel":"a","recover":"x"},"cid":2}"##,
        ] {
            match one(bad) {
                Packet::Invalid { error, .. } => {
                    assert!(error.message.contains("recover"), "{}", error.message)
                }
                p => panic!("{bad}: {p:?}"),
            }
        }
    }

    #[test]
    fn publication_with_position() {
        match one(
            r##"{"event":"#publish","data":{"channel":"c","data":1,"offset":7,"epoch":"e1"}}"##,
        ) {
            Packet::Publish { position, data, .. } => {
                assert_eq!(data.unwrap().get(), "1");
                assert_eq!(
                    position,
                    Some(Position {
                        offset: 7,
                        epoch: "e1".into()
                    })
                );
            }
            p => panic!("{p:?}"),
        }
        match one(r##"{"event":"#publish","data":{"channel":"c","data":1,"offset":"7"}}"##) {
            Packet::Publish { position, .. } => assert_eq!(position, None),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn escaped_channel_names_are_decoded() {
        match one(r##"{"event":"#subscribe","data":{"channel":"a\"b\u00e9"},"cid":2}"##) {
            Packet::Subscribe { channel, .. } => assert_eq!(channel, "a\"bé"),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn malformed_requests_become_invalid_with_reason() {
        for text in [
            r##"{"event":"#subscribe","data":{"channel":5},"cid":3}"##,
            r##"{"event":"#subscribe","data":"c","cid":3}"##,
            r##"{"event":"#publish","cid":3}"##,
            r##"{"event":"#unsubscribe","data":{"channel":"c"},"cid":3}"##,
        ] {
            match one(text) {
                Packet::Invalid { cid, error } => {
                    assert_eq!(cid, Some(Cid::from(3)));
                    assert_eq!(error.name, "InvalidActionError");
                    assert!(error.message.contains("malformatted"), "{}", error.message);
                }
                p => panic!("{text}: {p:?}"),
            }
        }
    }

    #[test]
    fn invoke_transmit_and_response() {
        assert!(matches!(
            one(r##"{"event":"login","data":{},"cid":2}"##),
            Packet::Invoke { procedure, .. } if procedure == "login"
        ));
        assert!(matches!(
            one(r##"{"event":"tell","data":1}"##),
            Packet::Transmit { event, data: Some(_) } if event == "tell"
        ));
        match one(r##"{"rid":3,"error":{"message":"nope","name":"MyError"}}"##) {
            Packet::Response { rid, error, data } => {
                assert_eq!(rid, Cid::from(3));
                assert!(error.is_some() && data.is_none());
            }
            p => panic!("{p:?}"),
        }
        // A string cid is not a call id: the frame is a transmit.
        assert!(matches!(
            one(r##"{"event":"x","cid":"1"}"##),
            Packet::Transmit { .. }
        ));
    }

    #[test]
    fn server_pushes() {
        assert!(matches!(
            one(r##"{"event":"#kickOut","data":{"channel":"c1","message":"bye"}}"##),
            Packet::KickOut { channel, message: Some(_) } if channel == "c1"
        ));
        assert!(matches!(
            one(r##"{"event":"#setAuthToken","data":{"token":"t"}}"##),
            Packet::SetAuthToken { token, .. } if token == "t"
        ));
        assert!(matches!(
            one(r##"{"event":"#removeAuthToken"}"##),
            Packet::RemoveAuthToken { cid: None }
        ));
    }

    #[test]
    fn batches_parse_each_frame_on_its_own() {
        let msg =
            parse(r##"[{"event":"#subscribe","data":{"channel":"a"},"cid":1}, 5, {"event":"t"}]"##)
                .unwrap();
        let frames: Vec<_> = msg.into_packets().collect();
        assert_eq!(frames.len(), 3);
        assert!(matches!(frames[0], Ok(Packet::Subscribe { .. })));
        assert!(frames[1].is_err());
        assert!(matches!(frames[2], Ok(Packet::Transmit { .. })));
    }

    #[test]
    fn an_array_inside_a_batch_is_not_a_frame() {
        let msg = parse(r##"[["#handshake",{"authToken":"t"},1],[]]"##).unwrap();
        let frames: Vec<_> = msg.into_packets().collect();
        assert_eq!(frames.len(), 2);
        assert!(
            frames
                .iter()
                .all(|f| matches!(f, Err(ParseError::NotAnObject))),
            "{frames:?}"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "not json{",
            "{",
            "5",
            "\"s\"",
            "[1,",
            "{\"event\":5}",
            "null",
            "   ",
        ] {
            let r = parse(text);
            let bad = matches!(
                r,
                Err(_) | Ok(Message::One(Err(_))) | Ok(Message::One(Ok(Packet::Raw)))
            );
            assert!(bad, "{text}");
        }
        assert!(matches!(
            parse("{}").unwrap(),
            Message::One(Ok(Packet::Raw))
        ));
    }
}
