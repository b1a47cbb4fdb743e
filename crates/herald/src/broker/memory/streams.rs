//! In-memory channel streams: the history store of the [`super::MemoryBroker`].
//!
//! One stream per channel with history: its epoch, its latest offset and
//! its last `size` publications (shared `Arc`s, the very ones delivered),
//! living `ttl` after the last publication. The map is sharded by channel
//! name; a publication is numbered, stored and delivered under its shard's
//! lock, so that deliveries leave in offset order and a history read sees
//! either all of a publication or none of it.
//!
//! Expired streams are dropped when touched and by [`Streams::sweep`],
//! which the broker runs periodically, so a channel that is never published
//! again does not keep its memory.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::value::RawValue;

use crate::broker::history::new_epoch;
use crate::broker::{HistoryPage, HistoryPolicy, HistoryQuery, Publication, StreamPosition};

const SHARDS: usize = 32;

struct Stream {
    epoch: Arc<str>,
    top: u64,
    items: VecDeque<Arc<Publication>>,
    expires: Instant,
}

impl Stream {
    fn new(now: Instant, ttl: Duration) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            items: VecDeque::new(),
            expires: now + ttl,
        }
    }

    fn position(&self) -> StreamPosition {
        StreamPosition::new(self.top, self.epoch.clone())
    }
}

type Shard = Mutex<HashMap<Arc<str>, Stream>>;

/// Every channel's stream.
pub(super) struct Streams {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Streams {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, channel: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(channel) as usize) % SHARDS]
    }

    /// The live stream of `channel`, created (new epoch) when it has none or
    /// its history expired.
    fn live<'a>(
        map: &'a mut HashMap<Arc<str>, Stream>,
        channel: &str,
        now: Instant,
        ttl: Duration,
    ) -> &'a mut Stream {
        if map.get(channel).is_some_and(|s| s.expires <= now) {
            map.remove(channel);
        }
        map.entry(Arc::from(channel))
            .or_insert_with(|| Stream::new(now, ttl))
    }

    /// Numbers, stores and hands `data` to `deliver`, under the channel's
    /// lock (so that deliveries leave in offset order).
    pub(super) fn append(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
        deliver: impl FnOnce(Arc<Publication>),
    ) -> StreamPosition {
        let now = Instant::now();
        let mut map = self.shard(channel).lock();
        let stream = Self::live(&mut map, channel, now, policy.ttl);
        stream.top += 1;
        let position = stream.position();
        let publication = Arc::new(Publication::at(channel, data, Some(position.clone())));
        stream.items.push_back(publication.clone());
        while stream.items.len() > policy.size.max(1) {
            stream.items.pop_front();
        }
        stream.expires = now + policy.ttl;
        deliver(publication);
        position
    }

    /// Reads a page (see [`crate::Broker::history`]).
    pub(super) fn read(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> HistoryPage {
        let now = Instant::now();
        let mut map = self.shard(channel).lock();
        let stream = Self::live(&mut map, channel, now, policy.ttl);
        let position = stream.position();
        let publications = match &query.since {
            _ if query.limit == 0 => Vec::new(),
            Some(since) if since.epoch != stream.epoch => Vec::new(),
            Some(since) => stream
                .items
                .iter()
                .filter(|p| p.position.as_ref().is_some_and(|q| q.offset > since.offset))
                .take(query.limit)
                .cloned()
                .collect(),
            None => {
                let skip = stream.items.len().saturating_sub(query.limit);
                stream.items.iter().skip(skip).cloned().collect()
            }
        };
        HistoryPage {
            publications,
            position,
        }
    }

    /// Forgets `channel`'s stream.
    pub(super) fn remove(&self, channel: &str) {
        self.shard(channel).lock().remove(channel);
    }

    /// Drops every expired stream.
    pub(super) fn sweep(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            shard.lock().retain(|_, s| s.expires > now);
        }
    }

    /// Number of live streams (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(size: usize, ttl: Duration) -> HistoryPolicy {
        HistoryPolicy {
            size,
            ttl,
            namespace: Arc::from("ns"),
        }
    }

    fn data(n: u64) -> Option<Box<RawValue>> {
        Some(RawValue::from_string(n.to_string()).unwrap())
    }

    fn offsets(page: &HistoryPage) -> Vec<u64> {
        page.publications
            .iter()
            .map(|p| p.position.as_ref().unwrap().offset)
            .collect()
    }

    #[test]
    fn offsets_count_up_and_history_is_capped() {
        let s = Streams::new();
        let p = policy(3, Duration::from_secs(60));
        let mut delivered = Vec::new();
        for n in 1..=5 {
            let pos = s.append("c", data(n), &p, |pb| delivered.push(pb));
            assert_eq!(pos.offset, n);
        }
        assert_eq!(delivered.len(), 5);
        let epoch = delivered[0].position.as_ref().unwrap().epoch.clone();
        assert!(
            delivered
                .iter()
                .all(|d| d.position.as_ref().unwrap().epoch == epoch)
        );
        let all = s.read(
            "c",
            &p,
            &HistoryQuery {
                since: None,
                limit: 10,
            },
        );
        assert_eq!(offsets(&all), [3, 4, 5]);
        assert_eq!(all.position, StreamPosition::new(5, epoch.clone()));
        let latest = s.read(
            "c",
            &p,
            &HistoryQuery {
                since: None,
                limit: 2,
            },
        );
        assert_eq!(offsets(&latest), [4, 5]);
        let since = s.read(
            "c",
            &p,
            &HistoryQuery {
                since: Some(StreamPosition::new(3, epoch.clone())),
                limit: 1,
            },
        );
        assert_eq!(offsets(&since), [4]);
        let other = s.read(
            "c",
            &p,
            &HistoryQuery {
                since: Some(StreamPosition::new(3, "nope")),
                limit: 10,
            },
        );
        assert!(other.publications.is_empty());
        let only = s.read(
            "c",
            &p,
            &HistoryQuery {
                since: None,
                limit: 0,
            },
        );
        assert!(only.publications.is_empty());
        assert_eq!(only.position.offset, 5);
    }

    #[test]
    fn reading_creates_a_stream_and_expiry_changes_the_epoch() {
        let s = Streams::new();
        let p = policy(10, Duration::from_millis(30));
        let first = s.read("c", &p, &HistoryQuery::default()).position;
        assert_eq!(first.offset, 0);
        let pos = s.append("c", data(1), &p, |_| {});
        assert_eq!(pos, StreamPosition::new(1, first.epoch.clone()));
        std::thread::sleep(Duration::from_millis(40));
        let pos = s.append("c", data(2), &p, |_| {});
        assert_eq!(pos.offset, 1, "a new stream starts again");
        assert_ne!(pos.epoch, first.epoch);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.len(), 1);
        s.sweep();
        assert_eq!(s.len(), 0);
        s.append("c", data(3), &p, |_| {});
        s.remove("c");
        assert_eq!(s.len(), 0);
    }
}
