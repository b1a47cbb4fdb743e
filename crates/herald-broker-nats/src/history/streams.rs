//! The JetStream streams that keep history: one per namespace, created or
//! updated lazily from the namespace's [`HistoryPolicy`].
//!
//! A stream captures `<prefix>.h.<namespace>.*` (one subject per channel)
//! and keeps per subject the channel's last `size` publications plus one
//! slot for an epoch marker (`max_msgs_per_subject = size + 1`, discarding
//! the oldest), each for `ttl` (`max_age`). Its **RePublish** hands every
//! message it stores, in stream order, to `<prefix>.<channel token>`, the
//! channel's live subject: storing and delivering are one step, so no
//! subscriber can see offset n+1 before n. `allow_direct` lets publishers
//! read a subject's last message cheaply.
//!
//! A node ensures a namespace's stream once per connection (the server may
//! have come back with an empty store) and again when the policy changes;
//! `create_or_update` is idempotent, so nodes racing to create it agree.
//! Nodes with different policies for one namespace would keep re-applying
//! theirs: configure namespaces alike on every node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use herald::broker::HistoryPolicy;
use parking_lot::Mutex;

use crate::error::StoreError;
use crate::shared::Shared;
use crate::subject::SubjectMap;

/// A namespace's stream as this node last ensured it.
#[derive(Debug, Clone)]
struct Ensured {
    connection: u64,
    size: usize,
    ttl: Duration,
    stream: jetstream::stream::Stream<()>,
}

/// The history streams this node has ensured, by namespace.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    map: Mutex<HashMap<Arc<str>, Ensured>>,
}

/// The configuration of `policy`'s stream.
pub(crate) fn config(
    subjects: &SubjectMap,
    policy: &HistoryPolicy,
    replicas: usize,
) -> stream::Config {
    let filter = subjects.history_filter(&policy.namespace);
    stream::Config {
        name: subjects.stream_name(&policy.namespace),
        description: Some(format!(
            "Herald history of namespace {:?} ({filter})",
            &*policy.namespace
        )),
        subjects: vec![filter.clone()],
        max_messages_per_subject: i64::try_from(policy.size.max(1))
            .unwrap_or(i64::MAX - 1)
            .saturating_add(1),
        max_age: policy.ttl,
        discard: stream::DiscardPolicy::Old,
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        num_replicas: replicas.max(1),
        allow_direct: true,
        republish: Some(stream::Republish {
            source: filter,
            destination: subjects.republish_destination(),
            headers_only: false,
        }),
        ..Default::default()
    }
}

impl Streams {
    /// `policy`'s stream, ensured on connection `connection` if it was not
    /// yet (or with another policy).
    pub(crate) async fn ensure(
        &self,
        shared: &Shared,
        policy: &HistoryPolicy,
        connection: u64,
    ) -> Result<jetstream::stream::Stream<()>, StoreError> {
        if let Some(e) = self.map.lock().get(&policy.namespace)
            && e.connection == connection
            && e.size == policy.size
            && e.ttl == policy.ttl
        {
            return Ok(e.stream.clone());
        }
        let config = config(&shared.subjects, policy, shared.options.replicas);
        let name = config.name.clone();
        let what = "creating the history stream";
        let timeout = shared.options.request_timeout;
        match tokio::time::timeout(timeout, shared.js.create_or_update_stream(config)).await {
            Err(_) => {
                return Err(StoreError::Timeout {
                    what,
                    after: timeout,
                });
            }
            Ok(Err(e)) => return Err(StoreError::failed(what, e)),
            Ok(Ok(_)) => {}
        }
        let stream = shared
            .js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| StoreError::failed(what, e))?;
        tracing::debug!(stream = %name, namespace = &*policy.namespace, "history stream ensured");
        self.map.lock().insert(
            policy.namespace.clone(),
            Ensured {
                connection,
                size: policy.size,
                ttl: policy.ttl,
                stream: stream.clone(),
            },
        );
        Ok(stream)
    }

    /// Forgets `namespace`'s stream (it was found missing): the next use
    /// ensures it again.
    pub(crate) fn forget(&self, namespace: &str) {
        self.map.lock().remove(namespace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_follows_the_policy() {
        let subjects = SubjectMap::new("app.ch", 1024).unwrap();
        let policy = HistoryPolicy {
            size: 100,
            ttl: Duration::from_secs(300),
            namespace: Arc::from("chat"),
        };
        let c = config(&subjects, &policy, 3);
        assert_eq!(c.subjects, ["app.ch.h.chat.*"]);
        assert_eq!(c.max_messages_per_subject, 101, "size + the marker");
        assert_eq!(c.max_age, Duration::from_secs(300));
        assert_eq!(c.num_replicas, 3);
        assert!(c.allow_direct);
        assert_eq!(c.discard, stream::DiscardPolicy::Old);
        let r = c.republish.expect("republish");
        assert_eq!(r.source, "app.ch.h.chat.*");
        assert_eq!(r.destination, "app.ch.{{wildcard(1)}}");
        assert!(!r.headers_only);
        assert_eq!(c.name, subjects.stream_name("chat"));
        let huge = HistoryPolicy {
            size: usize::MAX,
            ..policy
        };
        assert!(config(&subjects, &huge, 0).max_messages_per_subject > 0);
        assert_eq!(config(&subjects, &huge, 0).num_replicas, 1);
    }
}
