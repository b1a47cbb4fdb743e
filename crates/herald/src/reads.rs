//! Reading a channel's history and presence: for clients through the
//! reserved procedures `#herald/history`, `#herald/presence` and
//! `#herald/presenceStats` (allowed to whoever may subscribe to the
//! channel), and for server code through [`crate::Server::history`],
//! [`crate::Server::presence`] and [`crate::Server::presence_stats`].

use std::collections::BTreeMap;

use herald_protocol::error::{ErrorPayload, names};
use herald_protocol::ext;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::broker::{
    BrokerError, ClientInfo, HistoryPage, HistoryQuery, PresenceStats, StreamPosition,
};
use crate::namespace::{NOT_AVAILABLE, Resolved};
use crate::server::ServerInner;
use crate::socket::Socket;

/// Error name of a history read `since` a position of another epoch.
pub const UNRECOVERABLE_POSITION: &str = "UnrecoverablePositionError";

/// Why a history or presence read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The channel keeps no history (or presence), is malformed or in an
    /// unknown namespace, or the request was refused.
    #[error("{0}")]
    Refused(ErrorPayload),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl ReadError {
    /// The error as a client sees it in its reply.
    pub fn to_payload(&self) -> ErrorPayload {
        match self {
            ReadError::Refused(p) => p.clone(),
            ReadError::Broker(e) => ErrorPayload::new(names::BROKER, e.to_string()),
        }
    }
}

fn parse<T: DeserializeOwned>(procedure: &str, data: Option<&RawValue>) -> Result<T, ReadError> {
    serde_json::from_str(data.map_or("null", RawValue::get)).map_err(|e| {
        ReadError::Refused(ErrorPayload::new(
            names::INVALID_ARGUMENTS,
            format!("Invalid arguments for {procedure}: {e}"),
        ))
    })
}

fn not_available(channel: &str, what: &str) -> ReadError {
    ReadError::Refused(ErrorPayload::new(
        NOT_AVAILABLE,
        format!("Channel {channel} keeps no {what}"),
    ))
}

impl ServerInner {
    /// Answers a reserved procedure (`#herald/...`) invoked by `socket`;
    /// `None` when `procedure` is not one.
    pub(crate) async fn reserved_invoke(
        &self,
        socket: &Socket,
        procedure: &str,
        data: Option<&RawValue>,
    ) -> Option<Result<Box<RawValue>, ErrorPayload>> {
        let result = match procedure {
            ext::HISTORY => self.client_history(socket, data).await.and_then(encode),
            ext::PRESENCE => self.client_presence(socket, data).await.and_then(encode),
            ext::PRESENCE_STATS => self
                .client_presence_stats(socket, data)
                .await
                .and_then(encode),
            _ => return None,
        };
        Some(result.map_err(|e| e.to_payload()))
    }

    async fn client_history(
        &self,
        socket: &Socket,
        data: Option<&RawValue>,
    ) -> Result<ext::HistoryReply, ReadError> {
        let request: ext::HistoryRequest = parse(ext::HISTORY, data)?;
        let ns = self
            .may_subscribe(socket, &request.channel, None)
            .await
            .map_err(ReadError::Refused)?;
        let since = request.since.as_ref().map(StreamPosition::from);
        let page = self
            .read_history(ns, &request.channel, since.clone(), request.limit)
            .await?;
        if let Some(since) = since
            && since.epoch != page.position.epoch
        {
            return Err(ReadError::Refused(ErrorPayload::new(
                UNRECOVERABLE_POSITION,
                format!(
                    "Channel {} is in epoch {} now: the position of epoch {} is gone",
                    request.channel, page.position.epoch, since.epoch
                ),
            )));
        }
        Ok(ext::HistoryReply {
            publications: page
                .publications
                .iter()
                .map(|p| ext::HistoryPublication {
                    offset: p.position.as_ref().map_or(0, |q| q.offset),
                    data: p.data.clone(),
                })
                .collect(),
            offset: page.position.offset,
            epoch: page.position.epoch.to_string(),
        })
    }

    /// The channel of a presence request, once `socket` may read it.
    async fn presence_channel(
        &self,
        socket: &Socket,
        procedure: &str,
        data: Option<&RawValue>,
    ) -> Result<String, ReadError> {
        let request: ext::ChannelRequest = parse(procedure, data)?;
        let ns = self
            .may_subscribe(socket, &request.channel, None)
            .await
            .map_err(ReadError::Refused)?;
        if !ns.options.presence {
            return Err(not_available(&request.channel, "presence"));
        }
        Ok(request.channel)
    }

    async fn client_presence(
        &self,
        socket: &Socket,
        data: Option<&RawValue>,
    ) -> Result<ext::PresenceReply, ReadError> {
        let channel = self.presence_channel(socket, ext::PRESENCE, data).await?;
        let clients = self.registry.broker().presence(&channel).await?;
        Ok(ext::PresenceReply { clients })
    }

    async fn client_presence_stats(
        &self,
        socket: &Socket,
        data: Option<&RawValue>,
    ) -> Result<PresenceStats, ReadError> {
        let channel = self
            .presence_channel(socket, ext::PRESENCE_STATS, data)
            .await?;
        Ok(self.registry.broker().presence_stats(&channel).await?)
    }

    /// A history read on a channel of namespace `ns`: at most `limit`
    /// publications (capped by, and by default, the history size).
    pub(crate) async fn read_history(
        &self,
        ns: &Resolved,
        channel: &str,
        since: Option<StreamPosition>,
        limit: Option<usize>,
    ) -> Result<HistoryPage, ReadError> {
        let Some(policy) = &ns.history else {
            return Err(not_available(channel, "history"));
        };
        let limit = limit.unwrap_or(policy.size).min(policy.size);
        let query = HistoryQuery { since, limit };
        Ok(self
            .registry
            .broker()
            .history(channel, policy, &query)
            .await?)
    }

    /// Server code's history read.
    pub(crate) async fn server_history(
        &self,
        channel: &str,
        query: HistoryQuery,
    ) -> Result<HistoryPage, ReadError> {
        let ns = self.channel_options(channel).map_err(ReadError::Refused)?;
        self.read_history(ns, channel, query.since, Some(query.limit))
            .await
    }

    /// Checks that server code may read `channel`'s presence.
    fn server_presence_channel(&self, channel: &str) -> Result<(), ReadError> {
        let ns = self.channel_options(channel).map_err(ReadError::Refused)?;
        if !ns.options.presence {
            return Err(not_available(channel, "presence"));
        }
        Ok(())
    }

    /// Server code's presence read.
    pub(crate) async fn server_presence(
        &self,
        channel: &str,
    ) -> Result<BTreeMap<String, ClientInfo>, ReadError> {
        self.server_presence_channel(channel)?;
        Ok(self.registry.broker().presence(channel).await?)
    }

    /// Server code's presence counts.
    pub(crate) async fn server_presence_stats(
        &self,
        channel: &str,
    ) -> Result<PresenceStats, ReadError> {
        self.server_presence_channel(channel)?;
        Ok(self.registry.broker().presence_stats(channel).await?)
    }

    /// Server code dropping a channel's history.
    pub(crate) async fn server_remove_history(&self, channel: &str) -> Result<(), ReadError> {
        let ns = self.channel_options(channel).map_err(ReadError::Refused)?;
        let Some(policy) = &ns.history else {
            return Err(not_available(channel, "history"));
        };
        Ok(self
            .registry
            .broker()
            .remove_history(channel, policy)
            .await?)
    }
}

fn encode<T: serde::Serialize>(value: T) -> Result<Box<RawValue>, ReadError> {
    serde_json::value::to_raw_value(&value)
        .map_err(|e| ReadError::Refused(ErrorPayload::new(names::INTERNAL, e.to_string())))
}
