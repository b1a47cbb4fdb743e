//! Presence in a JetStream KV bucket: who is subscribed to a channel, on
//! every node.
//!
//! One bucket per subject prefix (so clusters and test runs sharing a NATS
//! stay apart), keeping one value per key (`history` 1) for `max_age` =
//! the presence ttl: a node refreshes its entries by putting them again,
//! and the entries of a node that died expire by themselves. The key of
//! socket `s` on channel `c` is `c<base64url(c)>.s<base64url(s)>` (KV keys
//! allow `[-/_=.A-Za-z0-9]`; the letters keep empty names valid), or
//! `d<sha1 of c>.…` for a channel whose encoding would be longer than 255
//! bytes. Values are the [`ClientInfo`] JSON.
//!
//! * **Writes are pipelined**: a batch of records is sent as KV puts (plain
//!   JetStream publishes on `$KV.<bucket>.<key>`) without waiting, then
//!   the acks are awaited, a chunk at a time; a node refreshing thousands
//!   of entries pays a few round trips, not thousands.
//! * **Removal** writes KV delete markers (`KV-Operation: DEL`), which
//!   expire like entries.
//! * **Reads** scan the channel's keys only (`$KV.<bucket>.<channel>.*`,
//!   last value per key, see [`crate::scan`]) and skip delete markers.
//!
//! The bucket's `max_age` follows the ttl of the latest `presence_add`
//! (the node's `presence_ttl`, one value per cluster).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{consumer, stream};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use herald::broker::{ClientInfo, PresenceRecord};
use parking_lot::Mutex;
use sha1::{Digest, Sha1};

use crate::error::{StoreError, publish_error};
use crate::scan::{Flow, scan};
use crate::shared::Shared;

/// Puts (or deletes) sent before their acks are awaited.
const CHUNK: usize = 256;

/// The longest channel part of a key before a digest replaces it.
const MAX_CHANNEL_PART: usize = 255;

/// The KV operation header, and the values that mean "no entry".
const OPERATION: &str = "KV-Operation";

/// The key part naming `channel`.
fn channel_part(channel: &str) -> String {
    let encoded = B64.encode(channel);
    if encoded.len() < MAX_CHANNEL_PART {
        format!("c{encoded}")
    } else {
        let digest = Sha1::digest(channel.as_bytes());
        let mut out = String::with_capacity(41);
        out.push('d');
        for b in digest {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// The key part naming socket `client`.
fn client_part(client: &str) -> String {
    format!("s{}", B64.encode(client))
}

/// The socket id of a KV subject (`$KV.<bucket>.<channel>.<client>`).
fn client_of(subject: &str) -> Option<String> {
    let part = subject.rsplit('.').next()?.strip_prefix('s')?;
    String::from_utf8(B64.decode(part).ok()?).ok()
}

/// Whether a KV message is a delete or purge marker.
fn is_deletion(headers: Option<&HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get(OPERATION))
        .is_some_and(|v| matches!(v.as_str(), "DEL" | "PURGE"))
}

/// The presence side of a [`crate::NatsBroker`].
#[derive(Debug)]
pub(crate) struct Presence {
    bucket: String,
    /// The connection and ttl the bucket was last ensured with.
    ensured: Mutex<Option<(u64, Duration)>>,
}

impl Presence {
    /// Presence in `bucket`.
    pub(crate) fn new(bucket: String) -> Self {
        Self {
            bucket,
            ensured: Mutex::new(None),
        }
    }

    /// The bucket's name.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    fn stream_name(&self) -> String {
        format!("KV_{}", self.bucket)
    }

    fn subject(&self, channel: &str, client: &str) -> String {
        format!(
            "$KV.{}.{}.{}",
            self.bucket,
            channel_part(channel),
            client_part(client)
        )
    }

    /// The bucket's stream: what `async_nats` (and the `nats` CLI) make
    /// for a KV bucket with history 1 and `max_age` `ttl`.
    pub(crate) fn config(&self, ttl: Duration, replicas: usize) -> stream::Config {
        stream::Config {
            name: self.stream_name(),
            description: Some("Herald presence".to_owned()),
            subjects: vec![format!("$KV.{}.>", self.bucket)],
            max_messages_per_subject: 1,
            max_age: ttl,
            discard: stream::DiscardPolicy::New,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        }
    }

    async fn ensure(&self, shared: &Shared, ttl: Duration) -> Result<(), StoreError> {
        let connection = shared.connection();
        if *self.ensured.lock() == Some((connection, ttl)) {
            return Ok(());
        }
        let what = "creating the presence bucket";
        let timeout = shared.options.request_timeout;
        let config = self.config(ttl, shared.options.replicas);
        match tokio::time::timeout(timeout, shared.js.create_or_update_stream(config)).await {
            Err(_) => Err(StoreError::Timeout {
                what,
                after: timeout,
            }),
            Ok(Err(e)) => Err(StoreError::failed(what, e)),
            Ok(Ok(_)) => {
                *self.ensured.lock() = Some((connection, ttl));
                Ok(())
            }
        }
    }

    /// Sends one message per item, `CHUNK` at a time, awaiting the acks of
    /// a chunk before the next one.
    async fn send_all<'a, T: 'a>(
        &self,
        shared: &Shared,
        what: &'static str,
        items: &'a [T],
        message: impl Fn(&'a T) -> Result<(String, Option<HeaderMap>, Vec<u8>), StoreError>,
    ) -> Result<(), StoreError> {
        let timeout = shared.options.request_timeout;
        let late = || StoreError::Timeout {
            what,
            after: timeout,
        };
        for chunk in items.chunks(CHUNK) {
            let mut acks = Vec::with_capacity(chunk.len());
            for item in chunk {
                let (subject, headers, payload) = message(item)?;
                let mut publish = PublishMessage::build().payload(payload.into());
                if let Some(h) = headers {
                    publish = publish.headers(h);
                }
                let sent = shared.js.send_publish(subject.clone(), publish);
                let ack = tokio::time::timeout(timeout, sent)
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| publish_error(e, what, &subject, timeout))?;
                acks.push((subject, ack));
            }
            for (subject, ack) in acks {
                tokio::time::timeout(timeout, ack)
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| publish_error(e, what, &subject, timeout))?;
            }
        }
        Ok(())
    }

    /// Records or refreshes entries (see [`herald::Broker::presence_add`]).
    pub(crate) async fn add(
        &self,
        shared: &Shared,
        records: &[PresenceRecord],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        if !shared.is_up() {
            return Err(StoreError::Unreachable);
        }
        let what = "recording presence";
        let put = |r: &PresenceRecord| {
            let payload = serde_json::to_vec(&*r.info).map_err(|e| StoreError::failed(what, e))?;
            Ok((self.subject(&r.channel, &r.client), None, payload))
        };
        for attempt in 0..2 {
            self.ensure(shared, ttl).await?;
            match self.send_all(shared, what, records, put).await {
                Err(StoreError::NoStream(_)) if attempt == 0 => {
                    // The bucket is gone (a server with a fresh store).
                    *self.ensured.lock() = None;
                }
                other => return other,
            }
        }
        Err(StoreError::NoStream(self.stream_name()))
    }

    /// Removes entries (see [`herald::Broker::presence_remove`]).
    pub(crate) async fn remove(
        &self,
        shared: &Shared,
        channel: &str,
        clients: &[std::sync::Arc<str>],
    ) -> Result<(), StoreError> {
        if clients.is_empty() {
            return Ok(());
        }
        if !shared.is_up() {
            return Err(StoreError::Unreachable);
        }
        let delete = |client: &std::sync::Arc<str>| {
            let mut headers = HeaderMap::new();
            headers.insert(OPERATION, "DEL");
            Ok((self.subject(channel, client), Some(headers), Vec::new()))
        };
        match self
            .send_all(shared, "removing presence", clients, delete)
            .await
        {
            // No bucket, no entries.
            Err(StoreError::NoStream(_)) => Ok(()),
            other => other,
        }
    }

    /// A channel's entries (see [`herald::Broker::presence`]).
    pub(crate) async fn list(
        &self,
        shared: &Shared,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, StoreError> {
        if !shared.is_up() {
            return Err(StoreError::Unreachable);
        }
        let stream = shared
            .js
            .get_stream_no_info(self.stream_name())
            .await
            .map_err(|e| StoreError::failed("reading presence", e))?;
        let filter = format!("$KV.{}.{}.*", self.bucket, channel_part(channel));
        let mut entries = BTreeMap::new();
        let timeout = shared.options.request_timeout;
        let scanned = scan(
            &stream,
            filter,
            consumer::DeliverPolicy::LastPerSubject,
            timeout,
            |m| {
                if is_deletion(m.headers.as_ref()) {
                    return Flow::Continue;
                }
                let client = client_of(&m.subject);
                match (client, serde_json::from_slice::<ClientInfo>(&m.payload)) {
                    (Some(client), Ok(info)) => {
                        entries.insert(client, info);
                    }
                    _ => tracing::debug!(channel, subject = %m.subject, "skipped a corrupt presence entry"),
                }
                Flow::Continue
            },
        )
        .await;
        match scanned {
            Ok(()) => Ok(entries),
            Err(StoreError::NoStream(_)) => Ok(BTreeMap::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_key_token(t: &str) -> bool {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'/'))
    }

    #[test]
    fn keys_are_kv_safe_and_give_the_socket_back() {
        let p = Presence::new("herald_presence_x".into());
        for (channel, client) in [
            ("chat", "abc"),
            ("", ""),
            ("a.b *.> %", "so.ck et"),
            ("é🚀", "🚀"),
        ] {
            let subject = p.subject(channel, client);
            let tokens: Vec<&str> = subject.split('.').collect();
            assert_eq!(tokens.len(), 4, "{subject}");
            assert_eq!(&tokens[..2], ["$KV", "herald_presence_x"]);
            assert!(tokens[2..].iter().all(|t| valid_key_token(t)), "{subject}");
            assert_eq!(client_of(&subject).as_deref(), Some(client));
        }
        assert_ne!(channel_part("a"), channel_part("b"));
        assert_eq!(client_of("$KV.b.cYQ.x"), None);
        assert_eq!(client_of("$KV.b.cYQ.s!!"), None);
    }

    #[test]
    fn long_channels_use_a_digest() {
        let long = "x".repeat(1000);
        let part = channel_part(&long);
        assert_eq!(part.len(), 41);
        assert!(part.starts_with('d'));
        assert_ne!(part, channel_part(&"x".repeat(1001)));
        assert!(channel_part(&"y".repeat(150)).starts_with('c'));
    }

    #[test]
    fn deletions_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!is_deletion(Some(&h)));
        h.insert(OPERATION, "DEL");
        assert!(is_deletion(Some(&h)));
        let mut h = HeaderMap::new();
        h.insert(OPERATION, "PURGE");
        assert!(is_deletion(Some(&h)));
        assert!(!is_deletion(None));
    }

    #[test]
    fn the_bucket_is_a_kv_bucket() {
        let p = Presence::new("b1".into());
        let c = p.config(Duration::from_secs(60), 0);
        assert_eq!(c.name, "KV_b1");
        assert_eq!(c.subjects, ["$KV.b1.>"]);
        assert_eq!(c.max_messages_per_subject, 1);
        assert_eq!(c.max_age, Duration::from_secs(60));
        assert_eq!(c.num_replicas, 1);
        assert!(c.allow_rollup && c.deny_delete && c.allow_direct);
    }
}
