//! The admin listener: what monitoring asks a running `mailvault serve`.
//!
//! - `GET /metrics`: the Prometheus text exposition format (docs/OPERATIONS.md §Metrics);
//! - `GET /healthz`: liveness, 200 `ok` whenever the process answers;
//! - `GET /readyz`: readiness, 200 `ready` when the store is open and can acknowledge mail and
//!   the listeners are bound, else 503 with a one-line reason.
//!
//! What "ready" means and what the metrics are is the [`Probe`]'s business (the binary
//! implements it over the store and its front doors); this module is only the HTTP side. The
//! listener has no authentication: it binds loopback by default and says nothing secret
//! (counts, ages, sizes), but it should stay on a private network.

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// The content type of the Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoints report. Both methods may block briefly (locks, a `statvfs`, one record
/// read): they run on a blocking thread, never on the async workers.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when ready to accept mail, else a short reason for the operator.
    fn readiness(&self) -> Result<(), String>;
    /// The metrics, in the Prometheus text format.
    fn metrics(&self) -> String;
}

/// The admin routes over `probe`.
pub fn router(probe: Arc<dyn Probe>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    probe: Arc<dyn Probe>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(probe))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(probe): State<Arc<dyn Probe>>) -> Response {
    match tokio::task::spawn_blocking(move || probe.readiness()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the check failed\n").into_response(),
    }
}

async fn metrics(State(probe): State<Arc<dyn Probe>>) -> Response {
    match tokio::task::spawn_blocking(move || probe.metrics()).await {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response(),
    }
}
