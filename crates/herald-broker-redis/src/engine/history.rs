//! Channel history in Redis Streams: appending and publishing as one
//! script, reading pages, removing a channel's history.
//!
//! A channel's stream (`…:h`) holds its last `size` publications, each with
//! the id `<offset>-0`; its meta hash (`…:m`) holds the epoch and the
//! latest offset. Both live `ttl` after the last publication, so an
//! abandoned channel's history vanishes by itself, and a channel whose
//! history expired (or whose server restarted without persistence, or
//! whose history was removed) starts again in a new epoch: a client that
//! knew the old one learns it cannot recover, never that it missed
//! nothing.

use std::sync::Arc;

use herald::BrokerError;
use herald::broker::history::new_epoch;
use herald::broker::{HistoryPage, HistoryPolicy, HistoryQuery, StreamPosition};
use serde_json::value::RawValue;

use super::{Engine, error};
use crate::connection::Flavor;
use crate::keys::ChannelKeys;
use crate::routed::Request;
use crate::scripts;

/// Milliseconds of a ttl, at least 1 (Redis refuses 0).
pub(super) fn millis(ttl: std::time::Duration) -> String {
    ttl.as_millis().clamp(1, i64::MAX as u128).to_string()
}

impl Engine {
    /// See [`herald::Broker::publish_with_history`]: one `EVALSHA` of
    /// [`scripts::PUBLISH`] through the publish path.
    pub(crate) async fn publish_with_history(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        policy: &HistoryPolicy,
    ) -> Result<StreamPosition, BrokerError> {
        let prefix = &self.shared.prefix;
        let keys = ChannelKeys::new(prefix, channel);
        let data = data.as_deref().map_or("", RawValue::get);
        let epoch = new_epoch();
        let size = policy.size.max(1).to_string();
        let ttl = millis(policy.ttl);
        let flavor = match self.exec.routing().flavor() {
            Flavor::Plain => "p",
            Flavor::Sharded => "s",
        };
        let cmd = scripts::evalsha(
            &scripts::PUBLISH,
            &[&keys.stream, &keys.meta],
            &[
                channel.as_bytes(),
                data.as_bytes(),
                epoch.as_bytes(),
                size.as_bytes(),
                ttl.as_bytes(),
                flavor.as_bytes(),
                keys.channel.as_bytes(),
            ],
        );
        let request = Request::script(&keys.channel, channel, &scripts::PUBLISH, cmd);
        let reply = self.publish_request(channel, request).await?;
        scripts::read_position(&reply).map_err(|e| {
            self.shared.telemetry.script_failed();
            error(format!("publish to {channel}: {e}"))
        })
    }

    /// See [`herald::Broker::history`]: one `EVALSHA` of
    /// [`scripts::HISTORY`].
    pub(crate) async fn history(
        &self,
        channel: &str,
        policy: &HistoryPolicy,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, BrokerError> {
        let prefix = &self.shared.prefix;
        let keys = ChannelKeys::new(prefix, channel);
        let epoch = new_epoch();
        let ttl = millis(policy.ttl);
        let limit = query.limit.min(i64::MAX as usize).to_string();
        let (since, since_epoch) = match &query.since {
            Some(p) => (p.offset.to_string(), p.epoch.to_string()),
            None => (String::new(), String::new()),
        };
        let cmd = scripts::evalsha(
            &scripts::HISTORY,
            &[&keys.stream, &keys.meta],
            &[
                epoch.as_bytes(),
                ttl.as_bytes(),
                limit.as_bytes(),
                since.as_bytes(),
                since_epoch.as_bytes(),
            ],
        );
        let request = Request::script(&keys.channel, channel, &scripts::HISTORY, cmd);
        let what = format!("history of {channel}");
        let reply = self.call(&what, std::slice::from_ref(&request)).await?;
        let channel: Arc<str> = Arc::from(channel);
        let (position, publications) =
            scripts::read_history(&channel, &reply[0], query.since.is_none()).map_err(|e| {
                self.shared.telemetry.script_failed();
                error(format!("{what}: {e}"))
            })?;
        Ok(HistoryPage {
            publications,
            position,
        })
    }

    /// See [`herald::Broker::remove_history`]: `DEL` of the stream and the
    /// meta (one slot, so one command).
    pub(crate) async fn remove_history(&self, channel: &str) -> Result<(), BrokerError> {
        let prefix = &self.shared.prefix;
        let keys = ChannelKeys::new(prefix, channel);
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&keys.stream).arg(&keys.meta);
        let request = Request::new(&keys.channel, channel, cmd);
        self.call(
            &format!("removing the history of {channel}"),
            std::slice::from_ref(&request),
        )
        .await
        .map(|_| ())
    }
}
