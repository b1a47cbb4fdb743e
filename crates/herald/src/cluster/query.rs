//! Questions one node asks every other node, over the broker: which
//! channels have subscribers, with how many (the HTTP API's `channels`).
//!
//! Every node listens on its own reserved channel `#herald/node/<id>`. The
//! asking node publishes a request on the channel of each node it knows
//! (from their announcements, see `nodes`), naming itself; each node
//! answers on the asker's channel. The asker gathers the answers until all
//! came or a timeout passed, adds its own, and reports which nodes did not
//! answer: an answer is partial rather than late when a node is slow or the
//! broker is down.
//!
//! Answers are bounded: each node sends at most `limit` channels (the first
//! by name), and says when it left some out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::node_channel;
use crate::publish::Origin;
use crate::server::ServerInner;

/// A message on a node's own channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum NodeMessage {
    /// Which channels matching `pattern` have subscribers on the node?
    Channels {
        id: u64,
        from: String,
        #[serde(default)]
        pattern: Option<String>,
        limit: usize,
    },
    /// The answer to [`NodeMessage::Channels`].
    #[serde(rename_all = "camelCase")]
    ChannelsReply {
        id: u64,
        node: String,
        channels: Vec<ChannelCount>,
        truncated: bool,
    },
}

/// A channel and its number of subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCount {
    /// The channel.
    pub channel: String,
    /// Its subscribers (sockets), on the nodes that answered.
    pub subscribers: usize,
}

/// The channels with subscribers across the cluster
/// ([`crate::Server::cluster_channels`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterChannels {
    /// Channels by name, with their subscribers summed over the nodes that
    /// answered; at most the `limit` asked for.
    pub channels: Vec<ChannelCount>,
    /// Whether channels were left out to keep within the limit.
    pub truncated: bool,
    /// The nodes whose channels are counted (this one first).
    pub answered: Vec<String>,
    /// The nodes that did not answer in time.
    pub missing: Vec<String>,
}

/// The channel pattern was not a valid glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid channel pattern: {0}")]
pub struct PatternError(String);

/// A compiled channel filter: a glob (`*`, `?`, `[...]`), or everything.
pub(crate) struct Filter(Option<glob::Pattern>);

impl Filter {
    /// Compiles `pattern` (`None`: every channel).
    pub(crate) fn new(pattern: Option<&str>) -> Result<Self, PatternError> {
        match pattern {
            None => Ok(Self(None)),
            Some(p) => glob::Pattern::new(p)
                .map(|g| Self(Some(g)))
                .map_err(|e| PatternError(e.to_string())),
        }
    }

    /// Whether `channel` matches.
    pub(crate) fn matches(&self, channel: &str) -> bool {
        self.0.as_ref().is_none_or(|g| g.matches(channel))
    }
}

type Answer = (String, Vec<ChannelCount>, bool);

/// The questions a node asked and waits answers for.
#[derive(Default)]
pub(crate) struct Pending {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::Sender<Answer>>>,
}

impl Pending {
    /// A new question expecting up to `answers` answers.
    fn open(&self, answers: usize) -> (u64, mpsc::Receiver<Answer>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(answers.max(1));
        self.waiting.lock().insert(id, tx);
        (id, rx)
    }

    fn close(&self, id: u64) {
        self.waiting.lock().remove(&id);
    }

    /// An answer arrived; one to a question no longer asked is dropped, as
    /// are answers beyond the number expected.
    fn deliver(&self, id: u64, answer: Answer) {
        let tx = self.waiting.lock().get(&id).cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(answer);
        }
    }
}

/// Forgets a question when its asker is done (or dropped).
struct Asked<'a>(&'a Pending, u64);

impl Drop for Asked<'_> {
    fn drop(&mut self) {
        self.0.close(self.1);
    }
}

/// Handles a message on this node's own channel.
pub(super) fn on_message(server: &Arc<ServerInner>, data: &RawValue) {
    match serde_json::from_str::<NodeMessage>(data.get()) {
        Ok(NodeMessage::Channels {
            id,
            from,
            pattern,
            limit,
        }) => {
            let server = server.clone();
            tokio::spawn(async move {
                let Ok(filter) = Filter::new(pattern.as_deref()) else {
                    return;
                };
                let (channels, truncated) = server.registry.channels(&filter, limit);
                let reply = NodeMessage::ChannelsReply {
                    id,
                    node: server.node_id.to_string(),
                    channels,
                    truncated,
                };
                let Ok(raw) = serde_json::value::to_raw_value(&reply) else {
                    return;
                };
                if let Err(e) = server
                    .publish(Origin::Control, &node_channel(&from), Some(raw))
                    .await
                {
                    tracing::debug!(node = %from, error = %e, "channels answer not published");
                }
            });
        }
        Ok(NodeMessage::ChannelsReply {
            id,
            node,
            channels,
            truncated,
        }) => server
            .cluster
            .queries
            .deliver(id, (node, channels, truncated)),
        Err(e) => tracing::warn!(error = %e, "ignored a malformed node message"),
    }
}

/// Asks every node for its channels matching `pattern` (at most `limit`
/// each) and gathers the answers for up to `timeout`.
pub(crate) async fn channels(
    server: &Arc<ServerInner>,
    pattern: Option<&str>,
    limit: usize,
    timeout: Duration,
) -> Result<ClusterChannels, PatternError> {
    let filter = Filter::new(pattern)?;
    let others = server.cluster.other_nodes(&server.node_id);
    let (id, mut answers) = server.cluster.queries.open(others.len());
    let _asked = Asked(&server.cluster.queries, id);
    let request = NodeMessage::Channels {
        id,
        from: server.node_id.to_string(),
        pattern: pattern.map(str::to_owned),
        limit,
    };
    let raw = serde_json::value::to_raw_value(&request).ok();
    let sends = others.iter().map(|node| {
        let raw = raw.clone();
        async move {
            match server
                .publish(Origin::Control, &node_channel(node), raw)
                .await
            {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(node = %node, error = %e, "channels question not published");
                    false
                }
            }
        }
    });
    let sent = futures_util::future::join_all(sends).await;
    let expected = sent.iter().filter(|s| **s).count();

    let (local, mut truncated) = server.registry.channels(&filter, limit);
    let mut merged: BTreeMap<String, usize> = local
        .into_iter()
        .map(|c| (c.channel, c.subscribers))
        .collect();
    let mut answered = vec![server.node_id.to_string()];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut received = 0;
    while received < expected {
        match tokio::time::timeout_at(deadline, answers.recv()).await {
            Ok(Some((node, channels, cut))) => {
                received += 1;
                if !others.contains(&node) || answered.contains(&node) {
                    continue;
                }
                truncated |= cut;
                for c in channels {
                    *merged.entry(c.channel).or_default() += c.subscribers;
                }
                answered.push(node);
            }
            Ok(None) | Err(_) => break,
        }
    }
    if merged.len() > limit {
        truncated = true;
    }
    let channels = merged
        .into_iter()
        .take(limit)
        .map(|(channel, subscribers)| ChannelCount {
            channel,
            subscribers,
        })
        .collect();
    let missing = others
        .into_iter()
        .filter(|n| !answered.contains(n))
        .collect();
    Ok(ClusterChannels {
        channels,
        truncated,
        answered,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_globs() {
        let all = Filter::new(None).unwrap();
        assert!(all.matches("anything"));
        let f = Filter::new(Some("chat:*")).unwrap();
        assert!(f.matches("chat:lobby"));
        assert!(f.matches("chat:a/b"));
        assert!(!f.matches("news"));
        let f = Filter::new(Some("room-?")).unwrap();
        assert!(f.matches("room-1"));
        assert!(!f.matches("room-12"));
        assert!(Filter::new(Some("[")).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let m = NodeMessage::ChannelsReply {
            id: 3,
            node: "n".into(),
            channels: vec![ChannelCount {
                channel: "c".into(),
                subscribers: 2,
            }],
            truncated: false,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"op":"channelsReply","id":3,"node":"n","channels":[{"channel":"c","subscribers":2}],"truncated":false}"#
        );
        assert!(matches!(
            serde_json::from_str::<NodeMessage>(&text).unwrap(),
            NodeMessage::ChannelsReply { id: 3, .. }
        ));
    }

    #[tokio::test]
    async fn answers_reach_only_open_questions() {
        let p = Pending::default();
        let (id, mut rx) = p.open(1);
        p.deliver(id + 1, ("x".into(), vec![], false));
        p.deliver(id, ("a".into(), vec![], true));
        p.deliver(id, ("b".into(), vec![], true));
        assert_eq!(rx.recv().await.unwrap().0, "a");
        p.close(id);
        assert!(rx.recv().await.is_none());
    }
}
