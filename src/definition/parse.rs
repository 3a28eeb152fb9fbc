//! Turns the text of one definition file into a [`Definition`], or into every
//! problem the file has. Reads the JSON by hand rather than through serde
//! derive so that it can keep going after the first problem and name the exact
//! path of each.

use super::condition::{Condition, is_identifier};
use super::duration::parse_duration;
use super::locate::locate;
use super::{
    Defaults, Definition, DefinitionError, Issue, KNOWN_SOURCES, Node, Schedule, Timing, Trigger,
    did_you_mean, kind_of, unknown_key_message,
};
use crate::nodes::HandlerRegistry;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

const TOP_KEYS: &[&str] = &[
    "version",
    "description",
    "schedule",
    "trigger",
    "defaults",
    "nodes",
];
const NODE_KEYS: &[&str] = &[
    "id",
    "type",
    "description",
    "config",
    "next",
    "required",
    "skip_if_errors",
    "skip_if_condition",
    "retries",
    "timeout",
];
const DEFAULTS_KEYS: &[&str] = &["max_retries", "timeout", "timeout_seconds", "backoff"];
const SCHEDULE_KEYS: &[&str] = &["every", "cron", "jitter", "catch_up", "timezone"];
const TRIGGER_KEYS: &[&str] = &["sources", "match", "status"];
/// Upper bound on retries: beyond this a definition is more likely wrong than patient.
const MAX_RETRIES: u64 = 20;

/// Parses and validates one definition. `file` is how errors name it.
pub fn parse_definition(
    name: &str,
    file: &str,
    text: &str,
    handlers: &HandlerRegistry,
) -> Result<Definition, DefinitionError> {
    let fail = |issues: Vec<Issue>| DefinitionError {
        file: file.to_string(),
        issues,
    };
    let document: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let mut issue = Issue::new("", format!("invalid JSON: {}", syntax_message(&e)));
            issue.line = Some(e.line());
            issue.column = Some(e.column());
            return Err(fail(vec![issue]));
        }
    };
    let mut checker = Checker {
        issues: Vec::new(),
        handlers,
    };
    let definition = checker.definition(name, &document, text);
    if checker.issues.is_empty()
        && let Some(definition) = definition
    {
        return Ok(definition);
    }
    let mut issues = checker.issues;
    for issue in &mut issues {
        if let Some((line, column)) = locate(text, &issue.path) {
            issue.line = Some(line);
            issue.column = Some(column);
        }
    }
    Err(fail(issues))
}

/// serde_json's message without its own " at line X column Y" suffix.
fn syntax_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

struct Checker<'h> {
    issues: Vec<Issue>,
    handlers: &'h HandlerRegistry,
}

/// A node as read from JSON, before the `next` graph is checked.
struct RawNode {
    index: usize,
    id: Option<String>,
    next: Option<String>,
    skip_if_errors: Vec<String>,
    condition: Option<Condition>,
    references: Vec<(String, String)>,
    node: Option<Node>,
}

impl Checker<'_> {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(path, message));
    }

    fn definition(&mut self, name: &str, document: &Value, text: &str) -> Option<Definition> {
        let Some(top) = document.as_object() else {
            self.issue(
                "",
                format!(
                    "a definition is a JSON object with `version` and `nodes`, found {}",
                    kind_of(document)
                ),
            );
            return None;
        };
        for key in top.keys() {
            if !TOP_KEYS.contains(&key.as_str()) && !key.starts_with('_') {
                self.issue(
                    key.clone(),
                    format!(
                        "{} (keys starting with `_` are comments: `_{key}`)",
                        unknown_key_message(key, TOP_KEYS)
                    ),
                );
            }
        }
        let version = match top.get("version") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.issue(
                    "version",
                    format!(
                        "must be a non-empty string like \"1.0\", found {}",
                        kind_of(other)
                    ),
                );
                None
            }
            None => {
                self.issue("version", "missing: add \"version\": \"1.0\"");
                None
            }
        };
        let description = match top.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.issue(
                    "description",
                    format!("must be a string, found {}", kind_of(other)),
                );
                None
            }
        };
        let defaults = self.defaults(top.get("defaults"));
        let schedule = top.get("schedule").and_then(|v| self.schedule(v));
        let trigger = top.get("trigger").and_then(|v| self.trigger(v));
        let nodes = self.nodes(top.get("nodes"), &defaults);

        let version_hash = {
            let digest = Sha256::digest(text.as_bytes());
            digest[..8].iter().map(|b| format!("{b:02x}")).collect()
        };
        Some(Definition {
            name: name.to_string(),
            version: version?,
            description,
            version_hash,
            schedule,
            trigger,
            defaults,
            nodes: nodes?,
            document: document.clone(),
        })
    }

    fn defaults(&mut self, value: Option<&Value>) -> Defaults {
        let mut defaults = Defaults::default();
        let Some(value) = value else {
            return defaults;
        };
        let Some(map) = self.object("defaults", value) else {
            return defaults;
        };
        self.unknown_keys("defaults", map, DEFAULTS_KEYS);
        if let Some(v) = map.get("max_retries")
            && let Some(n) = self.count("defaults.max_retries", v, MAX_RETRIES)
        {
            defaults.max_retries = n;
        }
        match (map.get("timeout"), map.get("timeout_seconds")) {
            (Some(_), Some(_)) => self.issue(
                "defaults.timeout_seconds",
                "give either `timeout` or the older `timeout_seconds`, not both",
            ),
            (Some(v), None) => {
                if let Some(d) = self.duration("defaults.timeout", v) {
                    defaults.timeout = d;
                }
            }
            (None, Some(v)) => match v.as_f64() {
                Some(secs) if secs > 0.0 && secs.is_finite() => {
                    defaults.timeout = Duration::from_secs_f64(secs)
                }
                _ => self.issue(
                    "defaults.timeout_seconds",
                    format!("must be a positive number of seconds, found {v}"),
                ),
            },
            (None, None) => {}
        }
        if let Some(v) = map.get("backoff")
            && let Some(d) = self.duration("defaults.backoff", v)
        {
            defaults.backoff = d;
        }
        defaults
    }

    fn schedule(&mut self, value: &Value) -> Option<Schedule> {
        let map = self.object("schedule", value)?;
        self.unknown_keys("schedule", map, SCHEDULE_KEYS);
        let timing = match (map.get("every"), map.get("cron")) {
            (Some(_), Some(_)) => {
                self.issue("schedule", "give either `every` or `cron`, not both");
                None
            }
            (None, None) => {
                self.issue(
                    "schedule",
                    "needs `every` (like \"5m\") or `cron` (like \"*/5 * * * *\")",
                );
                None
            }
            (Some(v), None) => {
                let d = self.duration("schedule.every", v)?;
                if d < Duration::from_secs(1) {
                    self.issue("schedule.every", "must be at least 1s");
                    return None;
                }
                Some(Timing::Every(d))
            }
            (None, Some(Value::String(expr))) => match croner::Cron::from_str(expr) {
                Ok(_) => Some(Timing::Cron(expr.clone())),
                Err(e) => {
                    self.issue(
                        "schedule.cron",
                        format!("`{expr}` is not a cron expression: {e}"),
                    );
                    None
                }
            },
            (None, Some(other)) => {
                self.issue(
                    "schedule.cron",
                    format!(
                        "must be a string like \"*/5 * * * *\", found {}",
                        kind_of(other)
                    ),
                );
                None
            }
        };
        let jitter = map
            .get("jitter")
            .and_then(|v| self.duration("schedule.jitter", v));
        let catch_up = match map.get("catch_up") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.issue(
                    "schedule.catch_up",
                    format!("must be true or false, found {}", kind_of(other)),
                );
                true
            }
        };
        match map.get("timezone") {
            None => {}
            Some(Value::String(tz)) if tz.eq_ignore_ascii_case("UTC") => {}
            Some(other) => self.issue(
                "schedule.timezone",
                format!("{other} is not supported: schedules run in UTC in this version"),
            ),
        }
        Some(Schedule {
            timing: timing?,
            jitter,
            catch_up,
        })
    }

    fn trigger(&mut self, value: &Value) -> Option<Trigger> {
        let map = self.object("trigger", value)?;
        self.unknown_keys("trigger", map, TRIGGER_KEYS);
        let mut trigger = Trigger::default();
        if let Some(v) = map.get("sources") {
            for (i, source) in self
                .string_list("trigger.sources", v)
                .into_iter()
                .enumerate()
            {
                if KNOWN_SOURCES.contains(&source.as_str()) {
                    trigger.sources.push(source);
                } else {
                    let hint = did_you_mean(&source, KNOWN_SOURCES)
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    self.issue(
                        format!("trigger.sources[{i}]"),
                        format!(
                            "unknown source `{source}`; {hint}known sources: {}",
                            KNOWN_SOURCES.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(v) = map.get("status") {
            for (i, status) in self
                .string_list("trigger.status", v)
                .into_iter()
                .enumerate()
            {
                if status == "firing" || status == "resolved" {
                    trigger.status.push(status);
                } else {
                    self.issue(
                        format!("trigger.status[{i}]"),
                        format!(
                            "`{status}` is not an alert status; use \"firing\" or \"resolved\""
                        ),
                    );
                }
            }
        }
        if let Some(v) = map.get("match")
            && let Some(m) = self.object("trigger.match", v)
        {
            for (key, value) in m {
                if !crate::alerts::is_field_path(key) {
                    self.issue(
                        format!("trigger.match.{key}"),
                        format!(
                            "`{key}` is not an alert field; use one of {}, or `labels.<name>` / `annotations.<name>`",
                            crate::alerts::FIELDS.join(", ")
                        ),
                    );
                    continue;
                }
                match value {
                    Value::String(s) => match normalized_value_problem(key, s) {
                        None => trigger.matchers.push((key.clone(), s.clone())),
                        Some(problem) => self.issue(format!("trigger.match.{key}"), problem),
                    },
                    other => self.issue(
                        format!("trigger.match.{key}"),
                        format!("must be a string, found {}", kind_of(other)),
                    ),
                }
            }
        }
        Some(trigger)
    }

    fn nodes(&mut self, value: Option<&Value>, defaults: &Defaults) -> Option<Vec<Node>> {
        let items = match value {
            None => {
                self.issue("nodes", "missing: a definition needs a list of nodes");
                return None;
            }
            Some(Value::Array(items)) if items.is_empty() => {
                self.issue("nodes", "is empty: a definition needs at least one node");
                return None;
            }
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.issue(
                    "nodes",
                    format!("must be a list of nodes, found {}", kind_of(other)),
                );
                return None;
            }
        };
        let raw: Vec<RawNode> = items
            .iter()
            .enumerate()
            .map(|(i, v)| self.node(i, v, defaults))
            .collect();
        self.check_graph(&raw);
        raw.into_iter().map(|r| r.node).collect()
    }

    fn node(&mut self, index: usize, value: &Value, defaults: &Defaults) -> RawNode {
        let at = |key: &str| format!("nodes[{index}].{key}");
        let mut raw = RawNode {
            index,
            id: None,
            next: None,
            skip_if_errors: Vec::new(),
            condition: None,
            references: Vec::new(),
            node: None,
        };
        let Some(map) = self.object(&format!("nodes[{index}]"), value) else {
            return raw;
        };
        self.unknown_keys(&format!("nodes[{index}]"), map, NODE_KEYS);

        raw.id = match map.get("id") {
            Some(Value::String(id)) if is_identifier(id) => Some(id.clone()),
            Some(Value::String(id)) => {
                self.issue(
                    at("id"),
                    format!("`{id}` is not a valid id: use letters, digits, `_` and `-`"),
                );
                None
            }
            Some(other) => {
                self.issue(
                    at("id"),
                    format!("must be a string, found {}", kind_of(other)),
                );
                None
            }
            None => {
                self.issue(format!("nodes[{index}]"), "missing `id`");
                None
            }
        };
        let node_type = match map.get("type") {
            Some(Value::String(t)) if self.handlers.get(t).is_some() => Some(t.clone()),
            Some(Value::String(t)) => {
                let known: Vec<&str> = self.handlers.types().collect();
                let hint = did_you_mean(t, &known)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.issue(
                    at("type"),
                    format!(
                        "unknown node type `{t}`; {hint}known types: {}",
                        known.join(", ")
                    ),
                );
                None
            }
            Some(other) => {
                self.issue(
                    at("type"),
                    format!("must be a string, found {}", kind_of(other)),
                );
                None
            }
            None => {
                self.issue(format!("nodes[{index}]"), "missing `type`");
                None
            }
        };
        let empty = Value::Object(Map::new());
        let config = match map.get("config") {
            None | Some(Value::Null) => &empty,
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                self.issue(
                    at("config"),
                    format!("must be an object, found {}", kind_of(other)),
                );
                &empty
            }
        };
        let executor = node_type.as_ref().and_then(|t| {
            let handler = self.handlers.get(t)?;
            match handler.build(config) {
                Ok(executor) => Some(executor),
                Err(issues) => {
                    for issue in issues {
                        let path = if issue.path.is_empty() {
                            at("config")
                        } else if issue.path.starts_with('[') {
                            format!("nodes[{index}].config{}", issue.path)
                        } else {
                            format!("nodes[{index}].config.{}", issue.path)
                        };
                        self.issue(path, issue.message);
                    }
                    None
                }
            }
        });
        if let Some(executor) = &executor {
            raw.references = executor
                .references()
                .into_iter()
                .map(|(path, id)| (format!("nodes[{index}].config.{path}"), id))
                .collect();
        }
        raw.next = match map.get("next") {
            None | Some(Value::Null) => None,
            Some(Value::String(next)) => Some(next.clone()),
            Some(other) => {
                self.issue(
                    at("next"),
                    format!("must be the id of another node, found {}", kind_of(other)),
                );
                None
            }
        };
        let required = match map.get("required") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.issue(
                    at("required"),
                    format!("must be true or false, found {}", kind_of(other)),
                );
                true
            }
        };
        if let Some(v) = map.get("skip_if_errors") {
            raw.skip_if_errors = self.string_list(&at("skip_if_errors"), v);
        }
        raw.condition = match map.get("skip_if_condition") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => match Condition::parse(text) {
                Ok(c) => Some(c),
                Err(message) => {
                    self.issue(at("skip_if_condition"), message);
                    None
                }
            },
            Some(other) => {
                self.issue(
                    at("skip_if_condition"),
                    format!(
                        "must be a string like \"check.has_errors\", found {}",
                        kind_of(other)
                    ),
                );
                None
            }
        };
        let retries = match map.get("retries") {
            None => Some(defaults.max_retries),
            Some(v) => self.count(&at("retries"), v, MAX_RETRIES),
        };
        let timeout = match map.get("timeout") {
            None => Some(defaults.timeout),
            Some(v) => self.duration(&at("timeout"), v),
        };
        if let (Some(id), Some(node_type), Some(executor), Some(retries), Some(timeout)) =
            (raw.id.clone(), node_type, executor, retries, timeout)
        {
            raw.node = Some(Node {
                id,
                node_type,
                config: config.clone(),
                next: raw.next.clone(),
                required,
                skip_if_errors: raw.skip_if_errors.clone(),
                skip_if_condition: raw.condition.clone(),
                retries,
                timeout,
                executor,
            });
        }
        raw
    }

    /// Ids unique, `next` targets exist, no cycle, every node reached from the
    /// first, and every reference points at a node that runs earlier.
    fn check_graph(&mut self, nodes: &[RawNode]) {
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for node in nodes {
            let Some(id) = node.id.as_deref() else {
                continue;
            };
            if let Some(first) = index_of.get(id) {
                self.issue(
                    format!("nodes[{}].id", node.index),
                    format!("duplicate id `{id}`: nodes[{first}] already uses it"),
                );
            } else {
                index_of.insert(id, node.index);
            }
        }
        let ids: Vec<&str> = index_of.keys().copied().collect();
        let mut next_ok = vec![true; nodes.len()];
        for node in nodes {
            let Some(next) = node.next.as_deref() else {
                continue;
            };
            if node.id.as_deref() == Some(next) {
                self.issue(
                    format!("nodes[{}].next", node.index),
                    format!("node `{next}` names itself as `next`, which would loop forever"),
                );
                next_ok[node.index] = false;
            } else if !index_of.contains_key(next) {
                let hint = did_you_mean(next, &ids)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.issue(
                    format!("nodes[{}].next", node.index),
                    format!("no node has the id `{next}`{hint}"),
                );
                next_ok[node.index] = false;
            }
        }

        let next_index = |i: usize| -> Option<usize> {
            let next = nodes[i].next.as_deref()?;
            next_ok[i].then(|| index_of.get(next).copied()).flatten()
        };

        // A cycle anywhere, reported once at the `next` that closes it.
        let mut in_reported_cycle: HashSet<usize> = HashSet::new();
        for start in 0..nodes.len() {
            if in_reported_cycle.contains(&start) {
                continue;
            }
            let mut members = vec![start];
            let mut current = start;
            while let Some(next) = next_index(current) {
                if next == start {
                    let names: Vec<String> = members
                        .iter()
                        .chain(std::iter::once(&start))
                        .map(|i| nodes[*i].id.clone().unwrap_or_default())
                        .collect();
                    self.issue(
                        format!("nodes[{current}].next"),
                        format!("`next` makes a cycle: {}", names.join(" → ")),
                    );
                    in_reported_cycle.extend(members.iter().copied());
                    break;
                }
                if members.contains(&next) || members.len() > nodes.len() {
                    break; // leads into a cycle that does not include `start`
                }
                members.push(next);
                current = next;
            }
        }

        // Walk the chain from the first node; remember each node's position.
        let mut position: HashMap<usize, usize> = HashMap::new();
        let mut current = Some(0usize);
        while let Some(i) = current {
            if position.contains_key(&i) {
                break;
            }
            position.insert(i, position.len());
            current = next_index(i);
        }
        if nodes.iter().all(|n| n.id.is_some()) && next_ok.iter().all(|ok| *ok) {
            let first = nodes[0].id.as_deref().unwrap_or("?");
            for node in nodes.iter().filter(|n| !position.contains_key(&n.index)) {
                let id = node.id.as_deref().unwrap_or("?");
                let last = position
                    .iter()
                    .max_by_key(|(_, p)| **p)
                    .and_then(|(i, _)| nodes[*i].id.as_deref())
                    .unwrap_or(first);
                self.issue(
                    format!("nodes[{}]", node.index),
                    format!(
                        "node `{id}` is never reached: execution starts at `{first}` and follows `next`; \
                         to run it, set \"next\": \"{id}\" on the node before it (the chain now ends at `{last}`)"
                    ),
                );
            }
        }

        // References (skip rules, config) must name nodes that run earlier.
        for node in nodes {
            let Some(own) = position.get(&node.index).copied() else {
                continue;
            };
            let mut refs: Vec<(String, String)> = node
                .skip_if_errors
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    (
                        format!("nodes[{}].skip_if_errors[{i}]", node.index),
                        id.clone(),
                    )
                })
                .collect();
            if let Some(c) = &node.condition {
                refs.push((
                    format!("nodes[{}].skip_if_condition", node.index),
                    c.node().to_string(),
                ));
            }
            refs.extend(node.references.iter().cloned());
            for (path, id) in refs {
                match index_of.get(id.as_str()) {
                    None => {
                        let hint = did_you_mean(&id, &ids)
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        self.issue(path, format!("no node has the id `{id}`{hint}"));
                    }
                    Some(target) => match position.get(target) {
                        Some(p) if *p < own => {}
                        _ => self.issue(
                            path,
                            format!(
                                "node `{id}` does not run before `{}`, so its result is not known here",
                                node.id.as_deref().unwrap_or("?")
                            ),
                        ),
                    },
                }
            }
        }
    }

    fn object<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.issue(path, format!("must be an object, found {}", kind_of(other)));
                None
            }
        }
    }

    fn unknown_keys(&mut self, path: &str, map: &Map<String, Value>, known: &[&str]) {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                self.issue(format!("{path}.{key}"), unknown_key_message(key, known));
            }
        }
    }

    fn string_list(&mut self, path: &str, value: &Value) -> Vec<String> {
        match value {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::String(s) => Some(s.clone()),
                    other => {
                        self.issue(
                            format!("{path}[{i}]"),
                            format!("must be a string, found {}", kind_of(other)),
                        );
                        None
                    }
                })
                .collect(),
            other => {
                self.issue(
                    path,
                    format!("must be a list of strings, found {}", kind_of(other)),
                );
                Vec::new()
            }
        }
    }

    fn count(&mut self, path: &str, value: &Value, max: u64) -> Option<u32> {
        match value.as_u64() {
            Some(n) if n <= max => Some(n as u32),
            _ => {
                self.issue(
                    path,
                    format!("must be a whole number from 0 to {max}, found {value}"),
                );
                None
            }
        }
    }

    fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        match value {
            Value::String(text) => match parse_duration(text) {
                Ok(d) if d.is_zero() => {
                    self.issue(path, "must be longer than zero");
                    None
                }
                Ok(d) => Some(d),
                Err(message) => {
                    self.issue(path, message);
                    None
                }
            },
            other => {
                self.issue(
                    path,
                    format!(
                        "must be a duration string like \"30s\", found {}",
                        kind_of(other)
                    ),
                );
                None
            }
        }
    }
}

/// Why a `match` value can never equal the field it names, for the fields
/// herald normalizes: `severity` is always info, warning or critical,
/// `status` firing or resolved, `source` a driver's name — so `crit` or
/// `FIRING` would be a trigger that silently never starts.
fn normalized_value_problem(key: &str, value: &str) -> Option<String> {
    use crate::alerts::Severity;
    match key {
        "severity" if !["info", "warning", "critical"].contains(&value) => {
            Some(match Severity::parse(value) {
                Some(s) => format!(
                    "`{value}` never matches: `severity` is normalized to info, warning or \
                     critical, and `{value}` is `{}`; match `severity_raw` for the sender's own word",
                    s.as_str()
                ),
                None => format!(
                    "`{value}` is not a severity: use info, warning or critical, or match \
                     `severity_raw` for the sender's own word"
                ),
            })
        }
        "status" if !["firing", "resolved"].contains(&value) => Some(format!(
            "`{value}` never matches: `status` is firing or resolved; match `status_raw` for \
             the sender's own word"
        )),
        "source" if !KNOWN_SOURCES.contains(&value) => {
            let hint = did_you_mean(value, KNOWN_SOURCES)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            Some(format!(
                "unknown source `{value}`; {hint}known sources: {}",
                KNOWN_SOURCES.join(", ")
            ))
        }
        _ => None,
    }
}
