//! `batch`: several commands in one call,
//! `{"commands":[{"method":M,"params":P},...]}` →
//! `{"replies":[{"result":R} or {"error":{"code","message"}},...]}`, one
//! reply per command, in order.
//!
//! Commands run one after the other, in order (a publish to a channel and
//! then a history read of it see each other); a failing command fails only
//! its own reply. The call itself fails only when it is not a batch (bad
//! JSON, no `commands`, more than [`MAX_COMMANDS`]).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Api;
use super::error::{ApiError, Detail};
use super::methods::{self, Method};

/// Most commands in one batch.
pub(crate) const MAX_COMMANDS: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchParams<'a> {
    #[serde(borrow)]
    commands: Vec<Command<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Command<'a> {
    method: String,
    /// Present params, `null` included (refused: params are an object).
    #[serde(default, borrow, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Serialize)]
#[serde(untagged)]
enum Reply<'a> {
    Result { result: Box<RawValue> },
    Error { error: Detail<'a> },
}

#[derive(Serialize)]
struct Replies<'a> {
    replies: Vec<Reply<'a>>,
}

/// Runs a batch whose params are `raw`.
pub(crate) async fn run(api: &Api, raw: Option<&RawValue>) -> Result<Box<RawValue>, ApiError> {
    let raw = raw.map_or("{}", RawValue::get);
    if !raw.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("params must be a JSON object"));
    }
    let params: BatchParams<'_> = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid params: {e}")))?;
    if let Some(i) = params.commands.iter().position(|c| {
        c.params
            .is_some_and(|p| !p.get().trim_start().starts_with('{'))
    }) {
        return Err(ApiError::bad_request(format!(
            "commands[{i}].params must be a JSON object"
        )));
    }
    if params.commands.len() > MAX_COMMANDS {
        return Err(ApiError::invalid_value(format!(
            "a batch has at most {MAX_COMMANDS} commands, not {}",
            params.commands.len()
        )));
    }
    let mut outcomes: Vec<Result<Box<RawValue>, ApiError>> =
        Vec::with_capacity(params.commands.len());
    for command in &params.commands {
        let outcome = match Method::from_name(&command.method) {
            Some(method) => methods::call(api, method, command.params).await,
            None => Err(ApiError::not_found(format!(
                "no method {:?}",
                command.method
            ))),
        };
        let label = Method::from_name(&command.method).map_or("unknown", Method::name);
        crate::metrics::api_batch_command(label, outcome.is_ok());
        outcomes.push(outcome);
    }
    let replies = outcomes
        .iter()
        .map(|o| match o {
            Ok(result) => Reply::Result {
                result: result.clone(),
            },
            Err(e) => Reply::Error { error: e.detail() },
        })
        .collect();
    serde_json::value::to_raw_value(&Replies { replies })
        .map_err(|e| ApiError::internal(e.to_string()))
}
