//! Herald's end-to-end suite: a real server on 127.0.0.1, raw SocketCluster
//! v2 frames over real WebSockets, assertions on what crosses the wire.
//!
//! One test binary (one link) with a module per area; the harness is in
//! `tests/common/mod.rs`.

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod auth;
mod backpressure;
mod broker;
mod grants;
mod handshake;
mod heartbeat;
mod history;
mod jwks;
mod lifecycle;
mod limits;
mod malformed;
mod middleware;
mod namespaces;
mod presence;
mod pubsub;
mod recovery;
mod rpc;
mod tokens;
