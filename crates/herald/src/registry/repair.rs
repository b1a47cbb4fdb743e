//! Filling a gap in a channel's stream from its history.
//!
//! One task per repair (a channel has at most one running): it reads the
//! publications after the last position the node delivered and hands them
//! to the channel's cursor, which releases them, and whatever it held
//! meanwhile, in order. A history that cannot be read (the broker is down)
//! is retried with backoff; after [`PATIENCE`] the repair gives up, and the
//! cursor reports the gap and delivers what it held, rather than holding a
//! channel back forever.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;
use super::sequencer::{Fetched, RepairRequest};
use crate::broker::{Broker, BrokerError, HistoryPolicy, HistoryQuery, StreamPosition};

/// How long a repair keeps trying to read the history.
pub(super) const PATIENCE: Duration = Duration::from_secs(30);
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Reads what `request` misses and completes it on the channel's cursor.
pub(super) async fn run(
    registry: Weak<Registry>,
    channel: Arc<str>,
    policy: HistoryPolicy,
    request: RepairRequest,
) {
    let started = Instant::now();
    let mut delay = FIRST_RETRY;
    loop {
        let Some(broker) = registry.upgrade().map(|r| r.broker.clone()) else {
            return;
        };
        let result = fetch(&*broker, &channel, &policy, &request.since).await;
        drop(broker);
        let Some(registry) = registry.upgrade() else {
            return;
        };
        match result {
            Ok(fetched) => {
                tracing::debug!(
                    channel = %channel,
                    since = request.since.offset,
                    read = fetched.publications.len(),
                    complete = fetched.complete,
                    "repaired a gap from the history"
                );
                registry.finish_repair(&channel, |c| c.complete(request.id, fetched));
                return;
            }
            Err(e) if started.elapsed() >= PATIENCE => {
                tracing::warn!(channel = %channel, error = %e, "cannot read the history to fill a gap; giving up");
                registry.finish_repair(&channel, |c| (c.abandon(request.id), None));
                return;
            }
            Err(e) => {
                tracing::debug!(channel = %channel, error = %e, retry_in = ?delay, "cannot read the history to fill a gap yet");
                if !registry.repairing(&channel) {
                    return;
                }
            }
        }
        drop(registry);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// The publications after `since`, and whether they fill the gap. When the
/// epoch changed, the new epoch's history from its start.
async fn fetch(
    broker: &dyn Broker,
    channel: &str,
    policy: &HistoryPolicy,
    since: &StreamPosition,
) -> Result<Fetched, BrokerError> {
    let query = HistoryQuery {
        since: Some(since.clone()),
        limit: policy.size,
    };
    let page = broker.history(channel, policy, &query).await?;
    if page.position.epoch == since.epoch {
        return Ok(Fetched {
            complete: page.recovers(since),
            publications: page.publications,
            position: page.position,
        });
    }
    let query = HistoryQuery {
        since: Some(StreamPosition::new(0, page.position.epoch.clone())),
        limit: policy.size,
    };
    let fresh = broker.history(channel, policy, &query).await?;
    Ok(Fetched {
        complete: false,
        publications: fresh.publications,
        position: fresh.position,
    })
}
