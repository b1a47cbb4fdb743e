//! # herald-broker-nats
//!
//! A [`herald::Broker`] over core NATS, so that several Herald nodes share
//! their channels: a publication made on any node reaches the subscribers of
//! every node, exactly once each, in publish order per publisher.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use herald_broker_nats::{NatsBroker, NatsOptions};
//!
//! let broker = NatsBroker::connect("nats://127.0.0.1:4222", NatsOptions::default()).await?;
//! let server = herald::Server::builder().broker(broker).build();
//! # Ok(()) }
//! ```
//!
//! From the command line: `herald serve --broker nats://127.0.0.1:4222`
//! (see [`from_url`] for the parameters).
//!
//! ## How it works
//!
//! * **One subject per channel**, `<prefix>.<escaped channel name>` (prefix
//!   `herald.ch` by default). The escaping keeps ordinary names readable and
//!   makes any name one safe subject token; see [`subject`].
//! * **One NATS subscription per channel** this node has local subscribers
//!   for: the registry calls [`Broker::subscribe`]
//!   for a channel's first local subscriber and
//!   [`Broker::unsubscribe`] after its last. A
//!   task per subscription hands the messages, in order, to the node's sink.
//! * **The wire format is the delivery frame**: a publication travels as its
//!   ready-made `{"event":"#publish",...}` bytes and is rebuilt on receipt
//!   with [`Publication::from_frame`](herald::Publication::from_frame).
//!   Messages that are not such a frame for the subscribed channel are
//!   dropped and counted.
//! * **Every publication goes through NATS**, this node's own included (NATS
//!   echoes a connection's messages back to its own subscriptions), so local
//!   and remote subscribers see one order.
//! * **`subscribe` returns once the server has the subscription.**
//!   `async_nats::Client::flush` only empties the socket buffer, so after the
//!   `SUB` the broker sends a token to a private subject of its own and waits
//!   for it to come back: the server handles one connection's protocol in
//!   order, so the echo proves the subscription is registered. With a single
//!   NATS server (or every node on the same server), a publication made
//!   anywhere after `subscribe` returned reaches this node. In a NATS
//!   *cluster*, interest propagates between servers asynchronously, and a
//!   publication made through another server in the first milliseconds can
//!   miss the new subscription.
//!
//! ## When NATS goes away
//!
//! * **Status.** On the client's `Disconnected` event the broker reports
//!   [`BrokerStatus::Down`](herald::BrokerStatus::Down), logs a warning and
//!   sets `herald_broker_up` to 0. The NATS client reconnects by itself,
//!   forever, with exponential backoff (immediately, then 100 ms doubling up
//!   to 5 s, ±20 % jitter; see [`NatsOptions`]). On reconnect it re-sends
//!   every subscription first; the broker reports `Up` again (log with the
//!   outage duration, `herald_broker_up` 1,
//!   `herald_broker_reconnects_total` +1) only after a round trip proves
//!   those resubscriptions are in place. Use
//!   [`NatsBroker::status_watch`] to follow the transitions.
//! * **Local service goes on.** Sockets stay connected; subscribing keeps
//!   working (the subscription is queued and takes effect on reconnect).
//! * **Publishing while down does not touch NATS.** The NATS client would
//!   buffer the message and send it after the reconnect, perhaps before the
//!   other nodes resubscribed (so they would miss it, uncounted), and once its
//!   command queue was full every publish would wait for the reconnect.
//!   Instead, by default ([`WhenDown::DeliverLocally`]) the publication is
//!   delivered to this node's own subscribers right away and counted as
//!   dropped for the others (`herald_broker_publish_errors_total{reason="down"}`);
//!   with [`WhenDown::Fail`] it is delivered nowhere and the publish fails
//!   with a [`BrokerError`]. A publish never waits longer
//!   than [`NatsOptions::publish_timeout`].
//! * **Publications in flight when the connection breaks** (queued in the
//!   client's buffer or on the wire) may be lost by core NATS. The broker
//!   confirms, at most every [`NatsOptions::confirm_interval`] while
//!   publications flow, with one round trip that everything sent so far
//!   reached the server; at a disconnect, whatever was sent and not yet
//!   confirmed is counted in `herald_broker_publish_errors_total{reason="in_flight"}`
//!   (an upper bound: some of it may have been delivered).
//! * **What a node misses while it is disconnected** — publications the
//!   *other* nodes made meanwhile — it cannot count, since core NATS keeps no
//!   history; its outage is visible in its status and metrics. Replaying them
//!   is the job of JetStream (below).
//! * Across the transition itself, the order between a publication still in
//!   flight when the connection broke and one delivered locally during the
//!   outage is not guaranteed.
//!
//! ## Metrics
//!
//! All labelled `broker="nats"`.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `herald_broker_up` | gauge | 1 while NATS is reachable and subscriptions are live, else 0 |
//! | `herald_broker_reconnects_total` | counter | outages recovered from |
//! | `herald_broker_publish_errors_total{reason}` | counter | publications not (surely) delivered to the cluster: `down` (made while down), `in_flight` (sent, unconfirmed at a disconnect), `timeout`, `rejected` (e.g. larger than the server's `max_payload`) |
//! | `herald_broker_receive_errors_total{reason}` | counter | received messages dropped: `unparsable`, `wrong_channel`, `slow_consumer` |
//!
//! The same counts are available in-process through [`NatsBroker::stats`].
//!
//! ## JetStream, later
//!
//! History and recovery (a node replaying what it missed during an outage, a
//! client resuming a channel from an offset) would come from a JetStream
//! stream capturing `<prefix>.>` — the subjects are already one per channel,
//! and the payload is already the delivery frame, so nothing about the wire
//! changes. It would plug in at two places in `broker.rs`: `publish` would
//! use a JetStream publish (with an ack instead of the round-trip
//! confirmation), and the per-channel forwarder would read an ordered
//! consumer that remembers the last stream sequence it delivered, so that
//! after a reconnect (the monitor's `Connected` path, before reporting `Up`)
//! it resumes from there instead of from "now".

#![warn(missing_docs)]

mod broker;
mod error;
mod history;
mod options;
mod presence;
mod scan;
mod shared;
pub mod subject;
mod tasks;

use std::sync::Arc;

use herald::{Broker, BrokerError};

pub use broker::NatsBroker;
pub use options::{NatsOptions, WhenDown};
pub use shared::NatsStats;

/// Connects the broker named by a `--broker` URL:
///
/// `nats://HOST:PORT[,nats://HOST:PORT...][?prefix=P&name=N&when_down=local|fail]`
///
/// * several servers, comma-separated, form one pool (`tls://` for TLS);
/// * credentials go in a URL (`nats://user:pass@host:4222`, percent-encoded);
/// * `prefix`: the subject prefix (default `herald.ch`);
/// * `name`: the connection name in NATS monitoring (default `herald`);
/// * `when_down`: `local` (default) or `fail`, see [`WhenDown`].
pub async fn from_url(spec: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    let (servers, options) = options::parse_spec(spec).map_err(|message| BrokerError {
        broker: "nats",
        message,
    })?;
    let broker = NatsBroker::connect(&servers.join(","), options).await?;
    Ok(Arc::new(broker))
}
