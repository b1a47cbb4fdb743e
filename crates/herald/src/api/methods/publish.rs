//! `publish` and `broadcast`: through the server's one publishing path
//! (`crate::publish`) as server code, so names, namespaces, history offsets
//! and metrics apply as to clients, but not the client publish rules nor
//! the publish middleware: the backend is trusted, and may publish on
//! channels clients may not (`publish = "none"`).

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::check_reserved;
use crate::api::Api;
use crate::api::error::ApiError;
use crate::broker::StreamPosition;

/// Most channels of one `broadcast`.
pub(crate) const MAX_BROADCAST: usize = 1000;
/// Publications of one `broadcast` in flight at once.
const BROADCAST_CONCURRENCY: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishParams {
    channel: String,
    data: Box<RawValue>,
}

/// A publication's place in its channel's stream (channels with history).
#[derive(Debug, Default, Serialize)]
pub(super) struct Published {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<String>,
}

impl From<Option<StreamPosition>> for Published {
    fn from(p: Option<StreamPosition>) -> Self {
        match p {
            Some(p) => Self {
                offset: Some(p.offset),
                epoch: Some(p.epoch.to_string()),
            },
            None => Self::default(),
        }
    }
}

pub(super) async fn publish(api: &Api, p: PublishParams) -> Result<Published, ApiError> {
    check_reserved(&p.channel)?;
    let position = api
        .server
        .exchange()
        .publish_raw(&p.channel, Some(p.data))
        .await?;
    Ok(position.into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BroadcastParams {
    channels: Vec<String>,
    data: Box<RawValue>,
}

/// One channel's outcome in a broadcast.
#[derive(Debug, Serialize)]
struct ChannelOutcome {
    channel: String,
    #[serde(flatten)]
    published: Published,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail {
    code: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
pub(super) struct Broadcast {
    publications: Vec<ChannelOutcome>,
}

/// Every channel is checked before anything is published (one refused
/// channel refuses the call); then each publication succeeds or fails by
/// itself. The call fails (503) only when every publication failed.
pub(super) async fn broadcast(api: &Api, p: BroadcastParams) -> Result<Broadcast, ApiError> {
    if p.channels.is_empty() || p.channels.len() > MAX_BROADCAST {
        return Err(ApiError::invalid_value(format!(
            "a broadcast names 1 to {MAX_BROADCAST} channels, not {}",
            p.channels.len()
        )));
    }
    for channel in &p.channels {
        check_reserved(channel)?;
        api.server.0.channel_options(channel)?;
    }
    let exchange = api.server.exchange();
    // Collected first: a lazy `map` over the names would put a closure
    // over a borrowed name in the future's type, which then is not `Send`
    // for every lifetime (rust-lang/rust#102211).
    let publications: Vec<_> = p
        .channels
        .iter()
        .map(|channel| {
            let exchange = exchange.clone();
            let channel = channel.clone();
            let data = p.data.clone();
            async move {
                let result = exchange
                    .publish_raw(&channel, Some(data))
                    .await
                    .map_err(ApiError::from);
                (channel, result)
            }
        })
        .collect();
    let results: Vec<_> = futures_util::stream::iter(publications)
        .buffered(BROADCAST_CONCURRENCY)
        .collect()
        .await;
    if let Some(Err(first)) = results.first().map(|(_, r)| r)
        && results.iter().all(|(_, r)| r.is_err())
    {
        return Err(first.clone());
    }
    let publications = results
        .into_iter()
        .map(|(channel, result)| match result {
            Ok(position) => ChannelOutcome {
                channel,
                published: position.into(),
                error: None,
            },
            Err(e) => ChannelOutcome {
                channel,
                published: Published::default(),
                error: Some(ErrorDetail {
                    code: e.code,
                    message: e.message,
                }),
            },
        })
        .collect();
    Ok(Broadcast { publications })
}
