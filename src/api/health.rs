//! Liveness, readiness and metrics: what probes and Prometheus ask, without a token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::App;

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the catalog, the queue and the store all answer. The answer names the
/// component that failed, never why (the error is logged): probes need no more, and an
/// error text can carry hosts, paths or credentials.
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Value>) {
    let svc = &app.svc;
    let show = |component: &str, r: Result<(), String>| match r {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(component, "not ready: {e}");
            "unavailable"
        }
    };
    let catalog = show(
        "catalog",
        svc.catalog().ping().await.map_err(|e| e.to_string()),
    );
    let queue = show("queue", svc.queue.check().await.map_err(|e| e.to_string()));
    let store = show(
        "store",
        svc.store
            .exists("readyz")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    let ready = [catalog, queue, store].iter().all(|s| *s == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "catalog": catalog, "queue": queue, "store": store })),
    )
}

/// Prometheus metrics in the text exposition format (see [`crate::metrics`]).
pub async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::metrics().encode(),
    )
}

/// What a worker process serves (`vcw worker`): liveness and metrics, nothing else.
pub fn worker_router() -> axum::Router {
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .layer(axum::middleware::from_fn(super::request::tag))
}
