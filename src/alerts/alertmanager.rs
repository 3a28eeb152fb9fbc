//! Prometheus Alertmanager's webhook (version 4 envelope): one POST per
//! alert group, each entry of `alerts` an alert of its own. Also reads a bare
//! `{"alerts": [...]}` list without the envelope (the seed app's sample).

use super::{Alert, AlertStatus, PayloadError, Severity, fingerprint, first_string, string_map};
use serde_json::Value;

/// Alertmanager writes this `endsAt` for an alert that is still firing.
const NO_END: &str = "0001-01-01T00:00:00Z";

/// An object with an `alerts` list whose entries carry `labels`.
pub fn looks_like(payload: &Value) -> bool {
    let Some(alerts) = payload.get("alerts").and_then(Value::as_array) else {
        return false;
    };
    // Grafana's unified alerting body has the same `alerts` list; its envelope
    // carries `orgId`/`state`/`title`, which Alertmanager never sends.
    let grafana = payload.get("orgId").is_some() || payload.get("state").is_some();
    !grafana
        && alerts
            .iter()
            .all(|a| a.get("labels").is_some_and(Value::is_object))
}

pub fn normalize(payload: &Value) -> Result<Vec<Alert>, PayloadError> {
    let items = payload
        .get("alerts")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            PayloadError("an Alertmanager webhook needs an `alerts` list".to_string())
        })?;
    let group_status = payload.get("status").and_then(Value::as_str);
    let mut alerts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let entry = item
            .as_object()
            .ok_or_else(|| PayloadError(format!("alerts[{i}] must be an object")))?;
        let labels = string_map(entry.get("labels"));
        let annotations = string_map(entry.get("annotations"));
        let name = labels
            .get("alertname")
            .cloned()
            .ok_or_else(|| PayloadError(format!("alerts[{i}].labels has no `alertname`")))?;
        let status_text = entry
            .get("status")
            .and_then(Value::as_str)
            .or(group_status)
            .unwrap_or("firing");
        let status = AlertStatus::parse(status_text).ok_or_else(|| {
            PayloadError(format!(
                "alerts[{i}].status `{status_text}` is neither \"firing\" nor \"resolved\""
            ))
        })?;
        let severity_text = labels.get("severity").map(String::as_str);
        let severity = severity_text.and_then(Severity::parse);
        let description = ["description", "summary", "message"]
            .iter()
            .find_map(|k| annotations.get(*k).cloned())
            .unwrap_or_default();
        let fp = first_string(entry, &["fingerprint"])
            .map(str::to_string)
            .unwrap_or_else(|| fingerprint(&name, &labels));
        let ends_at = first_string(entry, &["endsAt"])
            .filter(|t| *t != NO_END)
            .map(str::to_string);
        alerts.push(Alert {
            fingerprint: fp,
            name,
            status,
            severity: severity.unwrap_or(Severity::Warning),
            severity_raw: match (severity_text, severity) {
                (Some(raw), None) => Some(raw.to_string()),
                _ => None,
            },
            description,
            starts_at: first_string(entry, &["startsAt"]).map(str::to_string),
            ends_at,
            source: "alertmanager".to_string(),
            generator_url: first_string(entry, &["generatorURL"]).map(str::to_string),
            labels,
            annotations,
        });
    }
    if alerts.is_empty() {
        return Err(PayloadError("the `alerts` list is empty".to_string()));
    }
    Ok(alerts)
}
