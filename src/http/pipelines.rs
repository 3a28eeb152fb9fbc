//! Runs: the built-in pipeline (async and sync), listing, detail, resume.

use super::response::{ApiError, Resp, json};
use super::webhooks::finish_delivery;
use super::{App, body, is_async, query_pairs};
use crate::definition::{BUILTIN_NAME, Definition};
use crate::engine::queue::QueueError;
use crate::engine::{Engine, EngineError, RunRequest};
use crate::intake;
use crate::store::{PipelineRun, RunQuery, RunStatus};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// The longest `source`, `trace_id`, `environment` or `incident_id` a
/// request may name: they label runs, and each listing repeats them.
pub const MAX_LABEL_BYTES: usize = 256;

/// The 400 for a label over [`MAX_LABEL_BYTES`].
pub fn too_long(what: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_body",
        format!("`{what}` is longer than {MAX_LABEL_BYTES} bytes"),
    )
}

/// Reads `{payload, source?, trace_id?, environment?, incident_id?}`.
pub async fn run_request(app: &App, req: Request<Incoming>) -> Result<RunRequest, ApiError> {
    let bytes = body::read_api(app, req).await?;
    let value = body::json(&bytes)?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object like {\"payload\": {...}}",
        ));
    };
    let payload = map.remove("payload").ok_or_else(|| {
        ApiError::bad_request(
            "invalid_body",
            "`payload` is required (the alert or data to run on)",
        )
    })?;
    let mut text = |key: &'static str| -> Result<Option<String>, ApiError> {
        match map.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() > MAX_LABEL_BYTES => Err(too_long(key)),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad_request(
                "invalid_body",
                format!("`{key}` must be a string"),
            )),
        }
    };
    Ok(RunRequest {
        payload: crate::payload::Payload::from_value(payload),
        source: Some(text("source")?.unwrap_or_else(|| "api".to_string())),
        trace_id: text("trace_id")?,
        environment: text("environment")?,
        incident_id: text("incident_id")?,
        intake: None,
    })
}

/// Whether a run's payload is applied to incidents first: its definition
/// has an ingest node, and there is a payload.
fn tracks(definition: &Definition, request: &RunRequest) -> bool {
    request.payload.text().is_some() && definition.nodes.iter().any(|n| n.node_type == "ingest")
}

/// On the intake thread: applies the request's payload to incidents when
/// it reads as alerts (anything else runs as it is, and the ingest node, if
/// any, says what is wrong with it), builds the run's record, and calls
/// `then` with it and the delivery's finishing writes — all before the next
/// delivery is looked at.
async fn on_intake<T: Send + 'static>(
    app: &App,
    definition: Arc<Definition>,
    mut request: RunRequest,
    then: impl FnOnce(&PipelineRun, Option<Finish>) -> Result<T, ApiError> + Send + 'static,
) -> Result<(PipelineRun, T, Option<intake::Received>), ApiError> {
    let store = app.store.clone();
    let window = app.config.load().webhooks.reopen_window;
    app.intake
        .run(move || {
            let text = request.payload.text().unwrap_or_default();
            let driver = request
                .source
                .as_deref()
                .filter(|s| crate::alerts::detect::known(s).is_ok());
            let delivery = intake::new_delivery_id();
            let received =
                match intake::receive(&mut store.book(), text, driver, &[], &delivery, window) {
                    Ok(received) => Some(received),
                    Err(intake::IntakeError::Payload(_)) => None,
                    Err(intake::IntakeError::Store(e)) => return Err(ApiError::store(e)),
                };
            if let Some(received) = &received {
                request.intake = Some(Arc::new(received.summary()));
                if request.incident_id.is_none() {
                    request.incident_id = received.primary_incident().map(str::to_string);
                }
            }
            let record = Engine::new_record(&definition, request);
            let finish = received.as_ref().map(|r| -> Finish {
                Box::new(finish_delivery(&store, r, vec![record.run_id.clone()]))
            });
            let out = then(&record, finish)?;
            Ok((record, out, received))
        })
        .await
        .map_err(ApiError::internal)?
}

/// The writes that finish a delivery (see [`finish_delivery`]).
type Finish = Box<dyn FnOnce() -> Result<(), crate::store::StoreError> + Send>;

/// Queues a run durably; when its payload changed incidents, the delivery
/// is finished in the same durable write.
pub async fn enqueue_tracked(
    app: &App,
    definition: Arc<Definition>,
    request: RunRequest,
) -> Result<PipelineRun, ApiError> {
    if !tracks(&definition, &request) {
        let record = Engine::new_record(&definition, request);
        enqueue(app, std::slice::from_ref(&record)).await?;
        return Ok(record);
    }
    let queue = app.queue.clone();
    let (record, (), received) = on_intake(app, definition, request, move |record, finish| {
        let finish = finish.unwrap_or_else(|| Box::new(|| Ok(())));
        queue
            .write_then(std::slice::from_ref(record), finish)
            .map_err(queue_error)
    })
    .await?;
    if let Some(r) = &received {
        app.metrics.incident_changes(&r.counts);
    }
    app.queue.flush().await.map_err(queue_error)?;
    Ok(record)
}

/// Runs one definition now; a tracked delivery is finished before it runs.
pub async fn run_tracked(
    app: &App,
    definition: Arc<Definition>,
    request: RunRequest,
) -> Result<crate::engine::RunResult, ApiError> {
    let record = if tracks(&definition, &request) {
        let (record, (), received) =
            on_intake(app, definition.clone(), request, |_, finish| match finish {
                Some(finish) => finish().map_err(ApiError::store),
                None => Ok(()),
            })
            .await?;
        if let Some(r) = &received {
            app.metrics.incident_changes(&r.counts);
        }
        record
    } else {
        Engine::new_record(&definition, request)
    };
    let engine = app.engine.clone();
    detached(async move { engine.run_record(&definition, record).await })
        .await?
        .map_err(engine_error)
}

/// Runs a sync run on a task of its own. A caller that hangs up makes
/// hyper drop the request's future; a run awaited in it would stop at its
/// next await, mid-stage, and stay unfinished for good. On its own task it
/// finishes and is recorded as if the caller had waited.
async fn detached<T: Send + 'static>(
    run: impl Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(run).await.map_err(ApiError::internal)
}

pub fn builtin(app: &App) -> Result<Arc<Definition>, ApiError> {
    app.definitions
        .load()
        .get(BUILTIN_NAME)
        .ok_or_else(|| ApiError::internal("the built-in pipeline is not loaded"))
}

/// Queues runs durably and answers what `Queue::enqueue` says.
pub async fn enqueue(app: &App, records: &[crate::store::PipelineRun]) -> Result<(), ApiError> {
    app.queue.enqueue(records).await.map_err(queue_error)
}

pub fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::Full { capacity } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!("the queue is full ({capacity} jobs waiting); retry later"),
        )
        .with_header("retry-after", "5"),
        QueueError::Flush(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_durable",
            "the job could not be written to disk; retry later",
        )
        .with_details(json!([m]))
        .with_header("retry-after", "10"),
        QueueError::Store(e) => ApiError::store(e),
    }
}

pub fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::RunNotFound(id) => {
            ApiError::not_found("run_not_found", format!("no run with id {id}"))
        }
        EngineError::NotResumable { run_id, why } => ApiError::conflict(
            "not_resumable",
            format!("run {run_id} cannot be resumed: {why}"),
        ),
        EngineError::Store(e) => ApiError::store(e),
        other => ApiError::internal(other),
    }
}

pub async fn accept(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let request = run_request(app, req).await?;
    let definition = builtin(app)?;
    let record = enqueue_tracked(app, definition, request).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &json!({"status": "accepted", "run_id": record.run_id, "trace_id": record.trace_id, "definition": record.definition}),
    ))
}

pub async fn sync(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let request = run_request(app, req).await?;
    let definition = builtin(app)?;
    let result = run_tracked(app, definition, request).await?;
    Ok(json(StatusCode::OK, &json!(result)))
}

pub fn list(app: &App, req: &Request<Incoming>) -> Result<Resp, ApiError> {
    let mut query = RunQuery {
        limit: 50,
        ..RunQuery::default()
    };
    for (key, value) in query_pairs(req) {
        let bad = |m: String| ApiError::bad_request("invalid_parameter", m);
        match key.as_str() {
            "status" => {
                query.status = Some(RunStatus::parse(&value).ok_or_else(|| {
                    let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                    bad(format!("status `{value}` is not one of {}", all.join(", ")))
                })?)
            }
            "definition" => query.definition = Some(value),
            "source" => query.source = Some(value),
            "since" => query.since = Some(parse_since(&value, chrono::Utc::now()).map_err(bad)?),
            "limit" => query.limit = super::parse_limit(&value)?,
            "cursor" => {
                if ulid::Ulid::from_string(&value).is_err() {
                    return Err(bad(format!("cursor `{value}` is not a run id")));
                }
                query.cursor = Some(value)
            }
            other => {
                return Err(bad(format!(
                    "unknown parameter `{other}`; known: status, definition, source, since, limit, cursor"
                )));
            }
        }
    }
    let page = app.store.list_runs(&query).map_err(ApiError::store)?;
    let mut out =
        json!({"count": page.runs.len(), "next_cursor": page.next_cursor, "results": page.runs});
    // An empty page for a misspelt name would otherwise look like "no runs".
    if page.runs.is_empty()
        && let Some(name) = &query.definition
        && let Some(hint) =
            crate::definition::unknown_definition_hint(name, &app.definitions.load().names())
    {
        out["hint"] = json!(hint);
    }
    Ok(json(StatusCode::OK, &out))
}

pub fn detail(app: &App, run_id: &str) -> Result<Resp, ApiError> {
    let run = app
        .store
        .get_run(run_id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("run_not_found", format!("no run with id {run_id}")))?;
    let stages = app.store.stages(run_id).map_err(ApiError::store)?;
    let mut out = json!(run);
    out["payload"] = json!(run.payload);
    out["intake"] = json!(run.intake);
    out["stages"] = json!(stages);
    Ok(json(StatusCode::OK, &out))
}

pub async fn resume(app: &App, run_id: &str, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let asynchronous = is_async(&req, false)?;
    let run = app
        .store
        .get_run(run_id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found("run_not_found", format!("no run with id {run_id}")))?;
    if let Some(why) = app.engine.not_resumable(&run).map_err(ApiError::store)? {
        return Err(engine_error(EngineError::NotResumable {
            run_id: run_id.to_string(),
            why,
        }));
    }
    let definition = app.definitions.load().get(&run.definition).ok_or_else(|| {
        ApiError::conflict(
            "definition_missing",
            format!("definition `{}` is no longer loaded", run.definition),
        )
    })?;
    if asynchronous {
        app.queue.enqueue_resume(&run).await.map_err(queue_error)?;
        return Ok(json(
            StatusCode::ACCEPTED,
            &json!({"status": "accepted", "run_id": run.run_id, "trace_id": run.trace_id}),
        ));
    }
    let engine = app.engine.clone();
    let run_id = run_id.to_string();
    let result = detached(async move { engine.resume(&definition, &run_id).await })
        .await?
        .map_err(engine_error)?;
    Ok(json(StatusCode::OK, &json!(result)))
}

/// `since`: an RFC 3339 time, a date (its midnight, UTC), or a span back
/// from `now` (`90m`, `1h`, `2days`) — what an operator types first.
pub fn parse_since(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(day) = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    if let Ok(span) = crate::definition::duration::parse_duration(value)
        && let Ok(span) = chrono::Duration::from_std(span)
        && let Some(t) = now.checked_sub_signed(span)
    {
        return Ok(t);
    }
    Err(format!(
        "since `{value}` is not a time: write 2026-01-31T12:00:00Z, 2026-01-31 (midnight UTC) \
         or a span back from now such as 90m, 1h or 2days"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_a_time_a_date_or_a_span_back() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |s: &str| parse_since(s, now).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2026-11-01T08:30:00+01:00").unwrap(),
            "2026-11-01T07:30:00+00:00"
        );
        assert_eq!(at("2026-11-28").unwrap(), "2026-11-28T00:00:00+00:00");
        assert_eq!(at("90m").unwrap(), "2026-11-29T10:30:00+00:00");
        assert_eq!(at("2days").unwrap(), "2026-11-27T12:00:00+00:00");
        for bad in ["yesterday", "2026-13-01", "", "-1h"] {
            let err = at(bad).unwrap_err();
            assert!(err.contains("a span back from now"), "{bad}: {err}");
        }
    }
}
