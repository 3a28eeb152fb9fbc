//! The body one herald host forwards to another (a notify node's `herald`
//! target, built with the notify work): herald's own normalized alerts, plus
//! who sent them and what that host made of them.
//!
//! ```json
//! {"herald": {"version": 1, "host": "db-01", "sent_at": "2026-11-29T01:00:00Z",
//!             "run_id": "01J…", "definition": "default"},
//!  "alerts": [{"fingerprint": "…", "name": "DiskSpaceLow", "status": "firing",
//!              "severity": "warning", "description": "…", "labels": {…},
//!              "annotations": {…}, "starts_at": "…", "source": "alertmanager"}],
//!  "analysis": {…}, "context": {…}}
//! ```
//!
//! `herald.version` must be 1. Alerts keep their fingerprint and fields; the
//! source becomes `herald`, the original one is the label `origin_source`,
//! the sender is the label `herald_host` (and `host`, when the alert names no
//! instance). `analysis` and `context` are kept in `raw` only.

use super::fields::Obj;
use super::{Alert, PayloadError};
use serde_json::Value;

/// The only forward format so far.
pub const VERSION: u64 = 1;

pub fn normalize(value: &Value) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("herald", value)?;
    let meta = body.require_object("herald")?;
    match meta.map.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(PayloadError(format!(
                "herald: forward version {v} is not supported (this herald reads version {VERSION})"
            )));
        }
        None => return Err(meta.missing(&["version"])),
    }
    let sender = meta.require(&["host"])?;
    let list = body
        .array("alerts")
        .ok_or_else(|| body.missing(&["alerts"]))?;
    let mut alerts = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let mut alert: Alert = serde_json::from_value(item.clone()).map_err(|e| {
            PayloadError(format!("herald: `alerts[{i}]` is not a herald alert: {e}"))
        })?;
        if alert.name.trim().is_empty() || alert.fingerprint.trim().is_empty() {
            return Err(PayloadError(format!(
                "herald: `alerts[{i}]` needs a non-empty `name` and `fingerprint`"
            )));
        }
        let origin = std::mem::replace(&mut alert.source, "herald".to_string());
        alert.labels.entry("origin_source".into()).or_insert(origin);
        alert.labels.insert("herald_host".into(), sender.clone());
        if alert.instance().is_none() {
            alert.labels.insert("host".into(), sender.clone());
        }
        alert.raw = serde_json::value::to_raw_value(item).ok();
        alerts.push(alert);
    }
    Ok(alerts)
}
