//! Choosing a broker from `--broker URL`.
//!
//! | URL | Broker |
//! |---|---|
//! | `memory` (default) | in-process, single node |
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
    anyhow::bail!("unsupported broker URL {url:?}: expected memory")
}
