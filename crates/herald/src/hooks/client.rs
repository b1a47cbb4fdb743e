//! Calling the backend: one pooled HTTP client per server, the node-wide and
//! per-socket bounds, the signature, the timeout, the bounded read of the
//! answer, and the latency metric.
//!
//! Over a bound a call fails at once (`HookOverloadedError`) instead of
//! waiting: a queue of calls would only grow while the backend is slow, and
//! every queued call would hold a socket's request too.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use herald_protocol::ErrorPayload;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{HookEndpoint, HooksConfig, MAX_RESPONSE_BYTES, OnFailure};
use super::wire::{FAILED, HookKind, HookReply, HookRequest, OVERLOADED, TIMEOUT};
use crate::metrics::HookOutcome;
use crate::socket::SocketShared;

/// Why a call gave no answer to act on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HookFailure {
    /// Over the node's or the socket's bound.
    #[error("{0}")]
    Overloaded(String),
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Anything else: unreachable, a status other than 2xx, a body that is
    /// not a JSON object or is too long.
    #[error("{0}")]
    Failed(String),
}

impl HookFailure {
    /// The error a client receives when the failure denies its request.
    pub(crate) fn payload(&self, kind: HookKind) -> ErrorPayload {
        let name = match self {
            HookFailure::Overloaded(_) => OVERLOADED,
            HookFailure::Timeout(_) => TIMEOUT,
            HookFailure::Failed(_) => FAILED,
        };
        ErrorPayload::new(name, format!("The {} hook failed: {self}", kind.as_str()))
    }

    fn outcome(&self) -> HookOutcome {
        match self {
            HookFailure::Overloaded(_) => HookOutcome::Overloaded,
            HookFailure::Timeout(_) => HookOutcome::Timeout,
            HookFailure::Failed(_) => HookOutcome::Error,
        }
    }
}

/// One call's place in its socket's bound
/// ([`HooksConfig::max_concurrent_per_socket`], counted in
/// `SocketShared::hooks_in_flight`), given back when dropped.
pub(crate) struct SocketPermit(Arc<SocketShared>);

impl SocketPermit {
    fn try_acquire(socket: &Arc<SocketShared>, max: usize) -> Option<Self> {
        socket
            .hooks_in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SocketPermit(socket.clone()))
    }
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.0.hooks_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The HTTP side of the hooks of one server.
pub(crate) struct HookClient {
    http: reqwest::Client,
    node_permits: Arc<Semaphore>,
    pub(crate) config: HooksConfig,
}

impl HookClient {
    pub(crate) fn new(config: HooksConfig) -> Result<Self, String> {
        // The timeout is per call (each hook may have its own), around the
        // whole exchange: see `call_bounded`.
        let http = crate::http_client::builder()
            .map_err(|e| e.to_string())?
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the hooks' HTTP client: {e}"))?;
        Ok(Self {
            http,
            node_permits: Arc::new(Semaphore::new(config.max_concurrent)),
            config,
        })
    }

    /// The failure outcome of `endpoint`.
    pub(crate) fn on_failure(&self, endpoint: &HookEndpoint) -> OnFailure {
        endpoint.on_failure.unwrap_or(self.config.on_failure)
    }

    /// POSTs `request` to `endpoint` within its timeout and the bounds, and
    /// reads the answer. The latency is recorded with the outcome; a reply
    /// with `error` counts as `deny`.
    pub(crate) async fn call<T: Serialize>(
        &self,
        endpoint: &HookEndpoint,
        socket: &Arc<SocketShared>,
        request: &HookRequest<'_, T>,
    ) -> Result<HookReply, HookFailure> {
        let kind = request.hook;
        let started = Instant::now();
        let result = self.call_bounded(endpoint, socket, request).await;
        let outcome = match &result {
            Ok(reply) if reply.error.is_some() => HookOutcome::Deny,
            Ok(_) => HookOutcome::Allow,
            Err(e) => e.outcome(),
        };
        crate::metrics::hook_called(kind.as_str(), outcome, started.elapsed());
        if let Err(e) = &result {
            tracing::warn!(hook = kind.as_str(), url = %endpoint.url, error = %e, "hook failed");
        }
        result
    }

    async fn call_bounded<T: Serialize>(
        &self,
        endpoint: &HookEndpoint,
        socket: &Arc<SocketShared>,
        request: &HookRequest<'_, T>,
    ) -> Result<HookReply, HookFailure> {
        let Some(_socket_permit) =
            SocketPermit::try_acquire(socket, self.config.max_concurrent_per_socket)
        else {
            return Err(HookFailure::Overloaded(format!(
                "this socket has {} hook calls in flight already",
                self.config.max_concurrent_per_socket
            )));
        };
        let _node_permit: OwnedSemaphorePermit =
            self.node_permits.clone().try_acquire_owned().map_err(|_| {
                HookFailure::Overloaded(format!(
                    "this node has {} hook calls in flight already",
                    self.config.max_concurrent
                ))
            })?;
        let body = serde_json::to_vec(request)
            .map_err(|e| HookFailure::Failed(format!("cannot encode the request: {e}")))?;
        let timeout = endpoint.timeout.unwrap_or(self.config.timeout);
        match tokio::time::timeout(timeout, self.post(endpoint, request.hook, body)).await {
            Ok(result) => result,
            Err(_) => Err(HookFailure::Timeout(timeout)),
        }
    }

    async fn post(
        &self,
        endpoint: &HookEndpoint,
        kind: HookKind,
        body: Vec<u8>,
    ) -> Result<HookReply, HookFailure> {
        let mut req = self
            .http
            .post(&endpoint.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-herald-hook", kind.as_str());
        if let Some(secret) = &self.config.secret {
            let timestamp = crate::auth::unix_now().to_string();
            req = req
                .header("x-herald-timestamp", &timestamp)
                .header("x-herald-signature", sign(secret, &timestamp, &body));
        }
        let mut resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| HookFailure::Failed(format!("request failed: {}", error_chain(&e))))?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| HookFailure::Failed(format!("reading the answer failed: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(HookFailure::Failed(format!(
                    "the answer is longer than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(HookFailure::Failed(format!(
                "the backend answered {status}"
            )));
        }
        serde_json::from_slice::<HookReply>(&bytes)
            .map_err(|e| HookFailure::Failed(format!("the answer is not a hook reply: {e}")))
    }
}

/// `sha256=HEX`: the HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`.
pub(crate) fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An error with its causes ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            sign("secret", "1700000000", b"{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(sign("secret", "1", b"{}"), sign("secret", "2", b"{}"));
    }
}
