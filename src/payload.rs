//! The payload a run was started with, kept as JSON text.
//!
//! A webhook body can be tens of MB (a whole Alertmanager group in an alert
//! storm). Parsed into a `serde_json::Value` it takes several times its size,
//! so herald keeps the text — shared, never copied per run — and parses it
//! into a `Value` only when a node asks for one. The ingest node reads alerts
//! straight from the text into typed structs instead. The text is an
//! `Arc<String>` rather than an `Arc<str>` so that a body becomes a payload
//! without being copied: `Arc<str>::from(String)` copies all 50 MB.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Default)]
pub struct Payload {
    /// Valid JSON text; `None` for no payload.
    text: Option<Arc<String>>,
    parsed: Arc<OnceLock<Value>>,
}

impl Payload {
    pub fn none() -> Self {
        Payload::default()
    }

    /// From a parsed value (API bodies, the CLI).
    pub fn from_value(value: Value) -> Self {
        if value.is_null() {
            return Payload::none();
        }
        let text = Arc::new(value.to_string());
        let parsed = OnceLock::new();
        let _ = parsed.set(value);
        Payload {
            text: Some(text),
            parsed: Arc::new(parsed),
        }
    }

    /// From JSON text the caller has already checked is valid JSON.
    pub fn from_json_text(text: String) -> Self {
        if text.trim() == "null" || text.trim().is_empty() {
            return Payload::none();
        }
        Payload {
            text: Some(Arc::new(text)),
            parsed: Arc::new(OnceLock::new()),
        }
    }

    pub fn is_none(&self) -> bool {
        self.text.is_none()
    }

    pub fn text(&self) -> Option<&str> {
        self.text.as_deref().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.text.as_ref().map_or(0, |t| t.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as a `Value`, parsed on first use (`null` when none).
    pub fn value(&self) -> &Value {
        self.parsed.get_or_init(|| match &self.text {
            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            None => Value::Null,
        })
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (&self.text, &other.text) {
            (None, None) => true,
            (Some(_), Some(_)) => self.value() == other.value(),
            _ => false,
        }
    }
}

/// Serialized as the JSON it holds, written out verbatim.
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.text {
            None => s.serialize_none(),
            Some(text) => {
                let raw: &RawValue =
                    serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
                raw.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<RawValue> = Deserialize::deserialize(d)?;
        Ok(Payload::from_json_text(raw.get().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_verbatim_inside_another_document() {
        let p = Payload::from_json_text(r#"{"b": 1, "a": [true]}"#.to_string());
        let outer = serde_json::to_string(&json!({"payload": p})).unwrap();
        assert!(
            outer.contains(r#""b": 1"#) || outer.contains(r#""b":1"#),
            "{outer}"
        );
        let back: Payload = serde_json::from_value(json!({"x": 2})).unwrap();
        assert_eq!(back.value(), &json!({"x": 2}));
        assert!(Payload::from_value(Value::Null).is_none());
    }

    #[test]
    fn parses_lazily_and_shares_the_text() {
        let p = Payload::from_json_text("[1, 2]".to_string());
        let q = p.clone();
        assert_eq!(q.value(), &json!([1, 2]));
        assert_eq!(p.text(), q.text());
    }
}
