//! Definitions: list, detail with recent runs, validate, execute.

use super::pipelines::{enqueue_tracked, run_request, run_tracked};
use super::response::{ApiError, Resp, json};
use super::{App, body, is_async};
use crate::definition::{Definition, parse_definition};
use crate::store::RunQuery;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

pub fn list(app: &App) -> Resp {
    let mut items = app.definitions.load().summaries();
    for item in &mut items {
        let Some(name) = item["name"].as_str().map(str::to_string) else {
            continue;
        };
        schedule_state(app, &name, item);
    }
    json(
        StatusCode::OK,
        &json!({"count": items.len(), "results": items}),
    )
}

/// When a scheduled definition runs next, and the run holding its
/// schedule if it is held ([`crate::scheduler`]).
fn schedule_state(app: &App, name: &str, out: &mut serde_json::Value) {
    if let Some(next) = app.scheduler.next_run(name) {
        out["next_run"] = json!(next);
    }
    if let Some(run_id) = app.scheduler.held_by(name) {
        out["schedule_held_by"] = json!(run_id);
    }
}

fn unknown(app: &App, name: &str) -> ApiError {
    let set = app.definitions.load();
    ApiError::not_found(
        "definition_not_found",
        format!(
            "no definition named `{name}`; known: {}",
            set.names().join(", ")
        ),
    )
}

pub fn detail(app: &App, name: &str) -> Result<Resp, ApiError> {
    let set = app.definitions.load();
    let runs = |name: &str| {
        app.store
            .list_runs(&RunQuery {
                definition: Some(name.to_string()),
                limit: 10,
                ..RunQuery::default()
            })
            .map(|p| p.runs)
            .map_err(ApiError::store)
    };
    if let Some(d) = set.get(name) {
        let mut out = d.summary();
        schedule_state(app, name, &mut out);
        out["definition"] = d.document.clone();
        out["recent_runs"] = json!(runs(name)?);
        return Ok(json(StatusCode::OK, &out));
    }
    if let Some(inv) = set.invalid(name) {
        return Ok(json(
            StatusCode::OK,
            &json!({"name": name, "path": inv.path, "state": "invalid", "errors": inv.error.issues,
                    "recent_runs": runs(name)?}),
        ));
    }
    Err(unknown(app, name))
}

pub async fn validate(app: &App, name: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let bytes = body::read_api(app, req).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let set = app.definitions.load();
        if set.get(name).is_some() {
            return Ok(json(
                StatusCode::OK,
                &json!({"name": name, "valid": true, "errors": []}),
            ));
        }
        if let Some(inv) = set.invalid(name) {
            return Ok(json(
                StatusCode::OK,
                &json!({"name": name, "valid": false, "errors": inv.error.issues}),
            ));
        }
        return Err(unknown(app, name));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("invalid_body", "the definition is not UTF-8 text"))?;
    let errors = match parse_definition(name, "<request>", text, &app.handlers()) {
        Ok(_) => Vec::new(),
        Err(e) => e.issues,
    };
    Ok(json(
        StatusCode::OK,
        &json!({"name": name, "valid": errors.is_empty(), "errors": errors}),
    ))
}

fn runnable(app: &App, name: &str) -> Result<Arc<Definition>, ApiError> {
    let set = app.definitions.load();
    if let Some(d) = set.get(name) {
        return Ok(d);
    }
    if let Some(inv) = set.invalid(name) {
        return Err(ApiError::conflict(
            "definition_invalid",
            format!("definition `{name}` is invalid and cannot run"),
        )
        .with_details(json!(inv.error.issues)));
    }
    Err(unknown(app, name))
}

pub async fn execute(app: &App, name: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let asynchronous = is_async(&req, false)?;
    let definition = runnable(app, name)?;
    let request = run_request(app, req).await?;
    if asynchronous {
        let record = enqueue_tracked(app, definition, request).await?;
        return Ok(json(
            StatusCode::ACCEPTED,
            &json!({"status": "accepted", "run_id": record.run_id, "trace_id": record.trace_id, "definition": name}),
        ));
    }
    let result = run_tracked(app, definition, request).await?;
    Ok(json(StatusCode::OK, &json!(result)))
}

/// A full rescan of the definitions directory, answered file by file.
pub async fn reload(app: &App) -> Result<Resp, ApiError> {
    let reloader = app.reloader.clone();
    let report = tokio::task::spawn_blocking(move || reloader.rescan())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(json(StatusCode::OK, &json!(report)))
}
