//! The rolling restart (herald_testkit::rolling_restart) over a private
//! Redis: two `herald-fixture` nodes behind a round-robin balancer, 2,000
//! Rust clients on 20 channels with history and recovery, two publishers
//! throughout; node A is SIGTERMed and restarted, then node B. Every
//! subscriber ends with every offset exactly once, in order, nothing
//! acknowledged is lost, and no client is away longer than its backoff cap
//! plus the time to reconnect.

mod common;

use std::time::Duration;

use common::*;
use herald_testkit::rolling_restart::{RollingOptions, rolling_restart};

const LIMIT: Duration = Duration::from_secs(180);
/// Reconnecting and resubscribing 1,000 clients at once on a debug-build
/// node of a busy 2-core machine, beyond the backoff itself.
const RECONNECT_SLACK: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing_and_keeps_clients_away_no_longer_than_their_backoff() {
    init_tracing();
    let redis = RedisServer::start().await;
    let options = RollingOptions::default();
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
