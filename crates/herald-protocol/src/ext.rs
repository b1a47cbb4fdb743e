//! Herald's extensions to the SocketCluster v2 protocol: channel history,
//! recovery and presence.
//!
//! Every extension rides on frames the protocol already has, with extra
//! fields or reserved event names, so the official socketcluster-client keeps
//! working: it ignores the two extra fields of a publication and delivers the
//! `#herald/...` events to receivers nobody listens to.
//!
//! * A publication on a channel with history carries its place in the
//!   channel's stream: `{"event":"#publish","data":{"channel":C,"data":D,"offset":N,"epoch":E}}`
//!   ([`crate::outbound::publication_at`]).
//! * A subscribe may ask to recover what the client missed:
//!   `{"event":"#subscribe","data":{"channel":C,"recover":{"offset":N,"epoch":E}},"cid":K}`;
//!   the reply on a channel with history is a [`SubscribeStatus`].
//! * Invokes of reserved procedures read history and presence
//!   ([`HISTORY`], [`PRESENCE`], [`PRESENCE_STATS`]).
//! * Pushes tell subscribers who joins and leaves ([`JOIN`], [`LEAVE`]),
//!   that publications were lost for good ([`UNRECOVERABLE`]), and that the
//!   server subscribed the socket to a channel ([`SUBSCRIBED`]).
//!
//! `docs/protocol.md` has the rules (what a client keeps, when recovery is
//! possible).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Procedure reading a channel's history: [`HistoryRequest`] → [`HistoryReply`].
pub const HISTORY: &str = "#herald/history";
/// Procedure listing a channel's subscribers: [`ChannelRequest`] → [`PresenceReply`].
pub const PRESENCE: &str = "#herald/presence";
/// Procedure counting a channel's subscribers: [`ChannelRequest`] → [`PresenceStats`].
pub const PRESENCE_STATS: &str = "#herald/presenceStats";
/// Push: a client subscribed to a channel with `join_leave` ([`PresenceEvent`]).
pub const JOIN: &str = "#herald/join";
/// Push: a client left a channel with `join_leave` ([`PresenceEvent`]).
pub const LEAVE: &str = "#herald/leave";
/// Push: publications on a channel were lost and cannot be recovered
/// ([`Unrecoverable`]); the stream goes on from the position it names.
pub const UNRECOVERABLE: &str = "#herald/unrecoverable";
/// Push: the server subscribed this socket to a channel on its own
/// initiative (the HTTP API's `subscribe`, a token's `channels` claim)
/// ([`ServerSubscribed`]). Publications on the channel follow it. A client
/// that keeps no channel of that name drops them (the official
/// socketcluster-client does): it subscribes in answer, which the server
/// accepts without its rules since the socket already holds the channel.
pub const SUBSCRIBED: &str = "#herald/subscribed";

/// Where a client stands in a channel's stream: the offset of the last
/// publication it received and the stream's epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Offset of the publication (1, 2, 3, … per channel; 0 before the first).
    pub offset: u64,
    /// The stream's epoch: changes whenever the channel's history is lost.
    pub epoch: String,
}

impl StreamPosition {
    /// A position.
    pub fn new(offset: u64, epoch: impl Into<String>) -> Self {
        Self {
            offset,
            epoch: epoch.into(),
        }
    }
}

/// The reply data of a subscribe on a channel with history:
/// `{"offset":TOP,"epoch":E}`, plus `"recovered":bool` when the subscribe
/// asked to recover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscribeStatus {
    /// The offset of the channel's latest publication (0 when none yet).
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: String,
    /// Whether every publication after the client's position was sent
    /// before this reply (only when the subscribe carried `recover`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// Arguments of [`HISTORY`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// The channel.
    pub channel: String,
    /// At most this many publications (default and cap: the channel's
    /// `history_size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only publications after this position (oldest first). Without it,
    /// the latest `limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<StreamPosition>,
}

/// One publication of a [`HistoryReply`].
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryPublication {
    /// Its offset.
    pub offset: u64,
    /// Its data, verbatim (absent when published without data; a
    /// published `null` stays `Some("null")`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_raw"
    )]
    pub data: Option<Box<RawValue>>,
}

/// Deserializes a present field as `Some(raw)`, keeping `null` as a value
/// (a plain `Option<Box<RawValue>>` turns a published `null` into `None`,
/// the same as no data at all).
fn some_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// The reply of [`HISTORY`]: `{"publications":[...],"offset":TOP,"epoch":E}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HistoryReply {
    /// Publications, oldest first.
    pub publications: Vec<HistoryPublication>,
    /// The offset of the channel's latest publication.
    pub offset: u64,
    /// The channel's epoch.
    pub epoch: String,
}

/// The data of [`SUBSCRIBED`]: `{"channel":C}`, with `"offset":N,"epoch":E`
/// (the stream's position when the subscription started) on a channel with
/// history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSubscribed {
    /// The channel.
    pub channel: String,
    /// The offset of the channel's latest publication when the socket was
    /// subscribed (channels with history only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The channel's epoch (channels with history only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// Arguments of [`PRESENCE`] and [`PRESENCE_STATS`]: `{"channel":C}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRequest {
    /// The channel.
    pub channel: String,
}

/// One subscriber in a [`PresenceReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The user of the socket's token (its user claim), or null.
    pub user: Option<String>,
    /// The `info` claim of the socket's token, or null.
    pub info: Option<serde_json::Value>,
}

/// The reply of [`PRESENCE`]: `{"clients":{"SOCKET_ID":{"user":U,"info":I},...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceReply {
    /// Subscribers by socket id.
    pub clients: BTreeMap<String, ClientInfo>,
}

/// The reply of [`PRESENCE_STATS`]: `{"clients":N,"users":M}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceStats {
    /// Subscribed sockets.
    pub clients: u64,
    /// Distinct users among them (sockets without a user are not counted).
    pub users: u64,
}

/// The data of [`JOIN`] and [`LEAVE`]: `{"channel":C,"client":ID,"user":U}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The channel.
    pub channel: String,
    /// The socket id that joined or left.
    pub client: String,
    /// Its user, or null.
    pub user: Option<String>,
}

/// The data of [`UNRECOVERABLE`]: `{"channel":C,"offset":N,"epoch":E}`.
/// Publications on `channel` were lost and no history can fill the gap;
/// the stream goes on after `offset` in `epoch` (the next publication has
/// offset `offset + 1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unrecoverable {
    /// The channel.
    pub channel: String,
    /// The position the stream continues from.
    pub offset: u64,
    /// The stream's epoch from now on.
    pub epoch: String,
}
