//! `GET /metrics` of a server serving on 127.0.0.1, with real sockets:
//! what crosses the wire shows in the Prometheus text, under the names the
//! catalogue gives.
//!
//! A test binary of its own: the Prometheus recorder is the process's
//! global recorder, and no other test may add to its counts.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestServer, bounded, fixture, http_request, within};
use herald::MemoryBroker;
use herald_testkit::api_scenarios::{API_KEY, Api, api_node};
use serde_json::json;

const GET_METRICS: &str = "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

/// The value of the series `series` (`name` or `name{labels}`) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until `cond` holds for the page (bounded), and returns it.
async fn scrape_until(
    addr: std::net::SocketAddr,
    what: &str,
    cond: impl Fn(&str) -> bool,
) -> String {
    within(what, async {
        loop {
            let page = http_request(addr, GET_METRICS).await;
            if cond(&page) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_page_counts_what_crosses_the_wire() {
    bounded(async {
        herald::metrics::Prometheus::install().expect("the first recorder of this process");
        let ts = TestServer::start(fixture().configure(|c| c.max_payload = 1024)).await;

        let mut subscriber = ts.client().await;
        subscriber.subscribe("news").await;
        let mut publisher = ts.client().await;
        let ack = publisher.publish("news", json!({"n": 1})).await;
        assert!(ack.get("error").is_none(), "{ack}");
        let frame = subscriber.recv().await;
        assert!(frame.contains("\"n\":1"), "{frame}");

        // Refused before any socket: not a WebSocket upgrade.
        let refused = http_request(
            ts.addr,
            "GET /socketcluster/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(refused.starts_with("HTTP/1.1 426"), "{refused}");

        // Over max_payload: closed with 1009, a limit violation.
        let mut big = ts.client().await;
        big.send_text("x".repeat(4096)).await;
        assert_eq!(big.expect_close().await.0, 1009);

        // Closed by the peer.
        let gone = ts.client().await;
        gone.close(1000, "bye").await;
        let page = scrape_until(ts.addr, "both closes to be counted", |p| {
            value(p, "herald_disconnections_total{code=\"1009\"}") == Some(1.0)
                && value(p, "herald_disconnections_total{code=\"1000\"}") == Some(1.0)
        })
        .await;

        let head = page.split("\r\n\r\n").next().unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        let expect = |series: &str, v: f64| {
            assert_eq!(value(&page, series), Some(v), "{series} in\n{page}");
        };
        expect("herald_connections", 2.0);
        expect("herald_handshakes_total", 4.0);
        expect("herald_subscriptions", 1.0);
        expect("herald_subscriptions_total", 1.0);
        expect("herald_channels", 1.0);
        expect("herald_publications_total", 1.0);
        expect("herald_deliveries_total", 1.0);
        expect(
            "herald_handshakes_refused_total{reason=\"bad_request\"}",
            1.0,
        );
        expect("herald_limit_violations_total{kind=\"message_size\"}", 1.0);
        expect("herald_broker_up{broker=\"memory\"}", 1.0);
        let at_least = |series: &str, v: f64| {
            let got = value(&page, series).unwrap_or_else(|| panic!("no {series} in\n{page}"));
            assert!(got >= v, "{series} = {got}, expected at least {v}");
        };
        // Four handshakes, a subscribe, a publish (and the oversized one is
        // refused before it counts).
        at_least("herald_messages_in_total", 6.0);
        at_least("herald_bytes_in_total", 100.0);
        // Four handshake replies, the subscribe's, the publication, the ack.
        at_least("herald_messages_out_total", 7.0);
        at_least("herald_bytes_out_total", 100.0);
        at_least("herald_publish_write_latency_seconds_count", 1.0);
        at_least(
            "herald_publish_write_latency_seconds_bucket{le=\"+Inf\"}",
            1.0,
        );
        for described in [
            "# HELP herald_connections ",
            "# TYPE herald_connections gauge",
            "# TYPE herald_handshakes_total counter",
            "# TYPE herald_publish_write_latency_seconds histogram",
            "# HELP herald_publish_write_latency_seconds ",
        ] {
            assert!(page.contains(described), "no {described:?} in\n{page}");
        }

        subscriber.close(1000, "").await;
        publisher.close(1000, "").await;
        ts.stop().await.expect("serve returns");
    })
    .await;
}

/// The HTTP API's three metrics, with the counts of what was called: a
/// request by method and status (a refused key, an unknown method and the
/// caller's mistakes included), its duration by method, and each command of
/// a batch by method and outcome. Only API calls that publish nothing and
/// open no socket, so that the counts of the test above stay its own when
/// both run in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_counted_by_method_status_and_outcome() {
    bounded(async {
        herald::metrics::Prometheus::install().expect("the first recorder of this process");
        let node = api_node(Arc::new(MemoryBroker::new()), "metrics").await;
        let api = Api::new(node.addr);
        let key = [("x-api-key", API_KEY)];

        api.ok("info", json!({})).await;
        api.ok("info", json!({})).await;
        let r = api.send(http::Method::POST, "/api/info", &[], "{}").await;
        assert_eq!(r.status, 401);
        api.fails(
            "publish",
            json!({ "channel": "#herald/nodes", "data": 1 }),
            403,
            "forbidden",
        )
        .await;
        api.fails("publish", json!({ "channel": "news" }), 400, "bad_request")
            .await;
        let r = api.send(http::Method::POST, "/api/nope", &key, "{}").await;
        assert_eq!(r.status, 404);
        let r = api
            .ok(
                "batch",
                json!({ "commands": [
                    { "method": "info" },
                    { "method": "info" },
                    { "method": "publish", "params": { "channel": "#herald/x", "data": 1 } },
                    { "method": "nope" },
                ] }),
            )
            .await;
        assert_eq!(r["replies"].as_array().map(Vec::len), Some(4), "{r}");

        let page = scrape_until(node.addr, "the batch to be counted", |p| {
            value(
                p,
                "herald_api_requests_total{method=\"batch\",status=\"200\"}",
            ) == Some(1.0)
        })
        .await;
        let expect = |series: &str, v: f64| {
            assert_eq!(value(&page, series), Some(v), "{series} in\n{page}");
        };
        for (labels, n) in [
            ("method=\"info\",status=\"200\"", 2.0),
            ("method=\"info\",status=\"401\"", 1.0),
            ("method=\"publish\",status=\"403\"", 1.0),
            ("method=\"publish\",status=\"400\"", 1.0),
            ("method=\"unknown\",status=\"404\"", 1.0),
            ("method=\"batch\",status=\"200\"", 1.0),
        ] {
            expect(&format!("herald_api_requests_total{{{labels}}}"), n);
        }
        assert!(
            !page.contains("herald_api_requests_total{method=\"publish\",status=\"200\"}"),
            "nothing was published:\n{page}"
        );
        for (method, n) in [
            ("info", 3.0),
            ("publish", 2.0),
            ("unknown", 1.0),
            ("batch", 1.0),
        ] {
            let labels = format!("method=\"{method}\"");
            expect(
                &format!("herald_api_request_duration_seconds_count{{{labels}}}"),
                n,
            );
            expect(
                &format!("herald_api_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}}"),
                n,
            );
            let sum = value(
                &page,
                &format!("herald_api_request_duration_seconds_sum{{{labels}}}"),
            )
            .unwrap_or_else(|| panic!("no duration sum of {method} in\n{page}"));
            assert!(sum > 0.0 && sum < 60.0, "{method}: {sum} s");
        }
        for (labels, n) in [
            ("method=\"info\",outcome=\"ok\"", 2.0),
            ("method=\"publish\",outcome=\"error\"", 1.0),
            ("method=\"unknown\",outcome=\"error\"", 1.0),
        ] {
            expect(&format!("herald_api_batch_commands_total{{{labels}}}"), n);
        }
        for described in [
            "# TYPE herald_api_requests_total counter",
            "# TYPE herald_api_request_duration_seconds histogram",
            "# TYPE herald_api_batch_commands_total counter",
        ] {
            assert!(page.contains(described), "no {described:?} in\n{page}");
        }
        node.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_second_install_returns_the_same_recorder() {
    let a = herald::metrics::Prometheus::install().expect("install");
    let b = herald::metrics::Prometheus::install().expect("install again");
    assert!(herald::metrics::Prometheus::installed().is_some());
    metrics::counter!("app_counter_total").increment(3);
    assert!(a.render().contains("app_counter_total 3"));
    assert!(b.render().contains("app_counter_total 3"));
}
