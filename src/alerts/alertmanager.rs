//! Prometheus Alertmanager's webhook (version 4 envelope): one POST per
//! alert group, each entry of `alerts` an alert of its own. Also reads a bare
//! `{"alerts": [...]}` list without the envelope (the seed app's sample).
//!
//! The same entry shape is Grafana's unified alerting body and Prometheus's
//! own alert list, so the streaming reader here serves those drivers too.
//! The body is read straight into typed structs, one alert at a time, never
//! into a `serde_json::Value`: an alert storm's group can be tens of MB.

use super::{Alert, AlertStatus, PayloadError, Severity};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Alertmanager writes this `endsAt` for an alert that is still firing.
const NO_END: &str = "0001-01-01T00:00:00Z";

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

/// Reads an Alertmanager body, handing each alert to `f`; returns the count
/// and the envelope's `truncatedAlerts`.
pub fn scan_text(text: &str, f: &mut dyn FnMut(Alert)) -> Result<(usize, u64), PayloadError> {
    scan_envelope(text, "alertmanager", f)
}

/// Streams the `alerts` of an envelope (`{"status", "alerts": [...]}`).
/// Also answers the envelope's `truncatedAlerts`: how many alerts of the
/// group the sender left out of the body (Alertmanager's `max_alerts`).
pub(crate) fn scan_envelope(
    text: &str,
    source: &'static str,
    f: &mut dyn FnMut(Alert),
) -> Result<(usize, u64), PayloadError> {
    let mut failure = None;
    let mut truncated = 0;
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = EnvelopeSeed {
        truncated: &mut truncated,
        reader: Reader {
            f,
            failure: &mut failure,
            source,
            group_status: None,
            path: "alerts",
        },
    };
    let count = de.deserialize_map(seed);
    let count = finish(source, de, count, failure, || {
        PayloadError(format!("{source}: missing required field `alerts`"))
    })?;
    Ok((count, truncated))
}

/// Streams a top-level list of alerts (Prometheus's `/api/v2/alerts` body).
pub(crate) fn scan_list(
    text: &str,
    source: &'static str,
    f: &mut dyn FnMut(Alert),
) -> Result<usize, PayloadError> {
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let reader = Reader {
        f,
        failure: &mut failure,
        source,
        group_status: None,
        path: "",
    };
    let count = de.deserialize_seq(reader).map(Some);
    finish(source, de, count, failure, || unreachable_none(source))
}

fn unreachable_none(source: &str) -> PayloadError {
    PayloadError(format!("{source}: expected a list of alerts"))
}

fn finish(
    source: &str,
    mut de: serde_json::Deserializer<serde_json::de::StrRead<'_>>,
    count: Result<Option<usize>, serde_json::Error>,
    failure: Option<PayloadError>,
    missing: impl FnOnce() -> PayloadError,
) -> Result<usize, PayloadError> {
    if let Some(e) = failure {
        return Err(e);
    }
    let shape = |e: serde_json::Error| PayloadError(format!("not a {source} payload: {e}"));
    let count = count.map_err(shape)?;
    de.end().map_err(shape)?;
    match count {
        None => Err(missing()),
        Some(0) => Err(PayloadError(format!(
            "{source}: the `alerts` list is empty"
        ))),
        Some(n) => Ok(n),
    }
}

/// Reads the envelope's members, streaming `alerts` through the reader.
struct EnvelopeSeed<'a> {
    reader: Reader<'a>,
    truncated: &'a mut u64,
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with an `alerts` list")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
        let mut count = None;
        let mut group_status: Option<String> = None;
        let reader = self.reader;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "alerts" if count.is_none() => {
                    let status = group_status.clone();
                    count = Some(map.next_value_seed(Reader {
                        f: &mut *reader.f,
                        failure: &mut *reader.failure,
                        source: reader.source,
                        group_status: status.as_deref(),
                        path: reader.path,
                    })?)
                }
                // Alertmanager writes `status` before `alerts`; entries
                // without their own status take the group's.
                "status" => group_status = map.next_value::<Option<String>>()?,
                // Alerts of the group left out of this body; a value of
                // another type is not Alertmanager's, and ignored.
                "truncatedAlerts" => {
                    *self.truncated = map.next_value::<serde_json::Value>()?.as_u64().unwrap_or(0);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(count)
    }
}

/// Reads a list of alert entries, converting and handing over each.
struct Reader<'a> {
    f: &'a mut dyn FnMut(Alert),
    failure: &'a mut Option<PayloadError>,
    source: &'static str,
    group_status: Option<&'a str>,
    /// How the list is named in errors (`alerts`, or empty for a bare list).
    path: &'static str,
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of alerts")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut i = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            match convert(i, raw, self.group_status, self.source, self.path) {
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

fn convert(
    i: usize,
    raw: &RawValue,
    group_status: Option<&str>,
    source: &'static str,
    path: &str,
) -> Result<Alert, PayloadError> {
    let at = format!("{path}[{i}]");
    let entry: Entry = serde_json::from_str(raw.get())
        .map_err(|e| PayloadError(format!("{source}: `{at}` is not an alert: {e}")))?;
    let labels = strings(entry.labels);
    let annotations = strings(entry.annotations);
    let name = labels.get("alertname").cloned().ok_or_else(|| {
        PayloadError(format!(
            "{source}: missing required field `{at}.labels.alertname`"
        ))
    })?;
    let ends_at = entry.ends_at.filter(|t| !t.is_empty() && t != NO_END);
    let (status, status_raw) = match entry.status.as_deref().or(group_status) {
        Some(text) => match AlertStatus::parse(text) {
            Some(s) => (s, None),
            // An unknown word is kept; the alert counts as firing, because
            // dropping it could hide a real problem.
            None => (AlertStatus::Firing, Some(text.to_string())),
        },
        // Prometheus's own list has no status: an end in the past means resolved.
        None => (ended(ends_at.as_deref()), None),
    };
    let mut alert = Alert::new(source, name, status);
    alert.status_raw = status_raw;
    alert.set_severity(labels.get("severity").map(String::as_str), Severity::parse);
    alert.description = ["description", "summary", "message"]
        .iter()
        .find_map(|k| annotations.get(*k).cloned())
        .unwrap_or_default();
    alert.starts_at = entry.starts_at.filter(|t| !t.is_empty());
    alert.ends_at = ends_at;
    alert.generator_url = entry.generator_url.filter(|u| !u.is_empty());
    alert.labels = labels;
    alert.annotations = annotations;
    alert.raw = Some(raw.to_owned());
    Ok(alert.fingerprint_or_hash(entry.fingerprint))
}

/// Resolved when `ends_at` is a time already past.
fn ended(ends_at: Option<&str>) -> AlertStatus {
    match ends_at.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(end) if end <= chrono::Utc::now() => AlertStatus::Resolved,
        _ => AlertStatus::Firing,
    }
}
