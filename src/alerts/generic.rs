//! A plain JSON alert: `{"name", "status", "severity", "description",
//! "labels"}`. Also takes the common synonyms (`alertname`, `title`,
//! `message`, `summary`), so a flat alert keyed by `alertname` — like the seed
//! app's "grafana" sample — is read by name, not as "Unknown Alert".

use super::{
    Alert, AlertStatus, PayloadError, Severity, fingerprint, first_string, scalar_text, string_map,
};
use serde_json::Value;

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
];

pub fn normalize(payload: &Value) -> Result<Vec<Alert>, PayloadError> {
    let map = payload.as_object().ok_or_else(|| {
        PayloadError(format!(
            "a generic alert is a JSON object with at least `name`, found {}",
            crate::definition::kind_of(payload)
        ))
    })?;
    let name = first_string(map, &["name", "alertname", "title"])
        .map(str::to_string)
        .ok_or_else(|| {
            PayloadError("a generic alert needs `name` (or `alertname`, or `title`)".to_string())
        })?;
    let mut labels = string_map(map.get("labels"));
    // Flat alerts put labels at the top level (`instance`, `job`…).
    for (k, v) in map {
        if !OWN_KEYS.contains(&k.as_str())
            && let Some(text) = scalar_text(v)
        {
            labels.entry(k.clone()).or_insert(text);
        }
    }
    let status = match first_string(map, &["status"]) {
        None => AlertStatus::Firing,
        Some(s) => AlertStatus::parse(s).ok_or_else(|| {
            PayloadError(format!(
                "status `{s}` is neither \"firing\" nor \"resolved\""
            ))
        })?,
    };
    let severity_text =
        first_string(map, &["severity"]).or(labels.get("severity").map(String::as_str));
    let severity = severity_text.and_then(Severity::parse);
    let fp = first_string(map, &["fingerprint"])
        .map(str::to_string)
        .unwrap_or_else(|| fingerprint(&name, &labels));
    Ok(vec![Alert {
        fingerprint: fp,
        severity: severity.unwrap_or(Severity::Warning),
        severity_raw: match (severity_text, severity) {
            (Some(raw), None) => Some(raw.to_string()),
            _ => None,
        },
        description: first_string(map, &["description", "message", "summary"])
            .unwrap_or_default()
            .to_string(),
        annotations: string_map(map.get("annotations")),
        starts_at: first_string(map, &["startsAt", "starts_at"]).map(str::to_string),
        ends_at: first_string(map, &["endsAt", "ends_at"]).map(str::to_string),
        source: "generic".to_string(),
        generator_url: first_string(map, &["generatorURL"]).map(str::to_string),
        name,
        status,
        labels,
    }])
}
