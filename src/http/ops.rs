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

/// Ready when the store is open (it is, or there would be no App) and the
/// definitions are loaded.
pub fn readyz(app: &App) -> Resp {
    let set = app.definitions.load();
    let loaded = set.valid().count();
    let status = if loaded > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        &json!({
            "status": if loaded > 0 { "ready" } else { "not_ready" },
            "definitions": loaded,
            "invalid_definitions": set.invalid_files().count(),
            "queue_depth": app.queue.depth(),
            "queue_capacity": app.queue.capacity(),
        }),
    )
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
