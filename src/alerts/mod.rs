//! Webhook payloads → normalized [`Alert`]s.
//!
//! One module per sender's format. [`detect`] picks the driver from the
//! shape of the body (or the caller forces one), and [`scan_text`] hands
//! every alert of the payload over one at a time: an Alertmanager group can
//! carry thousands, and a storm's body tens of MB. What those alerts do to
//! incidents is [`incident`]'s business.

pub mod alertmanager;
pub mod datadog;
pub mod detect;
mod fields;
pub mod generic;
pub mod grafana;
pub mod herald;
pub mod incident;
pub mod json;
pub mod newrelic;
pub mod opsgenie;
pub mod pagerduty;
pub mod prometheus;
pub mod zabbix;

pub use detect::{DRIVERS, detect_text};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// An alert in herald's own shape, whatever system sent it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    /// The sender's id for the alert when it has one, else a hash of name and labels.
    pub fingerprint: String,
    pub name: String,
    pub status: AlertStatus,
    /// The status as the sender wrote it, when it was not a word herald maps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_raw: Option<String>,
    pub severity: Severity,
    /// The severity as the sender wrote it, when it did not map cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_raw: Option<String>,
    pub description: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// The driver that read it: `alertmanager`, `grafana`, …
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
    /// The sender's own JSON for this alert, as it came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<RawValue>>,
}

impl PartialEq for Alert {
    fn eq(&self, other: &Alert) -> bool {
        self.fingerprint == other.fingerprint
            && self.name == other.name
            && self.status == other.status
            && self.status_raw == other.status_raw
            && self.severity == other.severity
            && self.severity_raw == other.severity_raw
            && self.description == other.description
            && self.labels == other.labels
            && self.annotations == other.annotations
            && self.starts_at == other.starts_at
            && self.ends_at == other.ends_at
            && self.source == other.source
            && self.generator_url == other.generator_url
            && self.raw.as_ref().map(|r| r.get()) == other.raw.as_ref().map(|r| r.get())
    }
}

impl Alert {
    /// An alert with the given identity and nothing else filled in; drivers
    /// set the rest.
    pub(crate) fn new(source: &str, name: String, status: AlertStatus) -> Alert {
        Alert {
            fingerprint: String::new(),
            name,
            status,
            status_raw: None,
            severity: Severity::Warning,
            severity_raw: None,
            description: String::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            starts_at: None,
            ends_at: None,
            source: source.to_string(),
            generator_url: None,
            raw: None,
        }
    }

    /// Sets the severity from the sender's word through `map`; a word the
    /// map does not know keeps the default (warning) and is kept as
    /// `severity_raw`.
    pub(crate) fn set_severity(&mut self, text: Option<&str>, map: fn(&str) -> Option<Severity>) {
        if let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) {
            match map(text) {
                Some(s) => self.severity = s,
                None => self.severity_raw = Some(text.to_string()),
            }
        }
    }

    /// Falls back to the hash of name and labels when the sender gave no id.
    pub(crate) fn fingerprint_or_hash(mut self, id: Option<String>) -> Alert {
        self.fingerprint = id
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| fingerprint(&self.name, &self.labels));
        self
    }

    /// A field by its trigger path (`name`, `severity`, `labels.team`,
    /// `annotations.summary`, …), as text; `None` when absent. Read
    /// directly, since triggers check every alert of a storm.
    pub fn field(&self, path: &str) -> Option<String> {
        let opt = |v: &Option<String>| v.clone();
        match path.split_once('.') {
            Some(("labels", key)) => self.labels.get(key).cloned(),
            Some(("annotations", key)) => self.annotations.get(key).cloned(),
            Some(_) => None,
            None => match path {
                "name" => Some(self.name.clone()),
                "fingerprint" => Some(self.fingerprint.clone()),
                "status" => Some(self.status.as_str().to_string()),
                "status_raw" => opt(&self.status_raw),
                "severity" => Some(self.severity.as_str().to_string()),
                "severity_raw" => opt(&self.severity_raw),
                "description" => Some(self.description.clone()),
                "source" => Some(self.source.clone()),
                "starts_at" => opt(&self.starts_at),
                "ends_at" => opt(&self.ends_at),
                "generator_url" => opt(&self.generator_url),
                "instance" => self.instance().map(str::to_string),
                _ => None,
            },
        }
    }

    /// The host or instance this alert is about, from its labels.
    pub fn instance(&self) -> Option<&str> {
        instance_of(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    /// The common vocabulary (Alertmanager, Grafana, generic JSON).
    pub fn parse(text: &str) -> Option<AlertStatus> {
        match text.trim().to_ascii_lowercase().as_str() {
            "firing" | "alerting" | "triggered" | "problem" | "open" | "active" => {
                Some(AlertStatus::Firing)
            }
            "resolved" | "ok" | "normal" | "closed" | "recovered" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// Ordered so that `max` is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// The common vocabulary; `None` for a word it does not know.
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

/// The alert fields a trigger's `match` can name (plus `labels.<name>` and
/// `annotations.<name>`).
pub const FIELDS: &[&str] = &[
    "name",
    "fingerprint",
    "status",
    "status_raw",
    "severity",
    "severity_raw",
    "description",
    "source",
    "starts_at",
    "ends_at",
    "generator_url",
    "instance",
];

/// Whether [`Alert::field`] knows `path`.
pub fn is_field_path(path: &str) -> bool {
    match path.split_once('.') {
        Some(("labels" | "annotations", key)) => !key.is_empty(),
        Some(_) => false,
        None => FIELDS.contains(&path),
    }
}

/// Why a payload could not be read as alerts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

/// Reads every alert in the JSON text. `driver` forces a format; `None` or
/// `"auto"` detects it.
pub fn normalize_text(
    text: &str,
    driver: Option<&str>,
) -> Result<(String, Vec<Alert>), PayloadError> {
    let mut alerts = Vec::new();
    let (driver, _) = scan_text(text, driver, |a| alerts.push(a))?;
    Ok((driver, alerts))
}

/// What [`scan`] read from a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    pub driver: String,
    pub count: usize,
    /// Alerts the sender left out of the body: Alertmanager's and Grafana's
    /// `truncatedAlerts`, set when a group outgrows the receiver's
    /// `max_alerts`. herald never sees those alerts.
    pub truncated: u64,
}

/// Hands every alert in the JSON text to `f`, one at a time; returns the
/// driver and the count.
pub fn scan_text(
    text: &str,
    driver: Option<&str>,
    f: impl FnMut(Alert),
) -> Result<(String, usize), PayloadError> {
    scan(text, driver, f).map(|s| (s.driver, s.count))
}

/// Hands every alert in the JSON text to `f`, one at a time; returns the
/// driver, the count, and what the sender said it left out. The list formats (Alertmanager, Grafana,
/// Prometheus) are streamed, so a body of any size is read in the memory of
/// one alert; the others are small and read whole.
pub fn scan(
    text: &str,
    driver: Option<&str>,
    mut f: impl FnMut(Alert),
) -> Result<Scanned, PayloadError> {
    let (driver, listed) = match driver {
        None | Some("auto") => detect::detect_text_listed(text)?,
        Some(d) => (detect::known(d)?, None),
    };
    let mut truncated = 0;
    let count = match driver {
        "alertmanager" => {
            let (count, left_out) = alertmanager::scan_text(text, &mut f)?;
            truncated = left_out;
            count
        }
        // Detection already knows whether this is the unified (listed) or
        // the legacy body; a forced `grafana` tries unified first.
        "grafana" if listed == Some(false) => {
            let mut alert = grafana::legacy(&parse_tree(text)?)?;
            alert.raw = RawValue::from_string(text.to_string()).ok();
            f(alert);
            1
        }
        "grafana" => {
            let (count, left_out) = grafana::scan_text(text, &mut f)?;
            truncated = left_out;
            count
        }
        "prometheus" => prometheus::scan_text(text, &mut f)?,
        "herald" => herald::scan_text(text, &mut f)?,
        other => {
            let value = parse_tree(text)?;
            let alerts = match other {
                "pagerduty" => pagerduty::normalize(&value)?,
                "datadog" => datadog::normalize(&value)?,
                "newrelic" => newrelic::normalize(&value)?,
                "opsgenie" => opsgenie::normalize(&value)?,
                "zabbix" => zabbix::normalize(&value)?,
                _ => generic::normalize(&value)?,
            };
            let n = alerts.len();
            for mut alert in alerts {
                // An alert that is the whole body keeps the body as its raw,
                // as received (no second serialization).
                if alert.raw.is_none() && n == 1 {
                    alert.raw = RawValue::from_string(text.to_string()).ok();
                }
                f(alert);
            }
            n
        }
    };
    Ok(Scanned {
        driver: driver.to_string(),
        count,
        truncated,
    })
}

fn parse_tree(text: &str) -> Result<json::Json<'_>, PayloadError> {
    serde_json::from_str(text).map_err(|e| PayloadError(format!("invalid JSON: {e}")))
}

/// The host or instance an alert is about: the first of its `instance`,
/// `instance_id`, `hostname` and `host` labels. Incidents group by it.
pub fn instance_of(alert: &Alert) -> Option<&str> {
    ["instance", "instance_id", "hostname", "host"]
        .iter()
        .find_map(|k| alert.labels.get(*k).map(String::as_str))
        .filter(|s| !s.is_empty())
}

/// A stable fingerprint for senders that give none: sha256 of the name and
/// the labels sorted by key (`name`, then `\0key=value` for each), first 16
/// hex digits.
pub fn fingerprint(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    for (k, v) in labels {
        hasher.update([0]);
        hasher.update(k.as_bytes());
        hasher.update([b'=']);
        hasher.update(v.as_bytes());
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for b in &hasher.finalize()[..8] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
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
