//! Backend hooks: Herald asks an HTTP backend, in any language, whether a
//! socket may connect, subscribe, publish, what an RPC answers, and for a
//! fresh token when a socket's token nears its expiry.
//!
//! Teams whose backend is not Rust keep their rules where their users and
//! sessions are: Herald POSTs a JSON description of the request and acts on
//! the JSON answer (docs/hooks.md has both, field by field). The hooks run
//! at the same points as [`crate::Middleware`], after it (a middleware
//! refusal never reaches the backend):
//!
//! * connect: in the handshake, after the handshake middleware; may refuse
//!   it, give the socket a token (or a user and info Herald signs) and
//!   subscribe it to channels through the one server-side subscribe path;
//! * subscribe and publish: per namespace
//!   ([`crate::ChannelOptions::subscribe_hook`], `publish_hook`), after the
//!   namespace's rule and the middleware; publish may replace the data;
//! * RPC: an invoke that no procedure serves is forwarded (`[hooks] rpc`);
//! * refresh: a socket's token nearing `exp` (the refresh loop,
//!   `refresh`); a failing backend leaves the socket its token for a
//!   grace period, retried, instead of dropping it.
//!
//! A hook pending on a socket never holds up its deliveries: the
//! connect, subscribe and publish hooks run in the connection task's
//! inbound job, which the task polls beside its writer; RPC and refresh
//! calls run in tasks of their own. Calls are bounded per socket and per
//! node ([`HooksConfig::max_concurrent_per_socket`],
//! [`HooksConfig::max_concurrent`]): over a bound a call fails at once. A
//! failure (timeout, transport, status, body, bound) has the hook's
//! [`OnFailure`] outcome, deny by default. Every call's latency is in
//! `herald_hook_duration_seconds{hook,outcome}`.
//!
//! Rooms: [`config`] (the settings), `wire` (the JSON bodies), `client`
//! (HTTP, bounds, signature, metric), `connect`, `channel` (subscribe,
//! publish), `rpc`, `refresh` (the refresh loop).

mod channel;
mod client;
pub mod config;
mod connect;
pub(crate) mod refresh;
mod rpc;
mod wire;

use std::sync::Arc;

use herald_protocol::outbound;
use serde_json::Map;

pub use config::{HookEndpoint, HooksConfig, OnFailure};
pub use wire::{DENIED, FAILED, HookKind, OVERLOADED, TIMEOUT};

pub(crate) use client::{HookClient, HookFailure};
pub(crate) use wire::HookReply;

use crate::auth::Claims;
use crate::config::Config;
use crate::server::ServerInner;
use crate::socket::{AuthState, Outbound, SocketShared};

/// The hooks of one server: the HTTP client and the refresh loop's queue.
pub(crate) struct Hooks {
    pub(crate) client: HookClient,
    pub(crate) refresh: refresh::RefreshQueue,
}

impl Hooks {
    /// The hooks `config` asks for, or `None` when it names none (no
    /// client is built, nothing runs).
    pub(crate) fn new(config: &Config) -> Result<Option<Self>, String> {
        let hooks = &config.hooks;
        hooks.validate()?;
        // The channel options were validated with the namespaces.
        let channel_hooks = std::iter::once(&config.channels)
            .chain(config.namespaces.values())
            .any(|o| o.subscribe_hook.is_some() || o.publish_hook.is_some());
        if !hooks.any() && !channel_hooks {
            return Ok(None);
        }
        Ok(Some(Self {
            client: HookClient::new(hooks.clone())?,
            refresh: refresh::RefreshQueue::default(),
        }))
    }
}

impl ServerInner {
    /// The socket's new token from a hook's answer: `token` (verified like
    /// any token), else `claims` (signed here), else, where `user` is
    /// allowed (connect), `user` and `info` as claims. `None` when the
    /// answer gives none.
    pub(crate) async fn token_from_reply(
        &self,
        reply: &HookReply,
        allow_user: bool,
    ) -> Result<Option<(String, Claims)>, HookFailure> {
        if let Some(token) = &reply.token {
            let claims = self.verify_token(token).await.map_err(|e| {
                HookFailure::Failed(format!(
                    "the token it returned does not verify: {}",
                    e.payload
                ))
            })?;
            return Ok(Some((token.clone(), claims)));
        }
        let claims = match (&reply.claims, &reply.user) {
            (Some(claims), _) => claims.clone(),
            (None, Some(user)) if allow_user && !user.is_null() => {
                let mut claims = Map::new();
                claims.insert(self.config.user_claim.clone(), user.clone());
                if let Some(info) = &reply.info {
                    claims.insert("info".to_owned(), info.clone());
                }
                claims
            }
            _ => return Ok(None),
        };
        self.auth
            .sign_claims(claims, self.config.auth_default_expiry)
            .map(Some)
            .map_err(|e| HookFailure::Failed(format!("cannot sign its claims: {e}")))
    }
}

/// Makes `signed` the socket's token and pushes it to the client
/// (`#setAuthToken`).
pub(crate) fn adopt_token(shared: &Arc<SocketShared>, signed: String, claims: Claims) {
    let frame = outbound::set_auth_token(&signed);
    shared.set_auth(Some(AuthState::new(&signed, &claims, &shared.server)));
    shared.enqueue(Outbound::Frame(frame));
}
