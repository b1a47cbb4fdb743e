//! The catalogue: every metric's name, type, labels and description, and
//! [`describe`], which hands the descriptions to the installed recorder.
//! Kept apart from the recording functions so that the whole list reads in
//! one place (docs/operations.md mirrors it).

use ::metrics::{Unit, describe_counter, describe_gauge};

/// What a metric is (its Prometheus type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (a `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its labels (every series carries all of them).
    pub labels: &'static [&'static str],
    /// What it counts.
    pub help: &'static str,
}

/// Metric names, one constant each.
pub mod names {
    /// Open WebSocket connections (handshaken or not).
    pub const CONNECTIONS: &str = "herald_connections";
    /// Connections closed, by close code.
    pub const DISCONNECTIONS: &str = "herald_disconnections_total";
    /// Completed handshakes.
    pub const HANDSHAKES: &str = "herald_handshakes_total";
    /// Upgrades and handshakes refused, by reason.
    pub const HANDSHAKES_REFUSED: &str = "herald_handshakes_refused_total";
    /// Auth tokens refused (handshake or `#authenticate`), by reason.
    pub const AUTH_REFUSED: &str = "herald_auth_refused_total";
    /// JWKS fetches, by outcome.
    pub const JWKS_REFRESHES: &str = "herald_jwks_refreshes_total";
    /// JWKS refreshes asked for by tokens and refused by the rate limit.
    pub const JWKS_REFRESHES_LIMITED: &str = "herald_jwks_refreshes_limited_total";
    /// Keys in the JWKS key set in force.
    pub const JWKS_KEYS: &str = "herald_jwks_keys";
    /// Current socket subscriptions.
    pub const SUBSCRIPTIONS: &str = "herald_subscriptions";
    /// Accepted subscribes.
    pub const SUBSCRIBES: &str = "herald_subscriptions_total";
    /// Channels with at least one local subscriber.
    pub const CHANNELS: &str = "herald_channels";
    /// WebSocket messages received.
    pub const MESSAGES_IN: &str = "herald_messages_in_total";
    /// Payload bytes received.
    pub const BYTES_IN: &str = "herald_bytes_in_total";
    /// WebSocket messages written.
    pub const MESSAGES_OUT: &str = "herald_messages_out_total";
    /// Payload bytes written.
    pub const BYTES_OUT: &str = "herald_bytes_out_total";
    /// Malformed frames ignored.
    pub const MALFORMED_FRAMES: &str = "herald_malformed_frames_total";
    /// Publications handed to the broker.
    pub const PUBLICATIONS: &str = "herald_publications_total";
    /// Publications queued to local subscribers.
    pub const DELIVERIES: &str = "herald_deliveries_total";
    /// Deliveries refused by a full queue.
    pub const DELIVERIES_DROPPED: &str = "herald_deliveries_dropped_total";
    /// From the node having a publication to its frame written to a socket.
    pub const PUBLISH_WRITE_LATENCY: &str = "herald_publish_write_latency_seconds";
    /// Sockets closed with 4100 (slow consumer).
    pub const SLOW_CONSUMER_DISCONNECTS: &str = "herald_slow_consumer_disconnects_total";
    /// Sockets closed with 4001 (no pong).
    pub const PONG_TIMEOUTS: &str = "herald_pong_timeouts_total";
    /// Requests or sockets over a limit, by kind.
    pub const LIMIT_VIOLATIONS: &str = "herald_limit_violations_total";
    /// Invokes of procedures nothing serves.
    pub const UNKNOWN_PROCEDURES: &str = "herald_unknown_procedures_total";
    /// 1 while the broker's engine is reachable.
    pub const BROKER_UP: &str = "herald_broker_up";
    /// Broker connections re-established after a loss.
    pub const BROKER_RECONNECTS: &str = "herald_broker_reconnects_total";
    /// Publications the broker could not send.
    pub const BROKER_PUBLISH_ERRORS: &str = "herald_broker_publish_errors_total";
    /// Broker messages dropped on receipt.
    pub const BROKER_RECEIVE_ERRORS: &str = "herald_broker_receive_errors_total";
    /// History and presence scripts that failed (Redis).
    pub const BROKER_SCRIPT_ERRORS: &str = "herald_broker_script_errors_total";
    /// Slot map reloads (Redis Cluster).
    pub const BROKER_TOPOLOGY_REFRESHES: &str = "herald_broker_topology_refreshes_total";
    /// History writes that lost a race and were retried (NATS).
    pub const BROKER_HISTORY_CONFLICTS: &str = "herald_broker_history_conflicts_total";
    /// Resyncs the broker asked of the node (NATS).
    pub const BROKER_RESYNCS: &str = "herald_broker_resyncs_total";
    /// Gaps in a history channel's offsets filled from the history.
    pub const GAP_REPAIRS: &str = "herald_gap_repairs_total";
    /// Gaps the history could not fill.
    pub const GAP_UNREPAIRABLE: &str = "herald_gap_unrepairable_total";
    /// Subscribes that asked to recover, by outcome.
    pub const RECOVERIES: &str = "herald_recoveries_total";
    /// Publications on a history channel delivered twice by the broker and
    /// dropped.
    pub const HISTORY_DUPLICATES_DROPPED: &str = "herald_history_duplicates_dropped_total";
    /// HTTP API requests, by method and status.
    pub const API_REQUESTS: &str = "herald_api_requests_total";
    /// HTTP API request duration, by method.
    pub const API_REQUEST_DURATION: &str = "herald_api_request_duration_seconds";
    /// Commands run inside API batches, by method and outcome.
    pub const API_BATCH_COMMANDS: &str = "herald_api_batch_commands_total";
}

use names::*;

const fn counter_of(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const fn gauge_of(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

/// Every metric Herald records, with its labels and description.
pub const CATALOGUE: &[Metric] = &[
    gauge_of(
        CONNECTIONS,
        &[],
        "Open WebSocket connections on this node, handshaken or not.",
    ),
    counter_of(
        DISCONNECTIONS,
        &["code"],
        "Connections closed, by close code (1000, 1001, 1006, 4001, 4100, ...; codes Herald does not know are \"other\").",
    ),
    counter_of(HANDSHAKES, &[], "Completed #handshake exchanges."),
    counter_of(
        HANDSHAKES_REFUSED,
        &["reason"],
        "Upgrades and handshakes refused, by reason.",
    ),
    counter_of(
        AUTH_REFUSED,
        &["reason"],
        "Auth tokens refused at the handshake or by #authenticate (invalid, expired, not_before, middleware).",
    ),
    counter_of(
        JWKS_REFRESHES,
        &["outcome"],
        "JWKS fetches, by outcome (updated: a new key set is in force; unchanged: 304 Not Modified; error: failed, the last good keys stay).",
    ),
    counter_of(
        JWKS_REFRESHES_LIMITED,
        &[],
        "Tokens no cached key could check that asked for a JWKS refresh within auth_jwks_min_refresh of the last one (refused without a fetch).",
    ),
    gauge_of(JWKS_KEYS, &[], "Usable keys in the JWKS key set in force."),
    gauge_of(
        SUBSCRIPTIONS,
        &[],
        "Socket subscriptions on this node (one per socket and channel).",
    ),
    counter_of(SUBSCRIBES, &[], "Subscribes accepted."),
    gauge_of(
        CHANNELS,
        &[],
        "Channels with at least one subscriber on this node.",
    ),
    counter_of(
        MESSAGES_IN,
        &[],
        "WebSocket text messages received from clients (pongs included).",
    ),
    counter_of(BYTES_IN, &[], "Payload bytes of the messages received."),
    counter_of(
        MESSAGES_OUT,
        &[],
        "WebSocket messages written to clients (pings excluded).",
    ),
    counter_of(BYTES_OUT, &[], "Payload bytes of the messages written."),
    counter_of(
        MALFORMED_FRAMES,
        &[],
        "Frames that were not valid protocol messages (ignored, or the socket closed).",
    ),
    counter_of(
        PUBLICATIONS,
        &[],
        "Publications of clients and server code handed to the broker by this node (cluster announcements excluded).",
    ),
    counter_of(
        DELIVERIES,
        &[],
        "Publications queued to subscribers on this node.",
    ),
    counter_of(
        DELIVERIES_DROPPED,
        &[],
        "Deliveries refused by a full outbound queue (the socket is closed as a slow consumer).",
    ),
    Metric {
        name: PUBLISH_WRITE_LATENCY,
        kind: Kind::Histogram,
        labels: &[],
        help: "Seconds from the moment this node had a publication (its own publish, or its receipt from the broker) to the moment its frame was written to a subscriber's socket.",
    },
    counter_of(
        SLOW_CONSUMER_DISCONNECTS,
        &[],
        "Sockets closed with 4100 because their outbound queue overflowed.",
    ),
    counter_of(
        PONG_TIMEOUTS,
        &[],
        "Sockets closed with 4001 because nothing arrived within the ping timeout.",
    ),
    counter_of(
        LIMIT_VIOLATIONS,
        &["kind"],
        "Requests or sockets over a configured limit, by kind.",
    ),
    counter_of(
        UNKNOWN_PROCEDURES,
        &[],
        "Invokes of procedures nothing serves (answered NoSuchProcedureError).",
    ),
    gauge_of(
        BROKER_UP,
        &["broker"],
        "1 while the broker's engine is reachable, 0 while it is down.",
    ),
    counter_of(
        BROKER_RECONNECTS,
        &["broker"],
        "Broker connections re-established after a loss.",
    ),
    counter_of(
        BROKER_PUBLISH_ERRORS,
        &["broker", "reason"],
        "Publications the broker could not send (delivered nowhere).",
    ),
    counter_of(
        BROKER_RECEIVE_ERRORS,
        &["broker", "reason"],
        "Messages from the broker dropped on receipt.",
    ),
    counter_of(
        BROKER_SCRIPT_ERRORS,
        &["broker"],
        "History and presence scripts that failed (Redis).",
    ),
    counter_of(
        BROKER_TOPOLOGY_REFRESHES,
        &["broker"],
        "Slot map reloads (Redis Cluster).",
    ),
    counter_of(
        BROKER_HISTORY_CONFLICTS,
        &["broker"],
        "History writes that lost a race with another node and were retried (NATS).",
    ),
    counter_of(
        BROKER_RESYNCS,
        &["broker"],
        "Resyncs the broker asked of the node after a reconnect or a gap (NATS).",
    ),
    counter_of(
        GAP_REPAIRS,
        &[],
        "Gaps in a history channel's offsets filled from the history.",
    ),
    counter_of(
        GAP_UNREPAIRABLE,
        &[],
        "Gaps the history could not fill (subscribers got #herald/unrecoverable).",
    ),
    counter_of(
        RECOVERIES,
        &["outcome"],
        "Subscribes that asked to recover missed publications, by outcome (recovered, unrecoverable).",
    ),
    counter_of(
        HISTORY_DUPLICATES_DROPPED,
        &[],
        "Publications on a history channel the broker delivered twice; the second was dropped.",
    ),
    counter_of(
        API_REQUESTS,
        &["method", "status"],
        "HTTP API requests, by method (publish, broadcast, ..., unknown) and HTTP status.",
    ),
    Metric {
        name: API_REQUEST_DURATION,
        kind: Kind::Histogram,
        labels: &["method"],
        help: "Seconds from an HTTP API request's arrival to its response, by method.",
    },
    counter_of(
        API_BATCH_COMMANDS,
        &["method", "outcome"],
        "Commands run inside HTTP API batches, by method and outcome (ok, error).",
    ),
];

/// Describes every metric of the [`CATALOGUE`] to the installed recorder
/// (its `# HELP` line in Prometheus). Cheap and idempotent: the server
/// calls it when it is built and [`Prometheus::install`] when it installs.
pub fn describe() {
    for m in CATALOGUE {
        let unit = if m.name.ends_with("_bytes_total") {
            Some(Unit::Bytes)
        } else {
            None
        };
        match (m.kind, unit) {
            (Kind::Counter, Some(u)) => describe_counter!(m.name, u, m.help),
            (Kind::Counter, None) => describe_counter!(m.name, m.help),
            (Kind::Gauge, _) => describe_gauge!(m.name, m.help),
            // Herald's own histogram (see `latency`) is described where it
            // is rendered; the others go through the facade.
            (Kind::Histogram, _) if m.name == PUBLISH_WRITE_LATENCY => {}
            (Kind::Histogram, _) => ::metrics::describe_histogram!(m.name, Unit::Seconds, m.help),
        }
    }
}
