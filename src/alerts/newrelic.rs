//! New Relic. Classic alerts post one incident per call (`incident_id`,
//! `condition_name`, `current_state`, `severity`, `targets`); workflows post
//! their default template (`id` = issue id, `issueUrl`, `title`, `state`,
//! `priority`, `impactedEntities`, `alertConditionNames`, …).
//!
//! Classic: `current_state` open/acknowledged → firing, closed → resolved;
//! `severity` CRITICAL → critical, WARNING → warning, INFO → info.
//! Workflow: `state` CREATED/ACTIVATED/ACKNOWLEDGED → firing, CLOSED →
//! resolved; `priority` CRITICAL → critical, HIGH and MEDIUM → warning, LOW
//! → info (a condition's warning threshold raises a HIGH issue).
//! Fingerprint: the incident id (classic) or issue id (workflow). The host
//! label is the first target's name or the first impacted entity.

use super::fields::Obj;
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, Severity};

pub fn normalize(value: &Json<'_>) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("newrelic", value)?;
    if body.text("condition_name").is_some() || body.text("current_state").is_some() {
        classic(&body)
    } else {
        workflow(&body)
    }
    .map(|a| vec![a])
}

fn classic(body: &Obj<'_, '_>) -> Result<Alert, PayloadError> {
    let id = body.require(&["incident_id"])?;
    let name = body.require(&["condition_name"])?;
    let state = body.require(&["current_state"])?;
    let (status, status_raw) = state_of(&state, &["open", "acknowledged"], &["closed"]);
    let mut alert = Alert::new("newrelic", name, status);
    alert.status_raw = status_raw;
    alert.set_severity(body.text("severity").as_deref(), classic_severity);
    if let Some(target) = body
        .array("targets")
        .and_then(|t| t.first())
        .and_then(|t| t.get("name"))
        .and_then(Json::scalar_text)
    {
        alert.labels.insert("host".into(), target);
    }
    for (label, key) in [
        ("policy", "policy_name"),
        ("account", "account_name"),
        ("condition_id", "condition_id"),
    ] {
        if let Some(v) = body.text(key) {
            alert.labels.insert(label.into(), v);
        }
    }
    if let Some(url) = body.text("runbook_url") {
        alert.annotations.insert("runbook_url".into(), url);
    }
    alert.description = body
        .first(&["details", "condition_name"])
        .unwrap_or_default();
    alert.starts_at = body.text("timestamp").and_then(|t| millis(&t));
    alert.generator_url = body.text("incident_url");
    Ok(alert.fingerprint_or_hash(Some(id)))
}

fn workflow(body: &Obj<'_, '_>) -> Result<Alert, PayloadError> {
    let id = body.require(&["id", "issueId"])?;
    let condition = body
        .array("alertConditionNames")
        .and_then(|n| n.first())
        .and_then(Json::scalar_text);
    let name = condition
        .or_else(|| body.text("title"))
        .ok_or_else(|| body.missing(&["title", "alertConditionNames"]))?;
    let state = body.require(&["state"])?;
    let (status, status_raw) = state_of(
        &state,
        &["created", "activated", "acknowledged"],
        &["closed"],
    );
    let mut alert = Alert::new("newrelic", name, status);
    alert.status_raw = status_raw;
    alert.set_severity(body.text("priority").as_deref(), workflow_severity);
    let entities: Vec<String> = body
        .array("impactedEntities")
        .into_iter()
        .flatten()
        .filter_map(Json::scalar_text)
        .collect();
    if let Some(first) = entities.first() {
        alert.labels.insert("host".into(), first.clone());
        alert.labels.insert("entities".into(), entities.join(","));
    }
    if let Some(policy) = body
        .array("alertPolicyNames")
        .and_then(|n| n.first())
        .and_then(Json::scalar_text)
    {
        alert.labels.insert("policy".into(), policy);
    }
    if let Some(p) = body.text("priority") {
        alert.labels.insert("priority".into(), p);
    }
    alert.description = body.text("title").unwrap_or_default();
    alert.starts_at = body.text("createdAt").and_then(|t| millis(&t));
    alert.generator_url = body.first(&["issueUrl", "issuePageUrl"]);
    Ok(alert.fingerprint_or_hash(Some(id)))
}

fn state_of(state: &str, firing: &[&str], resolved: &[&str]) -> (AlertStatus, Option<String>) {
    let lower = state.to_ascii_lowercase();
    if resolved.contains(&lower.as_str()) {
        (AlertStatus::Resolved, None)
    } else if firing.contains(&lower.as_str()) {
        (AlertStatus::Firing, None)
    } else {
        (AlertStatus::Firing, Some(state.to_string()))
    }
}

/// Epoch milliseconds → RFC 3339.
fn millis(text: &str) -> Option<String> {
    let ms: i64 = text.parse().ok()?;
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

pub fn classic_severity(s: &str) -> Option<Severity> {
    match s.to_ascii_uppercase().as_str() {
        "CRITICAL" => Some(Severity::Critical),
        "WARNING" => Some(Severity::Warning),
        "INFO" => Some(Severity::Info),
        _ => None,
    }
}

pub fn workflow_severity(s: &str) -> Option<Severity> {
    match s.to_ascii_uppercase().as_str() {
        "CRITICAL" => Some(Severity::Critical),
        "HIGH" | "MEDIUM" => Some(Severity::Warning),
        "LOW" => Some(Severity::Info),
        _ => None,
    }
}
