//! Subscribing a socket to a channel, and unsubscribing it: one path for
//! every caller.
//!
//! A subscribe checks the channel name and finds its namespace, applies the
//! namespace's subscribe rule and the subscribe middleware, and adds the
//! socket to the channel in the registry (which subscribes the broker when
//! the node had no subscriber yet). On a channel with history it then reads
//! the stream's position, and when the client asked to recover, what it
//! missed; the socket's writer (`connection::writer`) holds the channel's
//! live publications from before the registry call until the reply, so the
//! client gets the missed publications, the reply, then live ones, with no
//! gap and no duplicate. On a channel with presence the socket is recorded
//! (and, with `join_leave`, a join is published).
//!
//! The server subscribes a socket on its own authority
//! ([`ServerInner::subscribe_by_server`]: the HTTP API's `subscribe`, a
//! token's channels, a connect hook's channels, `Socket::subscribe`)
//! through the same registry, history and presence steps, without the
//! subscribe rule, middleware and hook, and tells the client
//! with a `#herald/subscribed` push. A socket that holds a channel is not
//! checked again when its client subscribes to it (or reads its history or
//! presence): that is how a client that keeps no channel it did not ask for
//! (the official socketcluster-client) takes over a server-side
//! subscription.
//!
//! Unsubscribing (by the client, by `kick_out`, at close) goes through
//! [`ServerInner::unsubscribe`] so that presence is always cleaned up.

use std::sync::Arc;

use herald_protocol::error::{ErrorPayload, names};
use herald_protocol::{Cid, ext, outbound};
use serde_json::value::RawValue;

use crate::broker::{HistoryQuery, StreamPosition};
use crate::hooks::HookKind;
use crate::middleware::SubscribeRequest;
use crate::namespace::Resolved;
use crate::publish::forbidden;
use crate::server::ServerInner;
use crate::socket::{Outbound, Socket, SubscribeEnd};

impl ServerInner {
    /// Whether `socket` may subscribe to `channel` (name, namespace, rule
    /// or a grant of its token, middleware, the namespace's subscribe hook):
    /// the check of a subscribe and
    /// of history and presence reads. A socket already subscribed to
    /// `channel` may (whoever subscribed it, the client or the server, was
    /// allowed to).
    pub(crate) async fn may_subscribe(
        &self,
        socket: &Socket,
        channel: &str,
        data: Option<&RawValue>,
    ) -> Result<&Arc<Resolved>, ErrorPayload> {
        let ns = self.channel_options(channel)?;
        if socket.is_subscribed(channel) {
            return Ok(ns);
        }
        let rule = ns.options.subscribe;
        if !rule.allows(socket) && !crate::grants::granted(self, socket, channel) {
            return Err(forbidden(rule, "subscribe to", channel));
        }
        if !self.middleware.is_empty() {
            let mut request = SubscribeRequest {
                channel: channel.to_owned(),
                data: data.map(|d| serde_json::from_str(d.get()).unwrap_or_default()),
            };
            for m in &self.middleware {
                m.subscribe(socket, &mut request).await?;
            }
        }
        if let Some(hook) = &ns.options.subscribe_hook {
            let data = data
                .and_then(|d| serde_json::from_str(d.get()).ok())
                .unwrap_or_default();
            self.run_channel_hook(HookKind::Subscribe, hook, socket, channel, data)
                .await?;
        }
        Ok(ns)
    }

    /// A client's `#subscribe`. Every outcome (reply, recovered
    /// publications) is queued on the socket, in order; a subscribe without
    /// `cid` gets no reply.
    pub(crate) async fn subscribe(
        &self,
        socket: &Socket,
        cid: Option<&Cid>,
        channel: &str,
        data: Option<&RawValue>,
        recover: Option<StreamPosition>,
    ) {
        let reply = |result: Result<(), ErrorPayload>| -> Option<bytes::Bytes> {
            let cid = cid?;
            Some(match result {
                Ok(()) => outbound::ack(cid),
                Err(e) => outbound::reply_error(cid, &e),
            })
        };
        let ns = match self.may_subscribe(socket, channel, data).await {
            Ok(ns) => ns.clone(),
            Err(e) => {
                tracing::debug!(socket = %socket.id(), channel, error = %e, "subscribe refused");
                if let Some(frame) = reply(Err(e)) {
                    socket.0.reply(frame);
                }
                return;
            }
        };
        tracing::trace!(socket = %socket.id(), channel, namespace = %ns.name, "subscribe");
        let Some(policy) = ns.history.clone() else {
            let result = self.registry.subscribe(&socket.0, channel).await;
            let ok = result.is_ok();
            if let Some(frame) = reply(result) {
                socket.0.reply(frame);
            }
            if ok {
                self.presence.joined(self, socket, channel, &ns).await;
            }
            return;
        };

        let name: Arc<str> = Arc::from(channel);
        socket.0.enqueue(Outbound::SubscribeBegin(name.clone()));
        let failed = |e: ErrorPayload| {
            Box::new(SubscribeEnd {
                channel: name.clone(),
                recovered: Vec::new(),
                reply: reply(Err(e)),
                position: None,
            })
        };
        if let Err(e) = self.registry.subscribe(&socket.0, channel).await {
            socket.0.enqueue(Outbound::SubscribeEnd(failed(e)));
            return;
        }
        let asked = recover.is_some();
        let since = recover.filter(|_| ns.options.recover);
        let query = HistoryQuery {
            since: since.clone(),
            limit: if since.is_some() { policy.size } else { 0 },
        };
        let page = match self
            .registry
            .broker()
            .history(channel, &policy, &query)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(socket = %socket.id(), channel, error = %e, "cannot read the channel's stream; subscribe refused");
                self.unsubscribe(socket, channel).await;
                let e = ErrorPayload::new(
                    names::BROKER,
                    format!("Failed to subscribe socket to the {channel} channel - {e}"),
                );
                socket.0.enqueue(Outbound::SubscribeEnd(failed(e)));
                return;
            }
        };
        self.registry.seed(channel, &page.position);
        let recovered = match &since {
            Some(since) if page.recovers(since) => {
                crate::metrics::recovery(true);
                Some(page.publications)
            }
            _ if asked => {
                crate::metrics::recovery(false);
                None
            }
            _ => None,
        };
        let status = ext::SubscribeStatus {
            offset: page.position.offset,
            epoch: page.position.epoch.to_string(),
            recovered: asked.then_some(recovered.is_some()),
        };
        let frame = cid.map(|cid| {
            // A SubscribeStatus is a number, a string and a bool.
            outbound::reply(cid, &status).expect("a subscribe status encodes")
        });
        socket
            .0
            .enqueue(Outbound::SubscribeEnd(Box::new(SubscribeEnd {
                channel: name,
                recovered: recovered.unwrap_or_default(),
                reply: frame,
                position: Some(page.position),
            })));
        self.presence.joined(self, socket, channel, &ns).await;
    }

    /// Subscribes `socket` to `channel` on the server's authority: the
    /// channel's name and namespace are checked, its subscribe rule and the
    /// subscribe middleware are not. The socket's client gets a
    /// `#herald/subscribed` push (with the stream's position on a channel
    /// with history, after which the live publications follow without a
    /// gap), then the channel's publications. Nothing happens to a socket
    /// already subscribed.
    pub(crate) async fn subscribe_by_server(
        &self,
        socket: &Socket,
        channel: &str,
    ) -> Result<(), ErrorPayload> {
        let ns = self.channel_options(channel)?.clone();
        if socket.is_subscribed(channel) {
            return Ok(());
        }
        let push = |position: Option<&StreamPosition>| {
            let data = ext::ServerSubscribed {
                channel: channel.to_owned(),
                offset: position.map(|p| p.offset),
                epoch: position.map(|p| p.epoch.to_string()),
            };
            // A channel name, a number and a string.
            outbound::event(ext::SUBSCRIBED, Some(&data)).expect("a subscribed push encodes")
        };
        tracing::trace!(socket = %socket.id(), channel, namespace = %ns.name, "server-side subscribe");
        let Some(policy) = ns.history.clone() else {
            self.registry.subscribe(&socket.0, channel).await?;
            socket.0.enqueue(Outbound::Frame(push(None)));
            self.presence.joined(self, socket, channel, &ns).await;
            return Ok(());
        };
        let name: Arc<str> = Arc::from(channel);
        socket.0.enqueue(Outbound::SubscribeBegin(name.clone()));
        let end = |position: Option<StreamPosition>, reply: Option<bytes::Bytes>| {
            Outbound::SubscribeEnd(Box::new(SubscribeEnd {
                channel: name.clone(),
                recovered: Vec::new(),
                reply,
                position,
            }))
        };
        if let Err(e) = self.registry.subscribe(&socket.0, channel).await {
            socket.0.enqueue(end(None, None));
            return Err(e);
        }
        let query = HistoryQuery {
            since: None,
            limit: 0,
        };
        let page = match self
            .registry
            .broker()
            .history(channel, &policy, &query)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                self.unsubscribe(socket, channel).await;
                socket.0.enqueue(end(None, None));
                return Err(ErrorPayload::new(
                    names::BROKER,
                    format!("Failed to subscribe socket to the {channel} channel - {e}"),
                ));
            }
        };
        self.registry.seed(channel, &page.position);
        let frame = push(Some(&page.position));
        socket.0.enqueue(end(Some(page.position), Some(frame)));
        self.presence.joined(self, socket, channel, &ns).await;
        Ok(())
    }

    /// Unsubscribes `socket` from `channel` (and from its presence).
    /// Returns whether it was subscribed.
    pub(crate) async fn unsubscribe(&self, socket: &Socket, channel: &str) -> bool {
        if !self.registry.unsubscribe(&socket.0, channel).await {
            return false;
        }
        if let Ok(ns) = self.namespaces.resolve(channel) {
            let ns = ns.clone();
            self.presence.left(self, socket, channel, &ns).await;
        }
        true
    }

    /// Unsubscribes a closing socket from every channel.
    pub(crate) async fn unsubscribe_all(&self, socket: &Socket) {
        for channel in socket.subscriptions() {
            self.unsubscribe(socket, &channel).await;
        }
    }
}
