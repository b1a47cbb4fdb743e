//! The in-process broker: one node, nothing else to run.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use super::{Broker, BrokerError, BrokerSink, Publication};

/// Delivers every publication straight back to this node's subscribers. The
/// default broker: a single Herald process needs nothing else.
#[derive(Debug, Default)]
pub struct MemoryBroker {
    sink: OnceLock<BrokerSink>,
}

impl MemoryBroker {
    /// A new in-process broker.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn start(&self, sink: BrokerSink) {
        let _ = self.sink.set(sink);
        metrics::gauge!("herald_broker_up", "broker" => "memory").set(1.0);
    }

    async fn subscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn unsubscribe(&self, _channel: &str) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(&self, publication: Arc<Publication>) -> Result<(), BrokerError> {
        match self.sink.get() {
            Some(sink) => {
                sink.deliver(publication);
                Ok(())
            }
            None => Err(BrokerError {
                broker: "memory",
                message: "broker used before start".into(),
            }),
        }
    }
}
