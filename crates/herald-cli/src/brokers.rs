//! Choosing a broker from `--broker URL`.
//!
//! | URL | Broker |
//! |---|---|
//! | `memory` (default) | in-process, single node |
//! | `redis://HOST:PORT[,redis://HOST:PORT...]` | Redis pub/sub, one server or sharded over several (`herald-broker-redis`) |
//! | `redis+cluster://HOST:PORT[,HOST:PORT...]` | Redis Cluster sharded pub/sub (`herald-broker-redis`) |
//! | `nats://HOST:PORT[,nats://HOST:PORT...][?prefix=P]` | core NATS, one subject per channel (`herald-broker-nats`) |
//!
//! Each broker crate adds its schemes here.

use std::sync::Arc;

use herald::{Broker, MemoryBroker};

/// Connects the broker named by `url`.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Broker>> {
    let url = url.trim();
    if url.is_empty() || url == "memory" || url == "memory://" {
        return Ok(Arc::new(MemoryBroker::new()));
    }
    if url.starts_with("redis://") || url.starts_with("redis+cluster://") {
        return Ok(herald_broker_redis::from_url(url).await?);
    }
    if url.starts_with("nats://") {
        return Ok(herald_broker_nats::from_url(url).await?);
    }
    anyhow::bail!("unsupported broker URL {url:?}: expected memory")
}
