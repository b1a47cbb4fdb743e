//! The refresh loop: a socket whose token nears its `exp` gets a new one
//! from the backend's refresh hook, pushed as `#setAuthToken`, without a
//! reconnect.
//!
//! One task per server keeps a timer queue of the authenticated sockets
//! (one entry per socket, replaced when its token changes, removed when it
//! closes: bounded by the sockets). A token is refreshed
//! [`HooksConfig::refresh_before`](super::HooksConfig::refresh_before) its
//! `exp`, or halfway through what is left of its life when that is
//! shorter. The call runs in a task of its own, so the socket's traffic goes
//! on meanwhile.
//!
//! * An answer with a token (or claims) replaces the socket's token.
//! * A refusal (`error`), or an answer without a token, leaves the token to
//!   expire at its `exp` (then the socket is deauthenticated, as always).
//! * A failure (timeout, transport, status, bound) keeps the socket
//!   authenticated past `exp` for up to `refresh_grace`, retried every
//!   `refresh_retry`: a backend restart does not log every socket out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::adopt_token;
use super::wire::{HookKind, HookRequest, RefreshBody, SocketInfo};
use crate::auth::unix_now;
use crate::server::ServerInner;
use crate::socket::{AuthState, Socket};

/// A token to refresh.
#[derive(Debug, Clone)]
struct Entry {
    /// The socket's key.
    key: u64,
    /// The token (to tell whether the socket still holds it).
    signed: Arc<str>,
    /// Its `exp`.
    exp: u64,
    /// While the hook fails: the end of the grace period (Unix seconds).
    grace_until: Option<u64>,
}

#[derive(Default)]
struct Queue {
    /// Due entries by (due time, socket key).
    due: BTreeMap<(Instant, u64), Entry>,
    /// Each socket's place in `due`.
    by_socket: HashMap<u64, Instant>,
}

impl Queue {
    fn insert(&mut self, at: Instant, entry: Entry) {
        self.remove(entry.key);
        self.by_socket.insert(entry.key, at);
        self.due.insert((at, entry.key), entry);
    }

    fn remove(&mut self, key: u64) {
        if let Some(at) = self.by_socket.remove(&key) {
            self.due.remove(&(at, key));
        }
    }
}

/// The timer queue of the tokens to refresh, fed by every change of a
/// socket's token.
#[derive(Default)]
pub(crate) struct RefreshQueue {
    queue: Mutex<Queue>,
    changed: Arc<Notify>,
}

/// When a token expiring at `exp` (Unix seconds) is refreshed, `now` being
/// `now_unix`: `before` ahead of `exp`, or halfway through what is left
/// when that is less than twice `before`.
pub(crate) fn refresh_delay(exp: u64, now_unix: u64, before: Duration) -> Duration {
    let left = Duration::from_secs(exp.saturating_sub(now_unix));
    if left >= before * 2 {
        left - before
    } else {
        left / 2
    }
}

impl RefreshQueue {
    /// A socket's token changed to `auth` (or was removed).
    pub(crate) fn token_changed(&self, key: u64, auth: Option<&AuthState>, before: Duration) {
        let mut queue = self.queue.lock();
        let Some((auth, exp)) = auth.and_then(|a| Some((a, a.expiry?))) else {
            queue.remove(key);
            return;
        };
        let at = Instant::now() + refresh_delay(exp, unix_now(), before);
        let first = queue.due.keys().next().map(|(t, _)| *t);
        queue.insert(
            at,
            Entry {
                key,
                signed: auth.signed.clone(),
                exp,
                grace_until: None,
            },
        );
        drop(queue);
        if first.is_none_or(|t| at < t) {
            self.changed.notify_one();
        }
    }

    /// The socket closed.
    pub(crate) fn forget(&self, key: u64) {
        self.queue.lock().remove(key);
    }

    fn retry(&self, at: Instant, entry: Entry) {
        self.queue.lock().insert(at, entry);
        self.changed.notify_one();
    }

    /// The entries due now, and when the next one is.
    fn take_due(&self) -> (Vec<Entry>, Option<Instant>) {
        let mut queue = self.queue.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some((&(at, key), _)) = queue.due.first_key_value() {
            if at > now {
                return (due, Some(at));
            }
            if let Some(entry) = queue.due.remove(&(at, key)) {
                queue.by_socket.remove(&key);
                due.push(entry);
            }
        }
        (due, None)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let q = self.queue.lock();
        assert_eq!(q.due.len(), q.by_socket.len());
        q.due.len()
    }
}

/// The refresh loop of one server, until it is dropped or shut down.
pub(crate) async fn run(server: Weak<ServerInner>) {
    loop {
        let (changed, shutdown, next) = {
            let Some(strong) = server.upgrade() else {
                return;
            };
            let Some(hooks) = strong.hooks.as_ref() else {
                return;
            };
            let (due, next) = hooks.refresh.take_due();
            for entry in due {
                tokio::spawn(attempt(strong.clone(), entry));
            }
            (hooks.refresh.changed.clone(), strong.shutdown.clone(), next)
        };
        // A change notified since `take_due` left a permit: no wake-up is
        // lost.
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = changed.notified() => {}
            _ = wait => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// One refresh of one socket's token.
async fn attempt(server: Arc<ServerInner>, entry: Entry) {
    let (Some(hooks), Some(endpoint)) = (
        server.hooks.as_ref(),
        server
            .hooks
            .as_ref()
            .and_then(|h| h.client.config.refresh.as_ref()),
    ) else {
        return;
    };
    let Some(socket) = server.sockets.lock().get(&entry.key).cloned() else {
        return;
    };
    let holds = |socket: &Socket| {
        socket
            .0
            .auth
            .lock()
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(&a.signed, &entry.signed))
    };
    if !holds(&socket) {
        return;
    }
    let request = HookRequest {
        hook: HookKind::Refresh,
        node: &server.node_id,
        socket: SocketInfo::of(&socket, &server.config.user_claim),
        body: RefreshBody { exp: entry.exp },
    };
    let failure = match hooks.client.call(endpoint, &socket.0, &request).await {
        Ok(reply) if reply.refusal().is_some() => {
            tracing::debug!(socket = %socket.id(), "refresh refused: the token expires at its exp");
            set_expiry(&socket, &entry, entry.exp);
            return;
        }
        Ok(reply) => match server.token_from_reply(&reply, false).await {
            Ok(Some((signed, claims))) => {
                if holds(&socket) {
                    adopt_token(&socket.0, signed, claims);
                }
                return;
            }
            Ok(None) => {
                set_expiry(&socket, &entry, entry.exp);
                return;
            }
            Err(e) => e,
        },
        Err(e) => e,
    };
    let cfg = &hooks.client.config;
    let grace_until = entry
        .grace_until
        .unwrap_or_else(|| entry.exp.max(unix_now()) + cfg.refresh_grace.as_secs());
    tracing::info!(socket = %socket.id(), error = %failure, grace_until, "token refresh failed: the socket keeps its token for the grace period");
    set_expiry(&socket, &entry, grace_until);
    if unix_now() + cfg.refresh_retry.as_secs() < grace_until {
        hooks.refresh.retry(
            Instant::now() + cfg.refresh_retry,
            Entry {
                grace_until: Some(grace_until),
                ..entry
            },
        );
    }
}

/// Sets when the socket's token (still `entry`'s) stops authenticating it,
/// and wakes its connection task to re-arm the expiry timer.
fn set_expiry(socket: &Socket, entry: &Entry, expiry: u64) {
    let mut auth = socket.0.auth.lock();
    match auth.as_mut() {
        Some(a) if Arc::ptr_eq(&a.signed, &entry.signed) && a.expiry != Some(expiry) => {
            a.expiry = Some(expiry);
        }
        _ => return,
    }
    drop(auth);
    socket.0.queue.signal(crate::queue::Signals::AUTH_CHANGED);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_ahead_or_halfway() {
        let before = Duration::from_secs(60);
        assert_eq!(
            refresh_delay(1000 + 3600, 1000, before),
            Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_delay(1000 + 120, 1000, before),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_delay(1000 + 10, 1000, before),
            Duration::from_secs(5)
        );
        assert_eq!(refresh_delay(900, 1000, before), Duration::ZERO);
    }

    #[tokio::test]
    async fn one_entry_per_socket() {
        let q = RefreshQueue::default();
        let auth = |exp: u64| AuthState {
            signed: Arc::from("t"),
            expiry: Some(exp),
        };
        let now = unix_now();
        q.token_changed(1, Some(&auth(now + 100)), Duration::from_secs(10));
        q.token_changed(1, Some(&auth(now + 200)), Duration::from_secs(10));
        q.token_changed(2, Some(&auth(now)), Duration::from_secs(10));
        assert_eq!(q.len(), 2);
        let (due, next) = q.take_due();
        assert_eq!(due.iter().map(|e| e.key).collect::<Vec<_>>(), [2]);
        assert!(next.is_some());
        q.token_changed(1, None, Duration::from_secs(10));
        assert_eq!(q.len(), 0);
        q.token_changed(3, Some(&auth(now + 50)), Duration::from_secs(10));
        q.forget(3);
        assert_eq!(q.len(), 0);
    }
}
