//! `check`: judges cpu, memory and disk against warning/critical thresholds
//! → one result per check and an overall status. A failing check is an
//! output (`status: CRITICAL`), not a node error.
//!
//! It reads the metrics of an earlier `context` node (`source_node`, or the
//! latest one); without one it samples the host itself, as the seed app's
//! CHECK stage did.
//!
//! config: `checks` (default `["cpu", "memory", "disk"]`), `thresholds`
//! (`{"cpu": {"warning": 70, "critical": 90}}`), `source_node`.

use super::config_reader as cfg;
use super::context::MAX_SNAPSHOT_AGE;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::host::HostSampler;
use crate::host::thresholds::{CheckResult, CheckStatus, Threshold};
use serde_json::{Value, json};
use std::sync::Arc;

pub const CHECKS: &[&str] = &["cpu", "memory", "disk"];

pub struct CheckHandler {
    host: Arc<HostSampler>,
}

impl CheckHandler {
    pub fn new(host: Arc<HostSampler>) -> Self {
        CheckHandler { host }
    }
}

impl NodeHandler for CheckHandler {
    fn summary(&self) -> &'static str {
        "judge cpu, memory and disk against thresholds"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(&map, &["checks", "thresholds", "source_node"], &mut issues);
        let checks = cfg::string_list(&map, "checks", &mut issues)
            .unwrap_or_else(|| CHECKS.iter().map(|s| s.to_string()).collect());
        for (i, name) in checks.iter().enumerate() {
            if !CHECKS.contains(&name.as_str()) {
                issues.push(ConfigIssue::new(
                    format!("checks[{i}]"),
                    format!("unknown check `{name}`; known: {}", CHECKS.join(", ")),
                ));
            }
        }
        let mut thresholds = [
            ("cpu", Threshold::CPU),
            ("memory", Threshold::MEMORY),
            ("disk", Threshold::DISK),
        ];
        if let Some(value) = map.get("thresholds") {
            match value.as_object() {
                Some(given) => {
                    for (name, t) in given {
                        match thresholds.iter_mut().find(|(n, _)| n == name) {
                            Some((_, slot)) => {
                                if let Some(parsed) = threshold(name, t, slot, &mut issues) {
                                    *slot = parsed;
                                }
                            }
                            None => issues.push(ConfigIssue::new(
                                format!("thresholds.{name}"),
                                format!("unknown check `{name}`; known: {}", CHECKS.join(", ")),
                            )),
                        }
                    }
                }
                None => issues.push(ConfigIssue::new("thresholds", "must be an object")),
            }
        }
        let source_node = cfg::string(&map, "source_node", &mut issues);
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(Check {
            host: self.host.clone(),
            checks,
            thresholds: thresholds.to_vec(),
            source_node,
        }))
    }
}

fn threshold(
    name: &str,
    value: &Value,
    default: &Threshold,
    issues: &mut Vec<ConfigIssue>,
) -> Option<Threshold> {
    let Some(map) = value.as_object() else {
        issues.push(ConfigIssue::new(
            format!("thresholds.{name}"),
            "must be an object like {\"warning\": 70, \"critical\": 90}",
        ));
        return None;
    };
    let mut t = *default;
    for (key, v) in map {
        let slot = match key.as_str() {
            "warning" => &mut t.warning,
            "critical" => &mut t.critical,
            other => {
                issues.push(ConfigIssue::new(
                    format!("thresholds.{name}.{other}"),
                    crate::definition::unknown_key_message(other, &["warning", "critical"]),
                ));
                continue;
            }
        };
        match v.as_f64() {
            Some(x) if (0.0..=100.0).contains(&x) => *slot = x,
            _ => issues.push(ConfigIssue::new(
                format!("thresholds.{name}.{key}"),
                format!("must be a percentage from 0 to 100, found {v}"),
            )),
        }
    }
    if t.warning > t.critical {
        issues.push(ConfigIssue::new(
            format!("thresholds.{name}"),
            format!("warning ({}) is above critical ({})", t.warning, t.critical),
        ));
        return None;
    }
    Some(t)
}

struct Check {
    host: Arc<HostSampler>,
    checks: Vec<String>,
    thresholds: Vec<(&'static str, Threshold)>,
    source_node: Option<String>,
}

/// The metrics a check needs, whoever gathered them.
struct Metrics {
    cpu: Option<f64>,
    memory: Option<f64>,
    /// (mount, used percent)
    disks: Vec<(String, f64)>,
}

impl Metrics {
    fn from_context(output: &Value) -> Metrics {
        let disks = output
            .pointer("/disk/mounts")
            .and_then(Value::as_array)
            .map(|mounts| {
                mounts
                    .iter()
                    .filter_map(|m| {
                        Some((
                            m.get("mount")?.as_str()?.to_string(),
                            m.get("percent")?.as_f64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Metrics {
            cpu: output.pointer("/cpu/usage_percent").and_then(Value::as_f64),
            memory: output.pointer("/memory/percent").and_then(Value::as_f64),
            disks,
        }
    }

    fn is_complete(&self, checks: &[String]) -> bool {
        checks.iter().all(|c| match c.as_str() {
            "cpu" => self.cpu.is_some(),
            "memory" => self.memory.is_some(),
            "disk" => !self.disks.is_empty(),
            _ => true,
        })
    }
}

impl Check {
    fn threshold(&self, name: &str) -> Threshold {
        self.thresholds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .unwrap_or(Threshold::CPU)
    }

    fn judge(&self, name: &str, metrics: &Metrics) -> CheckResult {
        let t = self.threshold(name);
        let (value, what) = match name {
            "cpu" => (metrics.cpu, "CPU usage".to_string()),
            "memory" => (metrics.memory, "memory usage".to_string()),
            _ => {
                // Worst mount wins; the message names it.
                let worst = metrics
                    .disks
                    .iter()
                    .max_by(|a, b| t.judge(a.1).cmp(&t.judge(b.1)).then(a.1.total_cmp(&b.1)));
                match worst {
                    Some((mount, pct)) => (Some(*pct), format!("disk usage on {mount}")),
                    None => (None, "disk usage".to_string()),
                }
            }
        };
        let (status, message) = match value {
            Some(v) => {
                let status = t.judge(v);
                let message = match status {
                    CheckStatus::Ok => format!("{what} {v:.1}% is below {:.0}%", t.warning),
                    CheckStatus::Warning => format!(
                        "{what} {v:.1}% is at or above the warning level {:.0}%",
                        t.warning
                    ),
                    _ => format!(
                        "{what} {v:.1}% is at or above the critical level {:.0}%",
                        t.critical
                    ),
                };
                (status, message)
            }
            None => (
                CheckStatus::Unknown,
                format!("{what} is not available on this host"),
            ),
        };
        CheckResult {
            name: name.to_string(),
            status,
            value,
            warning: t.warning,
            critical: t.critical,
            message,
        }
    }
}

impl NodeExecutor for Check {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let from_context = match &self.source_node {
                Some(id) => ctx.output(id),
                None => ctx.latest_of_type("context"),
            }
            .map(Metrics::from_context);
            let (metrics, origin) = match from_context {
                Some(m) if m.is_complete(&self.checks) => (m, "context"),
                _ => {
                    let snap = self.host.snapshot(MAX_SNAPSHOT_AGE).await;
                    let metrics = Metrics {
                        cpu: Some(snap.cpu.usage_percent),
                        memory: Some(snap.memory.percent),
                        disks: snap
                            .disks
                            .iter()
                            .map(|d| (d.mount.clone(), d.percent))
                            .collect(),
                    };
                    (metrics, "sampled")
                }
            };
            let results: Vec<CheckResult> = self
                .checks
                .iter()
                .map(|c| self.judge(c, &metrics))
                .collect();
            let status = results
                .iter()
                .map(|r| r.status)
                .max()
                .unwrap_or(CheckStatus::Ok);
            let disks: serde_json::Map<String, Value> = metrics
                .disks
                .iter()
                .map(|(m, p)| (m.clone(), json!(p)))
                .collect();
            Ok(json!({
                "status": status,
                "checks": results,
                "metrics": {
                    "origin": origin,
                    "cpu_percent": metrics.cpu,
                    "memory_percent": metrics.memory,
                    "disk_percent": disks,
                },
            }))
        })
    }

    fn references(&self) -> Vec<(String, String)> {
        self.source_node
            .iter()
            .map(|id| ("source_node".to_string(), id.clone()))
            .collect()
    }
}
