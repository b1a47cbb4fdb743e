//! What travels through a broker: a [`Publication`], and the envelope it
//! is carried in between nodes.
//!
//! A publication is built once per node: its delivery `frame` (the exact
//! bytes every subscriber receives) is shared by every subscriber's queue.
//! Between nodes it travels as an **envelope**, not as the delivery frame:
//! the frame of a publication on a channel with history holds its offset,
//! which a networked broker assigns atomically with the append to the
//! history (in a Redis script, say), so the frame cannot be built before
//! the offset is known. The envelope keeps the fields apart:
//!
//! ```text
//! h1|<kind>|<offset>|<epoch>|<channel length in bytes>|<channel><data>
//! ```
//!
//! * `kind`: `p` a publication, `j` a join, `l` a leave;
//! * `offset` and `epoch`: the place in the channel's stream, `0` and empty
//!   for a channel without history;
//! * `data`: the JSON data verbatim (for a join or leave, the event data),
//!   empty when there is none.
//!
//! The header is plain text so that a script in the engine (Lua in Redis)
//! can write it with string concatenation; the channel is length-prefixed,
//! so any name is safe, and the data is never escaped or re-encoded.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use herald_protocol::ext;
use herald_protocol::outbound;
use serde_json::value::RawValue;

use super::history::StreamPosition;

/// What a [`Publication`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// Data published on a channel.
    Publication,
    /// A client subscribed to a channel with `join_leave` (`#herald/join`).
    Join,
    /// A client left a channel with `join_leave` (`#herald/leave`).
    Leave,
}

impl MessageKind {
    fn tag(self) -> u8 {
        match self {
            MessageKind::Publication => b'p',
            MessageKind::Join => b'j',
            MessageKind::Leave => b'l',
        }
    }

    fn from_tag(tag: &[u8]) -> Option<Self> {
        match tag {
            b"p" => Some(MessageKind::Publication),
            b"j" => Some(MessageKind::Join),
            b"l" => Some(MessageKind::Leave),
            _ => None,
        }
    }
}

/// A message on a channel, with its delivery frame built once.
///
/// The `frame` is the exact text every subscriber receives
/// (`{"event":"#publish","data":{"channel":..,"data":..}}`, with `offset`
/// and `epoch` on a channel with history), shared by all of their queues
/// without copying.
#[derive(Debug)]
#[non_exhaustive]
pub struct Publication {
    /// The channel name.
    pub channel: Arc<str>,
    /// A publication, or a join/leave event.
    pub kind: MessageKind,
    /// The published data, as raw JSON (`None` when absent). For a join or
    /// leave, the event's data (`{"channel","client","user"}`).
    pub data: Option<Box<RawValue>>,
    /// The publication's place in its channel's stream (channels with
    /// history only).
    pub position: Option<StreamPosition>,
    /// The encoded delivery frame.
    pub frame: Bytes,
    /// When this node built it: its own publish, or its receipt from the
    /// broker. `herald_publish_write_latency_seconds` runs from here to the
    /// write of each subscriber's frame.
    pub received: Instant,
}

/// Why an envelope could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid publication envelope: {0}")]
pub struct EnvelopeError(&'static str);

const MAGIC: &[u8] = b"h1|";

impl Publication {
    /// A publication without a stream position (a channel without history).
    pub fn new(channel: impl Into<Arc<str>>, data: Option<Box<RawValue>>) -> Self {
        Self::at(channel, data, None)
    }

    /// A publication at `position` in its channel's stream.
    pub fn at(
        channel: impl Into<Arc<str>>,
        data: Option<Box<RawValue>>,
        position: Option<StreamPosition>,
    ) -> Self {
        let channel = channel.into();
        let frame = outbound::publication_at(
            &channel,
            data.as_deref(),
            position.as_ref().map(|p| (p.offset, &*p.epoch)),
        );
        Self {
            channel,
            kind: MessageKind::Publication,
            data,
            position,
            frame,
            received: Instant::now(),
        }
    }

    /// A join or leave event of `client` (socket id) on `channel`.
    ///
    /// # Panics
    ///
    /// When `kind` is [`MessageKind::Publication`].
    pub fn presence(
        kind: MessageKind,
        channel: impl Into<Arc<str>>,
        client: &str,
        user: Option<&str>,
    ) -> Self {
        let channel = channel.into();
        let event = ext::PresenceEvent {
            channel: channel.to_string(),
            client: client.to_owned(),
            user: user.map(str::to_owned),
        };
        // Strings and an optional string always encode.
        let data = serde_json::value::to_raw_value(&event).expect("a presence event encodes");
        Self::event(kind, channel, data)
    }

    fn event(kind: MessageKind, channel: Arc<str>, data: Box<RawValue>) -> Self {
        let name = match kind {
            MessageKind::Join => ext::JOIN,
            MessageKind::Leave => ext::LEAVE,
            MessageKind::Publication => panic!("not a presence event"),
        };
        let frame = outbound::event_raw(name, Some(&data));
        Self {
            channel,
            kind,
            data: Some(data),
            position: None,
            frame,
            received: Instant::now(),
        }
    }

    /// The envelope that carries this publication to other nodes (see the
    /// module documentation for its format).
    pub fn encode(&self) -> Bytes {
        let data = self.data.as_deref().map_or("", RawValue::get);
        let (offset, epoch) = self
            .position
            .as_ref()
            .map_or((0, ""), |p| (p.offset, &*p.epoch));
        let mut buf = Vec::with_capacity(32 + self.channel.len() + epoch.len() + data.len());
        buf.extend_from_slice(MAGIC);
        buf.push(self.kind.tag());
        buf.push(b'|');
        buf.extend_from_slice(offset.to_string().as_bytes());
        buf.push(b'|');
        buf.extend_from_slice(epoch.as_bytes());
        buf.push(b'|');
        buf.extend_from_slice(self.channel.len().to_string().as_bytes());
        buf.push(b'|');
        buf.extend_from_slice(self.channel.as_bytes());
        buf.extend_from_slice(data.as_bytes());
        Bytes::from(buf)
    }

    /// Reads an envelope made by [`Publication::encode`] (or by a script in
    /// the engine writing the same format), building the delivery frame.
    /// The data must be valid JSON.
    pub fn decode(envelope: &[u8]) -> Result<Self, EnvelopeError> {
        let rest = envelope
            .strip_prefix(MAGIC)
            .ok_or(EnvelopeError("unknown format"))?;
        let mut fields = rest.splitn(5, |b| *b == b'|');
        let mut field = |what: &'static str| fields.next().ok_or(EnvelopeError(what));
        let kind = MessageKind::from_tag(field("no kind")?).ok_or(EnvelopeError("bad kind"))?;
        let offset: u64 = parse_number(field("no offset")?).ok_or(EnvelopeError("bad offset"))?;
        let epoch =
            std::str::from_utf8(field("no epoch")?).map_err(|_| EnvelopeError("bad epoch"))?;
        let len: usize =
            parse_number(field("no channel length")?).ok_or(EnvelopeError("bad channel length"))?;
        let tail = field("no channel")?;
        if tail.len() < len {
            return Err(EnvelopeError("channel cut short"));
        }
        let (channel, data) = tail.split_at(len);
        let channel = std::str::from_utf8(channel).map_err(|_| EnvelopeError("bad channel"))?;
        let data = if data.is_empty() {
            None
        } else {
            let text = std::str::from_utf8(data).map_err(|_| EnvelopeError("data is not UTF-8"))?;
            Some(
                RawValue::from_string(text.to_owned())
                    .map_err(|_| EnvelopeError("data is not JSON"))?,
            )
        };
        let position = match (offset, epoch) {
            (0, "") => None,
            (0, _) | (_, "") => return Err(EnvelopeError("half a position")),
            (offset, epoch) => Some(StreamPosition::new(offset, epoch)),
        };
        match kind {
            MessageKind::Publication => Ok(Self::at(channel, data, position)),
            MessageKind::Join | MessageKind::Leave => {
                let data = data.ok_or(EnvelopeError("event without data"))?;
                Ok(Self::event(kind, Arc::from(channel), data))
            }
        }
    }
}

fn parse_number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn envelopes_round_trip() {
        let cases = [
            Publication::new("news", Some(raw(r#"{"a":[1,2]}"#))),
            Publication::new("empty", None),
            Publication::at(
                "chat:r|1",
                Some(raw("\"x|y\"")),
                Some(StreamPosition::new(42, "Ep0")),
            ),
            Publication::presence(MessageKind::Join, "chat:r", "sock1", Some("bob")),
            Publication::presence(MessageKind::Leave, "chat:r", "sock1", None),
            Publication::new("é|\"{}", Some(raw("null"))),
        ];
        for p in cases {
            let back = Publication::decode(&p.encode()).unwrap();
            assert_eq!(back.channel, p.channel);
            assert_eq!(back.kind, p.kind);
            assert_eq!(back.position, p.position);
            assert_eq!(back.frame, p.frame, "{:?}", p.channel);
            assert_eq!(
                back.data.as_deref().map(RawValue::get),
                p.data.as_deref().map(RawValue::get)
            );
        }
    }

    #[test]
    fn envelope_text_is_what_a_script_would_write() {
        let p = Publication::at("c", Some(raw("1")), Some(StreamPosition::new(7, "e")));
        assert_eq!(&p.encode()[..], b"h1|p|7|e|1|c1");
        let frame = Publication::decode(b"h1|p|0||2|ab\"d\"").unwrap().frame;
        assert_eq!(
            &frame[..],
            br##"{"event":"#publish","data":{"channel":"ab","data":"d"}}"##
        );
        let join = Publication::presence(MessageKind::Join, "c", "id", None);
        assert_eq!(
            &join.frame[..],
            br##"{"event":"#herald/join","data":{"channel":"c","client":"id","user":null}}"##
        );
    }

    #[test]
    fn bad_envelopes_are_errors() {
        for bad in [
            &b""[..],
            b"{\"event\":\"#publish\"}",
            b"h1|x|0||1|c",
            b"h1|p|-1||1|c",
            b"h1|p|0||5|c",
            b"h1|p|3||1|c",
            b"h1|p|0|e|1|c",
            b"h1|p|0||1|cnot json",
            b"h1|j|0||1|c",
            b"h1|p|0||1|\xff",
            b"h1|p|0||99999999999999999999999|c",
        ] {
            assert!(
                Publication::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
