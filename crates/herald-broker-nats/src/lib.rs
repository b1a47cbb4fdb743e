//! # herald-broker-nats
//!
//! A [`herald::Broker`] over NATS, so that several Herald nodes share their
//! channels: a publication made on any node reaches the subscribers of every
//! node, exactly once each, in publish order per publisher. Channel history
//! lives in JetStream streams and presence in a JetStream KV bucket (NATS
//! 2.9 or later, JetStream enabled).
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
//! * **The wire format is the envelope** of
//!   [`Publication::encode`](herald::Publication::encode) (kind, position,
//!   channel, raw data), rebuilt on receipt with
//!   [`Publication::decode`](herald::Publication::decode). Messages that are
//!   not an envelope for the subscribed channel are dropped and counted.
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
//!   is the job of the history (below): the broker asks the node to resync.
//! * Across the transition itself, the order between a publication still in
//!   flight when the connection broke and one delivered locally during the
//!   outage is not guaranteed.
//!
//! ## Metrics
//!
//! All labelled `broker="nats"`, named and described in `herald::metrics`
//! like every other Herald metric (docs/operations.md lists them all).
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `herald_broker_up` | gauge | 1 while NATS is reachable and subscriptions are live, else 0 |
//! | `herald_broker_reconnects_total` | counter | outages recovered from |
//! | `herald_broker_publish_errors_total{reason}` | counter | publications not (surely) delivered to the cluster: `down` (made while down), `in_flight` (sent, unconfirmed at a disconnect), `timeout`, `rejected` (e.g. larger than the server's `max_payload`) |
//! | `herald_broker_receive_errors_total{reason}` | counter | received messages dropped: `unparsable`, `wrong_channel`, `slow_consumer` |
//! | `herald_broker_history_conflicts_total` | counter | history writes that lost a race with another node and were retried |
//! | `herald_broker_resyncs_total` | counter | resyncs asked of the node (after a reconnect, slow consumers, an offset gap) |
//!
//! The same counts are available in-process through [`NatsBroker::stats`].
//!
//! ## History (JetStream)
//!
//! * **One stream per namespace**, `HERALD_<prefix>_<namespace>_<digest>`,
//!   capturing `<prefix>.h.<namespace token>.*`: one history subject per
//!   channel, `<prefix>.h.<namespace token>.<channel token>`. It is created
//!   (or updated) lazily from the namespace's
//!   [`HistoryPolicy`](herald::broker::HistoryPolicy): per subject the last
//!   `size` publications plus an epoch marker, each for `ttl` (`max_age`),
//!   discarding the oldest, with direct gets, file storage and
//!   [`NatsOptions::replicas`] replicas.
//! * **Storing is publishing**: the stream's RePublish
//!   (`src` its subjects, `dest` `<prefix>.{{wildcard(1)}}`) hands every
//!   message it stores, in stream order, to the channel's live subject,
//!   where the node subscriptions above receive it. No subscriber can see
//!   offset n+1 before n, and nothing is delivered that was not stored.
//! * **Offsets without holes**: the publisher reads the subject's last
//!   message, writes offset + 1 with `Nats-Expected-Last-Subject-Sequence`
//!   and retries (bounded, with a random backoff) when another node wrote
//!   first. An empty subject starts a new epoch; reading a channel that has
//!   none writes an epoch marker, so every node sees the same epoch before
//!   the first publication. A last message *behind* what this node wrote
//!   (the server lost acknowledged writes) also starts a new epoch, so that
//!   offsets are never reused. See the `history` module for details.
//! * **Reads**: the position from a direct get; short ranges by following
//!   each publication's link to the previous one, longer ones with an
//!   ephemeral consumer. `remove_history` purges the channel's subject.
//! * **One difference from the memory and Redis brokers**: JetStream's
//!   `max_age` ages each message on its own, so an active channel's history
//!   holds at most `ttl` worth of publications (Redis keeps the last `size`
//!   while publications keep coming, and drops the whole history `ttl`
//!   after the last one). Choose `ttl` as "how far back a client may
//!   recover".
//! * **While NATS is down** `publish_with_history` (and every history or
//!   presence call) fails at once with a [`BrokerError`]: offsets need the
//!   store, so there is no local-only delivery. After a reconnect, once the
//!   resubscriptions are confirmed, the broker calls
//!   [`BrokerSink::resync_all`](herald::BrokerSink::resync_all): what was
//!   published meanwhile is in the streams. It also resyncs every channel
//!   after slow-consumer reports (once per burst), and one channel when its
//!   offsets jump.
//! * Verified against NATS 2.9.10 (`tests/server_features.rs`): RePublish
//!   with a wildcard mapping keeps headers and stream order; an expected
//!   last subject sequence of 0 is enforced (also after a purge); direct
//!   get by subject answers 404 on an empty subject (and nothing at all on
//!   a missing stream: the broker bounds it with
//!   [`NatsOptions::request_timeout`] and ensures the stream again).
//!
//! ## Presence (JetStream KV)
//!
//! One bucket per prefix (`herald_presence_<prefix>_<digest>`), one value
//! per key, `max_age` = the presence ttl; key `c<base64url channel>.s<base64url
//! socket id>`, value the [`ClientInfo`](herald::broker::ClientInfo) JSON.
//! Puts are pipelined (a refresh of thousands of entries costs a few round
//! trips), removal writes delete markers, and a read scans that channel's
//! keys only. Entries of a node that died expire after the ttl.
//!
//! ## Reading from NATS tooling
//!
//! [`NatsBroker::history_stream`] and [`NatsBroker::presence_bucket`] name
//! the stream and bucket (`nats stream view`, `nats kv ls`).

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
/// `nats://HOST:PORT[,nats://HOST:PORT...][?prefix=P&name=N&when_down=local|fail&replicas=R]`
///
/// * several servers, comma-separated, form one pool (`tls://` for TLS);
/// * credentials go in a URL (`nats://user:pass@host:4222`, percent-encoded);
/// * `prefix`: the subject prefix (default `herald.ch`);
/// * `name`: the connection name in NATS monitoring (default `herald`);
/// * `when_down`: `local` (default) or `fail`, see [`WhenDown`] (plain
///   publications only: history always fails while down);
/// * `replicas`: replicas of the history streams and presence bucket (1).
pub async fn from_url(spec: &str) -> Result<Arc<dyn Broker>, BrokerError> {
    let (servers, options) = options::parse_spec(spec).map_err(|message| BrokerError {
        broker: "nats",
        message,
    })?;
    let broker = NatsBroker::connect(&servers.join(","), options).await?;
    Ok(Arc::new(broker))
}
