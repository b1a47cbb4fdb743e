//! The HTTP server API end to end: every method called over HTTP on one
//! node, with real Rust clients (`herald-client`) on another node (or the
//! same one) receiving what the API sends.
//!
//! Each scenario takes the node the API is called on and the node the
//! clients connect to; the suites run them with both on one node
//! (`crates/herald/tests/api.rs`) and across two nodes over a real broker
//! (the Redis suite). [`ApiNode`] is a fixture node serving the API behind
//! [`API_KEY`]; [`Api`] is an HTTP client of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use herald::Broker;
use herald::api::{ApiKey, ApiOptions};
use herald_client::{Client, ClientEvent, SubscriptionError};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::cluster_scenarios::{Node, client, within};

/// The API key of every [`ApiNode`].
pub const API_KEY: &str = "test-api-key";

/// A fixture node over `broker` serving the HTTP API behind [`API_KEY`],
/// announcing itself every 100 ms (so that two nodes know each other
/// quickly).
pub async fn api_node(broker: Arc<dyn Broker>, id: &str) -> Node {
    let id = id.to_owned();
    Node::start_serving(
        broker,
        move |b| {
            b.node_id(id)
                .configure(|c| c.announce_interval = Duration::from_millis(100))
        },
        |server| {
            let key = ApiKey::new(API_KEY).expect("a key");
            server.api_router(ApiOptions::new(key).query_timeout(Duration::from_secs(5)))
        },
    )
    .await
}

/// Waits until `node` knows `n` nodes (itself included).
pub async fn wait_nodes(node: &Node, n: usize) {
    within(&format!("{n} nodes in the cluster view"), async {
        while node.server.nodes().len() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A unique name for this run's channels and users.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

/// An HTTP client of one node's API.
#[derive(Clone)]
pub struct Api {
    base: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

/// A response: its status and its JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body, parsed (`Null` when empty or not JSON).
    pub body: Value,
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    /// The API of the node listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `method PATH` with `headers` and `body`.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body.into()))
            .expect("a valid request");
        let response = within(&format!("the reply of {path}"), self.http.request(request))
            .await
            .expect("an HTTP response");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = within("the body", response.into_body().collect())
            .await
            .expect("a body")
            .to_bytes();
        Reply {
            status,
            content_type,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// `POST /api/<method>` with `params`, with the key.
    pub async fn call(&self, method: &str, params: Value) -> Reply {
        self.send(
            http::Method::POST,
            &format!("/api/{method}"),
            &[("x-api-key", API_KEY), ("content-type", "application/json")],
            params.to_string(),
        )
        .await
    }

    /// [`Api::call`] that must succeed; returns `result`.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let reply = self.call(method, params.clone()).await;
        assert_eq!(
            reply.status, 200,
            "{method} {params} answered {}: {}",
            reply.status, reply.body
        );
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "{method}"
        );
        reply.body["result"].clone()
    }

    /// [`Api::call`] that must fail with `status` and `code`.
    pub async fn fails(&self, method: &str, params: Value, status: u16, code: &str) -> Reply {
        let reply = self.call(method, params.clone()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{method} {params}: {}",
            reply.body
        );
        assert!(reply.body["error"]["message"].is_string(), "{}", reply.body);
        reply
    }
}

/// A client of `node`, logged in as `user` (the fixture's `login`), once
/// `node` indexed its socket under the user (from then on user operations
/// published anywhere reach it).
pub async fn logged_in(node: &Node, user: &str) -> Client {
    let c = client(&node.url).await;
    within("login", c.invoke("login", &json!({ "user": user })))
        .await
        .expect("login");
    let users = node.server.users();
    within("the socket indexed under its user", async {
        while users.local_sockets(user).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    c
}

async fn next_publication(sub: &mut herald_client::Subscription) -> herald_client::Publication {
    within("a publication", sub.next())
        .await
        .expect("the subscription goes on")
        .expect("a publication")
}

/// `publish`, `broadcast`, `history` (limit, since, reverse) and
/// `history_remove`, with a subscriber on `clients` receiving what the API
/// publishes on `api`.
pub async fn publish_and_history(api_node: &Node, clients: &Node) {
    let api = Api::new(api_node.addr);
    let channel = unique("hist:api-");
    let plain = unique("api-plain-");
    let c = client(&clients.url).await;
    let mut sub = within("subscribe", c.subscribe(channel.clone()))
        .await
        .expect("subscribe");
    let mut plain_sub = within("subscribe", c.subscribe(plain.clone()))
        .await
        .expect("subscribe");

    let first = api
        .ok("publish", json!({ "channel": channel, "data": { "n": 1 } }))
        .await;
    assert_eq!(first["offset"], 1, "{first}");
    let epoch = first["epoch"].as_str().expect("an epoch").to_owned();
    let p = next_publication(&mut sub).await;
    assert_eq!(p.data, json!({ "n": 1 }));
    assert_eq!(p.offset(), Some(1));
    for n in 2..=3 {
        let r = api
            .ok("publish", json!({ "channel": channel, "data": { "n": n } }))
            .await;
        assert_eq!(r, json!({ "offset": n, "epoch": epoch }));
        assert_eq!(next_publication(&mut sub).await.data, json!({ "n": n }));
    }
    // A channel without history: no offset.
    let r = api
        .ok("publish", json!({ "channel": plain, "data": "plain" }))
        .await;
    assert_eq!(r, json!({}));
    assert_eq!(next_publication(&mut plain_sub).await.data, json!("plain"));

    let r = api
        .ok(
            "broadcast",
            json!({ "channels": [channel, plain], "data": { "n": 4 } }),
        )
        .await;
    assert_eq!(
        r,
        json!({ "publications": [
            { "channel": channel, "offset": 4, "epoch": epoch },
            { "channel": plain },
        ] })
    );
    assert_eq!(next_publication(&mut sub).await.offset(), Some(4));
    assert_eq!(
        next_publication(&mut plain_sub).await.data,
        json!({ "n": 4 })
    );

    let offsets = |h: &Value| -> Vec<u64> {
        h["publications"]
            .as_array()
            .expect("publications")
            .iter()
            .map(|p| p["offset"].as_u64().expect("an offset"))
            .collect()
    };
    let h = api
        .ok("history", json!({ "channel": channel, "limit": 2 }))
        .await;
    assert_eq!(offsets(&h), [3, 4]);
    assert_eq!(
        (h["offset"].as_u64(), h["epoch"].as_str()),
        (Some(4), Some(&*epoch))
    );
    assert_eq!(h["publications"][0]["data"], json!({ "n": 3 }));
    let h = api
        .ok(
            "history",
            json!({ "channel": channel, "limit": 2, "reverse": true }),
        )
        .await;
    assert_eq!(offsets(&h), [4, 3]);
    let since = json!({ "offset": 1, "epoch": epoch });
    let h = api
        .ok("history", json!({ "channel": channel, "since": since }))
        .await;
    assert_eq!(offsets(&h), [2, 3, 4]);
    let before = json!({ "offset": 4, "epoch": epoch });
    let h = api
        .ok(
            "history",
            json!({ "channel": channel, "since": before, "reverse": true, "limit": 2 }),
        )
        .await;
    assert_eq!(offsets(&h), [3, 2], "paging back from offset 4");
    let h = api
        .ok("history", json!({ "channel": channel, "limit": 0 }))
        .await;
    assert_eq!(offsets(&h), Vec::<u64>::new());
    assert_eq!(h["offset"], 4);
    api.fails(
        "history",
        json!({ "channel": channel, "since": { "offset": 1, "epoch": "other" } }),
        422,
        "unrecoverable_position",
    )
    .await;
    api.fails("history", json!({ "channel": plain }), 422, "not_available")
        .await;

    api.ok("history_remove", json!({ "channel": channel }))
        .await;
    let r = api
        .ok("publish", json!({ "channel": channel, "data": { "n": 5 } }))
        .await;
    assert_eq!(r["offset"], 1, "a new stream after history_remove: {r}");
    assert_ne!(r["epoch"], epoch);
    api.fails(
        "history",
        json!({ "channel": channel, "since": since }),
        422,
        "unrecoverable_position",
    )
    .await;
    c.close().await;
}

/// `send`, `subscribe`, `unsubscribe` and `disconnect` reaching a user's
/// socket on `clients` from `api`: the server-side subscription to a
/// channel no client may subscribe to is taken over by the client when it
/// subscribes in answer to `#herald/subscribed`.
pub async fn users(api_node: &Node, clients: &Node) {
    let api = Api::new(api_node.addr);
    let user = unique("ann-");
    let c = logged_in(clients, &user).await;
    let mut events = c.events();
    let mut notes = c.receiver("note");
    let mut subscribed = c.receiver(herald::protocol::ext::SUBSCRIBED);

    api.ok(
        "send",
        json!({ "user": user, "event": "note", "data": { "hi": 1 } }),
    )
    .await;
    let note = within("the note", notes.next()).await.expect("a note");
    assert_eq!(note.expect("not lagged"), json!({ "hi": 1 }));
    api.fails(
        "send",
        json!({ "user": user, "event": "#publish", "data": 1 }),
        403,
        "forbidden",
    )
    .await;

    let inbox = format!("inbox:{user}");
    // No client may subscribe to inbox:* by itself.
    let refused = within("a refused subscribe", c.subscribe(inbox.clone())).await;
    assert!(refused.is_err(), "inbox:* is server-side only");
    api.ok("subscribe", json!({ "user": user, "channel": inbox }))
        .await;
    let push = within("#herald/subscribed", subscribed.next())
        .await
        .expect("a push")
        .expect("not lagged");
    assert_eq!(push["channel"], json!(inbox), "{push}");
    assert_eq!(push["offset"], 0, "{push}");
    assert!(push["epoch"].is_string(), "{push}");
    let mut sub = within("taking over the subscription", c.subscribe(inbox.clone()))
        .await
        .expect("the held channel is accepted");
    api.ok("publish", json!({ "channel": inbox, "data": "for ann" }))
        .await;
    let p = next_publication(&mut sub).await;
    assert_eq!((p.offset(), p.data), (Some(1), json!("for ann")));

    api.ok("unsubscribe", json!({ "user": user, "channel": inbox }))
        .await;
    let end = within("the end of the subscription", sub.next()).await;
    assert!(
        matches!(end, Some(Err(SubscriptionError::KickedOut { .. })) | None),
        "{end:?}"
    );
    let server = clients.server.clone();
    let channel = inbox.clone();
    within("the socket unsubscribed", async move {
        while server.subscriber_count(&channel) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    api.ok(
        "disconnect",
        json!({ "user": user, "code": 4500, "reason": "bye" }),
    )
    .await;
    within("the close", async {
        loop {
            match events.next().await {
                Some(ClientEvent::Closed { code, reason }) => {
                    assert_eq!((code, reason.as_str()), (4500, "bye"));
                    return;
                }
                Some(_) => {}
                None => panic!("the events ended without a close"),
            }
        }
    })
    .await;
    c.close().await;
}

/// `send`, `subscribe`, `unsubscribe` and `disconnect` (its default code,
/// 4104) reaching every socket of a user at once: two on `clients` and one
/// on `api_node` (three on one node when both are the same node).
pub async fn users_everywhere(api_node: &Node, clients: &Node) {
    let api = Api::new(api_node.addr);
    let user = unique("zoe-");
    let sockets = [
        logged_in(clients, &user).await,
        logged_in(clients, &user).await,
        logged_in(api_node, &user).await,
    ];
    let same = api_node.server.node_id() == clients.server.node_id();
    for (node, n) in [
        (clients, if same { 3 } else { 2 }),
        (api_node, if same { 3 } else { 1 }),
    ] {
        let users = node.server.users();
        let user = user.clone();
        within("every socket indexed under its user", async move {
            while users.local_sockets(&user).len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
    let mut notes: Vec<_> = sockets.iter().map(|c| c.receiver("note")).collect();
    let mut pushes: Vec<_> = sockets
        .iter()
        .map(|c| c.receiver(herald::protocol::ext::SUBSCRIBED))
        .collect();
    let mut events: Vec<_> = sockets.iter().map(Client::events).collect();

    api.ok(
        "send",
        json!({ "user": user, "event": "note", "data": "all" }),
    )
    .await;
    for (i, notes) in notes.iter_mut().enumerate() {
        let note = within(&format!("the note on socket {i}"), notes.next())
            .await
            .expect("a note");
        assert_eq!(note.expect("not lagged"), json!("all"), "socket {i}");
    }

    let inbox = format!("inbox:{user}");
    api.ok("subscribe", json!({ "user": user, "channel": inbox }))
        .await;
    let mut subs = Vec::new();
    for (i, (c, pushes)) in sockets.iter().zip(&mut pushes).enumerate() {
        let push = within(&format!("#herald/subscribed on socket {i}"), pushes.next())
            .await
            .expect("a push")
            .expect("not lagged");
        assert_eq!(push["channel"], json!(inbox), "socket {i}: {push}");
        subs.push(
            within("taking over the subscription", c.subscribe(inbox.clone()))
                .await
                .expect("the held channel is accepted"),
        );
    }
    api.ok(
        "publish",
        json!({ "channel": inbox, "data": "to every socket" }),
    )
    .await;
    for (i, sub) in subs.iter_mut().enumerate() {
        let p = next_publication(sub).await;
        assert_eq!(p.data, json!("to every socket"), "socket {i}");
    }
    api.ok("unsubscribe", json!({ "user": user, "channel": inbox }))
        .await;
    for (i, sub) in subs.iter_mut().enumerate() {
        let end = within(&format!("the end of socket {i}'s subscription"), sub.next()).await;
        assert!(
            matches!(end, Some(Err(SubscriptionError::KickedOut { .. })) | None),
            "socket {i}: {end:?}"
        );
    }

    api.ok("disconnect", json!({ "user": user })).await;
    for (i, events) in events.iter_mut().enumerate() {
        within(&format!("the close of socket {i}"), async {
            loop {
                match events.next().await {
                    Some(ClientEvent::Closed { code, .. }) => {
                        assert_eq!(code, 4104, "socket {i}");
                        return;
                    }
                    Some(_) => {}
                    None => panic!("the events of socket {i} ended without a close"),
                }
            }
        })
        .await;
    }
    for c in sockets {
        c.close().await;
    }
}

/// `presence`, `presence_stats` and `channels` (pattern, limit, the nodes
/// that answered), with a subscriber on each node.
pub async fn presence_and_channels(api_node: &Node, clients: &Node) {
    let api = Api::new(api_node.addr);
    let room = unique("hist:room-");
    let a = logged_in(clients, &unique("pat-")).await;
    let b = logged_in(api_node, &unique("sam-")).await;
    let _sa = within("subscribe", a.subscribe(room.clone()))
        .await
        .expect("subscribe");
    let _sb = within("subscribe", b.subscribe(room.clone()))
        .await
        .expect("subscribe");
    let _other = within("subscribe", a.subscribe(format!("{room}-other")))
        .await
        .expect("subscribe");

    let stats = json!({ "clients": 2, "users": 2 });
    within("presence of both sockets", async {
        while api.ok("presence_stats", json!({ "channel": room })).await != stats {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let p = api.ok("presence", json!({ "channel": room })).await;
    let clients_of = p["clients"].as_object().expect("clients");
    assert_eq!(clients_of.len(), 2, "{p}");
    assert!(clients_of.values().all(|c| c["user"].is_string()), "{p}");
    api.fails(
        "presence",
        json!({ "channel": unique("plain-") }),
        422,
        "not_available",
    )
    .await;

    let nodes: Vec<String> = {
        let mut ids = vec![
            api_node.server.node_id().to_owned(),
            clients.server.node_id().to_owned(),
        ];
        ids.dedup();
        ids
    };
    let all = api
        .ok("channels", json!({ "pattern": format!("{room}*") }))
        .await;
    assert_eq!(
        all["channels"],
        json!([
            { "channel": room, "subscribers": 2 },
            { "channel": format!("{room}-other"), "subscribers": 1 },
        ]),
        "{all}"
    );
    assert_eq!(all["truncated"], false);
    let mut answered: Vec<String> = serde_json::from_value(all["answered"].clone()).unwrap();
    answered.sort();
    let mut expected = nodes.clone();
    expected.sort();
    assert_eq!(answered, expected, "{all}");
    assert_eq!(all["missing"], json!([]));
    let one = api
        .ok(
            "channels",
            json!({ "pattern": format!("{room}*"), "limit": 1 }),
        )
        .await;
    assert_eq!(
        one["channels"],
        json!([{ "channel": room, "subscribers": 2 }])
    );
    assert_eq!(one["truncated"], true);
    api.fails("channels", json!({ "pattern": "[" }), 422, "invalid_value")
        .await;

    let info = api.ok("info", json!({})).await;
    assert_eq!(info["nodeId"], api_node.server.node_id());
    let mut seen: Vec<String> = info["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("an id").to_owned())
        .collect();
    seen.sort();
    assert_eq!(seen, expected, "{info}");
    a.close().await;
    b.close().await;
}

/// `batch`: replies in order, a failing command failing only itself.
pub async fn batch(api_node: &Node, clients: &Node) {
    let api = Api::new(api_node.addr);
    let channel = unique("hist:batch-");
    let c = client(&clients.url).await;
    let mut sub = within("subscribe", c.subscribe(channel.clone()))
        .await
        .expect("subscribe");
    let r = api
        .ok(
            "batch",
            json!({ "commands": [
                { "method": "publish", "params": { "channel": channel, "data": 1 } },
                { "method": "publish", "params": { "channel": "#herald/nodes", "data": 2 } },
                { "method": "nope" },
                { "method": "batch", "params": { "commands": [] } },
                { "method": "publish", "params": { "channel": channel } },
                { "method": "publish", "params": { "channel": channel, "data": 3 } },
                { "method": "history", "params": { "channel": channel } },
            ] }),
        )
        .await;
    let replies = r["replies"].as_array().expect("replies");
    assert_eq!(replies.len(), 7, "{r}");
    assert_eq!(replies[0]["result"]["offset"], 1, "{r}");
    assert_eq!(replies[1]["error"]["code"], "forbidden", "{r}");
    assert_eq!(replies[2]["error"]["code"], "not_found", "{r}");
    assert_eq!(replies[3]["error"]["code"], "invalid_value", "{r}");
    assert_eq!(replies[4]["error"]["code"], "bad_request", "{r}");
    assert_eq!(replies[5]["result"]["offset"], 2, "{r}");
    assert_eq!(replies[6]["result"]["offset"], 2, "{r}");
    assert_eq!(next_publication(&mut sub).await.data, json!(1));
    assert_eq!(next_publication(&mut sub).await.data, json!(3));
    c.close().await;
}
