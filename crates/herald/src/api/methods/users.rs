//! `send`, `disconnect`, `subscribe`, `unsubscribe`: operations on every
//! socket of a user, on every node ([`crate::Users`]).

use herald_protocol::close;
use serde::Deserialize;
use serde_json::Value;

use super::{Empty, check_reserved};
use crate::api::Api;
use crate::api::error::ApiError;

/// The longest close reason (a close frame carries at most 125 bytes, two
/// of them the code).
const MAX_REASON: usize = 123;

fn check_user(api: &Api, user: &str) -> Result<(), ApiError> {
    let max = api.server.config().max_channel_name;
    if user.is_empty() || user.len() > max {
        return Err(ApiError::invalid_value(format!(
            "a user id has 1 to {max} bytes"
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendParams {
    user: String,
    event: String,
    #[serde(default)]
    data: Option<Value>,
}

pub(super) async fn send(api: &Api, p: SendParams) -> Result<Empty, ApiError> {
    check_user(api, &p.user)?;
    if p.event.is_empty() {
        return Err(ApiError::invalid_value("the event name must not be empty"));
    }
    if p.event.starts_with('#') {
        return Err(ApiError::forbidden(
            "event names starting with # are reserved to the protocol",
        ));
    }
    api.server
        .users()
        .transmit(&p.user, &p.event, &p.data)
        .await?;
    Ok(Empty {})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisconnectParams {
    user: String,
    #[serde(default, deserialize_with = "super::integer::option")]
    code: Option<u16>,
    #[serde(default)]
    reason: Option<String>,
}

pub(super) async fn disconnect(api: &Api, p: DisconnectParams) -> Result<Empty, ApiError> {
    check_user(api, &p.user)?;
    let code = p.code.unwrap_or(close::DISCONNECTED_BY_SERVER);
    if code != close::NORMAL && !(3000..=4999).contains(&code) {
        return Err(ApiError::invalid_value(format!(
            "close code {code} is not 1000 nor in 3000-4999"
        )));
    }
    let reason = p.reason.unwrap_or_else(|| close::reason(code).to_owned());
    if reason.len() > MAX_REASON {
        return Err(ApiError::invalid_value(format!(
            "the close reason has at most {MAX_REASON} bytes"
        )));
    }
    api.server
        .users()
        .disconnect(&p.user, code, &reason)
        .await?;
    Ok(Empty {})
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserChannelParams {
    user: String,
    channel: String,
}

pub(super) async fn subscribe(api: &Api, p: UserChannelParams) -> Result<Empty, ApiError> {
    check_user(api, &p.user)?;
    check_reserved(&p.channel)?;
    api.server.users().subscribe(&p.user, &p.channel).await?;
    Ok(Empty {})
}

pub(super) async fn unsubscribe(api: &Api, p: UserChannelParams) -> Result<Empty, ApiError> {
    check_user(api, &p.user)?;
    check_reserved(&p.channel)?;
    api.server.users().unsubscribe(&p.user, &p.channel).await?;
    Ok(Empty {})
}
