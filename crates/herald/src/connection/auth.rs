//! Authentication on a socket: the handshake, `#authenticate`, the token's
//! expiry, and keeping the cluster's user index in line with the token.
//!
//! Tokens are verified by the server's [`crate::AuthEngine`], then by the
//! authenticate middleware; a refused handshake token leaves the socket
//! connected but unauthenticated (socketcluster's behaviour), a bad one is
//! followed by `#removeAuthToken`.

use std::sync::Arc;

use herald_protocol::error::{ErrorPayload, names};
use herald_protocol::outbound::{self, AuthenticateStatus, HandshakeStatus};
use herald_protocol::{Cid, close};
use serde_json::Value;

use super::{Conn, Flow};
use crate::auth::{Claims, TokenError, claims, unix_now};
use crate::cluster::user_channel;
use crate::socket::{AuthState, SocketShared, SocketState};

impl Conn {
    /// Verifies a token and runs the authenticate middleware.
    pub(super) async fn verify(&self, token: &str) -> Result<Claims, ErrorPayload> {
        let result = self.verify_token(token).await;
        if let Err(e) = &result {
            crate::metrics::auth_refused(&e.name);
        }
        result
    }

    async fn verify_token(&self, token: &str) -> Result<Claims, ErrorPayload> {
        let claims = self
            .server
            .verify_token(token)
            .await
            .map_err(|e| e.payload)?;
        for m in &self.server.middleware {
            m.authenticate(&self.socket, &claims).await?;
        }
        Ok(claims)
    }

    fn authenticate_with(&self, signed: String, claims: Claims) {
        self.shared
            .set_auth(Some(AuthState::new(&signed, &claims, &self.server)));
    }

    pub(super) async fn on_handshake(&mut self, cid: Option<Cid>, token: Option<String>) -> Flow {
        let Some(cid) = cid else {
            crate::metrics::handshake_refused(crate::metrics::Refusal::Malformed);
            return Flow::Close(
                close::HANDSHAKE_REJECTED,
                "Handshake request was malformatted".into(),
            );
        };
        let (mut claims, mut auth_error) = match &token {
            None => (None, None),
            Some(t) => match self.verify(t).await {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            },
        };
        let mut token = token;
        for m in &self.server.middleware {
            if let Err(e) = m.handshake(&self.socket, claims.as_ref()).await {
                let (code, e) = refusal(e);
                crate::metrics::handshake_refused(crate::metrics::Refusal::HandshakeMiddleware);
                self.send(outbound::reply_error(&cid, &e));
                return Flow::Close(code, e.message);
            }
        }
        let mut issued = None;
        let mut channels = Vec::new();
        let server = self.server.clone();
        if let Some(endpoint) = server.connect_hook() {
            match server
                .run_connect_hook(endpoint, &self.socket, claims.as_ref(), auth_error.as_ref())
                .await
            {
                Ok(connected) => {
                    if let Some((signed, new_claims)) = connected.token {
                        // The backend's token replaces the handshake's (or
                        // its refusal).
                        claims = Some(new_claims);
                        token = Some(signed.clone());
                        auth_error = None;
                        issued = Some(signed);
                    }
                    channels = connected.channels;
                }
                Err(e) => {
                    crate::metrics::handshake_refused(crate::metrics::Refusal::ConnectHook);
                    let (code, e) = refusal(e);
                    self.send(outbound::reply_error(&cid, &e));
                    return Flow::Close(code, e.message);
                }
            }
        }
        let is_authenticated = match (claims, token) {
            (Some(claims), Some(token)) => {
                self.authenticate_with(token, claims);
                true
            }
            _ => {
                self.shared.set_auth(None);
                false
            }
        };
        let bad_token = auth_error.as_ref().is_some_and(ErrorPayload::is_bad_token);
        let status = HandshakeStatus {
            id: self.shared.id.to_string(),
            ping_timeout: self.server.config.ping_timeout.as_millis() as u64,
            auth_error,
            is_authenticated,
        };
        let first = !self.handshaken;
        self.handshaken = true;
        self.shared.set_state(SocketState::Open);
        self.send(outbound::handshake_reply(&cid, &status));
        if bad_token {
            self.send(outbound::remove_auth_token());
        }
        if let Some(signed) = issued {
            self.send(outbound::set_auth_token(&signed));
        }
        for channel in channels {
            if let Err(e) = server.subscribe_by_server(&self.socket, &channel).await {
                tracing::warn!(socket = %self.shared.id, channel, error = %e, "cannot subscribe the socket to a channel its connect hook named");
            }
        }
        if first {
            crate::metrics::handshake();
            for hook in &self.server.on_connection {
                tokio::spawn(hook(self.socket.clone()));
            }
        }
        Flow::Continue
    }

    pub(super) async fn on_authenticate(
        &mut self,
        cid: Option<Cid>,
        token: Option<String>,
    ) -> Flow {
        let Some(cid) = cid else {
            return Flow::Close(
                close::HANDSHAKE_REJECTED,
                "Authenticate request was malformatted".into(),
            );
        };
        let Some(token) = token else {
            let e = TokenError {
                payload: ErrorPayload::new(
                    names::AUTH_TOKEN,
                    "Invalid token format - Token must be a string",
                )
                .with("isBadToken", true),
            };
            self.shared.set_auth(None);
            self.send(outbound::remove_auth_token());
            self.send(outbound::reply_error(&cid, &e.payload));
            return Flow::Continue;
        };
        let status = match self.verify(&token).await {
            Ok(claims) => {
                self.authenticate_with(token, claims);
                AuthenticateStatus {
                    is_authenticated: true,
                    auth_error: None,
                }
            }
            Err(e) if e.is_bad_token() => {
                self.shared.set_auth(None);
                self.send(outbound::reply_error(&cid, &e));
                self.send(outbound::remove_auth_token());
                return Flow::Continue;
            }
            Err(e) => {
                self.shared.set_auth(None);
                AuthenticateStatus {
                    is_authenticated: false,
                    auth_error: Some(e),
                }
            }
        };
        // AuthenticateStatus holds only a bool and an error object.
        if let Ok(frame) = outbound::reply(&cid, &status) {
            self.send(frame);
        }
        Flow::Continue
    }

    /// Keeps the socket's server-side subscriptions (the token's channels
    /// claim, `crate::grants`) and the cluster's user index (and this
    /// node's subscription to the user's reserved channel) in line with the
    /// socket's token, within the per-user connection limit (over it, the
    /// socket closes with 4102).
    pub(super) async fn sync_user(&mut self) -> Flow {
        self.server
            .presence
            .reauthenticated(&self.server, &self.socket)
            .await;
        crate::grants::sync(&self.server, &self.socket, &mut self.granted).await;
        let claim = &self.server.config.user_claim;
        // Decoded outside the lock.
        let auth = self.shared.auth.lock().clone();
        let wanted: Option<Arc<str>> = auth
            .as_ref()
            .map(AuthState::claims)
            .and_then(|c| claims::user_of(&c, claim));
        if wanted.as_ref() == self.user.as_ref().map(|(u, _)| u) {
            return Flow::Continue;
        }
        let key = self.shared.key;
        if let Some((old, slot)) = self.user.take() {
            drop(slot);
            self.server.cluster.remove_user_socket(&old, key);
            self.server
                .registry
                .unsubscribe_node(&user_channel(&old))
                .await;
        }
        let Some(user) = wanted else {
            return Flow::Continue;
        };
        let Ok(slot) = self.server.admission.user_slot(&user) else {
            crate::metrics::limit_violation(crate::metrics::Limit::ConnectionsPerUser);
            tracing::debug!(socket = %self.shared.id, "closed: the user holds its most connections");
            return Flow::Close(
                close::USER_CONNECTIONS,
                close::reason(close::USER_CONNECTIONS).into(),
            );
        };
        match self
            .server
            .registry
            .subscribe_node(&user_channel(&user))
            .await
        {
            Ok(()) => {
                self.server.cluster.add_user_socket(&user, key);
                self.user = Some((user, slot));
            }
            Err(e) => {
                tracing::warn!(socket = %self.shared.id, error = %e, "cannot subscribe to the user's messages");
            }
        }
        Flow::Continue
    }

    /// Deauthenticates the socket if its token expired: run before each
    /// action, as socketcluster-server does.
    pub(super) fn check_token_expiry(&self) {
        check_token_expiry(&self.shared);
    }
}

/// The close code of a refused handshake (the error's `statusCode` when it
/// is a 4xxx code, else 4008) and the error replied, with a `statusCode`
/// when it had none, as socketcluster-server sends it: the official client
/// closes its side with the reply's `statusCode` (4003 without one).
fn refusal(mut e: ErrorPayload) -> (u16, ErrorPayload) {
    let code = e
        .extra
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (4000..5000).contains(c))
        .unwrap_or(close::HANDSHAKE_REJECTED);
    e.extra
        .entry("statusCode")
        .or_insert_with(|| Value::from(code));
    (code, e)
}

/// Deauthenticates `shared` if its token expired: run when the expiry timer
/// fires and before each action.
pub(super) fn check_token_expiry(shared: &SocketShared) {
    let expired = {
        let auth = shared.auth.lock();
        auth.as_ref()
            .and_then(|a| a.expiry)
            .is_some_and(|exp| unix_now() >= exp)
    };
    if expired {
        tracing::debug!(socket = %shared.id, "auth token expired");
        shared.set_auth(None);
        shared.reply(outbound::remove_auth_token());
    }
}
