//! Shared by the integration tests: starting servers, the scenarios, and
//! small helpers that wait on signals with a bound instead of sleeping.
#![allow(dead_code)]

pub mod recovery;
pub mod scenarios;
pub mod scripted;
pub mod server;

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt as _;
use herald_client::{
    Client, ClientBuilder, ClientEvent, Events, Publication, ReconnectPolicy, Subscription,
    SubscriptionError,
};
use serde_json::Value;

// Used by the scenario suites; the scripted-server suites use the rest.
#[allow(unused_imports)]
pub use server::{Server, ServerOptions, Target, TargetKind};

/// Upper bound of a whole scenario.
pub const SCENARIO: Duration = Duration::from_secs(60);
/// Upper bound of one awaited step.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs a scenario with an upper bound on its duration.
pub async fn bounded(scenario: impl Future<Output = ()>) {
    tokio::time::timeout(SCENARIO, scenario)
        .await
        .expect("scenario did not finish in time");
}

/// Awaits `fut` for at most [`STEP`]; `what` names it in the failure.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A builder with test-friendly timeouts and a fast reconnect.
pub fn builder(t: &Target) -> ClientBuilder {
    builder_for(&t.url)
}

/// [`builder`] for any URL (a scripted server's).
pub fn builder_for(url: &str) -> ClientBuilder {
    Client::builder(url)
        .ack_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .reconnect(ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_millis(50),
            multiplier: 2.0,
            max_delay: Duration::from_millis(500),
        })
}

pub async fn connect(t: &Target) -> Client {
    within("connect", builder(t).connect())
        .await
        .expect("connect")
}

/// The next publication; panics on anything else.
pub async fn next_pub(sub: &mut Subscription) -> Publication {
    match within(&format!("a publication on {}", sub.channel()), sub.next()).await {
        Some(Ok(p)) => p,
        other => panic!("expected a publication on {}, got {other:?}", sub.channel()),
    }
}

/// The next item that is not a publication.
pub async fn next_end(sub: &mut Subscription) -> Option<SubscriptionError> {
    match within(&format!("the end of {}", sub.channel()), sub.next()).await {
        Some(Ok(p)) => panic!("expected the end of {}, got {p:?}", sub.channel()),
        Some(Err(e)) => Some(e),
        None => None,
    }
}

/// The first event matching `pred` (earlier ones are skipped).
pub async fn wait_event(
    events: &mut Events,
    what: &str,
    pred: impl Fn(&ClientEvent) -> bool,
) -> ClientEvent {
    within(what, async {
        loop {
            match events.next().await {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

/// An HS256 token for `claims`, signed with `secret`.
pub fn mint(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign token")
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// One `#[tokio::test]` per scenario, each with its own server of `$kind`.
#[macro_export]
macro_rules! scenario_tests {
    ($kind:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let server = common::Server::start($kind, common::ServerOptions::default()).await;
                common::bounded(common::scenarios::$name(server.target())).await;
            }
        )*
    };
}
