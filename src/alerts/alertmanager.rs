//! Prometheus Alertmanager's webhook (version 4 envelope): one POST per
//! alert group, each entry of `alerts` an alert of its own. Also reads a bare
//! `{"alerts": [...]}` list without the envelope (the seed app's sample).
//!
//! The body is read straight into typed structs, never into a
//! `serde_json::Value`: an alert storm's group can be tens of MB.

use super::{Alert, AlertStatus, PayloadError, Severity, fingerprint};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::collections::BTreeMap;

/// Alertmanager writes this `endsAt` for an alert that is still firing.
const NO_END: &str = "0001-01-01T00:00:00Z";

#[derive(Deserialize)]
struct Envelope {
    alerts: Vec<Entry>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    annotations: BTreeMap<String, Scalar>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// A label value: strings as they are, numbers and booleans written out,
/// anything else dropped.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a label value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(Some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An object with an `alerts` member and without Grafana's envelope keys.
pub fn looks_like(payload: &Value) -> bool {
    payload.get("alerts").is_some() && !is_grafana(payload.get("orgId"), payload.get("state"))
}

/// Grafana's unified alerting body has the same `alerts` list; its envelope
/// carries `orgId`/`state`, which Alertmanager never sends.
pub(crate) fn is_grafana<T>(org_id: Option<T>, state: Option<T>) -> bool {
    org_id.is_some() || state.is_some()
}

pub fn normalize(payload: &Value) -> Result<Vec<Alert>, PayloadError> {
    let envelope = Envelope::deserialize(payload).map_err(shape_error)?;
    if envelope.alerts.is_empty() {
        return Err(empty());
    }
    let group = envelope.status;
    envelope
        .alerts
        .into_iter()
        .enumerate()
        .map(|(i, entry)| convert(i, entry, group.as_deref()))
        .collect()
}

/// Reads the webhook body text directly.
pub fn normalize_text(text: &str) -> Result<Vec<Alert>, PayloadError> {
    let mut alerts = Vec::new();
    scan_text(text, |a| alerts.push(a))?;
    Ok(alerts)
}

/// Hands each alert of the body to `f` as it is read, one at a time, so a
/// group of any size is read in the memory of one alert. Returns the count.
pub fn scan_text(text: &str, mut f: impl FnMut(Alert)) -> Result<usize, PayloadError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut failure = None;
    let seed = EnvelopeSeed {
        f: &mut f,
        failure: &mut failure,
    };
    let count = seed.deserialize(&mut de);
    if let Some(e) = failure {
        return Err(e);
    }
    let count = count.map_err(shape_error)?;
    de.end().map_err(shape_error)?;
    match count {
        None => Err(PayloadError(
            "not an Alertmanager webhook: missing field `alerts`".to_string(),
        )),
        Some(0) => Err(empty()),
        Some(n) => Ok(n),
    }
}

fn empty() -> PayloadError {
    PayloadError("the `alerts` list is empty".to_string())
}

fn shape_error(e: serde_json::Error) -> PayloadError {
    PayloadError(format!("not an Alertmanager webhook: {e}"))
}

/// Reads the envelope's members, streaming `alerts` through the callback.
struct EnvelopeSeed<'a, F> {
    f: &'a mut F,
    failure: &'a mut Option<PayloadError>,
}

impl<'de, F: FnMut(Alert)> DeserializeSeed<'de> for EnvelopeSeed<'_, F> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Alert)> Visitor<'de> for EnvelopeSeed<'_, F> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with an `alerts` list")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
        let mut count = None;
        let mut group_status: Option<String> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "alerts" => {
                    count = Some(map.next_value_seed(AlertsSeed {
                        f: &mut *self.f,
                        failure: &mut *self.failure,
                        group_status: group_status.as_deref(),
                    })?)
                }
                // Alertmanager writes `status` before `alerts`; entries
                // without their own status take the group's.
                "status" => group_status = map.next_value::<Option<String>>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(count)
    }
}

struct AlertsSeed<'a, F> {
    f: &'a mut F,
    failure: &'a mut Option<PayloadError>,
    group_status: Option<&'a str>,
}

impl<'de, F: FnMut(Alert)> DeserializeSeed<'de> for AlertsSeed<'_, F> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Alert)> Visitor<'de> for AlertsSeed<'_, F> {
    type Value = usize;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of alerts")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut i = 0;
        while let Some(entry) = seq.next_element::<Entry>()? {
            match convert(i, entry, self.group_status) {
                Ok(alert) => (self.f)(alert),
                Err(e) => {
                    let message = e.0.clone();
                    *self.failure = Some(e);
                    return Err(de::Error::custom(message));
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

fn strings(map: BTreeMap<String, Scalar>) -> BTreeMap<String, String> {
    map.into_iter()
        .filter_map(|(k, v)| v.0.map(|v| (k, v)))
        .collect()
}

fn convert(i: usize, entry: Entry, group_status: Option<&str>) -> Result<Alert, PayloadError> {
    let labels = strings(entry.labels);
    let annotations = strings(entry.annotations);
    let name = labels
        .get("alertname")
        .cloned()
        .ok_or_else(|| PayloadError(format!("alerts[{i}].labels has no `alertname`")))?;
    let status_text = entry.status.as_deref().or(group_status).unwrap_or("firing");
    let status = AlertStatus::parse(status_text).ok_or_else(|| {
        PayloadError(format!(
            "alerts[{i}].status `{status_text}` is neither \"firing\" nor \"resolved\""
        ))
    })?;
    let severity_text = labels.get("severity").cloned();
    let severity = severity_text.as_deref().and_then(Severity::parse);
    let description = ["description", "summary", "message"]
        .iter()
        .find_map(|k| annotations.get(*k).cloned())
        .unwrap_or_default();
    let fp = entry
        .fingerprint
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| fingerprint(&name, &labels));
    Ok(Alert {
        fingerprint: fp,
        name,
        status,
        severity: severity.unwrap_or(Severity::Warning),
        severity_raw: match (severity_text, severity) {
            (Some(raw), None) => Some(raw),
            _ => None,
        },
        description,
        starts_at: entry.starts_at.filter(|t| !t.is_empty()),
        ends_at: entry.ends_at.filter(|t| !t.is_empty() && t != NO_END),
        source: "alertmanager".to_string(),
        generator_url: entry.generator_url.filter(|u| !u.is_empty()),
        labels,
        annotations,
    })
}
