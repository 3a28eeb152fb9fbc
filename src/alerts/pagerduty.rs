//! PagerDuty webhooks. V3 (`{"event": {"event_type", "data": {…}}}`, one
//! event per POST) and the older v2 (`{"messages": [{"event", "incident"}]}`,
//! several per POST). Each incident event is an alert whose fingerprint is
//! the PagerDuty incident id, so every event of one incident lands on the
//! same alert.
//!
//! Status: `incident.resolved` / `incident.resolve`, or an incident whose
//! `status` is `resolved` → resolved; every other incident event (triggered,
//! acknowledged, escalated, reopened, …) → firing. Events that are not about
//! an incident (`pagey.ping`, `service.*`) carry no alert.
//!
//! Severity: `priority.summary` P1/P2 → critical, P3 → warning, P4/P5 →
//! info; without a priority, `urgency` high → critical, low → warning.

use super::fields::Obj;
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, Severity};

pub fn normalize(value: &Json<'_>) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("pagerduty", value)?;
    if let Some(event) = body.object("event") {
        return Ok(v3(event)?.into_iter().collect());
    }
    if let Some(messages) = body.array("messages") {
        let paths: Vec<String> = (0..messages.len())
            .map(|i| format!("messages[{i}]"))
            .collect();
        let mut alerts = Vec::new();
        for (m, path) in messages.iter().zip(&paths) {
            if let Some(a) = v2(Obj::at("pagerduty", m, path)?)? {
                alerts.push(a);
            }
        }
        return Ok(alerts);
    }
    Err(body.missing(&["event", "messages"]))
}

fn v3(event: Obj<'_, '_>) -> Result<Option<Alert>, PayloadError> {
    let event_type = event.require(&["event_type"])?;
    if !event_type.starts_with("incident.") {
        return Ok(None);
    }
    let data = event.require_object("data")?;
    let id = data.require(&["id"])?;
    let title = data.require(&["title", "summary"])?;
    let resolved =
        event_type == "incident.resolved" || data.text("status").as_deref() == Some("resolved");
    let mut alert = incident(&data, title, resolved);
    alert.labels.insert("event_type".into(), event_type);
    alert.starts_at = event.text("occurred_at").or(data.text("created_at"));
    Ok(Some(alert.fingerprint_or_hash(Some(id))))
}

fn v2(message: Obj<'_, '_>) -> Result<Option<Alert>, PayloadError> {
    let kind = message.require(&["event", "type"])?;
    if !kind.starts_with("incident.") {
        return Ok(None);
    }
    let inc = message.require_object("incident")?;
    let id = inc.require(&["id"])?;
    let title = inc
        .first(&["title", "summary"])
        .or_else(|| {
            inc.object("trigger_summary_data")
                .and_then(|t| t.text("subject"))
        })
        .ok_or_else(|| inc.missing(&["title", "trigger_summary_data"]))?;
    let resolved = kind == "incident.resolve" || inc.text("status").as_deref() == Some("resolved");
    let mut alert = incident(&inc, title, resolved);
    alert.labels.insert("event_type".into(), kind);
    alert.starts_at = inc.first(&["created_on", "created_at"]);
    alert.raw = message.raw();
    Ok(Some(alert.fingerprint_or_hash(Some(id))))
}

/// What v2 and v3 incidents share.
fn incident(inc: &Obj<'_, '_>, title: String, resolved: bool) -> Alert {
    let status = if resolved {
        AlertStatus::Resolved
    } else {
        AlertStatus::Firing
    };
    let mut alert = Alert::new("pagerduty", title, status);
    let priority = inc
        .object("priority")
        .and_then(|p| p.first(&["summary", "name"]));
    let urgency = inc.text("urgency");
    match &priority {
        Some(p) => alert.set_severity(Some(p), priority_severity),
        None => alert.set_severity(urgency.as_deref(), urgency_severity),
    }
    if let Some(service) = inc
        .object("service")
        .and_then(|s| s.first(&["summary", "name"]))
    {
        alert.labels.insert("service".into(), service);
    }
    for (label, value) in [
        ("urgency", urgency),
        ("priority", priority),
        ("incident_number", inc.first(&["number", "incident_number"])),
        ("incident_status", inc.text("status")),
    ] {
        if let Some(v) = value {
            alert.labels.insert(label.into(), v);
        }
    }
    if let Some(body) = inc.object("body") {
        alert.annotations = body.strings("details");
    }
    alert.description = inc
        .object("body")
        .and_then(|b| b.first(&["details", "description"]))
        .or_else(|| inc.text("description"))
        .unwrap_or_else(|| alert.name.clone());
    alert.generator_url = inc.text("html_url");
    alert
}

/// PagerDuty priorities, as their default names.
pub fn priority_severity(p: &str) -> Option<Severity> {
    match p.to_ascii_uppercase().as_str() {
        "P1" | "P2" => Some(Severity::Critical),
        "P3" => Some(Severity::Warning),
        "P4" | "P5" => Some(Severity::Info),
        _ => None,
    }
}

pub fn urgency_severity(u: &str) -> Option<Severity> {
    match u.to_ascii_lowercase().as_str() {
        "high" => Some(Severity::Critical),
        "low" => Some(Severity::Warning),
        _ => None,
    }
}
