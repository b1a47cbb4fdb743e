//! Server-side subscriptions from the token: the channels its channels
//! claim (`channels` by default, [`crate::Config::channels_claim`]) lists.
//!
//! When a socket authenticates (handshake, `#authenticate`,
//! `Socket::set_auth_token`) the server subscribes it to each channel the
//! token grants, through the one server-side subscribe path
//! (`ServerInner::subscribe_by_server`, the same as the HTTP API's
//! `subscribe`, a connect hook's `channels` and `Socket::subscribe`): the
//! name checks, the namespace, unknown-namespace refusal, the channel
//! limit, history and presence apply, and the client is told with a
//! `#herald/subscribed` push. The token was signed by the server or the
//! backend, so the grant is the server's authority: the namespace's
//! `subscribe` rule, the subscribe middleware and the subscribe hook are
//! not asked again, and a namespace with `subscribe = "none"` holds
//! channels only tokens can open (a personal channel per user). A
//! subscribe the client sends for a granted channel is answered at once
//! when the server subscribed the socket already (and passes the rule by
//! the grant when it did not, after a broker error say): that is how a
//! client that drops publications of channels it did not subscribe to (the
//! official socketcluster-client does) receives them.
//!
//! When the token changes or goes (a new token, `#removeAuthToken`,
//! expiry), a channel the old token granted and the new one does not is
//! left, and the client is told with `#kickOut`.

use std::sync::Arc;

use crate::auth::claims;
use crate::server::ServerInner;
use crate::socket::Socket;

/// The message of the `#kickOut` sent when a token stops granting a
/// channel.
pub(crate) const REVOKED: &str = "The auth token no longer grants this channel";

/// Whether the socket's token grants `channel`.
pub(crate) fn granted(server: &ServerInner, socket: &Socket, channel: &str) -> bool {
    let claim = server.config.channels_claim.as_str();
    if claim.is_empty() {
        return false;
    }
    // Decoded outside the lock.
    let auth = socket.0.auth.lock().clone();
    auth.is_some_and(|a| claims::grants(&a.claims(), claim, channel))
}

/// Brings the socket's server-side subscriptions in line with its token.
/// `held` is what earlier calls subscribed it to for a grant; it is updated.
pub(crate) async fn sync(server: &ServerInner, socket: &Socket, held: &mut Vec<Arc<str>>) {
    let claim = server.config.channels_claim.as_str();
    if claim.is_empty() {
        return;
    }
    let auth = socket.0.auth.lock().clone();
    let wanted: Vec<Arc<str>> = auth
        .as_ref()
        .map(crate::socket::AuthState::claims)
        .and_then(|c| {
            claims::channels_of(&c, claim)
                .ok()
                .map(|list| list.into_iter().map(Arc::from).collect())
        })
        .unwrap_or_default();
    let (kept, revoked): (Vec<_>, Vec<_>) = held.drain(..).partition(|c| wanted.contains(c));
    *held = kept;
    for channel in revoked {
        tracing::debug!(socket = %socket.id(), %channel, "token no longer grants the channel");
        socket.kick_out(&channel, REVOKED).await;
    }
    for channel in wanted {
        if held.contains(&channel) {
            continue;
        }
        match server.subscribe_by_server(socket, &channel).await {
            Ok(()) => held.push(channel),
            Err(e) => {
                tracing::debug!(socket = %socket.id(), %channel, error = %e, "token grants a channel the server refused");
            }
        }
    }
}
