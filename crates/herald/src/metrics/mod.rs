//! Every metric Herald records: its name, labels and description, in one
//! place.
//!
//! Operators alert on these and dashboards are built on them, so a name or
//! a label must mean the same thing wherever it is recorded: in the server,
//! in the Redis broker, in the NATS broker. This module is therefore the
//! only place that names a metric. Everything else calls one of its
//! functions (`herald::metrics::broker_up("redis", true)`, say), which
//! records through the [`metrics`] facade into whatever recorder the
//! process installed, and the catalogue below ([`CATALOGUE`]) describes
//! every metric to that recorder ([`describe`]).
//!
//! Labels only ever take values from a fixed set (close codes outside the
//! known ones become `other`, reasons are `&'static str` chosen in code), so
//! nothing a peer sends can grow the number of series.
//!
//! Two parts are not plain facade calls, for the hot path's sake:
//! * the counters of every message in and out go through handles resolved
//!   once per server ([`ServerMetrics`], resolved when the server is built:
//!   install the recorder before building it);
//! * the publish-to-write latency is a histogram of Herald's own
//!   ([`latency`]), pre-aggregated in per-thread atomic buckets, because the
//!   facade records every sample and the Prometheus exporter keeps each one
//!   until its next upkeep (at two million deliveries a second, 32 MB/s).
//!   The Prometheus endpoint ([`Prometheus`]) renders it beside the
//!   recorder's output.
//!
//! docs/operations.md lists every metric with what to alert on.

mod catalogue;
mod hot;
pub mod latency;
mod prometheus;
#[cfg(test)]
mod tests;

pub use catalogue::{CATALOGUE, Kind, Metric, describe, names};
pub(crate) use hot::ServerMetrics;
pub use latency::{LatencySnapshot, publish_write_latency};
pub use prometheus::{MetricsError, Prometheus};

use ::metrics::{counter, gauge, histogram};

use names::*;

/// Why an upgrade or a handshake was refused (label `reason` of
/// `herald_handshakes_refused_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a valid WebSocket upgrade request (HTTP 400/426).
    BadRequest,
    /// The TLS handshake failed or timed out.
    Tls,
    /// The server is shutting down or draining (HTTP 503).
    ShuttingDown,
    /// Upgrade middleware refused it.
    UpgradeMiddleware,
    /// The `Origin` header is not allowed.
    Origin,
    /// Admission control: over the handshakes-per-second budget (HTTP 503).
    RateLimited,
    /// Admission control: the node holds its maximum of connections (HTTP 503).
    AtCapacity,
    /// The user already holds its maximum of connections.
    ConnectionsPerUser,
    /// The peer address already holds its maximum of connections.
    ConnectionsPerIp,
    /// No `#handshake` within the handshake timeout (4005).
    Timeout,
    /// Another frame came before `#handshake` (4009).
    MessageBeforeHandshake,
    /// A `#handshake` without `cid` (4008).
    Malformed,
    /// Handshake middleware refused it.
    HandshakeMiddleware,
}

impl Refusal {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Tls => "tls",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::UpgradeMiddleware => "upgrade_middleware",
            Refusal::Origin => "origin",
            Refusal::RateLimited => "rate_limited",
            Refusal::AtCapacity => "at_capacity",
            Refusal::ConnectionsPerUser => "connections_per_user",
            Refusal::ConnectionsPerIp => "connections_per_ip",
            Refusal::Timeout => "timeout",
            Refusal::MessageBeforeHandshake => "message_before_handshake",
            Refusal::Malformed => "malformed",
            Refusal::HandshakeMiddleware => "handshake_middleware",
        }
    }
}

/// Which limit was hit (label `kind` of `herald_limit_violations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// A message over `max_payload` (closed 1009).
    MessageSize,
    /// Inbound messages per second of one socket.
    InboundRate,
    /// Channels one socket may subscribe to.
    ChannelsPerSocket,
    /// Channel name length or characters.
    ChannelName,
    /// Invokes and transmits one socket may have in flight.
    InvokesInFlight,
    /// Connections of one user.
    ConnectionsPerUser,
    /// Connections from one peer address.
    ConnectionsPerIp,
    /// The allowance of malformed frames (closed 1003).
    MalformedFrames,
}

impl Limit {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Limit::MessageSize => "message_size",
            Limit::InboundRate => "inbound_rate",
            Limit::ChannelsPerSocket => "channels_per_socket",
            Limit::ChannelName => "channel_name",
            Limit::InvokesInFlight => "invokes_in_flight",
            Limit::ConnectionsPerUser => "connections_per_user",
            Limit::ConnectionsPerIp => "connections_per_ip",
            Limit::MalformedFrames => "malformed_frames",
        }
    }
}

/// The `code` label of a close code: the code itself when Herald knows it,
/// `other` otherwise (a peer may close with any code; the series must not
/// grow with them).
pub fn close_code_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1005 => "1005",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        4000 => "4000",
        4001 => "4001",
        4002 => "4002",
        4003 => "4003",
        4005 => "4005",
        4008 => "4008",
        4009 => "4009",
        4100 => "4100",
        4101 => "4101",
        4102 => "4102",
        4103 => "4103",
        4104 => "4104",
        _ => "other",
    }
}

// --- connections -----------------------------------------------------------

/// A connection opened (`delta` 1) or closed (`delta` -1).
pub(crate) fn connections(delta: f64) {
    gauge!(CONNECTIONS).increment(delta);
}

/// A socket closed with `code`.
pub(crate) fn disconnected(code: u16) {
    counter!(DISCONNECTIONS, "code" => close_code_label(code)).increment(1);
}

/// A handshake completed.
pub(crate) fn handshake() {
    counter!(HANDSHAKES).increment(1);
}

/// An upgrade or a handshake was refused.
pub fn handshake_refused(reason: Refusal) {
    counter!(HANDSHAKES_REFUSED, "reason" => reason.label()).increment(1);
}

/// A token was refused; `error_name` is the refusal's error name
/// (`AuthTokenExpiredError`, ...), anything else counts as middleware.
pub(crate) fn auth_refused(error_name: &str) {
    let reason = match error_name {
        "AuthTokenInvalidError" => "invalid",
        "AuthTokenExpiredError" => "expired",
        "AuthTokenNotBeforeError" => "not_before",
        "AuthTokenError" => "error",
        _ => "middleware",
    };
    counter!(AUTH_REFUSED, "reason" => reason).increment(1);
}

/// A JWKS fetch ended: `outcome` is `updated`, `unchanged` or `error`.
pub(crate) fn jwks_refresh(outcome: &'static str) {
    counter!(JWKS_REFRESHES, "outcome" => outcome).increment(1);
}

/// A token asked for a JWKS refresh too soon after the last one.
pub(crate) fn jwks_refresh_limited() {
    counter!(JWKS_REFRESHES_LIMITED).increment(1);
}

/// The JWKS key set in force holds `count` keys.
pub(crate) fn jwks_keys(count: usize) {
    gauge!(JWKS_KEYS).set(count as f64);
}

/// A socket was closed as a slow consumer.
pub(crate) fn slow_consumer() {
    counter!(SLOW_CONSUMER_DISCONNECTS).increment(1);
}

/// A socket was closed with 4001.
pub(crate) fn pong_timeout() {
    counter!(PONG_TIMEOUTS).increment(1);
}

/// A request or a socket went over a limit.
pub fn limit_violation(kind: Limit) {
    counter!(LIMIT_VIOLATIONS, "kind" => kind.label()).increment(1);
}

/// A malformed frame was ignored.
pub(crate) fn malformed_frame() {
    counter!(MALFORMED_FRAMES).increment(1);
}

/// An invoke named a procedure nothing serves.
pub(crate) fn unknown_procedure() {
    counter!(UNKNOWN_PROCEDURES).increment(1);
}

// --- channels ----------------------------------------------------------------

/// A socket subscription was added (`delta` 1) or removed (-1).
pub(crate) fn subscriptions(delta: f64) {
    gauge!(SUBSCRIPTIONS).increment(delta);
}

/// A subscribe was accepted.
pub(crate) fn subscribed() {
    counter!(SUBSCRIBES).increment(1);
}

/// A channel gained its first local subscriber (1) or lost its last (-1).
pub(crate) fn channels(delta: f64) {
    gauge!(CHANNELS).increment(delta);
}

/// A publication was handed to the broker.
pub(crate) fn published() {
    counter!(PUBLICATIONS).increment(1);
}

/// A publication was fanned out: `delivered` queues took it, `dropped`
/// were full.
pub(crate) fn fanned_out(delivered: usize, dropped: usize) {
    counter!(DELIVERIES).increment(delivered as u64);
    if dropped > 0 {
        counter!(DELIVERIES_DROPPED).increment(dropped as u64);
    }
}

// --- history -------------------------------------------------------------------

/// A gap was filled from the history.
pub(crate) fn gap_repaired() {
    counter!(GAP_REPAIRS).increment(1);
}

/// A gap could not be filled.
pub(crate) fn gap_unrepairable() {
    counter!(GAP_UNREPAIRABLE).increment(1);
}

/// A subscribe asked to recover: `recovered` or not.
pub(crate) fn recovery(recovered: bool) {
    let outcome = if recovered {
        "recovered"
    } else {
        "unrecoverable"
    };
    counter!(RECOVERIES, "outcome" => outcome).increment(1);
}

/// A publication delivered twice by the broker was dropped.
pub(crate) fn history_duplicate() {
    counter!(HISTORY_DUPLICATES_DROPPED).increment(1);
}

// --- brokers (for `Broker` implementations) ---------------------------------------

/// The broker `broker` (its [`crate::Broker::name`]) is up or down.
pub fn broker_up(broker: &'static str, up: bool) {
    gauge!(BROKER_UP, "broker" => broker).set(if up { 1.0 } else { 0.0 });
}

/// The broker re-established its connection after a loss.
pub fn broker_reconnected(broker: &'static str) {
    counter!(BROKER_RECONNECTS, "broker" => broker).increment(1);
}

/// `n` publications could not be sent, for `reason` (`down`, `timeout`, ...).
pub fn broker_publish_errors(broker: &'static str, reason: &'static str, n: u64) {
    counter!(BROKER_PUBLISH_ERRORS, "broker" => broker, "reason" => reason).increment(n);
}

/// A message from the engine was dropped on receipt, for `reason`.
pub fn broker_receive_error(broker: &'static str, reason: &'static str) {
    counter!(BROKER_RECEIVE_ERRORS, "broker" => broker, "reason" => reason).increment(1);
}

/// A history or presence script failed.
pub fn broker_script_error(broker: &'static str) {
    counter!(BROKER_SCRIPT_ERRORS, "broker" => broker).increment(1);
}

/// The engine's topology (a slot map) was reloaded.
pub fn broker_topology_refreshed(broker: &'static str) {
    counter!(BROKER_TOPOLOGY_REFRESHES, "broker" => broker).increment(1);
}

/// A history write lost a race and is retried.
pub fn broker_history_conflict(broker: &'static str) {
    counter!(BROKER_HISTORY_CONFLICTS, "broker" => broker).increment(1);
}

/// The broker asked the node to resync one channel or all of them.
pub fn broker_resync(broker: &'static str) {
    counter!(BROKER_RESYNCS, "broker" => broker).increment(1);
}

// --- HTTP API ------------------------------------------------------------------

/// The label of an HTTP status the API answers (a fixed set).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        422 => "422",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// An HTTP API request to `method` (a method name, or `unknown`) was
/// answered with `status` after `elapsed`.
pub(crate) fn api_request(method: &'static str, status: u16, elapsed: std::time::Duration) {
    counter!(API_REQUESTS, "method" => method, "status" => status_label(status)).increment(1);
    histogram!(API_REQUEST_DURATION, "method" => method).record(elapsed.as_secs_f64());
}

/// A command of an API batch ran.
pub(crate) fn api_batch_command(method: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(API_BATCH_COMMANDS, "method" => method, "outcome" => outcome).increment(1);
}
