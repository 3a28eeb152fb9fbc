//! Webhook payloads → normalized [`Alert`]s, and the incident they form.
//!
//! One module per payload format. [`normalize`] picks the driver (or takes
//! the one it is told) and returns every alert in the payload: an Alertmanager
//! group carries many.

pub mod alertmanager;
pub mod generic;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An alert in herald's own shape, whatever system sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The sender's id for the alert when it has one, else a hash of name and labels.
    pub fingerprint: String,
    pub name: String,
    pub status: AlertStatus,
    pub severity: Severity,
    /// The severity as the sender wrote it, when it did not map cleanly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity_raw: Option<String>,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// The driver that read it: `alertmanager`, `generic`, …
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// Ordered so that `max` is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// Maps the common vocabularies; `None` for a word it does not know.
    pub fn parse(text: &str) -> Option<Severity> {
        match text.trim().to_ascii_lowercase().as_str() {
            "critical" | "crit" | "error" | "high" | "page" | "p1" | "p2" | "disaster"
            | "emergency" | "fatal" => Some(Severity::Critical),
            "warning" | "warn" | "medium" | "average" | "p3" => Some(Severity::Warning),
            "info" | "information" | "low" | "none" | "ok" | "p4" | "p5" | "notice" => {
                Some(Severity::Info)
            }
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl AlertStatus {
    pub fn parse(text: &str) -> Option<AlertStatus> {
        match text.trim().to_ascii_lowercase().as_str() {
            "firing" | "alerting" | "triggered" | "problem" | "open" | "active" => {
                Some(AlertStatus::Firing)
            }
            "resolved" | "ok" | "normal" | "closed" | "recovered" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// Why a payload could not be read as alerts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// Payload formats known to this build.
pub const DRIVERS: &[&str] = &["alertmanager", "generic"];

/// Reads every alert in `payload`. `driver` forces a format; `None` or
/// `"auto"` detects it.
pub fn normalize(
    payload: &Value,
    driver: Option<&str>,
) -> Result<(String, Vec<Alert>), PayloadError> {
    let driver = match driver {
        None | Some("auto") => detect(payload),
        Some(d) => d,
    };
    let alerts = match driver {
        "alertmanager" => alertmanager::normalize(payload)?,
        "generic" => generic::normalize(payload)?,
        other => return Err(unknown_driver(other)),
    };
    Ok((driver.to_string(), alerts))
}

/// Like [`normalize`], from the JSON text, without building a `Value` of
/// the whole body for the formats that can be read directly.
pub fn normalize_text(
    text: &str,
    driver: Option<&str>,
) -> Result<(String, Vec<Alert>), PayloadError> {
    let driver = match driver {
        None | Some("auto") => detect_text(text),
        Some(d) => d,
    };
    let alerts = match driver {
        "alertmanager" => alertmanager::normalize_text(text)?,
        "generic" => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| PayloadError(format!("invalid JSON: {e}")))?;
            generic::normalize(&value)?
        }
        other => return Err(unknown_driver(other)),
    };
    Ok((driver.to_string(), alerts))
}

/// Hands every alert in the JSON text to `f`, one at a time; returns the
/// driver and the count. Alertmanager groups are streamed, so a body of any
/// size is read in the memory of one alert.
pub fn scan_text(
    text: &str,
    driver: Option<&str>,
    mut f: impl FnMut(Alert),
) -> Result<(String, usize), PayloadError> {
    let driver = match driver {
        None | Some("auto") => detect_text(text),
        Some(d) => d,
    };
    let count = match driver {
        "alertmanager" => alertmanager::scan_text(text, f)?,
        "generic" => {
            let (_, alerts) = normalize_text(text, Some("generic"))?;
            let n = alerts.len();
            alerts.into_iter().for_each(&mut f);
            n
        }
        other => return Err(unknown_driver(other)),
    };
    Ok((driver.to_string(), count))
}

fn unknown_driver(name: &str) -> PayloadError {
    PayloadError(format!(
        "unknown alert driver `{name}`; known: {}",
        DRIVERS.join(", ")
    ))
}

/// Picks the driver whose shape the payload has.
pub fn detect(payload: &Value) -> &'static str {
    if alertmanager::looks_like(payload) {
        "alertmanager"
    } else {
        "generic"
    }
}

/// [`detect`] on JSON text: reads only the top-level keys.
pub fn detect_text(text: &str) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Probe {
        alerts: Option<serde::de::IgnoredAny>,
        #[serde(rename = "orgId")]
        org_id: Option<serde::de::IgnoredAny>,
        state: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_str::<Probe>(text) {
        Ok(p) if p.alerts.is_some() && !alertmanager::is_grafana(p.org_id, p.state) => {
            "alertmanager"
        }
        _ => "generic",
    }
}

/// The incident an alert belongs to: one per (name, instance).
pub fn instance_of(alert: &Alert) -> Option<&str> {
    ["instance", "instance_id", "hostname", "host"]
        .iter()
        .find_map(|k| alert.labels.get(*k).map(String::as_str))
}

/// A stable fingerprint for senders that give none: sha256 of the name and
/// the labels sorted by key, first 16 hex digits.
pub fn fingerprint(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    for (k, v) in labels {
        hasher.update([0]);
        hasher.update(k.as_bytes());
        hasher.update([b'=']);
        hasher.update(v.as_bytes());
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A JSON object's string-ish members as a label map (numbers and booleans
/// are written out; nested values are skipped).
pub(crate) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(map)) = value {
        for (k, v) in map {
            if let Some(s) = scalar_text(v) {
                out.insert(k.clone(), s);
            }
        }
    }
    out
}

pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn first_string<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_label_insertion_order() {
        let a: BTreeMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        let b: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        assert_eq!(fingerprint("X", &a), fingerprint("X", &b));
        assert_ne!(fingerprint("X", &a), fingerprint("Y", &a));
    }

    #[test]
    fn severity_vocabulary() {
        assert_eq!(Severity::parse("CRITICAL"), Some(Severity::Critical));
        assert_eq!(Severity::parse("warn"), Some(Severity::Warning));
        assert_eq!(Severity::parse("low"), Some(Severity::Info));
        assert_eq!(Severity::parse("spicy"), None);
    }
}
