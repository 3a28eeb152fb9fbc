//! Durations as definitions and config.toml write them: `"500ms"`, `"30s"`,
//! `"5m"`, `"1h 30m"`, `"30d"`.

use std::time::Duration;

/// Parses a human duration; the error says what a valid one looks like.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!(
            "`{text}` is not a duration ({e}); write it like \"500ms\", \"30s\", \"5m\" or \"1h\""
        )
    })
}

/// Formats a duration the way it would be written in a definition.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// serde helpers for `Duration` fields written as human strings.
pub mod serde_human {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn rejects_garbage_with_an_example() {
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("\"30s\""), "{err}");
    }
}
