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

use super::{Alert, PayloadError};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The only forward format so far.
pub const VERSION: u64 = 1;

#[derive(Deserialize)]
struct Forward<'a> {
    herald: Option<Meta>,
    #[serde(borrow)]
    alerts: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct Meta {
    version: Option<serde_json::Value>,
    host: Option<String>,
}

pub fn scan_text(text: &str, f: &mut dyn FnMut(Alert)) -> Result<usize, PayloadError> {
    let body: Forward = serde_json::from_str(text)
        .map_err(|e| PayloadError(format!("not a herald forward: {e}")))?;
    let meta = body
        .herald
        .ok_or_else(|| PayloadError("herald: missing required field `herald`".into()))?;
    match meta.version.as_ref().and_then(serde_json::Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err(PayloadError(format!(
                "herald: forward version {v} is not supported (this herald reads version {VERSION})"
            )));
        }
        None => {
            return Err(PayloadError(
                "herald: missing required field `herald.version` (a number)".into(),
            ));
        }
    }
    let sender = meta
        .host
        .filter(|h| !h.trim().is_empty())
        .ok_or_else(|| PayloadError("herald: missing required field `herald.host`".into()))?;
    let list = body
        .alerts
        .ok_or_else(|| PayloadError("herald: missing required field `alerts`".into()))?;
    let mut alerts = Vec::with_capacity(list.len());
    // Every alert is checked before any is handed over: a forward is read
    // whole or refused whole.
    for (i, item) in list.iter().enumerate() {
        let mut alert: Alert = serde_json::from_str(item.get()).map_err(|e| {
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
        alert.raw = Some((*item).to_owned());
        alerts.push(alert);
    }
    let n = alerts.len();
    alerts.into_iter().for_each(f);
    Ok(n)
}
