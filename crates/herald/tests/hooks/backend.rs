//! A backend for the hooks, in the test: an axum app on 127.0.0.1:0 that
//! records every call (path, headers, JSON body) and answers with what the
//! test's answer function returns for it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;

/// One hook call the backend received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The path after `/hooks/`.
    pub hook: String,
    pub headers: HeaderMap,
    /// The raw body (for signatures).
    pub raw: Vec<u8>,
    pub body: Value,
}

type Answer =
    Arc<dyn Fn(Call) -> Pin<Box<dyn Future<Output = (StatusCode, Value)> + Send>> + Send + Sync>;

#[derive(Clone)]
struct App {
    answer: Answer,
    calls: Arc<Mutex<Vec<Call>>>,
    called: Arc<Notify>,
}

/// The running backend.
pub struct Backend {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    called: Arc<Notify>,
}

impl Backend {
    /// Serves `answer` for every hook until the test ends.
    pub async fn start<F, Fut>(answer: F) -> Backend
    where
        F: Fn(Call) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = (StatusCode, Value)> + Send + 'static,
    {
        let app = App {
            answer: Arc::new(move |call| Box::pin(answer(call))),
            calls: Arc::default(),
            called: Arc::default(),
        };
        let (calls, called) = (app.calls.clone(), app.called.clone());
        let router = axum::Router::new()
            .route("/hooks/{hook}", post(handle))
            .with_state(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Backend {
            addr,
            calls,
            called,
        }
    }

    /// The URL of hook `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/hooks/{name}", self.addr)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// Calls of hook `name` so far.
    pub fn calls_of(&self, name: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.hook == name)
            .collect()
    }

    /// Waits (bounded) until hook `name` was called `n` times.
    pub async fn wait_calls(&self, name: &str, n: usize) -> Vec<Call> {
        crate::common::within(&format!("{n} calls of the {name} hook"), async {
            loop {
                let notified = self.called.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let calls = self.calls_of(name);
                if calls.len() >= n {
                    return calls;
                }
                notified.await;
            }
        })
        .await
    }
}

async fn handle(
    State(app): State<App>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let call = Call {
        hook,
        headers,
        raw: raw.to_vec(),
        body,
    };
    app.calls.lock().push(call.clone());
    app.called.notify_waiters();
    let (status, value) = (app.answer)(call).await;
    (status, Json(value))
}
