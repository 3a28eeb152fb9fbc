//! `context`: this host's metrics, the sections chosen by `include`
//! (`cpu`, `memory`, `disk`; all three by default). The seed app's
//! `checker_names` is read as `include`.

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::host::HostSampler;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const SECTIONS: &[&str] = &["cpu", "memory", "disk"];

/// How old a shared snapshot may be before a node takes a new one.
pub const MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(5);

pub struct ContextHandler {
    host: Arc<HostSampler>,
}

impl ContextHandler {
    pub fn new(host: Arc<HostSampler>) -> Self {
        ContextHandler { host }
    }
}

impl NodeHandler for ContextHandler {
    fn summary(&self) -> &'static str {
        "gather this host's metrics (cpu, memory, disk)"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(&map, &["include", "checker_names"], &mut issues);
        let key = if map.contains_key("include") {
            "include"
        } else {
            "checker_names"
        };
        let include = cfg::string_list(&map, key, &mut issues)
            .unwrap_or_else(|| SECTIONS.iter().map(|s| s.to_string()).collect());
        for (i, section) in include.iter().enumerate() {
            if !SECTIONS.contains(&section.as_str()) {
                let hint = crate::definition::did_you_mean(section, SECTIONS)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                issues.push(ConfigIssue::new(
                    format!("{key}[{i}]"),
                    format!(
                        "unknown section `{section}`; {hint}known: {}",
                        SECTIONS.join(", ")
                    ),
                ));
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(Context {
            host: self.host.clone(),
            include,
        }))
    }
}

struct Context {
    host: Arc<HostSampler>,
    include: Vec<String>,
}

impl NodeExecutor for Context {
    fn execute<'a>(&'a self, _ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let snap = self.host.snapshot(MAX_SNAPSHOT_AGE).await;
            let mut out = Map::new();
            out.insert("taken_at".into(), json!(snap.taken_at));
            for section in &self.include {
                let value = match section.as_str() {
                    "cpu" => json!(snap.cpu),
                    "memory" => json!(snap.memory),
                    "disk" => json!({ "mounts": snap.disks }),
                    _ => continue,
                };
                out.insert(section.clone(), value);
            }
            Ok(Value::Object(out))
        })
    }
}
