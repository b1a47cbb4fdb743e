//! The one publishing path.
//!
//! Every publication, whoever makes it (a client's `#publish`, server code
//! through [`crate::Exchange`], the cluster's control plane), becomes a
//! publication here and only here: the channel name is checked, its
//! namespace found, the namespace's publish rule and the publish middleware
//! applied (for clients), the publication counted, and handed to the broker,
//! with history (an offset and an epoch assigned by the broker) when the
//! namespace keeps it.

use std::sync::Arc;

use herald_protocol::error::{ErrorPayload, names};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::broker::{BrokerError, Publication, StreamPosition};
use crate::cluster::RESERVED_PREFIX;
use crate::hooks::{HookEndpoint, HookKind};
use crate::middleware::PublishRequest;
use crate::namespace::{FORBIDDEN, Resolved, Rule};
use crate::server::ServerInner;
use crate::socket::Socket;

/// Who publishes.
#[derive(Clone, Copy)]
pub(crate) enum Origin<'a> {
    /// A client's `#publish`: rules and middleware apply.
    Client(&'a Socket),
    /// Server code ([`crate::Exchange`]): no rule applies, but reserved
    /// channels are refused.
    Server,
    /// Herald itself, on its reserved `#herald/` channels.
    Control,
}

/// Why a publication was not made.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The data is not encodable as JSON.
    #[error("cannot encode publication data: {0}")]
    Encode(#[from] serde_json::Error),
    /// The channel or the publisher was refused (reserved or malformed
    /// channel, unknown namespace, a namespace rule, middleware).
    #[error("publication refused: {0}")]
    Refused(ErrorPayload),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl PublishError {
    /// The error as a client sees it in its reply.
    pub fn to_payload(&self) -> ErrorPayload {
        match self {
            PublishError::Encode(e) => ErrorPayload::new(names::INVALID_ARGUMENTS, e.to_string()),
            PublishError::Refused(p) => p.clone(),
            PublishError::Broker(e) => ErrorPayload::new(names::BROKER, e.to_string()),
        }
    }
}

/// The refusal of a namespace rule.
pub(crate) fn forbidden(rule: Rule, action: &str, channel: &str) -> ErrorPayload {
    let message = match rule {
        Rule::Authenticated => format!("{action} {channel} requires authentication"),
        _ => format!("Clients may not {action} {channel}"),
    };
    ErrorPayload::new(FORBIDDEN, message)
}

impl ServerInner {
    /// Checks a channel name a client or server code gave: not reserved, not
    /// empty, no control characters (but tab, CR, LF), not longer than
    /// `max_channel_name`.
    pub(crate) fn check_channel_name(&self, channel: &str) -> Result<(), ErrorPayload> {
        if channel.starts_with(RESERVED_PREFIX) {
            return Err(ErrorPayload::new(
                names::INVALID_ACTION,
                format!("Channel names starting with {RESERVED_PREFIX} are reserved"),
            ));
        }
        // Tabs and line breaks are allowed (socketcluster allows any
        // string); NUL and the other control characters are not.
        let bad = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
        if channel.is_empty() || channel.chars().any(bad) {
            crate::metrics::limit_violation(crate::metrics::Limit::ChannelName);
            return Err(ErrorPayload::new(
                names::INVALID_ACTION,
                "Channel names must be non-empty, without control characters but tab and line breaks",
            ));
        }
        let max = self.config.max_channel_name;
        if channel.len() > max {
            crate::metrics::limit_violation(crate::metrics::Limit::ChannelName);
            return Err(ErrorPayload::new(
                names::INVALID_ACTION,
                format!("Channel name exceeds {max} bytes"),
            ));
        }
        Ok(())
    }

    /// The namespace of a channel a client or server code named.
    pub(crate) fn channel_options(&self, channel: &str) -> Result<&Arc<Resolved>, ErrorPayload> {
        self.check_channel_name(channel)?;
        self.namespaces.resolve(channel)
    }

    /// Publishes `data` on `channel`. Returns the publication's position on
    /// a channel with history.
    pub(crate) async fn publish(
        &self,
        origin: Origin<'_>,
        channel: &str,
        data: Option<Box<RawValue>>,
    ) -> Result<Option<StreamPosition>, PublishError> {
        let history = match origin {
            Origin::Control => None,
            Origin::Server => self
                .channel_options(channel)
                .map_err(PublishError::Refused)?
                .history
                .clone(),
            Origin::Client(socket) => {
                if !self.config.allow_client_publish {
                    return Err(PublishError::Refused(ErrorPayload::new(
                        names::INVALID_ACTION,
                        "Client publish feature is disabled",
                    )));
                }
                let ns = self
                    .channel_options(channel)
                    .map_err(PublishError::Refused)?;
                let rule = ns.options.publish;
                if !rule.allows(socket) {
                    return Err(PublishError::Refused(forbidden(
                        rule,
                        "publish to",
                        channel,
                    )));
                }
                let history = ns.history.clone();
                let hook = ns.options.publish_hook.clone();
                let data = self
                    .publish_middleware(socket, channel, data, hook.as_ref())
                    .await?;
                crate::metrics::published();
                return self.publish_checked(channel, data, history).await;
            }
        };
        if !matches!(origin, Origin::Control) {
            crate::metrics::published();
        }
        self.publish_checked(channel, data, history).await
    }

    async fn publish_checked(
        &self,
        channel: &str,
        data: Option<Box<RawValue>>,
        history: Option<crate::broker::HistoryPolicy>,
    ) -> Result<Option<StreamPosition>, PublishError> {
        let broker = self.registry.broker();
        match history {
            Some(policy) => {
                let position = broker.publish_with_history(channel, data, &policy).await?;
                Ok(Some(position))
            }
            None => {
                broker
                    .publish(Arc::new(Publication::new(channel, data)))
                    .await?;
                Ok(None)
            }
        }
    }

    /// Runs the publish middleware, then the namespace's publish hook;
    /// either may refuse or change the data. Data left alone keeps the
    /// publisher's bytes (re-encoding would sort keys and round large
    /// numbers).
    async fn publish_middleware(
        &self,
        socket: &Socket,
        channel: &str,
        data: Option<Box<RawValue>>,
        hook: Option<&HookEndpoint>,
    ) -> Result<Option<Box<RawValue>>, PublishError> {
        if self.middleware.is_empty() && hook.is_none() {
            return Ok(data);
        }
        let original: Option<Value> = data
            .as_deref()
            .map(|d| serde_json::from_str(d.get()).unwrap_or(Value::Null));
        let mut request = PublishRequest {
            channel: channel.to_owned(),
            data: original.clone(),
        };
        for m in &self.middleware {
            m.publish_in(socket, &mut request)
                .await
                .map_err(PublishError::Refused)?;
        }
        if let Some(hook) = hook {
            let sent = request.data.clone().unwrap_or(Value::Null);
            let replaced = self
                .run_channel_hook(HookKind::Publish, hook, socket, channel, sent)
                .await
                .map_err(PublishError::Refused)?;
            if let Some(v) = replaced {
                request.data = Some(v);
            }
        }
        match request.data {
            v if v == original => Ok(data),
            Some(v) => Ok(Some(serde_json::value::to_raw_value(&v)?)),
            None => Ok(None),
        }
    }
}
