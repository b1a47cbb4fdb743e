//! Health, readiness and cluster information over HTTP.
//!
//! `GET /herald/health` answers 200 while the process serves; `GET
//! /herald/ready` answers 200 when the broker is up and the node is not
//! draining, 503 otherwise
//! (a load balancer then sends new clients elsewhere); `GET /herald/info`
//! shows this node, its broker and the cluster's nodes with their counts.
//! [`crate::Server::serve`] mounts them; an application that mounts
//! [`crate::Server::router`] itself adds [`crate::Server::status_router`]
//! where it wants them.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use serde::Serialize;

use crate::broker::BrokerStatus;
use crate::cluster::NodeInfo;
use crate::server::Server;

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BrokerInfo {
    name: &'static str,
    up: bool,
}

/// This node and the cluster as it sees it (`GET /herald/info`, the API's
/// `info`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Info {
    node_id: String,
    broker: BrokerInfo,
    sockets: usize,
    clients: usize,
    channels: usize,
    nodes: Vec<NodeInfo>,
}

async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn ready(State(server): State<Server>) -> Response {
    let (name, status) = server.broker_status();
    let up = status == BrokerStatus::Up;
    let draining = server.0.shutdown.is_cancelled();
    let ready = up && !draining;
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        code,
        &serde_json::json!({ "ready": ready, "broker": name, "draining": draining }),
    )
}

async fn info_route(State(server): State<Server>) -> Response {
    json(StatusCode::OK, &info(&server))
}

/// This node and the cluster's nodes now.
pub(crate) fn info(server: &Server) -> Info {
    let (name, status) = server.broker_status();
    Info {
        node_id: server.node_id().to_owned(),
        broker: BrokerInfo {
            name,
            up: status == BrokerStatus::Up,
        },
        sockets: server.sockets().len(),
        clients: server.client_count(),
        channels: server.channel_count(),
        nodes: server.nodes(),
    }
}

pub(crate) fn router<S: Clone + Send + Sync + 'static>(server: Server) -> axum::Router<S> {
    axum::Router::new()
        .route("/herald/health", get(health))
        .route("/herald/ready", get(ready))
        .route("/herald/info", get(info_route))
        .with_state(server)
}
