//! `presence`, `presence_stats`, `history`, `history_remove`: the server
//! code's reads ([`crate::Server::history`] and the others), which the
//! channel's subscribe rule does not restrict.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Empty, check_reserved};
use crate::api::Api;
use crate::api::error::{ApiError, codes};
use crate::broker::{ClientInfo, HistoryQuery, PresenceStats, Publication, StreamPosition};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelParams {
    channel: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Presence {
    clients: BTreeMap<String, ClientInfo>,
}

pub(super) async fn presence(api: &Api, p: ChannelParams) -> Result<Presence, ApiError> {
    check_reserved(&p.channel)?;
    let clients = api.server.presence(&p.channel).await?;
    Ok(Presence { clients })
}

pub(super) async fn presence_stats(api: &Api, p: ChannelParams) -> Result<PresenceStats, ApiError> {
    check_reserved(&p.channel)?;
    Ok(api.server.presence_stats(&p.channel).await?)
}

pub(super) async fn history_remove(api: &Api, p: ChannelParams) -> Result<Empty, ApiError> {
    check_reserved(&p.channel)?;
    api.server.remove_history(&p.channel).await?;
    Ok(Empty {})
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    #[serde(deserialize_with = "super::integer::deserialize")]
    offset: u64,
    epoch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryParams {
    channel: String,
    #[serde(default, deserialize_with = "super::integer::option")]
    limit: Option<usize>,
    #[serde(default)]
    since: Option<Position>,
    /// `null` is absent (false), as for the other optional params.
    #[serde(default)]
    reverse: Option<bool>,
}

#[derive(Debug, Serialize)]
struct HistoryPublication {
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize)]
pub(super) struct History {
    publications: Vec<HistoryPublication>,
    offset: u64,
    epoch: String,
}

fn offset_of(p: &Publication) -> u64 {
    p.position.as_ref().map_or(0, |q| q.offset)
}

/// A page of the channel's history:
/// * without `since`, the latest `limit` publications (oldest first, or
///   newest first with `reverse`);
/// * with `since`, the first `limit` publications after it, oldest first;
///   with `reverse`, the last `limit` before it, newest first (to page
///   back through the history).
///
/// `limit` defaults to, and is capped by, the channel's history size; 0
/// reads only the stream's position. A `since` of another epoch than the
/// stream's is refused (`unrecoverable_position`).
pub(super) async fn history(api: &Api, p: HistoryParams) -> Result<History, ApiError> {
    check_reserved(&p.channel)?;
    let server = &api.server.0;
    let ns = server.channel_options(&p.channel)?;
    let size = ns.history.as_ref().map_or(0, |h| h.size);
    let limit = p.limit.unwrap_or(size).min(size);
    let since = p
        .since
        .as_ref()
        .map(|s| StreamPosition::new(s.offset, s.epoch.as_str()));
    let reverse = p.reverse.unwrap_or(false);
    let backwards = reverse && since.is_some();
    let query = HistoryQuery {
        // Paging back reads the whole (bounded) history and cuts it here.
        since: if backwards { None } else { since.clone() },
        limit: if backwards { size } else { limit },
    };
    let page = api.server.history(&p.channel, query).await?;
    if let Some(since) = &since
        && since.epoch != page.position.epoch
    {
        return Err(ApiError::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            codes::UNRECOVERABLE_POSITION,
            format!(
                "Channel {} is in epoch {} now: the position of epoch {} is gone",
                p.channel, page.position.epoch, since.epoch
            ),
        ));
    }
    let mut publications = page.publications;
    if let Some(since) = since.filter(|_| backwards) {
        publications.retain(|p| offset_of(p) < since.offset);
        let skip = publications.len().saturating_sub(limit);
        publications.drain(..skip);
    }
    if reverse {
        publications.reverse();
    }
    Ok(History {
        publications: publications
            .iter()
            .map(|p| HistoryPublication {
                offset: offset_of(p),
                data: p.data.clone(),
            })
            .collect(),
        offset: page.position.offset,
        epoch: page.position.epoch.to_string(),
    })
}
