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
//! Server-side subscriptions (a connect hook's channels, a token's
//! `channels` claim, the HTTP API, [`crate::Socket::subscribe`]) take the
//! same path after the name check, without rules, middleware or hooks:
//! [`ServerInner::subscribe_server_side`].
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
    /// or a grant of its token, middleware, the namespace's subscribe
    /// hook): the check of a subscribe and of history and presence reads.
    pub(crate) async fn may_subscribe(
        &self,
        socket: &Socket,
        channel: &str,
        data: Option<&RawValue>,
    ) -> Result<&Arc<Resolved>, ErrorPayload> {
        let ns = self.channel_options(channel)?;
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
    ///
    /// A socket subscribed to the channel already (by an earlier
    /// `#subscribe`, or server-side: [`ServerInner::subscribe_server_side`])
    /// is answered without checking again: nothing changes but the reply,
    /// which carries the stream's position on a channel with history. This
    /// is how a client takes over a subscription the server made for it.
    pub(crate) async fn subscribe(
        &self,
        socket: &Socket,
        cid: Option<&Cid>,
        channel: &str,
        data: Option<&RawValue>,
        recover: Option<StreamPosition>,
    ) {
        let checked = if socket.is_subscribed(channel) {
            self.channel_options(channel)
        } else {
            self.may_subscribe(socket, channel, data).await
        };
        let ns = match checked {
            Ok(ns) => ns.clone(),
            Err(e) => {
                tracing::debug!(socket = %socket.id(), channel, error = %e, "subscribe refused");
                if let Some(cid) = cid {
                    socket.0.reply(outbound::reply_error(cid, &e));
                }
                return;
            }
        };
        let _ = self
            .subscribe_checked(socket, cid, channel, &ns, recover)
            .await;
    }

    /// Subscribes `socket` to `channel` on the server's behalf: the
    /// channel name is checked and its namespace found, but no rule,
    /// middleware or hook applies (the server decided). This is the one
    /// path for server-side subscriptions: channels a connect hook returns,
    /// a token's `channels` claim, the HTTP API's subscribe. The client
    /// receives the channel's publications from then on; the official
    /// `socketcluster-client` hands them to the application once it
    /// subscribes to the channel itself (answered at once: see
    /// [`ServerInner::subscribe`]).
    pub(crate) async fn subscribe_server_side(
        &self,
        socket: &Socket,
        channel: &str,
    ) -> Result<(), ErrorPayload> {
        let ns = self.channel_options(channel)?.clone();
        self.subscribe_checked(socket, None, channel, &ns, None)
            .await?;
        if socket.state() == crate::SocketState::Closed {
            // The socket closed meanwhile, after its subscriptions were
            // cleaned up: this one must not outlive it.
            self.unsubscribe(socket, channel).await;
        }
        Ok(())
    }

    /// The part of a subscribe after the checks: the registry, the
    /// channel's stream position (and recovery) on a channel with history,
    /// presence. The reply (with `cid`) is queued on the socket in order
    /// with the recovered publications; the result is returned as well.
    async fn subscribe_checked(
        &self,
        socket: &Socket,
        cid: Option<&Cid>,
        channel: &str,
        ns: &Arc<Resolved>,
        recover: Option<StreamPosition>,
    ) -> Result<(), ErrorPayload> {
        let reply = |result: Result<(), ErrorPayload>| -> Option<bytes::Bytes> {
            let cid = cid?;
            Some(match result {
                Ok(()) => outbound::ack(cid),
                Err(e) => outbound::reply_error(cid, &e),
            })
        };
        tracing::trace!(socket = %socket.id(), channel, namespace = %ns.name, "subscribe");
        let Some(policy) = ns.history.clone() else {
            let result = self.registry.subscribe(&socket.0, channel).await;
            if let Some(frame) = reply(result.clone()) {
                socket.0.reply(frame);
            }
            if result.is_ok() {
                self.presence.joined(self, socket, channel, ns).await;
            }
            return result;
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
            socket.0.enqueue(Outbound::SubscribeEnd(failed(e.clone())));
            return Err(e);
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
                socket.0.enqueue(Outbound::SubscribeEnd(failed(e.clone())));
                return Err(e);
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
        self.presence.joined(self, socket, channel, ns).await;
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
