//! Reading a channel's history (Herald's extension): [`Client::history`].
//!
//! A channel with history keeps its latest publications, each with its
//! offset, and an epoch that changes when the history is lost. Reading it
//! serves what a live stream cannot: the latest messages of a chat room
//! before the first live one, or the publications a slow consumer dropped
//! ([`crate::SubscriptionError::Lagged`]), from the position of the last one
//! it took ([`crate::Subscription::position`]).
//!
//! The reply is read into the client's own [`crate::Publication`]s, each
//! with its [`StreamPosition`], so that history and live publications are
//! handled by the same code.

use herald_protocol::ext::{self, HistoryRequest, StreamPosition};
use serde::Deserialize;
use serde_json::Value;

use crate::client::Client;
use crate::error::Result;
use crate::subscription::Publication;

/// What [`Client::history`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryOptions {
    /// At most this many publications (the server caps it at the channel's
    /// history size). `Some(0)` reads only the stream's position.
    pub limit: Option<usize>,
    /// Only the publications after this position, oldest first. Without it,
    /// the latest ones.
    pub since: Option<StreamPosition>,
}

/// A page of a channel's history.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// Publications, oldest first, each with its position.
    pub publications: Vec<Publication>,
    /// The stream's latest position (its top offset and its epoch) when the
    /// server answered.
    pub position: StreamPosition,
}

impl History {
    /// Whether this page holds every publication after `since`, up to the
    /// top of the stream: same epoch, and the page starts right after
    /// `since` (or nothing was published after it) and ends at the top.
    /// When false, and the page was read with `since`, publications after
    /// `since` are lost (or the page was cut by its limit).
    pub fn recovers(&self, since: &StreamPosition) -> bool {
        if since.epoch != self.position.epoch || since.offset > self.position.offset {
            return false;
        }
        if since.offset == self.position.offset {
            return true;
        }
        let first = self.publications.first().and_then(Publication::offset);
        let last = self.publications.last().and_then(Publication::offset);
        first == since.offset.checked_add(1) && last == Some(self.position.offset)
    }
}

/// The reply of `#herald/history`, with the data as a JSON value.
#[derive(Deserialize)]
struct Reply {
    publications: Vec<Entry>,
    offset: u64,
    epoch: String,
}

#[derive(Deserialize)]
struct Entry {
    offset: u64,
    #[serde(default)]
    data: Option<Value>,
}

impl Reply {
    fn into_history(self, channel: &str) -> History {
        let epoch = self.epoch;
        let publications = self
            .publications
            .into_iter()
            .map(|e| Publication {
                channel: channel.to_owned(),
                data: e.data.unwrap_or(Value::Null),
                position: Some(StreamPosition::new(e.offset, epoch.as_str())),
            })
            .collect();
        History {
            publications,
            position: StreamPosition::new(self.offset, epoch),
        }
    }
}

impl Client {
    /// Reads `channel`'s history (`#herald/history`): the latest
    /// publications, or those after [`HistoryOptions::since`], oldest first,
    /// with the stream's position. Fails with [`crate::Error::Remote`] where
    /// the server refuses (a channel without history, no permission), and
    /// with [`crate::Error::Decode`] when the reply is not a history page.
    pub async fn history(&self, channel: &str, options: HistoryOptions) -> Result<History> {
        let request = HistoryRequest {
            channel: channel.to_owned(),
            limit: options.limit,
            since: options.since,
        };
        let reply: Reply = self.invoke_as(ext::HISTORY, &request).await?;
        Ok(reply.into_history(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(reply: Value) -> History {
        serde_json::from_value::<Reply>(reply)
            .unwrap()
            .into_history("c")
    }

    #[test]
    fn replies_become_positioned_publications() {
        let h = page(json!({
            "publications": [{"offset": 4, "data": {"t": 1}}, {"offset": 5}, {"offset": 6, "data": null}],
            "offset": 6,
            "epoch": "e"
        }));
        assert_eq!(h.position, StreamPosition::new(6, "e"));
        let offsets: Vec<_> = h.publications.iter().map(Publication::offset).collect();
        assert_eq!(offsets, [Some(4), Some(5), Some(6)]);
        assert_eq!(h.publications[0].data, json!({"t": 1}));
        assert_eq!(h.publications[1].data, Value::Null);
        assert_eq!(h.publications[0].epoch(), Some("e"));
        assert_eq!(h.publications[0].channel, "c");
        assert!(serde_json::from_value::<Reply>(json!({"offset": 1})).is_err());
    }

    #[test]
    fn recovers_needs_the_same_epoch_and_no_hole() {
        let h = page(json!({
            "publications": [{"offset": 6}, {"offset": 7}, {"offset": 8}],
            "offset": 8,
            "epoch": "e"
        }));
        assert!(h.recovers(&StreamPosition::new(5, "e")));
        assert!(h.recovers(&StreamPosition::new(8, "e")));
        assert!(
            !h.recovers(&StreamPosition::new(4, "e")),
            "offset 5 is gone"
        );
        assert!(!h.recovers(&StreamPosition::new(5, "f")));
        assert!(!h.recovers(&StreamPosition::new(9, "e")));
        let cut = page(json!({"publications": [{"offset": 6}], "offset": 8, "epoch": "e"}));
        assert!(
            !cut.recovers(&StreamPosition::new(5, "e")),
            "cut by a limit"
        );
        let empty = page(json!({"publications": [], "offset": 0, "epoch": "e"}));
        assert!(empty.recovers(&StreamPosition::new(0, "e")));
        let max = page(json!({"publications": [], "offset": u64::MAX, "epoch": "e"}));
        assert!(!max.recovers(&StreamPosition::new(u64::MAX - 1, "e")));
    }
}
