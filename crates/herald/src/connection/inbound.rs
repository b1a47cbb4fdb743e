//! Inbound dispatch: one text message from the peer, parsed and handled
//! frame by frame, in order.
//!
//! Subscribes and publications go through the server's one subscribe path
//! and one publishing path (`crate::subscribe`, `crate::publish`);
//! procedures and receivers run in tasks of their own, so that a slow
//! handler never holds up the socket, and so do the reserved history and
//! presence reads (`#herald/...`, `crate::reads`).

use herald_protocol::error::{ErrorPayload, names};
use herald_protocol::inbound::{self, Packet};
use herald_protocol::{Cid, close, outbound};
use serde_json::value::RawValue;

use super::{Conn, Flow, before_handshake, to_value};
use crate::broker::StreamPosition;
use crate::config::UnknownProcedures;
use crate::handler::{Message as HandlerMessage, Request};
use crate::middleware::{InvokeRequest, TransmitRequest};
use crate::publish::Origin;

impl Conn {
    pub(super) fn on_malformed(&mut self, why: &str) -> Flow {
        crate::metrics::malformed_frame();
        tracing::debug!(socket = %self.shared.id, why, "ignored a malformed frame");
        if !self.handshaken {
            // socketcluster-server's strict handshake: the first message must
            // be a well-formed #handshake.
            return before_handshake();
        }
        if self.malformed.take() {
            Flow::Continue
        } else {
            crate::metrics::limit_violation(crate::metrics::Limit::MalformedFrames);
            Flow::Close(close::INVALID_DATA, "Too many malformed frames".into())
        }
    }

    /// A message from the peer (text or binary).
    pub(super) async fn on_message(&mut self, msg: crate::transport::ws::Message) -> Flow {
        match msg.as_text() {
            Some(text) => self.on_text(text).await,
            None => self.on_malformed("binary frame"),
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        self.server.metrics.message_in(text.len());
        if text.is_empty() {
            if !self.handshaken {
                // A pong before the handshake (the server has not pinged yet).
                return before_handshake();
            }
            // A pong: liveness only, not counted against the inbound rate.
            return Flow::Continue;
        }
        if let Some(rate) = &mut self.rate
            && !rate.on_message().await
        {
            crate::metrics::limit_violation(crate::metrics::Limit::InboundRate);
            return Flow::Close(
                close::INBOUND_RATE,
                close::reason(close::INBOUND_RATE).into(),
            );
        }
        let message = match inbound::parse(text) {
            Ok(m) => m,
            Err(e) => return self.on_malformed(&e.to_string()),
        };
        for packet in message.into_packets() {
            let flow = match packet {
                Ok(p) => self.on_packet(p).await,
                Err(e) => self.on_malformed(&e.to_string()),
            };
            if let Flow::Close(..) = flow {
                return flow;
            }
        }
        Flow::Continue
    }

    async fn on_packet(&mut self, packet: Packet<'_>) -> Flow {
        if let Packet::Handshake { cid, auth_token } = packet {
            return self.on_handshake(cid, auth_token).await;
        }
        if !self.handshaken {
            return before_handshake();
        }
        match packet {
            Packet::Handshake { .. } => Flow::Continue,
            Packet::Authenticate { cid, token } => self.on_authenticate(cid, token).await,
            Packet::RemoveAuthToken { cid } => {
                self.shared.set_auth(None);
                if let Some(cid) = cid {
                    self.send(outbound::ack(&cid));
                }
                Flow::Continue
            }
            Packet::Subscribe {
                cid,
                channel,
                data,
                recover,
            } => {
                self.check_token_expiry();
                let recover = recover.map(|p| StreamPosition::new(p.offset, p.epoch.as_ref()));
                self.server
                    .subscribe(&self.socket, cid.as_ref(), &channel, data, recover)
                    .await;
                Flow::Continue
            }
            Packet::Unsubscribe { cid, channel } => {
                let result = if self.server.unsubscribe(&self.socket, &channel).await {
                    Ok(())
                } else {
                    Err(ErrorPayload::new(
                        names::BROKER,
                        format!(
                            "Failed to unsubscribe socket from the {channel} channel - InvalidActionError: Socket {} tried to unsubscribe from a channel which it is not subscribed to",
                            self.shared.id
                        ),
                    ))
                };
                self.reply(cid.as_ref(), result);
                Flow::Continue
            }
            Packet::Publish {
                cid, channel, data, ..
            } => {
                self.check_token_expiry();
                let result = self
                    .server
                    .publish(
                        Origin::Client(&self.socket),
                        &channel,
                        data.map(ToOwned::to_owned),
                    )
                    .await
                    .map(drop)
                    .map_err(|e| e.to_payload());
                self.reply(cid.as_ref(), result);
                Flow::Continue
            }
            Packet::Invoke {
                cid,
                procedure,
                data,
            } => {
                self.check_token_expiry();
                self.on_invoke(cid, procedure.into_owned(), data).await;
                Flow::Continue
            }
            Packet::Transmit { event, data } => {
                self.check_token_expiry();
                self.on_transmit(event.into_owned(), data).await;
                Flow::Continue
            }
            Packet::Response { rid, data, error } => {
                if let Some(rid) = rid.as_u64() {
                    let result = match error {
                        Some(e) => Err(ErrorPayload::from_value(to_value(Some(e)))),
                        None => Ok(to_value(data)),
                    };
                    self.shared.resolve_invoke(rid, result);
                }
                Flow::Continue
            }
            Packet::Invalid { cid, error } => {
                self.reply(cid.as_ref(), Err(error));
                Flow::Continue
            }
            // Server-to-client events sent by a client, and raw JSON: ignored.
            Packet::KickOut { .. } | Packet::SetAuthToken { .. } | Packet::Raw => Flow::Continue,
        }
    }

    /// Whether another procedure or receiver may start on this socket (see
    /// `Config::max_in_flight`).
    fn room_in_flight(&self) -> bool {
        let max = self.server.config.max_in_flight;
        if max == 0 || self.shared.in_flight() < max {
            return true;
        }
        crate::metrics::limit_violation(crate::metrics::Limit::InvokesInFlight);
        false
    }

    async fn on_invoke(&mut self, cid: Cid, procedure: String, data: Option<&RawValue>) {
        if !self.room_in_flight() {
            let max = self.server.config.max_in_flight;
            let e = ErrorPayload::new(
                names::IN_FLIGHT_LIMIT,
                format!(
                    "{max} requests of this socket are in flight already: wait for their replies"
                ),
            )
            .with("limit", max);
            self.send(outbound::reply_error(&cid, &e));
            return;
        }
        if procedure.starts_with(crate::cluster::RESERVED_PREFIX) {
            self.on_reserved_invoke(cid, procedure, data);
            return;
        }
        let mut request = InvokeRequest {
            procedure,
            data: to_value(data),
        };
        for m in &self.server.middleware {
            if let Err(e) = m.invoke(&self.socket, &mut request).await {
                self.send(outbound::reply_error(&cid, &e));
                return;
            }
        }
        let Some(handler) = self.server.procedures.get(&request.procedure).cloned() else {
            if self.server.rpc_hook().is_some() {
                // Forwarding takes precedence over `unknown_procedures`.
                self.forward_rpc(cid, request);
                return;
            }
            self.on_unknown_procedure(&cid, &request);
            return;
        };
        let shared = self.shared.clone();
        let request = Request {
            socket: self.socket.clone(),
            procedure: request.procedure,
            data: request.data,
        };
        let running = shared.procedure_started();
        self.server.tasks.spawn(async move {
            let _running = running;
            let frame = match handler(request).await {
                Ok(None) => outbound::ack(&cid),
                Ok(Some(v)) => outbound::reply(&cid, &v).unwrap_or_else(|e| {
                    outbound::reply_error(&cid, &ErrorPayload::new(names::INTERNAL, e.to_string()))
                }),
                Err(e) => outbound::reply_error(&cid, &e),
            };
            shared.reply(frame);
        });
    }

    /// An invoke no procedure serves, forwarded to the backend's RPC hook
    /// in a task of its own (it counts as a running procedure).
    fn forward_rpc(&mut self, cid: Cid, request: InvokeRequest) {
        let socket = self.socket.clone();
        let server = self.server.clone();
        let running = self.shared.procedure_started();
        self.server.tasks.spawn(async move {
            let _running = running;
            let frame = match server
                .forward_rpc(&socket, request.procedure, request.data)
                .await
            {
                Ok(None) => outbound::ack(&cid),
                Ok(Some(v)) => outbound::reply(&cid, &v).unwrap_or_else(|e| {
                    outbound::reply_error(&cid, &ErrorPayload::new(names::INTERNAL, e.to_string()))
                }),
                Err(e) => outbound::reply_error(&cid, &e),
            };
            socket.0.reply(frame);
        });
    }

    /// An invoke that no handler serves: counted, then answered by the
    /// `unknown_procedures` policy (the one place that decides it).
    fn on_unknown_procedure(&mut self, cid: &Cid, request: &InvokeRequest) {
        crate::metrics::unknown_procedure();
        match self.server.config.unknown_procedures {
            UnknownProcedures::Error => {
                let e = ErrorPayload::new(
                    names::NO_SUCH_PROCEDURE,
                    format!("No procedure is registered for {}", request.procedure),
                );
                self.send(outbound::reply_error(cid, &e));
            }
            UnknownProcedures::Ignore => {
                tracing::debug!(socket = %self.shared.id, procedure = %request.procedure, "invoke of an unknown procedure left unanswered");
            }
        }
    }

    /// A reserved procedure (`#herald/history`, `#herald/presence`,
    /// `#herald/presenceStats`), answered in a task of its own (it reads the
    /// broker).
    fn on_reserved_invoke(&mut self, cid: Cid, procedure: String, data: Option<&RawValue>) {
        let data = data.map(ToOwned::to_owned);
        let socket = self.socket.clone();
        let server = self.server.clone();
        let running = self.shared.procedure_started();
        self.server.tasks.spawn(async move {
            let _running = running;
            let frame = match server
                .reserved_invoke(&socket, &procedure, data.as_deref())
                .await
            {
                Some(Ok(reply)) => outbound::reply_raw(&cid, Some(&reply)),
                Some(Err(e)) => outbound::reply_error(&cid, &e),
                None => {
                    crate::metrics::unknown_procedure();
                    let e = ErrorPayload::new(
                        names::NO_SUCH_PROCEDURE,
                        format!("No procedure is registered for {procedure}"),
                    );
                    outbound::reply_error(&cid, &e)
                }
            };
            socket.0.reply(frame);
        });
    }

    async fn on_transmit(&mut self, event: String, data: Option<&RawValue>) {
        let mut request = TransmitRequest {
            event,
            data: to_value(data),
        };
        for m in &self.server.middleware {
            if let Err(e) = m.transmit(&self.socket, &mut request).await {
                tracing::debug!(socket = %self.shared.id, error = %e, "transmit refused by middleware");
                return;
            }
        }
        let Some(handler) = self.server.receivers.get(&request.event).cloned() else {
            tracing::trace!(socket = %self.shared.id, event = %request.event, "transmit without receiver");
            return;
        };
        if !self.room_in_flight() {
            // A transmit has no reply to carry an error: it is dropped,
            // counted and logged.
            tracing::debug!(socket = %self.shared.id, event = %request.event, "transmit dropped: too many requests in flight");
            return;
        }
        let message = HandlerMessage {
            socket: self.socket.clone(),
            event: request.event,
            data: request.data,
        };
        let running = self.shared.procedure_started();
        self.server.tasks.spawn(async move {
            let _running = running;
            handler(message).await;
        });
    }
}
