//! `/alerts/webhook/` and `/alerts/webhook/<driver>/`: the provider's raw
//! body in, incidents updated and durable jobs out. Each definition whose
//! `trigger` matches an alert that changed gets a run; when none does, the
//! built-in pipeline runs (`webhooks.default_route`); when nothing changed
//! (a re-send), nothing runs. `GET` on these paths is a readiness probe.

use super::pipelines::{MAX_LABEL_BYTES, builtin, queue_error};
use super::response::{ApiError, Resp, json};
use super::{App, body, signature};
use crate::alerts;
use crate::config::DefaultRoute;
use crate::engine::{Engine, RunRequest};
use crate::intake;
use crate::store::Delivery;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// A UTF-8 byte-order mark, which some Windows tools put before JSON.
const BOM: char = '\u{feff}';

/// `GET` on a webhook path: whether a webhook would be accepted now — not
/// while the queue is full (a load balancer in front of several hosts then
/// sends elsewhere). Cheap: no flush, as an open path must be. (A disk
/// that fails the store stops herald, which then stops listening.)
pub fn probe(app: &App) -> Resp {
    let (depth, capacity) = (app.queue.depth(), app.queue.capacity());
    if depth >= capacity {
        let mut resp = json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "status": "not_ready",
                "reason": format!("the queue is full ({depth} of {capacity} jobs)"),
            }),
        );
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("5"),
        );
        return resp;
    }
    json(StatusCode::OK, &json!({"status": "ready"}))
}

/// The driver a webhook path names, as a label for `/metrics` and the log:
/// `auto` for none, `unknown` for one herald does not know (any other
/// string would add a series to /metrics for good).
pub fn driver_label(driver: Option<&str>) -> &'static str {
    match driver {
        None => "auto",
        Some(d) => alerts::detect::known(d).unwrap_or("unknown"),
    }
}

pub async fn accept(
    app: &App,
    driver: Option<&str>,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let label = driver_label(driver);
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
    let forced = match driver {
        Some(d) => Some(alerts::detect::known(d).map_err(|e| {
            ApiError::not_found("unknown_driver", format!("no webhook driver `{d}`: {e}"))
        })?),
        None => None,
    };
    // `?dry_run=true`: say what the body would do, change nothing.
    let dry_run = super::query_pairs(&req)
        .iter()
        .any(|(k, v)| k == "dry_run" && !matches!(v.as_str(), "false" | "0" | "no"));
    // An alert is not refused over a cosmetic header (a 400 is not retried:
    // the alert would be lost): a trace id that is not text, or too long to
    // label runs with, is left out and the runs get one of their own.
    let trace_id = req
        .headers()
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty() && t.len() <= MAX_LABEL_BYTES)
        .map(str::to_string);
    let peer = req
        .extensions()
        .get::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
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
    let mut text = String::from_utf8(Vec::from(bytes)).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!(
                "the body is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    // A UTF-8 byte-order mark (a file saved by a Windows tool, sent with
    // curl) is not JSON, and RFC 8259 lets a reader ignore it; a 400 would
    // not be retried and the alert would be lost. The signature is of the
    // body as sent, so the mark goes only once that is checked.
    let bom = if text.starts_with(BOM) {
        BOM.len_utf8()
    } else {
        0
    };
    body::check_json(&text[bom..])?;
    let source = match forced {
        Some(d) => d,
        None => alerts::detect_text(&text[bom..]).map_err(invalid_payload)?,
    };
    // A secret for the source (the path's driver, else the detected one)
    // makes its signature mandatory — checked before anything changes.
    if let Some(secret) = config.webhooks.secrets.get(source) {
        signature::verify(
            source,
            secret,
            &parts.headers,
            text.as_bytes(),
            std::time::SystemTime::now(),
        )?;
    }
    text.drain(..bom);
    let set = app.definitions.load();
    let triggered: Vec<_> = set
        .valid()
        .filter(|d| d.trigger.is_some())
        .cloned()
        .collect();
    if dry_run {
        let builtin_name = (config.webhooks.default_route == DefaultRoute::Builtin)
            .then_some(crate::definition::BUILTIN_NAME);
        let report = intake::dry_run(
            &app.store,
            &text,
            Some(source),
            &triggered,
            builtin_name,
            config.webhooks.reopen_window,
        )
        .map_err(intake_error)?;
        return Ok(json(StatusCode::OK, &report));
    }
    // Applied to incidents on the intake's apply thread, one delivery at a
    // time; its runs written on the write thread; then the flush to disk,
    // shared with concurrent deliveries.
    let delivery = WebhookDelivery {
        store: app.store.clone(),
        queue: app.queue.clone(),
        text,
        source: source.to_string(),
        triggered,
        builtin: match config.webhooks.default_route {
            DefaultRoute::Builtin => Some(builtin(app)?),
            DefaultRoute::None => None,
        },
        trace_id,
        reopen_window: config.webhooks.reopen_window,
    };
    let accepted = app
        .intake
        .run_then(move || delivery.apply())
        .await
        .map_err(ApiError::internal)??;
    let received = &accepted.received;
    app.metrics.incident_changes(&received.counts);
    if received.truncated > 0 {
        let driver = driver_label(Some(source));
        app.metrics.alerts_left_out(driver, received.truncated);
        app.refusals
            .note_truncated(driver, peer, received.truncated);
    }
    // A pure re-send wrote nothing: nothing to make durable.
    if received.wrote || !accepted.run_ids.is_empty() {
        app.queue.flush().await.map_err(queue_error)?;
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"status": "accepted", "driver": received.driver, "alerts": received.alert_count,
                "delivery_id": received.delivery_id, "changes": accepted.changes,
                "incident_ids": received.incident_ids, "truncated_alerts": received.truncated,
                "run_ids": accepted.run_ids, "definitions": accepted.definitions}),
    ))
}

/// One webhook body on its way into incidents and runs.
struct WebhookDelivery {
    store: crate::store::Store,
    queue: Arc<crate::engine::queue::Queue>,
    text: String,
    /// The driver: the path's, or the detected one.
    source: String,
    /// The valid definitions that have a trigger.
    triggered: Vec<Arc<crate::definition::Definition>>,
    /// The built-in pipeline when it is the default route.
    builtin: Option<Arc<crate::definition::Definition>>,
    trace_id: Option<String>,
    reopen_window: std::time::Duration,
}

impl WebhookDelivery {
    /// On the apply thread: the alerts change incidents, and the runs they
    /// start are built. Returns the writing, for the write thread.
    fn apply(self) -> WriteHalf {
        let WebhookDelivery {
            store,
            queue,
            text,
            source,
            triggered,
            builtin,
            trace_id,
            reopen_window,
        } = self;
        let delivery_id = intake::new_delivery_id();
        let received = match intake::receive(
            &mut store.book(),
            &text,
            Some(&source),
            &triggered,
            &delivery_id,
            reopen_window,
        ) {
            Ok(received) => received,
            Err(e) => {
                let e = intake_error(e);
                return Box::new(move || Err(e));
            }
        };
        let mut targets: Vec<_> = triggered
            .into_iter()
            .zip(&received.matched)
            .filter(|(_, m)| **m)
            .map(|(d, _)| d)
            .collect();
        if targets.is_empty()
            && received.material()
            && let Some(b) = builtin
        {
            targets.push(b);
        }
        let payload = crate::payload::Payload::from_json_text(text);
        let summary = Arc::new(received.summary());
        let records: Vec<_> = targets
            .iter()
            .map(|d| {
                Engine::new_record(
                    d,
                    RunRequest {
                        payload: payload.clone(),
                        source: Some(received.driver.clone()),
                        trace_id: trace_id.clone(),
                        incident_id: received.primary_incident().map(str::to_string),
                        intake: Some(summary.clone()),
                        ..RunRequest::default()
                    },
                )
            })
            .collect();
        let run_ids: Vec<String> = records.iter().map(|r| r.run_id.clone()).collect();
        // Until its runs and record are written, copies of these alerts wait
        // for this delivery before deciding.
        let flight = received
            .wrote
            .then(|| store.take_off(&received.delivery_id));
        let finish = finish_delivery(&store, &received, run_ids.clone());
        Box::new(move || {
            // On the write thread, while the next delivery is applied.
            let written = if records.is_empty() {
                finish().map_err(ApiError::store)
            } else {
                queue.write_then(&records, finish).map_err(queue_error)
            };
            drop(flight);
            written?;
            Ok(Accepted {
                definitions: records.iter().map(|r| r.definition.clone()).collect(),
                changes: summary["changes"].clone(),
                received,
                run_ids,
            })
        })
    }
}

/// The second half of a webhook's intake, run on the write thread.
type WriteHalf = Box<dyn FnOnce() -> Result<Accepted, ApiError> + Send>;

/// What the intake did with one webhook.
struct Accepted {
    received: intake::Received,
    run_ids: Vec<String>,
    definitions: Vec<String>,
    changes: serde_json::Value,
}

/// The writes that end a delivery: the incidents learn their runs, and the
/// delivery record says the runs are durable. Run on the intake's write
/// thread, after the runs are written.
pub fn finish_delivery(
    store: &crate::store::Store,
    received: &intake::Received,
    run_ids: Vec<String>,
) -> impl FnOnce() -> Result<(), crate::store::StoreError> + use<> {
    let store = store.clone();
    let incident_ids = received.incident_ids.clone();
    let wrote = received.wrote;
    let delivery = Delivery {
        id: received.delivery_id.clone(),
        at: chrono::Utc::now(),
        driver: received.driver.clone(),
        alert_count: received.alert_count,
        run_ids,
    };
    move || {
        store.add_incident_runs(&incident_ids, &delivery.run_ids)?;
        // A delivery that wrote no alert state has nothing to vouch for.
        if wrote {
            store.put_delivery(&delivery)?;
        }
        Ok(())
    }
}

pub fn invalid_payload(e: alerts::PayloadError) -> ApiError {
    ApiError::bad_request(
        "invalid_payload",
        format!("cannot read the payload as alerts: {e}"),
    )
}

pub fn intake_error(e: intake::IntakeError) -> ApiError {
    match e {
        intake::IntakeError::Payload(e) => invalid_payload(e),
        intake::IntakeError::Store(e) => ApiError::store(e),
    }
}
