//! `channels` and `info`: the cluster as seen from the node that answers.

use serde::Deserialize;

use crate::api::Api;
use crate::api::error::ApiError;
use crate::cluster::ClusterChannels;
use crate::status::Info;

/// Default of `limit` in `channels`.
pub(crate) const DEFAULT_CHANNELS: usize = 1000;
/// Largest `limit` in `channels`.
pub(crate) const MAX_CHANNELS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelsParams {
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default, deserialize_with = "super::integer::option")]
    limit: Option<usize>,
}

/// The channels with subscribers on every node (matching the glob
/// `pattern`), with their subscribers; the nodes that did not answer
/// within the query timeout are listed in `missing`.
pub(super) async fn channels(api: &Api, p: ChannelsParams) -> Result<ClusterChannels, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_CHANNELS);
    if limit == 0 || limit > MAX_CHANNELS {
        return Err(ApiError::invalid_value(format!(
            "limit is 1 to {MAX_CHANNELS}, not {limit}"
        )));
    }
    crate::cluster::query::channels(
        &api.server.0,
        p.pattern.as_deref(),
        limit,
        api.query_timeout,
    )
    .await
    .map_err(|e| ApiError::invalid_value(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InfoParams {}

/// This node (its broker, counts) and the cluster's nodes: the same as
/// `GET /herald/info`.
pub(super) fn info(api: &Api, _: InfoParams) -> Info {
    crate::status::info(&api.server)
}
