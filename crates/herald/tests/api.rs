//! The HTTP server API on one node, end to end: every method through
//! `herald_testkit::api_scenarios` with Rust clients on the same node, then
//! what a caller gets wrong (key, method, body, params, reserved names) and
//! a broker outage, each with its status and error code; the document at
//! `/api/openapi.json`.
//!
//! The same scenarios across two nodes over Redis are in
//! `crates/herald-broker-redis/tests/api.rs`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::api::{ApiKey, ApiOptions};
use herald::{Broker, BrokerError, BrokerSink, MemoryBroker, Publication};
use herald_testkit::api_scenarios::{self as scenarios, API_KEY, Api, api_node};
use herald_testkit::cluster_scenarios::Node;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(60);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("the test took too long")
}

async fn one_node() -> Node {
    api_node(Arc::new(MemoryBroker::new()), "solo").await
}

#[tokio::test]
async fn publish_broadcast_and_history_on_one_node() {
    bounded(async {
        let node = one_node().await;
        scenarios::publish_and_history(&node, &node).await;
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn user_operations_on_one_node() {
    bounded(async {
        let node = one_node().await;
        scenarios::users(&node, &node).await;
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn user_operations_reach_every_socket_of_the_user_on_one_node() {
    bounded(async {
        let node = one_node().await;
        scenarios::users_everywhere(&node, &node).await;
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn presence_channels_and_info_on_one_node() {
    bounded(async {
        let node = one_node().await;
        scenarios::presence_and_channels(&node, &node).await;
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn batch_on_one_node() {
    bounded(async {
        let node = one_node().await;
        scenarios::batch(&node, &node).await;
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_key_is_required_in_either_header() {
    bounded(async {
        let node = one_node().await;
        let api = Api::new(node.addr);
        let post = |headers: &'static [(&'static str, &'static str)]| {
            let api = api.clone();
            async move {
                api.send(http::Method::POST, "/api/info", headers, "{}")
                    .await
            }
        };
        for headers in [
            &[][..],
            &[("x-api-key", "wrong")][..],
            &[("authorization", "apikey wrong")][..],
            &[("authorization", "Bearer test-api-key")][..],
            &[("x-api-key", "")][..],
        ] {
            let r = post(headers).await;
            assert_eq!((r.status, r.code()), (401, "unauthorized"), "{headers:?}");
        }
        assert_eq!(post(&[("x-api-key", API_KEY)]).await.status, 200);
        assert_eq!(
            post(&[("authorization", "apikey test-api-key")])
                .await
                .status,
            200
        );
        // Without the key an unknown method is 401 too: nothing is told.
        let r = api.send(http::Method::POST, "/api/nope", &[], "{}").await;
        assert_eq!(r.status, 401);
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn callers_mistakes_are_4xx_with_their_code() {
    bounded(async {
        let node = one_node().await;
        let api = Api::new(node.addr);
        let key = [("x-api-key", API_KEY)];
        let r = api.send(http::Method::POST, "/api/nope", &key, "{}").await;
        assert_eq!((r.status, r.code()), (404, "not_found"));
        let r = api.send(http::Method::GET, "/api/publish", &key, "").await;
        assert_eq!((r.status, r.code()), (405, "method_not_allowed"));
        let r = api
            .send(http::Method::POST, "/api/publish", &key, "{not json")
            .await;
        assert_eq!((r.status, r.code()), (400, "bad_request"));
        let r = api
            .send(http::Method::POST, "/api/publish", &key, "[\"news\", 1]")
            .await;
        assert_eq!(
            (r.status, r.code()),
            (400, "bad_request"),
            "arrays are not params"
        );
        let big = format!(
            r#"{{"channel":"news","data":"{}"}}"#,
            "x".repeat(2 * 1024 * 1024)
        );
        let r = api
            .send(http::Method::POST, "/api/publish", &key, big)
            .await;
        assert_eq!((r.status, r.code()), (413, "payload_too_large"));

        api.fails("publish", json!({ "channel": "news" }), 400, "bad_request")
            .await;
        api.fails(
            "publish",
            json!({ "channel": "news", "data": 1, "extra": true }),
            400,
            "bad_request",
        )
        .await;
        api.fails(
            "publish",
            json!({ "channel": 5, "data": 1 }),
            400,
            "bad_request",
        )
        .await;
        api.fails(
            "publish",
            json!({ "channel": "#herald/nodes", "data": 1 }),
            403,
            "forbidden",
        )
        .await;
        api.fails(
            "broadcast",
            json!({ "channels": ["news", "#herald/user/x"], "data": 1 }),
            403,
            "forbidden",
        )
        .await;
        api.fails(
            "subscribe",
            json!({ "user": "u", "channel": "#herald/nodes" }),
            403,
            "forbidden",
        )
        .await;
        api.fails(
            "history",
            json!({ "channel": "#herald/nodes" }),
            403,
            "forbidden",
        )
        .await;
        api.fails(
            "publish",
            json!({ "channel": "", "data": 1 }),
            422,
            "invalid_channel",
        )
        .await;
        api.fails(
            "publish",
            json!({ "channel": "a\u{0}b", "data": 1 }),
            422,
            "invalid_channel",
        )
        .await;
        api.fails(
            "broadcast",
            json!({ "channels": [], "data": 1 }),
            422,
            "invalid_value",
        )
        .await;
        api.fails(
            "disconnect",
            json!({ "user": "u", "code": 2000 }),
            422,
            "invalid_value",
        )
        .await;
        api.fails(
            "disconnect",
            json!({ "user": "u", "reason": "r".repeat(200) }),
            422,
            "invalid_value",
        )
        .await;
        api.fails(
            "send",
            json!({ "user": "", "event": "e" }),
            422,
            "invalid_value",
        )
        .await;
        api.fails("channels", json!({ "limit": 0 }), 422, "invalid_value")
            .await;
        api.fails(
            "batch",
            json!({ "commands": [{ "method": "info", "params": [] }] }),
            400,
            "bad_request",
        )
        .await;
        let many: Vec<_> = (0..1001).map(|_| json!({ "method": "info" })).collect();
        api.fails("batch", json!({ "commands": many }), 422, "invalid_value")
            .await;
        // An empty body is empty params.
        let r = api.send(http::Method::POST, "/api/info", &key, "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        node.stop().await;
    })
    .await;
}

/// Integer params written with a zero fraction (`2.0`, as some JSON
/// encoders write every number) are integers, as docs/openapi.yaml's
/// `integer` says (JSON Schema counts them); found by
/// scripts/api-conformance.sh, where they were refused with 400. A fraction
/// is still refused. `null` optional params are absent ones.
#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_integers() {
    bounded(async {
        let node = one_node().await;
        let api = Api::new(node.addr);
        let channel = "hist:floats";
        for n in 1..=3 {
            api.ok("publish", json!({ "channel": channel, "data": n }))
                .await;
        }
        let epoch = api
            .ok("history", json!({ "channel": channel, "limit": 0 }))
            .await["epoch"]
            .clone();
        let r = api
            .ok(
                "history",
                json!({ "channel": channel, "limit": 1.0, "since": { "offset": 1.0, "epoch": epoch } }),
            )
            .await;
        assert_eq!(r["publications"], json!([{ "offset": 2, "data": 2 }]), "{r}");
        // null is an absent optional param.
        let r = api
            .ok(
                "history",
                json!({ "channel": channel, "limit": null, "since": null, "reverse": null }),
            )
            .await;
        assert_eq!(r["publications"].as_array().map(Vec::len), Some(3), "{r}");
        let r = api.ok("channels", json!({ "limit": 5.0 })).await;
        assert_eq!(r["truncated"], false, "{r}");
        api.ok("disconnect", json!({ "user": "nobody", "code": 4500.0 }))
            .await;
        api.fails(
            "history",
            json!({ "channel": channel, "limit": 1.5 }),
            400,
            "bad_request",
        )
        .await;
        api.fails(
            "disconnect",
            json!({ "user": "nobody", "code": 70000.0 }),
            400,
            "bad_request",
        )
        .await;
        node.stop().await;
    })
    .await;
}

/// The backend may publish where clients may not (`publish = "none"`).
#[tokio::test]
async fn client_publish_rules_do_not_bind_the_backend() {
    bounded(async {
        let node = one_node().await;
        let api = Api::new(node.addr);
        let c = herald_testkit::cluster_scenarios::client(&node.url).await;
        let refused = c.publish("inbox:someone", &1).await;
        assert!(refused.is_err(), "clients may not publish on inbox:*");
        let r = api
            .ok("publish", json!({ "channel": "inbox:someone", "data": 1 }))
            .await;
        assert_eq!(r["offset"], 1);
        c.close().await;
        node.stop().await;
    })
    .await;
}

/// A broker that carries nothing: every publication and read fails.
struct DownBroker;

#[async_trait]
impl Broker for DownBroker {
    fn name(&self) -> &'static str {
        "down"
    }
    fn start(&self, _sink: BrokerSink) {}
    async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }
    async fn publish(&self, _publication: Arc<Publication>) -> Result<(), BrokerError> {
        Err(BrokerError::new("down", "connection refused"))
    }
}

#[tokio::test]
async fn a_broker_outage_is_503_with_the_brokers_error() {
    bounded(async {
        let node = api_node(Arc::new(DownBroker), "down").await;
        let api = Api::new(node.addr);
        let r = api
            .fails(
                "publish",
                json!({ "channel": "news", "data": 1 }),
                503,
                "broker_unavailable",
            )
            .await;
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("connection refused"),
            "{}",
            r.body
        );
        api.fails(
            "broadcast",
            json!({ "channels": ["a", "b"], "data": 1 }),
            503,
            "broker_unavailable",
        )
        .await;
        api.fails(
            "send",
            json!({ "user": "u", "event": "e" }),
            503,
            "broker_unavailable",
        )
        .await;
        // In a batch, the outage fails each command, not the call.
        let r = api
            .ok(
                "batch",
                json!({ "commands": [
                    { "method": "publish", "params": { "channel": "a", "data": 1 } },
                    { "method": "info" },
                ] }),
            )
            .await;
        assert_eq!(r["replies"][0]["error"]["code"], "broker_unavailable");
        assert_eq!(r["replies"][1]["result"]["nodeId"], "down");
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_openapi_document_is_served_as_json_without_a_key() {
    bounded(async {
        let node = one_node().await;
        let api = Api::new(node.addr);
        let r = api
            .send(http::Method::GET, "/api/openapi.json", &[], "")
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.yaml"
        ))
        .expect("docs/openapi.yaml");
        let yaml: serde_json::Value = serde_norway::from_str(&text).expect("YAML");
        assert_eq!(r.body, yaml, "the served JSON is docs/openapi.yaml");
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn without_the_api_router_there_is_no_api() {
    bounded(async {
        let node = Node::start(Arc::new(MemoryBroker::new())).await;
        let api = Api::new(node.addr);
        let r = api.call("info", json!({})).await;
        assert_eq!(r.status, 404);
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_small_body_limit_is_kept() {
    bounded(async {
        let node = Node::start_serving(
            Arc::new(MemoryBroker::new()),
            |b| b,
            |server| server.api_router(ApiOptions::new(ApiKey::new(API_KEY).unwrap()).max_body(64)),
        )
        .await;
        let api = Api::new(node.addr);
        api.ok("publish", json!({ "channel": "c", "data": 1 }))
            .await;
        api.fails(
            "publish",
            json!({ "channel": "c", "data": "x".repeat(64) }),
            413,
            "payload_too_large",
        )
        .await;
        node.stop().await;
    })
    .await;
}

/// A node this node knows (it announces itself) but that never answers
/// questions is reported missing once the query timeout passes; the
/// answer still counts this node's channels.
#[tokio::test]
async fn a_node_that_does_not_answer_is_reported_missing() {
    bounded(async {
        let broker = Arc::new(MemoryBroker::new());
        let node = Node::start_serving(
            broker.clone(),
            |b| b.node_id("here"),
            |server| {
                server.api_router(
                    ApiOptions::new(ApiKey::new(API_KEY).unwrap())
                        .query_timeout(Duration::from_millis(300)),
                )
            },
        )
        .await;
        let c = herald_testkit::cluster_scenarios::client(&node.url).await;
        let _sub = c.subscribe("lobby").await.expect("subscribe");
        // The ghost announces itself until the test ends.
        let ghost = tokio::spawn(async move {
            let announcement = serde_json::value::to_raw_value(
                &json!({ "node": "ghost", "sockets": 0, "clients": 0, "channels": 0 }),
            )
            .unwrap();
            loop {
                let p = Publication::new("#herald/nodes", Some(announcement.clone()));
                let _ = broker.publish(Arc::new(p)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        while !node.server.nodes().iter().any(|n| n.id == "ghost") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let api = Api::new(node.addr);
        let r = api.ok("channels", json!({})).await;
        assert_eq!(r["answered"], json!(["here"]), "{r}");
        assert_eq!(r["missing"], json!(["ghost"]), "{r}");
        assert_eq!(
            r["channels"],
            json!([{ "channel": "lobby", "subscribers": 1 }]),
            "{r}"
        );
        ghost.abort();
        c.close().await;
        node.stop().await;
    })
    .await;
}
