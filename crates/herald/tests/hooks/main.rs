//! The backend hooks end to end: a backend in the test (axum, `backend`)
//! answers each hook, a real Herald server calls it, raw SocketCluster
//! clients check what crosses the wire.

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod bounds;
mod channels;
mod cluster;
mod connect;
mod refresh;
mod rpc;

use std::time::Duration;

use axum::http::StatusCode;
use herald::{HookEndpoint, Server};
use serde_json::Value;

use common::{SECRET, TestServer};

/// A server with the test secret and `configure` applied.
pub async fn server(configure: impl FnOnce(&mut herald::Config)) -> TestServer {
    TestServer::start(Server::builder().auth_secret(SECRET).configure(configure)).await
}

/// A hook at `url` with a short timeout.
pub fn hook(url: String) -> HookEndpoint {
    HookEndpoint::new(url).timeout(Duration::from_secs(5))
}

/// A 200 answer.
pub fn ok(v: Value) -> (StatusCode, Value) {
    (StatusCode::OK, v)
}
