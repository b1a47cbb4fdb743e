//! The channel hooks of a namespace: subscribe (may refuse) and publish
//! (may refuse, or replace the data every subscriber receives). They run in
//! the one subscribe path and the one publishing path, after the
//! namespace's rule and the middleware.

use herald_protocol::ErrorPayload;
use serde_json::Value;

use super::OnFailure;
use super::config::HookEndpoint;
use super::wire::{ChannelBody, HookKind, HookRequest, SocketInfo};
use crate::server::ServerInner;
use crate::socket::Socket;

impl ServerInner {
    /// Runs a subscribe or publish hook on `channel` with `data`. `Ok`
    /// allows, with the replacement data when the backend gave one
    /// (`Some(Value::Null)` replaces with `null`); `Err` refuses.
    pub(crate) async fn run_channel_hook(
        &self,
        kind: HookKind,
        endpoint: &HookEndpoint,
        socket: &Socket,
        channel: &str,
        data: Value,
    ) -> Result<Option<Value>, ErrorPayload> {
        let Some(hooks) = self.hooks.as_ref() else {
            // Hooks::new builds a client whenever a namespace names a hook.
            return Ok(None);
        };
        let request = HookRequest {
            hook: kind,
            node: &self.node_id,
            socket: SocketInfo::of(socket, &self.config.user_claim),
            body: ChannelBody {
                channel: channel.to_owned(),
                data,
            },
        };
        match hooks.client.call(endpoint, &socket.0, &request).await {
            Ok(reply) => match reply.refusal() {
                Some(refusal) => Err(refusal),
                None => Ok(reply.data),
            },
            Err(e) => match hooks.client.on_failure(endpoint) {
                OnFailure::Deny => Err(e.payload(kind)),
                OnFailure::Allow => Ok(None),
            },
        }
    }
}
