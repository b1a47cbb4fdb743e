//! The API's methods: one path each (`POST /api/<method>`), the same names
//! in a batch. Each method takes its params (a JSON object, unknown fields
//! refused) and returns its result; [`call`] runs one by name.
//!
//! * [`publish`]: `publish`, `broadcast`.
//! * [`users`]: `send`, `disconnect`, `subscribe`, `unsubscribe`.
//! * [`reads`]: `presence`, `presence_stats`, `history`, `history_remove`.
//! * [`cluster`]: `channels`, `info`.
//!
//! `batch` (in `super::batch`) runs several of them in one call.

mod cluster;
mod publish;
mod reads;
mod users;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::Api;
use super::error::ApiError;
use crate::cluster::RESERVED_PREFIX;

/// Every method of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Publish,
    Broadcast,
    Send,
    Disconnect,
    Subscribe,
    Unsubscribe,
    Presence,
    PresenceStats,
    History,
    HistoryRemove,
    Channels,
    Info,
    Batch,
}

impl Method {
    /// Every method, in the order of the docs.
    pub(crate) const ALL: [Method; 13] = [
        Method::Publish,
        Method::Broadcast,
        Method::Send,
        Method::Disconnect,
        Method::Subscribe,
        Method::Unsubscribe,
        Method::Presence,
        Method::PresenceStats,
        Method::History,
        Method::HistoryRemove,
        Method::Channels,
        Method::Info,
        Method::Batch,
    ];

    /// Its name: the last segment of its path, the `method` of a batch
    /// command, the `method` label of its metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Publish => "publish",
            Method::Broadcast => "broadcast",
            Method::Send => "send",
            Method::Disconnect => "disconnect",
            Method::Subscribe => "subscribe",
            Method::Unsubscribe => "unsubscribe",
            Method::Presence => "presence",
            Method::PresenceStats => "presence_stats",
            Method::History => "history",
            Method::HistoryRemove => "history_remove",
            Method::Channels => "channels",
            Method::Info => "info",
            Method::Batch => "batch",
        }
    }

    /// The method named `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Runs `method` (not `batch`) with `params`; `None` params are `{}`.
pub(crate) async fn call(
    api: &Api,
    method: Method,
    params: Option<&RawValue>,
) -> Result<Box<RawValue>, ApiError> {
    let raw = params.map_or("{}", RawValue::get);
    match method {
        Method::Publish => encode(publish::publish(api, parse(raw)?).await?),
        Method::Broadcast => encode(publish::broadcast(api, parse(raw)?).await?),
        Method::Send => encode(users::send(api, parse(raw)?).await?),
        Method::Disconnect => encode(users::disconnect(api, parse(raw)?).await?),
        Method::Subscribe => encode(users::subscribe(api, parse(raw)?).await?),
        Method::Unsubscribe => encode(users::unsubscribe(api, parse(raw)?).await?),
        Method::Presence => encode(reads::presence(api, parse(raw)?).await?),
        Method::PresenceStats => encode(reads::presence_stats(api, parse(raw)?).await?),
        Method::History => encode(reads::history(api, parse(raw)?).await?),
        Method::HistoryRemove => encode(reads::history_remove(api, parse(raw)?).await?),
        Method::Channels => encode(cluster::channels(api, parse(raw)?).await?),
        Method::Info => encode(cluster::info(api, parse(raw)?)),
        Method::Batch => Err(ApiError::invalid_value("a batch cannot contain a batch")),
    }
}

/// The params of a method, or a 400 naming what does not fit.
fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    if !raw.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("params must be a JSON object"));
    }
    serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid params: {e}")))
}

fn encode<T: Serialize>(value: T) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(&value).map_err(|e| ApiError::internal(e.to_string()))
}

/// An empty result: `{}`.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// Refuses a reserved channel with 403 (the publishing and read paths
/// refuse it too, as a malformed name; the API tells it apart).
fn check_reserved(channel: &str) -> Result<(), ApiError> {
    if channel.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::forbidden(format!(
            "Channel names starting with {RESERVED_PREFIX} are reserved"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Method::ALL {
            assert_eq!(Method::from_name(m.name()), Some(m));
        }
        assert_eq!(Method::from_name("nope"), None);
        assert_eq!(Method::from_name("Publish"), None);
    }

    #[test]
    fn reserved_channels_are_forbidden() {
        assert_eq!(
            check_reserved("#herald/nodes").unwrap_err().status,
            http::StatusCode::FORBIDDEN
        );
        assert!(check_reserved("#herald").is_ok());
        assert!(check_reserved("news").is_ok());
    }
}
