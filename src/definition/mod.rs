//! Pipeline definitions: the JSON format, its validation, and the loaded set.
//!
//! A definition file is parsed into a [`Definition`] whose nodes already hold
//! their built executors, so a loaded definition is known to be runnable.
//! Everything wrong with a file is reported at once, each problem with the file,
//! the JSON path and the line ([`DefinitionError`]).

mod builtin;
pub mod condition;
pub mod duration;
mod error;
mod locate;
mod parse;
pub mod set;

pub use builtin::{BUILTIN_NAME, builtin_definition};
pub use condition::Condition;
pub use error::{DefinitionError, Issue};
pub use parse::parse_definition;
pub use set::{DefinitionSet, Invalid, SharedDefinitions, load_file};

use crate::nodes::NodeExecutor;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A validated, runnable pipeline definition.
#[derive(Debug)]
pub struct Definition {
    /// The file stem, or `default` for the built-in pipeline.
    pub name: String,
    /// The `version` the author wrote.
    pub version: String,
    pub description: Option<String>,
    /// Hash of the file's bytes: what a run records as the version it ran.
    pub version_hash: String,
    pub schedule: Option<Schedule>,
    pub trigger: Option<Trigger>,
    pub defaults: Defaults,
    /// In file order; execution starts at the first and follows `next`.
    pub nodes: Vec<Node>,
    /// The document as written, for display.
    pub document: Value,
}

impl Definition {
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Name, description, version, node count, schedule, trigger and state,
    /// as listings show it.
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "version_hash": self.version_hash,
            "nodes": self.nodes.len(),
            "schedule": self.schedule,
            "trigger": self.trigger,
            "builtin": self.name == BUILTIN_NAME,
            "state": "ok",
            "errors": [],
        })
    }

    /// Node ids in execution order: the first node, then along `next`.
    pub fn chain(&self) -> Vec<&Node> {
        let mut out: Vec<&Node> = Vec::with_capacity(self.nodes.len());
        let mut current = self.nodes.first();
        while let Some(node) = current {
            if out.iter().any(|n| n.id == node.id) {
                break; // validation rejects cycles; never loop regardless
            }
            out.push(node);
            current = node.next.as_deref().and_then(|next| self.node(next));
        }
        out
    }
}

/// Run-wide defaults for retries and timeouts.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    /// Retries after the first attempt (3 → up to 4 attempts).
    pub max_retries: u32,
    pub timeout: Duration,
    /// First backoff step; doubles per retry, with full jitter, capped at 30s.
    pub backoff: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            max_retries: 3,
            timeout: Duration::from_secs(30),
            backoff: Duration::from_millis(500),
        }
    }
}

/// One node of a definition, ready to run.
pub struct Node {
    pub id: String,
    pub node_type: String,
    pub config: Value,
    pub next: Option<String>,
    pub required: bool,
    pub skip_if_errors: Vec<String>,
    pub skip_if_condition: Option<Condition>,
    /// Retries after the first attempt, resolved against the defaults.
    pub retries: u32,
    /// Per-attempt timeout, resolved against the defaults.
    pub timeout: Duration,
    pub executor: Arc<dyn NodeExecutor>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("node_type", &self.node_type)
            .field("next", &self.next)
            .field("required", &self.required)
            .field("retries", &self.retries)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// When a definition runs on its own.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Schedule {
    #[serde(flatten)]
    pub timing: Timing,
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_human")]
    pub jitter: Option<Duration>,
    pub catch_up: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    #[serde(with = "duration::serde_human")]
    Every(Duration),
    Cron(String),
}

mod opt_human {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serde_human::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// Which incoming alerts start a definition.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Trigger {
    /// Webhook drivers (`alertmanager`, `grafana`, …); empty = any.
    pub sources: Vec<String>,
    /// Alert fields (`severity`, `labels.team`) that must equal these values.
    #[serde(rename = "match")]
    pub matchers: Vec<(String, String)>,
    /// `firing` and/or `resolved`; empty = any.
    pub status: Vec<String>,
}

impl Trigger {
    /// Whether an alert from `source` starts the definition: the source is
    /// listed (or none are), the status is listed (or none are), and every
    /// `match` field (`severity`, `name`, `labels.team`, …) equals its value.
    pub fn matches(&self, source: &str, alert: &crate::alerts::Alert) -> bool {
        if !self.sources.is_empty() && !self.sources.iter().any(|s| s == source) {
            return false;
        }
        let text = |path: &str| alert.field(path);
        if !self.status.is_empty() && !self.status.iter().any(|s| s == alert.status.as_str()) {
            return false;
        }
        self.matchers
            .iter()
            .all(|(path, want)| text(path).as_deref() == Some(want.as_str()))
    }
}

/// The webhook sources herald knows by name, for `trigger.sources`: the
/// alert drivers.
pub const KNOWN_SOURCES: &[&str] = crate::alerts::DRIVERS;

/// "unknown key `x`" with the closest known key suggested.
pub fn unknown_key_message(key: &str, known: &[&str]) -> String {
    match did_you_mean(key, known) {
        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
        None => format!("unknown key `{key}`; known keys: {}", known.join(", ")),
    }
}

/// The closest candidate to `word`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Why a run listing filtered by `name` may be empty: no definition of
/// that name is loaded (a typo, most likely). `None` when one is, since
/// an empty page is then an answer. Runs of a definition since removed
/// stay listed under its name, so an unknown name is not an error.
pub fn unknown_definition_hint(name: &str, loaded: &[&str]) -> Option<String> {
    if loaded.contains(&name) {
        return None;
    }
    const LISTED: usize = 10;
    let guess = match did_you_mean(name, loaded) {
        Some(s) => format!("; did you mean `{s}`?"),
        None if loaded.len() > LISTED => format!(
            "; loaded: {}, and {} more",
            loaded[..LISTED].join(", "),
            loaded.len() - LISTED
        ),
        None => format!("; loaded: {}", loaded.join(", ")),
    };
    Some(format!(
        "no definition named `{name}` is loaded{guess} (runs of a removed definition are still listed under its name)"
    ))
}

/// "a string", "a number"… for error messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::unknown_definition_hint;

    #[test]
    fn an_unknown_definition_hint_names_the_closest_or_a_bounded_list() {
        assert_eq!(unknown_definition_hint("default", &["default"]), None);
        let typo = unknown_definition_hint("defualt", &["default", "health-check"]).unwrap();
        assert!(typo.contains("did you mean `default`?"), "{typo}");

        let many: Vec<String> = (0..12).map(|i| format!("pipeline-{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let far = unknown_definition_hint("zzz", &many).unwrap();
        assert!(far.contains("pipeline-09, and 2 more"), "{far}");
        assert!(!far.contains("pipeline-10"), "{far}");
    }
}
