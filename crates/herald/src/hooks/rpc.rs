//! RPC forwarding: an invoke of a procedure that no handler serves goes to
//! the backend's RPC hook, which answers the result (`data`) or an error,
//! and may give the socket a new token (a login procedure, say). A failure
//! is always an error reply: there is no result to allow.

use herald_protocol::ErrorPayload;
use serde_json::Value;

use super::adopt_token;
use super::config::HookEndpoint;
use super::wire::{HookKind, HookRequest, RpcBody, SocketInfo};
use crate::server::ServerInner;
use crate::socket::Socket;

impl ServerInner {
    /// The RPC hook's endpoint, when one is configured.
    pub(crate) fn rpc_hook(&self) -> Option<&HookEndpoint> {
        self.hooks.as_ref()?.client.config.rpc.as_ref()
    }

    /// Forwards an invoke of `procedure` to the RPC hook; the invoke's
    /// result (`None`: no data) or its error.
    pub(crate) async fn forward_rpc(
        &self,
        socket: &Socket,
        procedure: String,
        data: Value,
    ) -> Result<Option<Value>, ErrorPayload> {
        let (Some(hooks), Some(endpoint)) = (self.hooks.as_ref(), self.rpc_hook()) else {
            return Err(ErrorPayload::new(
                herald_protocol::error::names::NO_SUCH_PROCEDURE,
                format!("No procedure is registered for {procedure}"),
            ));
        };
        let request = HookRequest {
            hook: HookKind::Rpc,
            node: &self.node_id,
            socket: SocketInfo::of(socket, &self.config.user_claim),
            body: RpcBody { procedure, data },
        };
        let reply = hooks
            .client
            .call(endpoint, &socket.0, &request)
            .await
            .map_err(|e| e.payload(HookKind::Rpc))?;
        if let Some(refusal) = reply.refusal() {
            return Err(refusal);
        }
        match self.token_from_reply(&reply, false).await {
            Ok(Some((signed, claims))) => adopt_token(&socket.0, signed, claims),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(socket = %socket.id(), error = %e, "rpc hook");
                return Err(e.payload(HookKind::Rpc));
            }
        }
        Ok(reply.data)
    }
}
