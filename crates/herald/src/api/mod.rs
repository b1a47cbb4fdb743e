//! The HTTP server API for backends: `POST /api/<method>` with a JSON
//! object of params, authorised by an API key, answering
//! `{"result":R}` (200) or `{"error":{"code":C,"message":M}}` with a status
//! that tells a caller's mistake (4xx) from a broker outage (503).
//!
//! It is how a backend in any language drives Herald: publish (through the
//! server's one publishing path, as server code), send to and disconnect
//! users, subscribe them to channels, read presence and history, list the
//! cluster's channels. Every call works on any node and acts cluster-wide
//! (user operations and the channel query travel over the broker; see
//! [`crate::cluster`]).
//!
//! * `auth`: the key ([`ApiKey`]) and its constant-time check.
//! * `error`: the error envelope and the status of each error.
//! * `methods`: one function per method, and the dispatch by name.
//! * `batch`: several commands in one call.
//! * `openapi`: the OpenAPI 3.1 document, served at `/api/openapi.json`.
//!
//! docs/api.md teaches it; docs/openapi.yaml is the reference.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use herald::api::{ApiKey, ApiOptions};
//!
//! let server = herald::Server::builder().build();
//! let key = ApiKey::new(std::env::var("HERALD_API_KEY").unwrap()).unwrap();
//! let app: axum::Router = server
//!     .router()
//!     .merge(server.api_router(ApiOptions::new(key)));
//! # let _ = app; Ok(()) }
//! ```

mod auth;
mod batch;
mod error;
mod methods;
mod openapi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde::Serialize;
use serde_json::value::RawValue;

pub use auth::{ApiKey, EmptyKey};
pub use openapi::{OPENAPI_YAML, openapi_json};

use crate::server::Server;
use error::{ApiError, codes};
use methods::Method;

/// Default of [`ApiOptions::max_body`]: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default of [`ApiOptions::query_timeout`]: 2 s.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How the API is served.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    key: ApiKey,
    max_body: usize,
    query_timeout: Duration,
}

impl ApiOptions {
    /// The API behind `key`, with the default limits.
    pub fn new(key: ApiKey) -> Self {
        Self {
            key,
            max_body: DEFAULT_MAX_BODY,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        }
    }

    /// The key the API checks.
    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    /// The largest request body, in bytes (default 1 MiB); a larger one is
    /// refused with 413 before it is read further.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long a cluster-wide query (`channels`) waits for the other
    /// nodes' answers (default 2 s); the nodes that did not answer by then
    /// are reported as missing.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }
}

/// The state of the API's routes.
pub(crate) struct Api {
    pub(crate) server: Server,
    key: ApiKey,
    max_body: usize,
    pub(crate) query_timeout: Duration,
}

/// The API's routes: `POST /api/<method>` and `GET /api/openapi.json`. See
/// [`Server::api_router`].
pub fn router<S: Clone + Send + Sync + 'static>(
    server: &Server,
    options: ApiOptions,
) -> axum::Router<S> {
    let api = Arc::new(Api {
        server: server.clone(),
        key: options.key,
        max_body: options.max_body,
        query_timeout: options.query_timeout,
    });
    axum::Router::new()
        .route("/api/openapi.json", get(openapi::route))
        .route(
            "/api/{method}",
            post(call_route).fallback(method_not_allowed),
        )
        .with_state(api)
}

/// A JSON response.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[derive(Serialize)]
struct Success<'a> {
    result: &'a RawValue,
}

async fn method_not_allowed() -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        "API methods are called with POST",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
    response
}

async fn call_route(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let method = Method::from_name(&name);
    let outcome = handle(&api, method, &name, request).await;
    let status = match &outcome {
        Ok(_) => StatusCode::OK,
        Err(e) => e.status,
    };
    crate::metrics::api_request(
        method.map_or("unknown", Method::name),
        status.as_u16(),
        started.elapsed(),
    );
    match outcome {
        Ok(result) => json(StatusCode::OK, &Success { result: &result }),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(method = %name, code = e.code, error = %e.message, "API call failed");
            } else {
                tracing::debug!(method = %name, code = e.code, error = %e.message, "API call refused");
            }
            e.into_response()
        }
    }
}

async fn handle(
    api: &Api,
    method: Option<Method>,
    name: &str,
    request: Request,
) -> Result<Box<RawValue>, ApiError> {
    if !api.key.authorizes(request.headers()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "a valid API key is required (Authorization: apikey KEY, or X-API-Key: KEY)",
        ));
    }
    let Some(method) = method else {
        return Err(ApiError::not_found(format!("no method {name:?}")));
    };
    let body = read_body(request, api.max_body).await?;
    let params: Option<&RawValue> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?,
        )
    };
    match method {
        Method::Batch => batch::run(api, params).await,
        method => methods::call(api, method, params).await,
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {max} bytes"),
    )
}

/// The request's body, at most `max` bytes.
async fn read_body(request: Request, max: usize) -> Result<bytes::Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    axum::body::to_bytes(request.into_body(), max)
        .await
        .map_err(|e| {
            let e = e.into_inner();
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large(max)
            } else {
                ApiError::bad_request(format!("cannot read the body: {e}"))
            }
        })
}
