//! Which driver reads a body, from its shape alone.
//!
//! Detection looks at the top-level keys only (and, for a bare list, that it
//! is one), so it costs one pass over the text with nothing kept, whatever
//! the body's size. The rules go from the most specific shape to the least,
//! and never by "first that parses": Grafana's unified body has the same
//! `alerts`/`status`/`receiver`/`groupKey` as Alertmanager's, and is told
//! apart by `orgId`, `state`, `title` or `version: "1"`.

use super::PayloadError;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;

/// Payload formats known to this build, and what each expects — the text of
/// the 400 a body that matches none of them gets.
pub const EXPECTS: &[(&str, &str)] = &[
    (
        "alertmanager",
        "Alertmanager webhook v4: an object with an `alerts` list (and `version: \"4\"`, `groupKey`)",
    ),
    (
        "grafana",
        "Grafana unified alerting (`alerts` with `orgId`/`state`/`title`) or legacy (`ruleName`, `state`, `evalMatches`)",
    ),
    (
        "prometheus",
        "a JSON list of alerts, each with `labels.alertname`, as POSTed to /api/v2/alerts",
    ),
    (
        "pagerduty",
        "PagerDuty webhook v3 (`event` with `event_type` and `data`) or v2 (`messages` list)",
    ),
    (
        "datadog",
        "Datadog webhook: `alert_id` or `id`, `title`, `alert_transition` or `alert_type`",
    ),
    (
        "newrelic",
        "New Relic: classic (`incident_id`, `condition_name`, `current_state`) or workflow (`issueUrl` or `issueId`, `title`, `state`, `priority`)",
    ),
    (
        "opsgenie",
        "Opsgenie webhook: `action` and an `alert` object with `alertId` and `message`",
    ),
    (
        "zabbix",
        "Zabbix webhook media: `event_id`, `trigger_name` or `event_name`, `host`, `severity`, `status`",
    ),
    (
        "herald",
        "another herald host's forward: a `herald` object and an `alerts` list of normalized alerts",
    ),
    (
        "generic",
        "a JSON object with `name` (or `alertname`, or `title`); optional `status`, `severity`, `description`, `labels`",
    ),
];

/// The driver names, in [`EXPECTS`] order.
pub const DRIVERS: &[&str] = &[
    "alertmanager",
    "grafana",
    "prometheus",
    "pagerduty",
    "datadog",
    "newrelic",
    "opsgenie",
    "zabbix",
    "herald",
    "generic",
];

/// `name` as this build's static driver name, or an error listing them.
pub fn known(name: &str) -> Result<&'static str, PayloadError> {
    DRIVERS.iter().copied().find(|d| *d == name).ok_or_else(|| {
        PayloadError(format!(
            "unknown alert driver `{name}`; known: {}",
            DRIVERS.join(", ")
        ))
    })
}

/// The driver for a body, or an error naming every driver and what it
/// expects.
pub fn detect_text(text: &str) -> Result<&'static str, PayloadError> {
    let shape = Shape::read(text)?;
    pick(&shape).ok_or_else(|| no_match(&shape))
}

/// [`detect_text`], and whether the body carries a list of alerts (an
/// `alerts` member, or is a list): Grafana's unified and legacy bodies are
/// read differently.
pub(crate) fn detect_text_listed(text: &str) -> Result<(&'static str, Option<bool>), PayloadError> {
    let shape = Shape::read(text)?;
    let listed = shape.list || shape.keys.iter().any(|k| k == "alerts");
    let driver = pick(&shape).ok_or_else(|| no_match(&shape))?;
    Ok((driver, Some(listed)))
}

fn pick(shape: &Shape<'_>) -> Option<&'static str> {
    if shape.list {
        return Some("prometheus");
    }
    let has = |k: &str| shape.keys.iter().any(|key| key == k);
    if has("herald") && has("alerts") {
        return Some("herald");
    }
    if has("alerts") {
        let grafana =
            has("orgId") || has("state") || has("title") || shape.version.as_deref() == Some("1");
        return Some(if grafana { "grafana" } else { "alertmanager" });
    }
    if has("evalMatches") || has("ruleName") || (has("ruleId") && has("state")) {
        return Some("grafana");
    }
    if has("event") || has("messages") {
        return Some("pagerduty");
    }
    if has("alert_transition") || (has("alert_id") && (has("alert_type") || has("event_type"))) {
        return Some("datadog");
    }
    if has("condition_name") && (has("incident_id") || has("current_state"))
        || has("issueUrl")
        || (has("issueId") && has("priority"))
        || (has("state") && has("priority") && (has("impactedEntities") || has("alertPolicyNames")))
    {
        return Some("newrelic");
    }
    if has("action") && has("alert") {
        return Some("opsgenie");
    }
    if has("trigger_name")
        || has("event_nseverity")
        || ((has("event_id") || has("eventid")) && (has("trigger_id") || has("host")))
    {
        return Some("zabbix");
    }
    if has("name") || has("alertname") || has("title") {
        return Some("generic");
    }
    None
}

fn no_match(shape: &Shape<'_>) -> PayloadError {
    let found = if shape.array {
        "a JSON list that is not a list of alerts".to_string()
    } else if shape.object {
        let mut keys: Vec<&str> = shape.keys.iter().map(|k| k.as_ref()).collect();
        keys.sort_unstable();
        keys.truncate(12);
        format!("an object with keys {}", keys.join(", "))
    } else {
        "a JSON value that is not an object".to_string()
    };
    let expects: Vec<String> = EXPECTS.iter().map(|(d, e)| format!("{d}: {e}")).collect();
    PayloadError(format!(
        "no driver recognises this payload ({found}); use /alerts/webhook/<driver>/ to force one. Drivers: {}",
        expects.join("; ")
    ))
}

/// What detection needs of a body: its top-level keys, and `version`.
#[derive(Default)]
struct Shape<'a> {
    object: bool,
    /// A JSON list…
    array: bool,
    /// …whose first element is an object.
    list: bool,
    /// A handful at most: a list beats a hash set here.
    keys: Vec<Cow<'a, str>>,
    version: Option<String>,
}

impl<'a> Shape<'a> {
    fn read(text: &'a str) -> Result<Shape<'a>, PayloadError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let shape = de
            .deserialize_any(ShapeVisitor)
            .map_err(|e| PayloadError(format!("invalid JSON: {e}")))?;
        de.end()
            .map_err(|e| PayloadError(format!("invalid JSON: {e}")))?;
        Ok(shape)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object or list")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
        let mut shape = Shape {
            object: true,
            ..Shape::default()
        };
        while let Some(super::json::Key(key)) = map.next_key::<super::json::Key<'de>>()? {
            if key == "version" {
                shape.version = match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
            shape.keys.push(key);
        }
        Ok(shape)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape<'de>, A::Error> {
        // A list is Prometheus's only if its first element is an object.
        let mut list = false;
        let mut first = true;
        while let Some(v) = seq.next_element::<ObjectProbe>()? {
            if first {
                list = v.0;
                first = false;
            }
        }
        Ok(Shape {
            array: true,
            list,
            ..Shape::default()
        })
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape<'de>, E> {
        Ok(Shape::default())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape<'de>, E> {
        Ok(Shape::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape<'de>, E> {
        Ok(Shape::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape<'de>, E> {
        Ok(Shape::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape<'de>, E> {
        Ok(Shape::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Shape<'de>, E> {
        Ok(Shape::default())
    }
}

/// Whether a list element is an object, reading nothing of it.
struct ObjectProbe(bool);

impl<'de> de::Deserialize<'de> for ObjectProbe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ObjectProbe;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectProbe, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ObjectProbe(true))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ObjectProbe, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ObjectProbe(false))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ObjectProbe, E> {
                Ok(ObjectProbe(false))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ObjectProbe, E> {
                Ok(ObjectProbe(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ObjectProbe, E> {
                Ok(ObjectProbe(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ObjectProbe, E> {
                Ok(ObjectProbe(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ObjectProbe, E> {
                Ok(ObjectProbe(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ObjectProbe, E> {
                Ok(ObjectProbe(false))
            }
        }
        d.deserialize_any(V)
    }
}
