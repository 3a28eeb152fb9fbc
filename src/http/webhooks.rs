//! `/alerts/webhook/` and `/alerts/webhook/<driver>/`: the provider's raw
//! body in, durable jobs out. Each definition whose `trigger` matches one of
//! the alerts gets a run; when none does, the built-in pipeline runs
//! (`webhooks.default_route`). `GET` on these paths is a readiness probe.

use super::auth::verify_signature;
use super::pipelines::{builtin, enqueue};
use super::response::{ApiError, Resp, json};
use super::{App, body};
use crate::alerts;
use crate::config::DefaultRoute;
use crate::engine::{Engine, RunRequest};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

pub fn probe() -> Resp {
    json(StatusCode::OK, &json!({"status": "ready"}))
}

pub async fn accept(
    app: &App,
    driver: Option<&str>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let label = driver.unwrap_or("auto");
    let result = accept_inner(app, driver, req).await;
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(e) if e.status() == StatusCode::TOO_MANY_REQUESTS => "queue_full",
        Err(e) if e.status().is_client_error() => "rejected",
        Err(_) => "error",
    };
    app.metrics.webhook(label, outcome);
    result
}

async fn accept_inner(
    app: &App,
    driver: Option<&str>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    if let Some(d) = driver
        && !alerts::DRIVERS.contains(&d)
    {
        return Err(ApiError::not_found(
            "unknown_driver",
            format!(
                "no webhook driver `{d}`; known: {}",
                alerts::DRIVERS.join(", ")
            ),
        ));
    }
    let (parts, incoming) = req.into_parts();
    let config = app.config.load_full();
    let cfg = &config.server;
    let bytes = body::read(
        &parts.headers,
        incoming,
        cfg.max_webhook_body_bytes,
        cfg.request_timeout,
    )
    .await?;
    // Read the body as text and check its syntax without building a Value:
    // a storm's group can be tens of MB.
    let text = String::from_utf8(Vec::from(bytes)).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "the body is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    body::check_json(&text)?;
    // Route while reading: each alert is checked against every trigger and
    // dropped, so a group of any size costs the memory of one alert.
    let set = app.definitions.load();
    let triggered: Vec<_> = set
        .valid()
        .filter(|d| d.trigger.is_some())
        .cloned()
        .collect();
    let mut matched = vec![false; triggered.len()];
    let (source, alert_count) = alerts::scan_text(&text, driver, |alert| {
        for (i, d) in triggered.iter().enumerate() {
            if !matched[i]
                && d.trigger
                    .as_ref()
                    .is_some_and(|t| t.matches(&alert.source, &alert))
            {
                matched[i] = true;
            }
        }
    })
    .map_err(|e| {
        ApiError::bad_request(
            "invalid_payload",
            format!("cannot read the payload as alerts: {e}"),
        )
    })?;
    // A secret for the source (the path's driver, else the detected one)
    // makes its signature mandatory.
    if let Some(secret) = config.webhooks.secrets.get(&source) {
        verify_signature(secret, &parts.headers, text.as_bytes())?;
    }
    let mut targets: Vec<_> = triggered
        .into_iter()
        .zip(&matched)
        .filter(|(_, m)| **m)
        .map(|(d, _)| d)
        .collect();
    if targets.is_empty() && config.webhooks.default_route == DefaultRoute::Builtin {
        targets.push(builtin(app)?);
    }
    let payload = crate::payload::Payload::from_json_text(text);
    let trace_id = parts
        .headers
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let records: Vec<_> = targets
        .iter()
        .map(|d| {
            Engine::new_record(
                d,
                RunRequest {
                    payload: payload.clone(),
                    source: Some(source.clone()),
                    trace_id: trace_id.clone(),
                    ..RunRequest::default()
                },
            )
        })
        .collect();
    enqueue(app, &records).await?;
    let run_ids: Vec<&str> = records.iter().map(|r| r.run_id.as_str()).collect();
    let definitions: Vec<&str> = records.iter().map(|r| r.definition.as_str()).collect();
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"status": "accepted", "driver": source, "alerts": alert_count,
                "run_ids": run_ids, "definitions": definitions}),
    ))
}
