//! A plain JSON alert: `{"name", "status", "severity", "description",
//! "labels"}`. Also takes the common synonyms (`alertname`, `title`,
//! `message`, `summary`), so a flat alert keyed by `alertname` — like the seed
//! app's "grafana" sample — is read by name, not as "Unknown Alert".
//! Top-level scalar members that are not the alert's own fields are labels
//! (`instance`, `job`, …). Fingerprint: `fingerprint` if given, else the
//! hash of name and labels.

use super::fields::Obj;
use super::json::Json;
use super::{Alert, AlertStatus, PayloadError, Severity};

/// Top-level keys that are the alert itself, not labels.
const OWN_KEYS: &[&str] = &[
    "name",
    "alertname",
    "title",
    "status",
    "severity",
    "description",
    "message",
    "summary",
    "labels",
    "annotations",
    "fingerprint",
    "startsAt",
    "endsAt",
    "starts_at",
    "ends_at",
    "generatorURL",
    "generator_url",
];

pub fn normalize(payload: &Json<'_>) -> Result<Vec<Alert>, PayloadError> {
    let body = Obj::root("generic", payload)?;
    let name = body.require(&["name", "alertname", "title"])?;
    let mut labels = body.strings("labels");
    for (k, v) in body.members {
        if !OWN_KEYS.contains(&k.as_ref())
            && let Some(text) = v.scalar_text()
        {
            labels.entry(k.to_string()).or_insert(text);
        }
    }
    let (status, status_raw) = match body.text("status") {
        None => (AlertStatus::Firing, None),
        Some(s) => match AlertStatus::parse(&s) {
            Some(st) => (st, None),
            None => (AlertStatus::Firing, Some(s)),
        },
    };
    let mut alert = Alert::new("generic", name, status);
    alert.status_raw = status_raw;
    let severity = body
        .text("severity")
        .or_else(|| labels.get("severity").cloned());
    alert.set_severity(severity.as_deref(), Severity::parse);
    alert.labels = labels;
    alert.description = body
        .first(&["description", "message", "summary"])
        .unwrap_or_default();
    alert.annotations = body.strings("annotations");
    alert.starts_at = body.first(&["startsAt", "starts_at"]);
    alert.ends_at = body.first(&["endsAt", "ends_at"]);
    alert.generator_url = body.first(&["generatorURL", "generator_url"]);
    Ok(vec![alert.fingerprint_or_hash(body.text("fingerprint"))])
}
