//! The connect hook: called in the handshake, after the handshake token was
//! verified and the handshake middleware passed. The backend refuses the
//! handshake, or allows it and may authenticate the socket and name
//! channels to subscribe it to.

use std::collections::BTreeMap;

use herald_protocol::ErrorPayload;

use super::wire::{ConnectBody, HookKind, HookRequest, SocketInfo};
use super::{OnFailure, config::HookEndpoint};
use crate::auth::Claims;
use crate::server::ServerInner;
use crate::socket::Socket;

/// What an allowed connect brings.
#[derive(Debug, Default)]
pub(crate) struct Connected {
    /// A new token for the socket (signed, and its claims).
    pub(crate) token: Option<(String, Claims)>,
    /// Channels to subscribe the socket to, after the handshake reply.
    pub(crate) channels: Vec<String>,
}

impl ServerInner {
    /// The connect hook's endpoint, when one is configured.
    pub(crate) fn connect_hook(&self) -> Option<&HookEndpoint> {
        self.hooks.as_ref()?.client.config.connect.as_ref()
    }

    /// Runs the connect hook for `socket`, whose handshake token has
    /// `claims` (or was refused with `auth_error`). `Err` refuses the
    /// handshake.
    pub(crate) async fn run_connect_hook(
        &self,
        endpoint: &HookEndpoint,
        socket: &Socket,
        claims: Option<&Claims>,
        auth_error: Option<&ErrorPayload>,
    ) -> Result<Connected, ErrorPayload> {
        let hooks = self.hooks.as_ref().expect("a connect hook has a client");
        let request = socket.request();
        let forwarded = &hooks.client.config.forward_headers;
        let headers: BTreeMap<String, String> = request
            .headers
            .iter()
            .filter(|(name, _)| {
                forwarded
                    .iter()
                    .any(|f| name.as_str().eq_ignore_ascii_case(f))
            })
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect();
        let body = HookRequest {
            hook: HookKind::Connect,
            node: &self.node_id,
            socket: SocketInfo::with_claims(socket, &self.config.user_claim, claims),
            body: ConnectBody {
                query: request.uri.query().unwrap_or("").to_owned(),
                headers,
                auth_error: auth_error.cloned(),
            },
        };
        let failed = |e: super::HookFailure| match hooks.client.on_failure(endpoint) {
            OnFailure::Deny => Err(e.payload(HookKind::Connect)),
            OnFailure::Allow => Ok(Connected::default()),
        };
        let reply = match hooks.client.call(endpoint, &socket.0, &body).await {
            Ok(reply) => reply,
            Err(e) => return failed(e),
        };
        if let Some(refusal) = reply.refusal() {
            return Err(refusal);
        }
        let token = match self.token_from_reply(&reply, true).await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(socket = %socket.id(), error = %e, "connect hook");
                return failed(e);
            }
        };
        Ok(Connected {
            token,
            channels: reply.channels,
        })
    }
}
