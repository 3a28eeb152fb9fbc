//! Datadog's webhook integration. Its body is a template the user writes;
//! herald reads the variables of Datadog's documented default payload:
//! `id`, `alert_id`, `title` (`$EVENT_TITLE`), `body`, `alert_transition`,
//! `alert_type`, `alert_priority`, `hostname`, `tags`, `date`, `link`,
//! `alert_scope`.
//!
//! Name: `$EVENT_TITLE` without its `[Triggered on …]` prefix, so the
//! trigger and the recovery carry the same name. Fingerprint: `alert_id`,
//! plus `:hostname` (or `:alert_scope`) when there is one, because a
//! multi-alert monitor sends one alert per host under one `alert_id`.
//!
//! Status: `alert_transition` containing "Recovered" → resolved; Triggered,
//! Re-Triggered, Warn, Re-Warn, No Data, Re-No Data, Renotify → firing.
//! Without a transition, `alert_type: success` → resolved.
//! Severity: `alert_type` error → critical, warning → warning, info and
//! success → info; otherwise `alert_priority` P1/P2 → critical, P3 →
//! warning, P4/P5 → info.

use super::fields::{Obj, tags};
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, Severity, pagerduty};

const FIRING: &[&str] = &[
    "triggered",
    "re-triggered",
    "warn",
    "re-warn",
    "no data",
    "re-no data",
    "renotify",
];

pub fn normalize(value: &Json<'_>) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("datadog", value)?;
    let title = body.require(&["title", "alert_title", "event_title"])?;
    let transition = body.text("alert_transition");
    let alert_type = body.text("alert_type");
    let (status, status_raw) = match &transition {
        Some(t) if t.to_ascii_lowercase().contains("recovered") => (AlertStatus::Resolved, None),
        Some(t) if FIRING.contains(&t.to_ascii_lowercase().as_str()) => (AlertStatus::Firing, None),
        Some(t) => (AlertStatus::Firing, Some(t.clone())),
        None if alert_type.as_deref() == Some("success") => (AlertStatus::Resolved, None),
        None => (AlertStatus::Firing, None),
    };
    let mut alert = Alert::new("datadog", strip_transition(&title).to_string(), status);
    alert.status_raw = status_raw;
    match (&alert_type, body.text("alert_priority")) {
        (Some(t), _) => alert.set_severity(Some(t), type_severity),
        (None, Some(p)) => alert.set_severity(Some(&p), pagerduty::priority_severity),
        (None, None) => {}
    }
    alert.labels = tags(body.get("tags"));
    let host = body.first(&["hostname", "host"]);
    if let Some(h) = &host {
        alert.labels.insert("host".into(), h.clone());
    }
    for (label, key) in [
        ("alert_id", "alert_id"),
        ("transition", "alert_transition"),
        ("metric", "alert_metric"),
        ("scope", "alert_scope"),
        ("priority", "alert_priority"),
    ] {
        if let Some(v) = body.text(key) {
            alert.labels.insert(label.into(), v);
        }
    }
    alert.description = body
        .first(&["body", "event_msg", "message"])
        .unwrap_or_default();
    alert.starts_at = body.first(&["date", "last_updated"]);
    alert.generator_url = body.first(&["link", "url"]);
    let id =
        body.first(&["alert_id", "id"])
            .map(|id| match host.or_else(|| body.text("alert_scope")) {
                Some(scope) => format!("{id}:{scope}"),
                None => id,
            });
    Ok(vec![alert.fingerprint_or_hash(id)])
}

/// `[Triggered on {host:web-01}] High CPU` → `High CPU`.
fn strip_transition(title: &str) -> &str {
    let t = title.trim_start();
    if t.starts_with('[')
        && let Some(end) = t.find("] ")
    {
        return t[end + 2..].trim();
    }
    title.trim()
}

pub fn type_severity(t: &str) -> Option<Severity> {
    match t.to_ascii_lowercase().as_str() {
        "error" => Some(Severity::Critical),
        "warning" => Some(Severity::Warning),
        "info" | "success" => Some(Severity::Info),
        _ => None,
    }
}
