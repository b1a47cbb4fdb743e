//! The types of channel history, shared by every broker that keeps it.
//!
//! A channel with history is a **stream**: every publication gets the next
//! offset (1, 2, 3, … with no holes) and the stream has an **epoch**, a short
//! random string that changes whenever its history is lost (the store
//! restarted without persistence, the history expired). A client that knows
//! the offset and epoch of the last publication it received can tell "I
//! missed nothing" (same epoch, every later offset still kept) from "history
//! is gone" (another epoch, or the next offset already dropped).

use std::sync::Arc;
use std::time::Duration;

use super::publication::Publication;

/// A place in a channel's stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamPosition {
    /// The offset of a publication (0 before the first one).
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: Arc<str>,
}

impl StreamPosition {
    /// A position.
    pub fn new(offset: u64, epoch: impl Into<Arc<str>>) -> Self {
        Self {
            offset,
            epoch: epoch.into(),
        }
    }

    /// The wire form (`herald_protocol::ext::StreamPosition`).
    pub fn to_wire(&self) -> herald_protocol::ext::StreamPosition {
        herald_protocol::ext::StreamPosition::new(self.offset, &*self.epoch)
    }
}

impl From<&herald_protocol::ext::StreamPosition> for StreamPosition {
    fn from(p: &herald_protocol::ext::StreamPosition) -> Self {
        Self::new(p.offset, p.epoch.as_str())
    }
}

/// A fresh epoch: 8 random URL-safe characters (`[A-Za-z0-9_-]`, never `|`).
pub fn new_epoch() -> Arc<str> {
    use base64::Engine as _;
    let bytes: [u8; 6] = rand::random();
    Arc::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// How a channel keeps its history (from its namespace's options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// Publications kept per channel (at least 1).
    pub size: usize,
    /// How long a channel's history (and its epoch) lives after its last
    /// publication.
    pub ttl: Duration,
    /// The namespace the channel belongs to (empty for channels without
    /// one). Brokers that configure storage per namespace (a JetStream
    /// stream each) key it by this.
    pub namespace: Arc<str>,
}

/// What [`crate::Broker::history`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Publications after this position, oldest first. Without it, the
    /// latest ones.
    pub since: Option<StreamPosition>,
    /// At most this many publications; 0 reads only the stream's position.
    pub limit: usize,
}

/// What [`crate::Broker::history`] returns.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// Publications, oldest first, each with its position and its delivery
    /// frame.
    pub publications: Vec<Arc<Publication>>,
    /// The stream's latest offset and its epoch.
    pub position: StreamPosition,
}

impl HistoryPage {
    /// Whether a client at `since` can be brought up to date with this page
    /// (read with `since` and a limit of at least the channel's history
    /// size): same epoch, and either nothing was published after `since`
    /// or the first publication after it is the first of the page.
    pub fn recovers(&self, since: &StreamPosition) -> bool {
        if since.epoch != self.position.epoch || since.offset > self.position.offset {
            return false;
        }
        if since.offset == self.position.offset {
            return true;
        }
        let first = self.publications.first().and_then(|p| p.position.as_ref());
        let last = self.publications.last().and_then(|p| p.position.as_ref());
        first.is_some_and(|p| p.offset == since.offset + 1)
            && last.is_some_and(|p| p.offset == self.position.offset)
            && self.publications.len() as u64 == self.position.offset - since.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(epoch: &str, top: u64, offsets: impl Iterator<Item = u64>) -> HistoryPage {
        HistoryPage {
            publications: offsets
                .map(|o| {
                    Arc::new(Publication::at(
                        "c",
                        None,
                        Some(StreamPosition::new(o, epoch)),
                    ))
                })
                .collect(),
            position: StreamPosition::new(top, epoch),
        }
    }

    #[test]
    fn recovery_needs_same_epoch_and_the_next_offset() {
        let p = page("e", 10, 6..11);
        assert!(p.recovers(&StreamPosition::new(5, "e")));
        assert!(p.recovers(&StreamPosition::new(10, "e")));
        assert!(
            !p.recovers(&StreamPosition::new(4, "e")),
            "offset 5 dropped"
        );
        assert!(!p.recovers(&StreamPosition::new(5, "other")));
        assert!(
            !p.recovers(&StreamPosition::new(11, "e")),
            "from the future"
        );
        let empty = page("e", 0, std::iter::empty());
        assert!(empty.recovers(&StreamPosition::new(0, "e")));
    }

    #[test]
    fn epochs_are_short_url_safe_and_random() {
        let a = new_epoch();
        assert_eq!(a.len(), 8);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, new_epoch());
    }
}
