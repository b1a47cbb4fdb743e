//! A rolling restart bigger than the suite's: two `herald-fixture` nodes
//! over a broker behind a round-robin balancer, N subscribed Rust clients,
//! publishers throughout; each node SIGTERMed and restarted in turn. Prints
//! the figures (time away max / p99 / median, publications, duplicates,
//! gaps, lost) and exits non-zero when anything was duplicated, skipped or
//! lost. See herald_testkit::rolling_restart.
//!
//! ```sh
//! cargo build --release -p herald-testkit --bins --examples
//! HERALD_FIXTURE_BIN=target/release/herald-fixture \
//!   target/release/examples/rolling_restart --broker redis://127.0.0.1:6379 --clients 10000
//! ```
//! (The channels get a random prefix, so the shared Redis is safe to use.)

use std::time::Duration;

use clap::Parser;
use herald_testkit::rolling_restart::{RollingOptions, rolling_restart};

/// Rolling restart of two Herald nodes under subscribed clients.
#[derive(Debug, Parser)]
struct Args {
    /// The nodes' broker (`herald serve --broker`).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    broker: String,
    /// Subscribed clients.
    #[arg(long, default_value_t = 10_000)]
    clients: usize,
    /// Channels.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Publishing clients.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Wait between two publications of a publisher, ms.
    #[arg(long, default_value_t = 10)]
    publish_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let limit = raise_nofile_limit();
    // Each client holds a socket here and two in the balancer.
    anyhow::ensure!(
        (args.clients as u64) * 3 + 256 <= limit,
        "{} clients need {} open files; the limit is {limit}",
        args.clients,
        args.clients * 3 + 256
    );
    let options = RollingOptions {
        clients: args.clients,
        channels: args.channels,
        publishers: args.publishers,
        publish_interval: Duration::from_millis(args.publish_interval_ms),
        ..RollingOptions::default()
    };
    let report = rolling_restart(&args.broker, &options).await;
    print!("{report}");
    anyhow::ensure!(
        report.duplicates == 0 && report.gaps == 0 && report.lost == 0,
        "duplicates, gaps or lost publications"
    );
    Ok(())
}

/// Raises the open-file soft limit to the hard limit; returns the limit.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to read into and write from.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}
