//! Times sequential publications on one Redis: plain `publish` against
//! `publish_with_history` (the publish script), each awaited before the
//! next, as one publisher does. Run by hand:
//!
//! ```text
//! cargo run --release -p herald-broker-redis --example redis_publish_timing -- [redis://127.0.0.1:6379] [count]
//! ```
//!
//! Uses a random prefix and removes the history it wrote.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::broker::HistoryPolicy;
use herald::{Broker, BrokerSink, Publication};
use herald_broker_redis::{RedisBroker, RedisOptions};
use serde_json::value::RawValue;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let count: u64 = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let prefix = format!("herald-timing-{:016x}:", rand::random::<u64>());
    let broker = RedisBroker::connect(
        &[url],
        RedisOptions {
            prefix,
            ..RedisOptions::default()
        },
    )
    .await?;
    broker.start(BrokerSink::new(|_| {}));
    let data = || RawValue::from_string(r#"{"text":"hello","n":12345}"#.to_owned()).ok();
    let policy = HistoryPolicy {
        size: 100,
        ttl: Duration::from_secs(60),
        namespace: Arc::from(""),
    };
    for round in 0..2 {
        let started = Instant::now();
        for _ in 0..count {
            broker
                .publish(Arc::new(Publication::new("timing/plain", data())))
                .await?;
        }
        let plain = started.elapsed();
        let started = Instant::now();
        for _ in 0..count {
            broker
                .publish_with_history("timing/history", data(), &policy)
                .await?;
        }
        let history = started.elapsed();
        let per = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
        println!(
            "round {round}: {count} publish: {plain:?} ({:.1} µs each); {count} publish_with_history: {history:?} ({:.1} µs each); ratio {:.2}",
            per(plain),
            per(history),
            history.as_secs_f64() / plain.as_secs_f64()
        );
    }
    broker.remove_history("timing/history", &policy).await?;
    broker.shutdown().await;
    Ok(())
}
