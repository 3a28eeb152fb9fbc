//! Zabbix, through a webhook media type. Zabbix has no fixed body: its
//! media type's parameters make it. herald reads the one documented in the
//! README (the names of Zabbix's own macros): `event_id` ({EVENT.ID}),
//! `trigger_name` ({TRIGGER.NAME}) or `event_name` ({EVENT.NAME}), `host`
//! ({HOST.NAME}), `severity` ({EVENT.SEVERITY}) or `event_nseverity`
//! ({EVENT.NSEVERITY}), `status` ({EVENT.STATUS}) or `event_value`
//! ({EVENT.VALUE}), `message`, `event_tags` ({EVENT.TAGS}), `url`.
//!
//! Fingerprint: `event_id` — in a recovery message {EVENT.ID} is still the
//! problem's id, so the problem and its recovery are one alert.
//! Status: PROBLEM (or `event_value` 1) → firing; RESOLVED or OK (or 0) →
//! resolved. Severity: Disaster, High → critical; Average, Warning →
//! warning; Information, Not classified → info; numeric 5,4 / 3,2 / 1,0 the
//! same.

use super::fields::{Obj, tags};
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, Severity};

pub fn normalize(value: &Json<'_>) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("zabbix", value)?;
    let name = body.require(&["trigger_name", "event_name", "name", "subject"])?;
    let status_text = body.first(&["status", "event_status", "trigger_status"]);
    let (status, status_raw) = match (status_text, body.text("event_value")) {
        (Some(s), _) => match s.to_ascii_uppercase().as_str() {
            "PROBLEM" => (AlertStatus::Firing, None),
            "RESOLVED" | "OK" => (AlertStatus::Resolved, None),
            _ => (AlertStatus::Firing, Some(s)),
        },
        (None, Some(v)) if v == "0" => (AlertStatus::Resolved, None),
        (None, Some(v)) if v == "1" => (AlertStatus::Firing, None),
        (None, Some(v)) => (AlertStatus::Firing, Some(v)),
        (None, None) => return Err(body.missing(&["status", "event_value"])),
    };
    let mut alert = Alert::new("zabbix", name, status);
    alert.status_raw = status_raw;
    match body.first(&["severity", "event_severity", "trigger_severity"]) {
        Some(s) => alert.set_severity(Some(&s), severity),
        None => alert.set_severity(body.text("event_nseverity").as_deref(), severity),
    }
    alert.labels = tags(body.get("event_tags"));
    if let Some(host) = body.first(&["host", "hostname", "host_name"]) {
        alert.labels.insert("host".into(), host);
    }
    for (label, key) in [("trigger_id", "trigger_id"), ("host_ip", "host_ip")] {
        if let Some(v) = body.text(key) {
            alert.labels.insert(label.into(), v);
        }
    }
    alert.description = body
        .first(&["message", "trigger_description", "description"])
        .unwrap_or_default();
    alert.starts_at = match (body.text("event_date"), body.text("event_time")) {
        (Some(d), Some(t)) => Some(format!("{} {t}", d.replace('.', "-"))),
        (d, _) => d,
    };
    alert.generator_url = body.first(&["url", "trigger_url", "event_url"]);
    let id = body.first(&["event_id", "eventid"]).or_else(|| {
        body.text("trigger_id").map(|t| {
            format!(
                "{t}:{}",
                alert.labels.get("host").cloned().unwrap_or_default()
            )
        })
    });
    Ok(vec![alert.fingerprint_or_hash(id)])
}

pub fn severity(s: &str) -> Option<Severity> {
    match s.to_ascii_lowercase().as_str() {
        "disaster" | "high" | "5" | "4" => Some(Severity::Critical),
        "average" | "warning" | "3" | "2" => Some(Severity::Warning),
        "information" | "not classified" | "1" | "0" => Some(Severity::Info),
        _ => None,
    }
}
