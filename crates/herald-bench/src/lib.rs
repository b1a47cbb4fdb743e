//! `herald-bench`: a load generator that speaks the SocketCluster v2
//! protocol, so that the same scenario runs against Herald and against
//! socketcluster-server.
//!
//! Scenarios:
//! * [`fanout`]: P publishers, C channels, S subscribers per channel; delivery
//!   rate, publish-to-delivery latency percentiles, and lost, duplicated and
//!   reordered deliveries.
//! * [`conns`]: N idle subscribed connections over several worker processes;
//!   the server's memory per connection.
//! * [`recover`]: what recovering N missed publications costs a client
//!   (Herald's history extension).
//! * [`storm`]: N clients with backoff and jitter; the server is killed and
//!   restarted; the time until all are back and resubscribed, and the
//!   server's CPU and memory meanwhile.
//!
//! Given the server's PID (or starting the server itself) the bench samples
//! its CPU and memory ([`procstat`]). Results print as a human table or, with
//! `--json`, one JSON line each ([`report`]); `herald-bench report` turns
//! JSON lines into the Markdown comparison of `docs/benchmarks.md`.
//!
//! The generator is built to cost less than the server: frames come from
//! `herald-protocol`, the WebSocket layer is `tokio-websockets`, and
//! subscribers read their own publications with a byte-level fast path
//! ([`wire`]).

#![warn(missing_docs)]

pub mod auth;
pub mod cli;
pub mod common;
pub mod conns;
pub mod fanout;
pub mod procstat;
pub mod recover;
pub mod report;
pub mod seq;
pub mod server;
pub mod slow;
pub mod stats;
pub mod storm;
pub mod wire;
pub mod worker;
