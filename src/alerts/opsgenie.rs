//! Opsgenie's outgoing webhook: `{"action", "alert": {…}, "source",
//! "integrationName", …}`, one call per alert action.
//!
//! Name: `alert.message`. Fingerprint: `alert.alertId`. Status: `Close` and
//! `Delete` → resolved; Create, Acknowledge, UnAcknowledge, AddNote,
//! Escalate, AssignOwnership, TakeOwnership, AddTags, RemoveTags,
//! AddRecipient, AddTeam, UpdatePriority, UpdateMessage, UpdateDescription,
//! Snooze, SnoozeEnded, CustomAction → firing (any other action is kept as
//! `status_raw`, and counts as firing). Severity: `priority` P1/P2 →
//! critical, P3 → warning, P4/P5 → info. Tags `key:value` and `details`
//! become labels; `entity` is the host when no `host` label is given.

use super::fields::{Obj, tags};
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, pagerduty};

const FIRING: &[&str] = &[
    "create",
    "acknowledge",
    "unacknowledge",
    "addnote",
    "escalate",
    "assignownership",
    "takeownership",
    "addtags",
    "removetags",
    "addrecipient",
    "addteam",
    "updatepriority",
    "updatemessage",
    "updatedescription",
    "snooze",
    "snoozeended",
    "customaction",
];

pub fn normalize(value: &Json<'_>) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("opsgenie", value)?;
    let action = body.require(&["action"])?;
    let inner = body.require_object("alert")?;
    let id = inner.require(&["alertId", "alias"])?;
    let message = inner.require(&["message"])?;
    let lower = action.to_ascii_lowercase();
    let (status, status_raw) = if lower == "close" || lower == "delete" {
        (AlertStatus::Resolved, None)
    } else if FIRING.contains(&lower.as_str()) {
        (AlertStatus::Firing, None)
    } else {
        (AlertStatus::Firing, Some(action.clone()))
    };
    let mut alert = Alert::new("opsgenie", message, status);
    alert.status_raw = status_raw;
    alert.set_severity(
        inner.text("priority").as_deref(),
        pagerduty::priority_severity,
    );
    alert.labels = tags(inner.get("tags"));
    alert.labels.extend(inner.strings("details"));
    if let Some(entity) = inner.text("entity") {
        alert.labels.entry("host".into()).or_insert(entity.clone());
        alert.labels.insert("entity".into(), entity);
    }
    alert.labels.insert("action".into(), action);
    if let Some(alias) = inner.text("alias") {
        alert.labels.insert("alias".into(), alias);
    }
    alert.description = inner.text("description").unwrap_or_default();
    alert.starts_at = inner.text("createdAt").and_then(|t| {
        t.parse::<i64>()
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|d| d.to_rfc3339())
    });
    Ok(vec![alert.fingerprint_or_hash(Some(id))])
}
