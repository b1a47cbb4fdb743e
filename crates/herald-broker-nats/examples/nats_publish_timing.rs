//! Figures, not checks: sequential throughput of `publish` and of
//! `publish_with_history` on the shared NATS, and the time to read a page
//! of 1,000 publications. Run by hand (it only prints, and loads the
//! shared server):
//!
//! ```text
//! cargo run --release -p herald-broker-nats --example nats_publish_timing
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Recorder, broker, publication, random_prefix, shared_url, within};
use herald::Broker;
use herald::broker::{HistoryPolicy, HistoryQuery, StreamPosition};
use herald_broker_nats::NatsOptions;
use serde_json::value::RawValue;

const N: u64 = 5_000;

fn rate(n: u64, took: Duration) -> String {
    format!("{:.0}/s ({took:?})", n as f64 / took.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    within(Duration::from_secs(300), "the measurement", async {
        let b = broker(
            &shared_url(),
            NatsOptions::default().with_prefix(random_prefix()),
        )
        .await;
        let rec = Recorder::start(&*b);
        b.subscribe("plain").await.expect("subscribe");
        b.subscribe("hist").await.expect("subscribe");

        let started = Instant::now();
        for seq in 0..N {
            b.publish(publication("plain", seq)).await.expect("publish");
        }
        let handed = started.elapsed();
        rec.wait("every plain publication back", |log| {
            log.get("plain").is_some_and(|v| v.len() as u64 == N)
        })
        .await;
        let plain = started.elapsed();

        let policy = HistoryPolicy {
            size: 1000,
            ttl: Duration::from_secs(300),
            namespace: Arc::from("bench"),
        };
        let started = Instant::now();
        for seq in 0..N {
            let data = RawValue::from_string(format!("{{\"seq\":{seq}}}")).expect("JSON");
            b.publish_with_history("hist", Some(data), &policy)
                .await
                .expect("publish with history");
        }
        let acked = started.elapsed();
        rec.wait("every history publication back", |log| {
            log.get("hist").is_some_and(|v| v.len() as u64 == N)
        })
        .await;
        let history = started.elapsed();

        let mut reads = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            let page = b
                .history(
                    "hist",
                    &policy,
                    &HistoryQuery {
                        since: None,
                        limit: 1000,
                    },
                )
                .await
                .expect("read");
            reads.push(started.elapsed());
            assert_eq!(page.publications.len(), 1000);
        }
        let top = b
            .history("hist", &policy, &HistoryQuery::default())
            .await
            .expect("position")
            .position;
        let started = Instant::now();
        let page = b
            .history(
                "hist",
                &policy,
                &HistoryQuery {
                    since: Some(StreamPosition::new(top.offset - 10, top.epoch.clone())),
                    limit: 1000,
                },
            )
            .await
            .expect("read");
        let recent = started.elapsed();
        assert_eq!(page.publications.len(), 10);
        let started = Instant::now();
        for _ in 0..100 {
            b.history("hist", &policy, &HistoryQuery::default())
                .await
                .expect("position");
        }
        let position = started.elapsed() / 100;

        eprintln!(
            "plain publish x{N}: handed to the client at {}, all delivered back at {}",
            rate(N, handed),
            rate(N, plain)
        );
        eprintln!(
            "publish_with_history x{N} (sequential, each acknowledged): {}, all delivered \
             back at {}",
            rate(N, acked),
            rate(N, history)
        );
        eprintln!(
            "history read of 1000 publications (size 1000): {reads:?}; since top-10: \
             {recent:?}; position only (limit 0): {position:?} each"
        );
        eprintln!("{:?}", b.stats());
        let naming = b.clone();
        common::delete_jetstream_state(&shared_url(), &naming, &["bench".to_owned()]).await;
        b.shutdown().await;
    })
    .await;
}
