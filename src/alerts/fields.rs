//! Reading a vendor's JSON object field by field, with errors that name the
//! field that is missing (`pagerduty: missing `event.data.id``) — what a
//! user needs to fix a webhook template.

use super::PayloadError;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An object inside a payload, with the path that leads to it.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    path: &'a str,
    driver: &'static str,
}

impl<'a> Obj<'a> {
    /// The payload itself, which must be an object.
    pub fn root(driver: &'static str, value: &'a Value) -> Result<Obj<'a>, PayloadError> {
        match value {
            Value::Object(map) => Ok(Obj {
                map,
                path: "",
                driver,
            }),
            other => Err(PayloadError(format!(
                "a {driver} payload is a JSON object, found {}",
                crate::definition::kind_of(other)
            ))),
        }
    }

    /// An object found elsewhere (an element of a list), named by `path`.
    pub fn at(
        driver: &'static str,
        value: &'a Value,
        path: &'a str,
    ) -> Result<Obj<'a>, PayloadError> {
        match value {
            Value::Object(map) => Ok(Obj { map, path, driver }),
            other => Err(PayloadError(format!(
                "{driver}: `{path}` must be an object, found {}",
                crate::definition::kind_of(other)
            ))),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A member as text: strings as they are (empty ones count as absent),
    /// numbers and booleans written out.
    pub fn text(&self, key: &str) -> Option<String> {
        self.map
            .get(key)
            .and_then(scalar_text)
            .filter(|s| !s.trim().is_empty())
    }

    /// The first of `keys` that is present, as text.
    pub fn first(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| self.text(k))
    }

    /// Like [`first`](Self::first), or an error naming the field(s).
    pub fn require(&self, keys: &[&str]) -> Result<String, PayloadError> {
        self.first(keys).ok_or_else(|| self.missing(keys))
    }

    pub fn missing(&self, keys: &[&str]) -> PayloadError {
        let first = format!("`{}`", self.name(keys[0]));
        let others: Vec<String> = keys[1..]
            .iter()
            .map(|k| format!("`{}`", self.name(k)))
            .collect();
        let alternatives = if others.is_empty() {
            String::new()
        } else {
            format!(" (or {})", others.join(", "))
        };
        PayloadError(format!(
            "{}: missing required field {first}{alternatives}",
            self.driver
        ))
    }

    /// A member that is an object, if it is one.
    pub fn object(&self, key: &'a str) -> Option<Obj<'a>> {
        match self.map.get(key) {
            Some(Value::Object(map)) => Some(Obj {
                map,
                path: key,
                driver: self.driver,
            }),
            _ => None,
        }
    }

    pub fn require_object(&self, key: &'a str) -> Result<Obj<'a>, PayloadError> {
        self.object(key).ok_or_else(|| self.missing(&[key]))
    }

    pub fn array(&self, key: &str) -> Option<&'a Vec<Value>> {
        self.map.get(key).and_then(Value::as_array)
    }

    /// A member object's scalar members as a string map.
    pub fn strings(&self, key: &str) -> BTreeMap<String, String> {
        string_map(self.map.get(key))
    }

    /// This object's JSON, to keep as the alert's `raw`.
    pub fn raw(&self) -> Option<Box<RawValue>> {
        serde_json::value::to_raw_value(self.map).ok()
    }
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

/// `"a:b, c"` or `["a:b", "c"]` tags → labels (`a=b`, `c=""`).
pub(crate) fn tags(value: Option<&Value>) -> BTreeMap<String, String> {
    let items: Vec<String> = match value {
        Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Some(Value::Array(list)) => list.iter().filter_map(scalar_text).collect(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|t| match t.split_once(':') {
            Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
            None => (t, String::new()),
        })
        .collect()
}
