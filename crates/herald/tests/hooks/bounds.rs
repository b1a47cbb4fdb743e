//! The concurrency bounds: per socket and per node, a call over the bound
//! fails at once with `HookOverloadedError` (nothing queues), and the
//! latency metric counts every call with its hook and outcome.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Semaphore;

use crate::backend::Backend;
use crate::common::*;
use crate::{hook, ok, server};

/// A backend whose RPC answers wait for a permit of `gate`.
async fn gated(gate: Arc<Semaphore>) -> Backend {
    Backend::start(move |_| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            ok(json!({"data": "done"}))
        }
    })
    .await
}

#[tokio::test]
async fn calls_over_the_socket_bound_fail_at_once() {
    bounded(async {
        let prometheus = herald::metrics::Prometheus::install().unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let backend = gated(gate.clone()).await;
        let url = backend.url("rpc");
        let server = server(|c| {
            c.hooks.rpc = Some(hook(url));
            c.hooks.max_concurrent_per_socket = 2;
        })
        .await;
        let mut client = server.client().await;
        let first = client.cid();
        let second = client.cid();
        for cid in [first, second] {
            client
                .send_json(json!({"event": "work", "data": null, "cid": cid}))
                .await;
        }
        backend.wait_calls("rpc", 2).await;
        let e = client.invoke("work", json!(null)).await.unwrap_err();
        assert_eq!(e["name"], "HookOverloadedError", "{e}");
        assert!(e["message"].as_str().unwrap().contains("socket"), "{e}");
        // Another socket is not held up by this one's bound.
        let mut other = server.client().await;
        let other_cid = other.cid();
        other
            .send_json(json!({"event": "work", "data": null, "cid": other_cid}))
            .await;
        backend.wait_calls("rpc", 3).await;
        gate.add_permits(3);
        for cid in [first, second] {
            assert_eq!(client.reply_to(cid).await["data"], "done");
        }
        assert_eq!(other.reply_to(other_cid).await["data"], "done");
        assert_eq!(
            backend.calls_of("rpc").len(),
            3,
            "the refused call was never sent"
        );

        let text = prometheus.render();
        for outcome in ["allow", "overloaded"] {
            let series =
                format!("herald_hook_duration_seconds_count{{hook=\"rpc\",outcome=\"{outcome}\"}}");
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        assert!(
            text.contains(
                "herald_hook_duration_seconds_bucket{hook=\"rpc\",outcome=\"allow\",le=\"0.001\"}"
            ),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn calls_over_the_node_bound_fail_at_once() {
    bounded(async {
        let gate = Arc::new(Semaphore::new(0));
        let backend = gated(gate.clone()).await;
        let url = backend.url("rpc");
        let server = server(|c| {
            c.hooks.rpc = Some(hook(url));
            c.hooks.max_concurrent = 1;
        })
        .await;
        let mut a = server.client().await;
        let mut b = server.client().await;
        let cid = a.cid();
        a.send_json(json!({"event": "work", "data": null, "cid": cid}))
            .await;
        backend.wait_calls("rpc", 1).await;
        let e = b.invoke("work", json!(null)).await.unwrap_err();
        assert_eq!(e["name"], "HookOverloadedError", "{e}");
        assert!(e["message"].as_str().unwrap().contains("node"), "{e}");
        gate.add_permits(1);
        assert_eq!(a.reply_to(cid).await["data"], "done");
        // The permit is back: the next call goes through.
        gate.add_permits(1);
        assert_eq!(b.call("work", json!(null)).await, "done");
    })
    .await;
}
