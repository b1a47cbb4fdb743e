//! `GET /metrics` in the Prometheus text format.
//!
//! The recorder is `metrics-exporter-prometheus` (the exporter of the
//! `metrics` project), installed as the process's global recorder without
//! its own HTTP listener: Herald serves the text on its own port, next to
//! the WebSocket endpoint and the status routes, over TLS when the server
//! has it. The rendered page is the recorder's output followed by Herald's
//! pre-aggregated latency histogram (see `latency`).

use std::sync::Mutex;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::latency::publish_write_latency;
use super::names::PUBLISH_WRITE_LATENCY;
use super::{CATALOGUE, describe};

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The process already has another global `metrics` recorder.
    #[error("another metrics recorder is already installed in this process")]
    RecorderInstalled,
}

/// Herald's Prometheus recorder: installed once per process, then shared.
#[derive(Clone)]
pub struct Prometheus {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prometheus")
    }
}

static INSTALLED: Mutex<Option<Prometheus>> = Mutex::new(None);

/// How often histograms recorded through the facade (by the application;
/// Herald records none) are drained when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

impl Prometheus {
    /// Installs the Prometheus recorder as the process's global `metrics`
    /// recorder and describes every Herald metric to it; later calls return
    /// the same recorder. Install it before building servers: a server
    /// binds its hot-path counters to the recorder in place when it is
    /// built.
    ///
    /// Within a Tokio runtime it also starts the recorder's upkeep (every
    /// 5 s), which bounds the memory of histograms the application records
    /// through the facade when nothing scrapes.
    pub fn install() -> Result<Prometheus, MetricsError> {
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = installed.as_ref() {
            return Ok(p.clone());
        }
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(super::names::API_REQUEST_DURATION.to_owned()),
                &super::latency::BOUNDS,
            )
            // Refused only for an empty list of buckets.
            .expect("the latency bounds are not empty")
            .install_recorder()
            .map_err(|_| MetricsError::RecorderInstalled)?;
        describe();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let upkeep = handle.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP);
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
        }
        let p = Prometheus { handle };
        *installed = Some(p.clone());
        Ok(p)
    }

    /// The recorder, if [`Prometheus::install`] ran in this process.
    pub fn installed() -> Option<Prometheus> {
        INSTALLED.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let help = CATALOGUE
            .iter()
            .find(|m| m.name == PUBLISH_WRITE_LATENCY)
            .map_or("", |m| m.help);
        publish_write_latency().render(PUBLISH_WRITE_LATENCY, help, &mut text);
        text
    }

    /// An axum router answering `GET /metrics` with [`Prometheus::render`].
    pub fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        let this = self.clone();
        axum::Router::new().route(
            "/metrics",
            get(move || {
                let this = this.clone();
                async move { this.response() }
            }),
        )
    }

    fn response(&self) -> Response {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            self.render(),
        )
            .into_response()
    }
}
