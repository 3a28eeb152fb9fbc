//! Grafana. Unified alerting (Grafana 8+) posts Alertmanager's envelope with
//! extra keys (`orgId`, `state`, `title`, `version: "1"`) and the same alert
//! entries, so it is streamed by the Alertmanager reader under the source
//! `grafana`. Legacy dashboard alerting posts one flat object per rule with
//! `ruleName`, `state` and `evalMatches`.
//!
//! Legacy `state`: `alerting`, `no_data`, `pending` → firing; `ok`, `paused`
//! → resolved. Severity comes from a `severity` tag (legacy) or label
//! (unified); legacy rules have no other.

use super::fields::Obj;
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, Severity, alertmanager};
use serde_json::value::RawValue;

/// Hands each alert to `f`; the count, and the unified body's
/// `truncatedAlerts`.
pub fn scan_text(text: &str, f: &mut dyn FnMut(Alert)) -> Result<(usize, u64), PayloadError> {
    match alertmanager::scan_envelope(text, "grafana", f) {
        Err(e) if e.0.contains("missing required field `alerts`") => {
            let value: Json = serde_json::from_str(text)
                .map_err(|e| PayloadError(format!("invalid JSON: {e}")))?;
            let mut alert = legacy(&value)?;
            alert.raw = RawValue::from_string(text.to_string()).ok();
            f(alert);
            Ok((1, 0))
        }
        other => other,
    }
}

/// A legacy (pre-8) dashboard alert.
pub fn legacy(value: &Json<'_>) -> Result<Alert, PayloadError> {
    let body = Obj::root("grafana", value)?;
    if body.array("alerts").is_some() {
        return Err(PayloadError(
            "grafana: a unified alerting body goes through the streaming reader".into(),
        ));
    }
    let name = body.first(&["ruleName", "title"]).ok_or_else(|| {
        PayloadError(
            "grafana: missing required field `alerts` (unified alerting) or `ruleName` (legacy alerting)"
                .to_string(),
        )
    })?;
    let state = body.require(&["state"])?;
    let (status, status_raw) = match state.to_ascii_lowercase().as_str() {
        "alerting" | "no_data" | "pending" => (AlertStatus::Firing, None),
        "ok" | "paused" => (AlertStatus::Resolved, None),
        _ => (AlertStatus::Firing, Some(state.clone())),
    };
    let mut alert = Alert::new("grafana", name, status);
    alert.status_raw = status_raw;
    alert.labels = body.strings("tags");
    alert.set_severity(
        alert.labels.get("severity").cloned().as_deref(),
        Severity::parse,
    );
    if state == "no_data" {
        alert.annotations.insert("state".into(), state.clone());
    }
    for m in body.array("evalMatches").into_iter().flatten() {
        if let (Some(metric), Some(value)) = (
            m.get("metric").and_then(Json::as_str),
            m.get("value").and_then(Json::scalar_text),
        ) {
            alert.annotations.insert(format!("value.{metric}"), value);
        }
    }
    alert.description = body.first(&["message", "title"]).unwrap_or_default();
    alert.generator_url = body.text("ruleUrl");
    let id = body.text("ruleId").map(|id| match body.text("orgId") {
        Some(org) => format!("{org}:{id}"),
        None => id,
    });
    Ok(alert.fingerprint_or_hash(id))
}
