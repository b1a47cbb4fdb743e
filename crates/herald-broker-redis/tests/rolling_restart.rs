//! The rolling restart (herald_testkit::rolling_restart) over a private
//! Redis: two `herald-fixture` nodes behind a round-robin balancer, 300
//! Rust clients on 10 channels with history and recovery, two publishers
//! throughout; node A is taken out of the rotation, SIGTERMed and
//! restarted, then node B. Every subscriber ends with every offset exactly
//! once, in order, nothing acknowledged is lost, and no client is away
//! longer than its backoff cap plus the time to reconnect.
//!
//! 300 clients because everything here is a debug build sharing two cores
//! (reconnecting costs ~10 ms of CPU per client in debug: with 1,000 clients
//! a node's clients are away for seconds just queueing). The bigger runs,
//! in release builds, are the `rolling_restart` example's (figures in
//! docs/benchmarks.md, "Rolling restart").

mod common;

use std::time::Duration;

use common::*;
use herald_testkit::rolling_restart::{RollingOptions, rolling_restart};

const LIMIT: Duration = Duration::from_secs(180);
/// Reconnecting and resubscribing the 150–300 clients of a node at once,
/// debug builds on a busy 2-core machine, beyond the backoff itself
/// (measured: about 1.4 s at most).
const RECONNECT_SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing_and_keeps_clients_away_no_longer_than_their_backoff() {
    init_tracing();
    let redis = RedisServer::start().await;
    let options = RollingOptions {
        clients: 300,
        channels: 10,
        ..RollingOptions::default()
    };
    let report = within(
        LIMIT,
        "the rolling restart",
        rolling_restart(&redis.url(), &options),
    )
    .await;
    println!("{report}");
    assert_eq!(report.duplicates, 0, "{report}");
    assert_eq!(report.gaps, 0, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert!(report.publications > 100, "{report}");
    // Everyone was moved at least once (clients on the first node twice).
    assert!(report.reconnections >= options.clients as u64, "{report}");
    assert!(
        report.away_max <= options.reconnect.max_delay + RECONNECT_SLACK,
        "{report}"
    );
    // A node going away closes with 1001 (going away) or, with graceful
    // drain, 1012 (reconnect elsewhere); nothing else.
    assert!(
        report
            .close_codes
            .keys()
            .all(|c| [1001, 1006, 1012].contains(c)),
        "{report}"
    );
}
