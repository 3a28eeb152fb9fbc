//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use super::App;
use super::response::{Resp, json, text};
use hyper::StatusCode;
use serde_json::json;

/// The OpenAPI 3 document of every route, kept beside this file.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn healthz() -> Resp {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// Ready when the store can write and the definitions are loaded. "Can
/// write" is a flush, shared with any flush under way (so a probe costs
/// nothing under load, and an fsync when idle with unflushed writes).
pub async fn readyz(app: &App) -> Resp {
    let set = app.definitions.load();
    let loaded = set.valid().count();
    let store_failure = match app.store.flush_grouped().await {
        Ok(()) => None,
        Err(e) => Some(e.disk_failure().unwrap_or_else(|| {
            tracing::error!(error = %e, "readiness: the store cannot flush");
            "the store cannot flush; the details are in herald's log".to_string()
        })),
    };
    let ready = loaded > 0 && store_failure.is_none();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "definitions": loaded,
        "invalid_definitions": set.invalid_files().count(),
        "queue_depth": app.queue.depth(),
        "queue_capacity": app.queue.capacity(),
    });
    if let Some(cause) = store_failure {
        body["store"] = json!(format!("cannot write: {cause}"));
    }
    json(status, &body)
}

pub fn metrics(app: &App) -> Resp {
    app.metrics
        .set_store_bytes(crate::store::database_bytes(app.store.path()));
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        app.metrics.render(),
    )
}

pub fn openapi() -> Resp {
    text(StatusCode::OK, "application/json", OPENAPI.to_string())
}
