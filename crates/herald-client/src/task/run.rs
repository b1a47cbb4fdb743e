//! The run loop: the connection states and the moves between them.
//!
//! ```text
//!        ┌──────────── waiting (backoff) ◄───────┐
//!        ▼                                       │ lost / failed
//!   connecting ──handshake──► open ──────────────┤
//!        ▲                                       │ permanent close,
//!        └── a call needs the server ── idle ◄───┘ reconnect off
//! ```
//!
//! Every state keeps taking commands, so a call never waits for a state to
//! end; only the open state writes frames. Leaving the open state fails
//! what was in flight and puts channels back to pending; closing (from any
//! state) ends everything. This is the only part of the task that touches a
//! socket or a clock, which is why the rest is unit-tested without them.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use herald_protocol::{close, defaults};
use tokio::time::{Instant, MissedTickBehavior, sleep_until};

use super::Task;
use super::command::{Command, Offline};
use crate::config::PingTimeout;
use crate::connection::{self, Failure, Liveness, Opened, Ws};
use crate::error::Error;
use crate::events::{ClientEvent, ConnectionState};

/// How often requests and streams whose consumer gave up are swept away.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Commands handled in one go before the written frames are flushed.
const COMMAND_BATCH: usize = 64;

enum Connect {
    Opened(Box<Opened>, Option<String>),
    Failed(Failure),
    Shutdown,
}

enum Ended {
    Lost(Failure),
    Shutdown,
}

enum Next {
    Now,
    After(Duration),
    Idle,
}

impl Task {
    /// Runs until the client is closed.
    pub(crate) async fn run(mut self) {
        let mut next = Next::Now;
        loop {
            match next {
                Next::Now => {}
                Next::After(delay) => {
                    self.set_state(ConnectionState::Reconnecting);
                    if self.wait_offline(Some(delay)).await == Offline::Shutdown {
                        break;
                    }
                }
                Next::Idle => {
                    self.set_state(ConnectionState::Idle);
                    if self.wait_offline(None).await == Offline::Shutdown {
                        break;
                    }
                }
            }
            self.set_state(ConnectionState::Connecting);
            self.emit(ClientEvent::Connecting);
            let failure = match self.connect().await {
                Connect::Shutdown => break,
                Connect::Failed(f) => {
                    tracing::debug!(code = f.code, reason = %f.reason, "connection attempt failed");
                    self.emit(ClientEvent::Closed {
                        code: f.code,
                        reason: f.reason.clone(),
                    });
                    self.requests
                        .fail_outbox(|| Error::bad_connection(f.code, f.reason.clone()));
                    if let Some(first) = self.first.take() {
                        let err = if f.code == 4007 {
                            Error::Timeout
                        } else {
                            Error::bad_connection(f.code, f.reason)
                        };
                        let _ = first.send(Err(err));
                        break;
                    }
                    f
                }
                Connect::Opened(opened, token) => {
                    self.backoff.reset();
                    match self.run_open(*opened, token).await {
                        Ended::Shutdown => break,
                        Ended::Lost(f) => {
                            tracing::debug!(code = f.code, reason = %f.reason, "connection lost");
                            self.on_lost(&f);
                            f
                        }
                    }
                }
            };
            next = self.schedule(&failure);
            match next {
                Next::Now => self.emit(ClientEvent::Reconnecting {
                    attempt: self.backoff.attempt(),
                    delay: Duration::ZERO,
                }),
                Next::After(delay) => self.emit(ClientEvent::Reconnecting {
                    attempt: self.backoff.attempt(),
                    delay,
                }),
                Next::Idle => {}
            }
        }
        self.shutdown();
    }

    /// What follows a connection that ended with `failure`.
    ///
    /// A server's retry hint (admission control's `Retry-After`, or a 1013
    /// close with `retry after N`) is waited on top of the backoff with
    /// jitter; a draining server (1012) is left for another node, or for
    /// itself once back, after a jittered delay within the initial delay
    /// (the first time; the backoff grows if that fails too).
    fn schedule(&mut self, failure: &Failure) -> Next {
        let code = failure.code;
        if !self.config.reconnect.enabled || code == close::NORMAL || code >= 4500 {
            return Next::Idle;
        }
        if let Some(hint) = failure.retry_after {
            return Next::After(hint + self.backoff.next_delay());
        }
        let urgent = matches!(code, close::PING_TIMEOUT | close::PONG_TIMEOUT | 1005);
        if urgent && self.backoff.attempt() == 0 {
            self.backoff.skip();
            Next::Now
        } else if code == close::SERVICE_RESTART && self.backoff.attempt() == 0 {
            Next::After(self.backoff.first_delay())
        } else {
            Next::After(self.backoff.next_delay())
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.shared.status.send_if_modified(|s| {
            let changed = s.state != state;
            s.state = state;
            if state != ConnectionState::Open {
                s.id = None;
            }
            changed
        });
    }

    // ---- not connected ----

    /// Waits for `delay` (or, when `None`, for a call that needs the server),
    /// handling commands meanwhile.
    async fn wait_offline(&mut self, delay: Option<Duration>) -> Offline {
        let until = delay.map(|d| Instant::now() + d);
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sleep_until(until.unwrap_or_else(far_future)), if until.is_some() => {
                    return Offline::Nothing;
                }
                cmd = self.cmd_rx.recv() => match self.handle_offline(cmd) {
                    Offline::Shutdown => return Offline::Shutdown,
                    Offline::NeedsServer if until.is_none() => return Offline::NeedsServer,
                    _ => {}
                },
                _ = sweep.tick() => self.requests.sweep(Instant::now()),
            }
            self.flush_events();
        }
    }

    /// One connection attempt under the connect timeout, taking commands
    /// meanwhile.
    async fn connect(&mut self) -> Connect {
        let token = match self.config.token_store.load() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the auth token; connecting without one");
                None
            }
        };
        let uri = self.uri.clone();
        let cid = self.cids.next();
        let max = self.config.max_message_size;
        let attempt_token = token.clone();
        let tls = self.config.tls.clone();
        let attempt = async move {
            connection::open(&uri, max, cid, attempt_token.as_deref(), tls.as_ref()).await
        };
        tokio::pin!(attempt);
        let deadline = sleep_until(Instant::now() + self.config.connect_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut attempt => {
                    return match result {
                        Ok(opened) => Connect::Opened(Box::new(opened), token),
                        Err(f) => Connect::Failed(f),
                    };
                }
                _ = &mut deadline => {
                    return Connect::Failed(Failure::new(4007, close::reason(4007)));
                }
                cmd = self.cmd_rx.recv() => {
                    if self.handle_offline(cmd) == Offline::Shutdown {
                        return Connect::Shutdown;
                    }
                    self.flush_events();
                }
            }
        }
    }

    // ---- connected ----

    async fn run_open(&mut self, opened: Opened, token: Option<String>) -> Ended {
        self.generation = self.generation.wrapping_add(1);
        self.fx.frames.clear();
        let Opened {
            mut ws,
            handshake,
            early,
        } = opened;
        let ping_timeout = match self.config.ping_timeout {
            PingTimeout::FromServer => {
                Some(handshake.ping_timeout.unwrap_or(defaults::PING_TIMEOUT))
            }
            PingTimeout::Fixed(d) => Some(d),
            PingTimeout::Disabled => None,
        };
        let mut liveness = Liveness::new(ping_timeout, Instant::now());
        self.on_handshake(handshake, token);
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
        for text in early {
            self.handle_text(&text);
        }
        self.channels.resubscribe(&mut self.cids, &mut self.fx);
        self.requests
            .flush_outbox(Instant::now(), &mut self.cids, &mut self.fx.frames);
        if let Err(f) = self.write_out(&mut ws).await {
            return Ended::Lost(f);
        }
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let deadline = liveness.deadline();
            let retry = self.channels.next_retry();
            tokio::select! {
                msg = ws.next() => {
                    let msg = match msg {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => return Ended::Lost(failure_of(&e)),
                        None => return Ended::Lost(Failure::new(1006, close::reason(1006))),
                    };
                    liveness.seen(Instant::now());
                    if let Some((code, reason)) = msg.as_close() {
                        let code = u16::from(code);
                        let reason = if reason.is_empty() {
                            close::reason(code).to_owned()
                        } else {
                            reason.to_owned()
                        };
                        // Let tokio-websockets echo the close and shut down.
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close()).await;
                        return Ended::Lost(Failure::new(code, reason));
                    }
                    if let Some(text) = msg.as_text() {
                        self.handle_text(text);
                    }
                }
                cmd = self.cmd_rx.recv() => {
                    let mut shutdown = self.handle_online(cmd);
                    let mut n = 1;
                    while !shutdown && n < COMMAND_BATCH {
                        match self.cmd_rx.try_recv() {
                            Ok(cmd) => shutdown = self.handle_online(Some(cmd)),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    if shutdown {
                        let _ = self.write_out(&mut ws).await;
                        connection::close_with(&mut ws, close::NORMAL, "").await;
                        self.emit(ClientEvent::Closed {
                            code: close::NORMAL,
                            reason: "Client closed the connection".to_owned(),
                        });
                        return Ended::Shutdown;
                    }
                }
                Some(reply) = self.replies_rx.recv() => self.on_proc_reply(reply),
                _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    if liveness.expired(Instant::now()) {
                        tracing::debug!("no ping from the server within the ping timeout");
                        connection::close_with(&mut ws, close::PING_TIMEOUT, "").await;
                        return Ended::Lost(Failure::new(
                            close::PING_TIMEOUT,
                            close::reason(close::PING_TIMEOUT),
                        ));
                    }
                }
                _ = sleep_until(retry.unwrap_or_else(far_future)), if retry.is_some() => {
                    self.channels.retry_due(Instant::now(), &mut self.cids, &mut self.fx);
                }
                _ = sweep.tick() => self.sweep(),
            }
            if let Err(f) = self.write_out(&mut ws).await {
                return Ended::Lost(f);
            }
        }
    }

    /// Emits the collected events, then writes and flushes the queued frames.
    async fn write_out(&mut self, ws: &mut Ws) -> Result<(), Failure> {
        self.flush_events();
        if self.fx.frames.is_empty() {
            return Ok(());
        }
        for frame in self.fx.frames.drain(..) {
            ws.feed(connection::text(frame))
                .await
                .map_err(Failure::hung_up)?;
        }
        ws.flush().await.map_err(Failure::hung_up)
    }

    /// The connection was lost: report it, fail what was in flight, put the
    /// channels back to pending.
    fn on_lost(&mut self, f: &Failure) {
        self.shared.status.send_modify(|s| s.id = None);
        self.emit(ClientEvent::Closed {
            code: f.code,
            reason: f.reason.clone(),
        });
        let error = || Error::bad_connection(f.code, f.reason.clone());
        self.requests.fail_pending(error);
        self.channels.connection_lost();
        self.requests.fail_outbox(error);
        self.fx.frames.clear();
    }

    // ---- housekeeping ----

    /// Forgets requests whose caller gave up and streams that were dropped.
    fn sweep(&mut self) {
        self.requests.sweep(Instant::now());
        self.channels.sweep(&mut self.fx);
        self.shared.registry().receivers.retain(|_, list| {
            list.retain(|r| !r.is_gone());
            !list.is_empty()
        });
        self.shared.presence_sinks().prune();
    }

    /// The client is closed: fail and end everything.
    fn shutdown(&mut self) {
        self.flush_events();
        self.set_state(ConnectionState::Closed);
        self.shared.status.send_modify(|s| s.id = None);
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            match cmd {
                Command::Request(r) => {
                    if let Some(reply) = r.reply {
                        let _ = reply.send(Err(Error::Closed));
                    }
                }
                Command::Subscribe(s) => {
                    s.sink.close();
                    if let Some(ack) = s.ack {
                        let _ = ack.send(Err(Error::Closed));
                    }
                }
                Command::Deauthenticate { done } => {
                    let _ = done.send(Err(Error::Closed));
                }
                Command::Close { done } => self.close_done.push(done),
                Command::Unsubscribe { .. }
                | Command::ListenerDropped { .. }
                | Command::Connect => {}
            }
        }
        self.requests.fail_pending(|| Error::Closed);
        self.requests.fail_outbox(|| Error::Closed);
        self.channels.shutdown();
        self.shared.registry().close_all();
        self.shared.presence_sinks().close_all();
        for sink in self.shared.event_sinks().drain(..) {
            sink.close();
        }
        if let Some(first) = self.first.take() {
            let _ = first.send(Err(Error::Closed));
        }
        for done in self.close_done.drain(..) {
            let _ = done.send(());
        }
        tracing::debug!("herald-client task ended");
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// The close code a read error stands for.
fn failure_of(e: &tokio_websockets::Error) -> Failure {
    let code = match e {
        tokio_websockets::Error::Protocol(_) => close::PROTOCOL_ERROR,
        tokio_websockets::Error::PayloadTooLong { .. } => close::MESSAGE_TOO_BIG,
        _ => 1006,
    };
    Failure::new(code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::testing::task;
    use super::*;

    #[tokio::test]
    async fn schedule_follows_the_close_code() {
        let (mut t, _tx) = task();
        let f = |code| Failure::new(code, "");
        assert!(matches!(t.schedule(&f(close::NORMAL)), Next::Idle));
        assert!(matches!(t.schedule(&f(4500)), Next::Idle));
        // A ping timeout reconnects at once the first time only.
        assert!(matches!(t.schedule(&f(close::PING_TIMEOUT)), Next::Now));
        assert!(matches!(
            t.schedule(&f(close::PING_TIMEOUT)),
            Next::After(_)
        ));
        assert!(matches!(t.schedule(&f(1006)), Next::After(_)));
        t.config.reconnect.enabled = false;
        assert!(matches!(t.schedule(&f(1006)), Next::Idle));
    }

    #[tokio::test]
    async fn retry_hints_come_on_top_of_the_backoff_and_1012_is_quick() {
        let (mut t, _tx) = task();
        let initial = t.config.reconnect.initial_delay;
        // A draining server: back within the initial delay.
        match t.schedule(&Failure::new(close::SERVICE_RESTART, "")) {
            Next::After(d) => assert!(d <= initial, "{d:?}"),
            _ => panic!("1012 reconnects"),
        }
        // A browser-style refusal: at least the hint.
        let busy = Failure::new(close::TRY_AGAIN_LATER, close::retry_after_reason(7));
        assert_eq!(busy.retry_after, Some(Duration::from_secs(7)));
        match t.schedule(&busy) {
            Next::After(d) => assert!(d >= Duration::from_secs(7), "{d:?}"),
            _ => panic!("1013 reconnects"),
        }
    }

    #[tokio::test]
    async fn shutdown_fails_what_is_queued() {
        let (mut t, tx) = task();
        let (done, done_rx) = tokio::sync::oneshot::channel();
        let (deauth, deauth_rx) = tokio::sync::oneshot::channel();
        tx.try_send(Command::Deauthenticate { done: deauth })
            .unwrap();
        tx.try_send(Command::Close { done }).unwrap();
        t.shutdown();
        assert!(matches!(deauth_rx.await, Ok(Err(Error::Closed))));
        assert!(done_rx.await.is_ok());
        assert_eq!(t.shared.status.borrow().state, ConnectionState::Closed);
    }
}
