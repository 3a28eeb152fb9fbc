//! Reading a vendor's JSON object field by field, with errors that name the
//! field that is missing (`pagerduty: missing `event.data.id``) — what a
//! user needs to fix a webhook template.

use super::PayloadError;
use super::json::Json;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// An object inside a payload, with the path that leads to it.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a, 'j> {
    pub members: &'a [(Cow<'j, str>, Json<'j>)],
    path: &'a str,
    driver: &'static str,
}

impl<'a, 'j> Obj<'a, 'j> {
    /// The payload itself, which must be an object.
    pub fn root(driver: &'static str, value: &'a Json<'j>) -> Result<Obj<'a, 'j>, PayloadError> {
        match value {
            Json::Object(members) => Ok(Obj {
                members,
                path: "",
                driver,
            }),
            other => Err(PayloadError(format!(
                "a {driver} payload is a JSON object, found {}",
                other.kind()
            ))),
        }
    }

    /// An object found elsewhere (an element of a list), named by `path`.
    pub fn at(
        driver: &'static str,
        value: &'a Json<'j>,
        path: &'a str,
    ) -> Result<Obj<'a, 'j>, PayloadError> {
        match value {
            Json::Object(members) => Ok(Obj {
                members,
                path,
                driver,
            }),
            other => Err(PayloadError(format!(
                "{driver}: `{path}` must be an object, found {}",
                other.kind()
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

    /// A member, if present.
    pub fn get(&self, key: &str) -> Option<&'a Json<'j>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A member as text: strings as they are (empty ones count as absent),
    /// numbers and booleans written out.
    pub fn text(&self, key: &str) -> Option<String> {
        self.get(key)
            .and_then(Json::scalar_text)
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
    pub fn object(&self, key: &'a str) -> Option<Obj<'a, 'j>> {
        match self.get(key) {
            Some(Json::Object(members)) => Some(Obj {
                members,
                path: key,
                driver: self.driver,
            }),
            _ => None,
        }
    }

    pub fn require_object(&self, key: &'a str) -> Result<Obj<'a, 'j>, PayloadError> {
        self.object(key).ok_or_else(|| self.missing(&[key]))
    }

    pub fn array(&self, key: &str) -> Option<&'a [Json<'j>]> {
        match self.get(key) {
            Some(Json::Array(items)) => Some(items),
            _ => None,
        }
    }

    /// A member object's scalar members as a string map.
    pub fn strings(&self, key: &str) -> BTreeMap<String, String> {
        string_map(self.get(key))
    }

    /// This object's JSON, to keep as the alert's `raw` (for an alert that
    /// is one item of a body; a whole-body alert keeps the body's text).
    pub fn raw(&self) -> Option<Box<RawValue>> {
        struct Members<'x, 'y>(&'x [(Cow<'y, str>, Json<'y>)]);
        impl serde::Serialize for Members<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
        }
        serde_json::value::to_raw_value(&Members(self.members)).ok()
    }
}

/// A JSON object's scalar members as a label map (numbers and booleans are
/// written out; nested values are skipped).
pub(crate) fn string_map(value: Option<&Json<'_>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(Json::Object(members)) = value {
        for (k, v) in members {
            if let Some(s) = v.scalar_text() {
                out.insert(k.to_string(), s);
            }
        }
    }
    out
}

/// `"a:b, c"` or `["a:b", "c"]` tags → labels (`a=b`, `c=""`).
pub(crate) fn tags(value: Option<&Json<'_>>) -> BTreeMap<String, String> {
    let items: Vec<String> = match value {
        Some(Json::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Some(Json::Array(list)) => list.iter().filter_map(Json::scalar_text).collect(),
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
