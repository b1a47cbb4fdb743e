//! Presence in Redis: per channel a hash (`…:p`, socket id → `ClientInfo`
//! JSON) and a sorted set (`…:px`, socket id scored by its expiry in
//! milliseconds of the server's clock).
//!
//! Each node refreshes its own entries every `presence_ttl / 3`, so a dead
//! node's entries expire without anyone cleaning up after it: reads drop
//! expired entries from both keys first (in the same script), and both keys
//! expire as a whole when nobody refreshes the channel. Expiry uses the
//! Redis server's clock (`TIME` in the scripts), so nodes with skewed
//! clocks agree. A refresh of many records is one script call per channel
//! (chunked), pipelined per server, servers in parallel
//! ([`crate::routed`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald::BrokerError;
use herald::broker::{ClientInfo, PresenceRecord, PresenceStats};

use super::history::millis;
use super::{Engine, error};
use crate::keys::ChannelKeys;
use crate::routed::Request;
use crate::scripts;

/// Records per script call: a script blocks its server while it runs.
const RECORDS_PER_CALL: usize = 256;

impl Engine {
    /// See [`herald::Broker::presence_add`].
    pub(crate) async fn presence_add(
        &self,
        records: &[PresenceRecord],
        ttl: Duration,
    ) -> Result<(), BrokerError> {
        let prefix = &self.shared.prefix;
        let ttl = millis(ttl);
        // Records grouped by channel, in order of first appearance.
        let mut by_channel: Vec<(&str, Vec<&PresenceRecord>)> = Vec::new();
        let mut index: std::collections::HashMap<&str, usize> = Default::default();
        for r in records {
            let i = *index.entry(&r.channel).or_insert_with(|| {
                by_channel.push((&r.channel, Vec::new()));
                by_channel.len() - 1
            });
            by_channel[i].1.push(r);
        }
        let mut requests = Vec::new();
        for (channel, records) in by_channel {
            let keys = ChannelKeys::new(prefix, channel);
            for chunk in records.chunks(RECORDS_PER_CALL) {
                let mut infos = Vec::with_capacity(chunk.len());
                for r in chunk {
                    let info = serde_json::to_vec(&*r.info)
                        .map_err(|e| error(format!("presence info of {}: {e}", r.client)))?;
                    infos.push(info);
                }
                let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * chunk.len());
                args.push(ttl.as_bytes());
                for (r, info) in chunk.iter().zip(&infos) {
                    args.push(r.client.as_bytes());
                    args.push(info);
                }
                let cmd = scripts::evalsha(
                    &scripts::PRESENCE_ADD,
                    &[&keys.presence, &keys.presence_expiry],
                    &args,
                );
                requests.push(Request::script(
                    &keys.channel,
                    channel,
                    &scripts::PRESENCE_ADD,
                    cmd,
                ));
            }
        }
        if requests.is_empty() {
            return Ok(());
        }
        self.call("presence add", &requests).await.map(|_| ())
    }

    /// See [`herald::Broker::presence_remove`]: `HDEL` and `ZREM`.
    pub(crate) async fn presence_remove(
        &self,
        channel: &str,
        clients: &[Arc<str>],
    ) -> Result<(), BrokerError> {
        if clients.is_empty() {
            return Ok(());
        }
        let prefix = &self.shared.prefix;
        let keys = ChannelKeys::new(prefix, channel);
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(&keys.presence);
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&keys.presence_expiry);
        for c in clients {
            hdel.arg(c.as_bytes());
            zrem.arg(c.as_bytes());
        }
        let requests = [
            Request::new(&keys.channel, channel, hdel),
            Request::new(&keys.channel, channel, zrem),
        ];
        self.call(&format!("presence remove on {channel}"), &requests)
            .await
            .map(|_| ())
    }

    async fn presence_read(&self, channel: &str, mode: &str) -> Result<redis::Value, BrokerError> {
        let prefix = &self.shared.prefix;
        let keys = ChannelKeys::new(prefix, channel);
        let cmd = scripts::evalsha(
            &scripts::PRESENCE_READ,
            &[&keys.presence, &keys.presence_expiry],
            &[mode.as_bytes()],
        );
        let request = Request::script(&keys.channel, channel, &scripts::PRESENCE_READ, cmd);
        let mut replies = self
            .call(
                &format!("presence of {channel}"),
                std::slice::from_ref(&request),
            )
            .await?;
        replies
            .pop()
            .ok_or_else(|| error(format!("presence of {channel}: no reply")))
    }

    /// See [`herald::Broker::presence`].
    pub(crate) async fn presence(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, BrokerError> {
        let reply = self.presence_read(channel, "list").await?;
        scripts::read_presence(&reply).map_err(|e| {
            self.shared.telemetry.script_failed();
            error(format!("presence of {channel}: {e}"))
        })
    }

    /// See [`herald::Broker::presence_stats`].
    pub(crate) async fn presence_stats(&self, channel: &str) -> Result<PresenceStats, BrokerError> {
        let reply = self.presence_read(channel, "stats").await?;
        scripts::read_stats(&reply).map_err(|e| {
            self.shared.telemetry.script_failed();
            error(format!("presence stats of {channel}: {e}"))
        })
    }
}
