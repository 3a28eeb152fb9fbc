//! `transform`: builds a new object from earlier outputs, for the nodes that
//! follow (or for the run's record).
//!
//! config:
//! - `mapping`: output key → where to read it. A string is a dotted path
//!   (`"metrics.cpu.usage_percent"`, list items by index: `"alerts.0.name"`);
//!   `{"literal": …}` or any non-string value is taken as written.
//! - `source_node` (optional): resolve paths against that node's output. A
//!   path may also start with the source node's id or type, as the seed app
//!   wrote them (`"context.cpu.load"` with `source_node: "metrics"`).
//! - Without `source_node`, a path's first segment names an earlier node, or
//!   `payload` for the run's payload.
//! - `defaults`: output key → value used when the path finds nothing (else `null`).

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::definition::condition::lookup;
use serde_json::{Map, Value};
use std::sync::Arc;

pub struct TransformHandler;

impl NodeHandler for TransformHandler {
    fn summary(&self) -> &'static str {
        "map earlier outputs into a new object"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(&map, &["mapping", "source_node", "defaults"], &mut issues);
        let source_node = cfg::string(&map, "source_node", &mut issues);
        let mut fields = Vec::new();
        match map.get("mapping") {
            None => issues.push(ConfigIssue::new(
                "",
                "needs a `mapping` of output keys to paths",
            )),
            Some(Value::Object(mapping)) => {
                for (key, spec) in mapping {
                    let source = match spec {
                        Value::String(path) if path.trim().is_empty() => {
                            issues.push(ConfigIssue::new(
                                format!("mapping.{key}"),
                                "is an empty path; write a path like \"metrics.cpu.usage_percent\"",
                            ));
                            continue;
                        }
                        Value::String(path) => {
                            let segments: Vec<String> =
                                path.trim().split('.').map(str::to_string).collect();
                            if segments.iter().any(String::is_empty) {
                                issues.push(ConfigIssue::new(
                                    format!("mapping.{key}"),
                                    format!("`{path}` has an empty segment"),
                                ));
                                continue;
                            }
                            Source::Path(segments)
                        }
                        Value::Object(o) if o.len() == 1 && o.contains_key("literal") => {
                            Source::Literal(o["literal"].clone())
                        }
                        other => Source::Literal(other.clone()),
                    };
                    fields.push((key.clone(), source));
                }
            }
            Some(other) => issues.push(ConfigIssue::new(
                "mapping",
                format!(
                    "must be an object, found {}",
                    crate::definition::kind_of(other)
                ),
            )),
        }
        let defaults = match map.get("defaults") {
            None => Map::new(),
            Some(Value::Object(d)) => d.clone(),
            Some(other) => {
                issues.push(ConfigIssue::new(
                    "defaults",
                    format!(
                        "must be an object, found {}",
                        crate::definition::kind_of(other)
                    ),
                ));
                Map::new()
            }
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(Transform {
            source_node,
            fields,
            defaults,
        }))
    }
}

enum Source {
    Path(Vec<String>),
    Literal(Value),
}

struct Transform {
    source_node: Option<String>,
    fields: Vec<(String, Source)>,
    defaults: Map<String, Value>,
}

impl Transform {
    fn resolve<'v>(&self, ctx: &'v NodeContext<'_>, path: &[String]) -> Option<&'v Value> {
        let segments = || path.iter().map(String::as_str);
        match &self.source_node {
            Some(id) => {
                let source = ctx.earlier.iter().rev().find(|n| n.id == id)?;
                let output = source.output;
                if let Some(found) = lookup(output, segments()) {
                    return Some(found);
                }
                // Seed form: the path starts with the node's id or type.
                let first = path.first()?;
                if first == source.id || first == source.node_type {
                    lookup(output, segments().skip(1))
                } else {
                    None
                }
            }
            None => {
                let (first, rest) = path.split_first()?;
                let root = if first == "payload" {
                    ctx.payload.value()
                } else {
                    ctx.output(first)?
                };
                lookup(root, rest.iter().map(String::as_str))
            }
        }
    }
}

impl NodeExecutor for Transform {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let mut out = Map::new();
            for (key, source) in &self.fields {
                let value = match source {
                    Source::Literal(v) => v.clone(),
                    Source::Path(path) => match self.resolve(ctx, path) {
                        Some(v) if !v.is_null() => v.clone(),
                        _ => self.defaults.get(key).cloned().unwrap_or(Value::Null),
                    },
                };
                out.insert(key.clone(), value);
            }
            Ok(Value::Object(out))
        })
    }

    fn references(&self) -> Vec<(String, String)> {
        if let Some(id) = &self.source_node {
            return vec![("source_node".to_string(), id.clone())];
        }
        // Without a source node, each path starts with the node it reads.
        self.fields
            .iter()
            .filter_map(|(key, source)| match source {
                Source::Path(path) if path[0] != "payload" => {
                    Some((format!("mapping.{key}"), path[0].clone()))
                }
                _ => None,
            })
            .collect()
    }
}
