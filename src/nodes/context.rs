//! `context`: what an operator looks at first on this host, read from the
//! sampler's latest snapshot (no sampling on the request path unless the node
//! says `"fresh": true`).
//!
//! config: `include` — any of [`SECTIONS`] (default cpu, memory, disk; the
//! seed app's `checker_names` is read the same); `top_n` processes per
//! ranking (default 10, at most 50); `fresh`. A section this host cannot
//! provide (no sensors, no md driver) is `null`, with the reason under
//! `unavailable`.

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::host::{HostSampler, HostSnapshot, TOP_PROCESSES};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const SECTIONS: &[&str] = &[
    "cpu",
    "memory",
    "disk",
    "network",
    "processes",
    "system",
    "temperatures",
    "ports",
    "reboot",
    "raid",
];
const DEFAULT_SECTIONS: &[&str] = &["cpu", "memory", "disk"];

/// How old a shared snapshot may be before a node takes a new one: two of
/// the daemon's sampling intervals, so a node never waits on the sampler.
pub const MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(10);

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
        "gather this host's state (cpu, memory, disk, network, processes, …)"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(
            &map,
            &["include", "checker_names", "top_n", "fresh"],
            &mut issues,
        );
        let key = if map.contains_key("include") {
            "include"
        } else {
            "checker_names"
        };
        let include = cfg::string_list(&map, key, &mut issues)
            .unwrap_or_else(|| DEFAULT_SECTIONS.iter().map(|s| s.to_string()).collect());
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
        let top_n = match map.get("top_n") {
            None => 10,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=TOP_PROCESSES as u64).contains(&n) => n as usize,
                _ => {
                    issues.push(ConfigIssue::new(
                        "top_n",
                        format!("must be a whole number from 1 to {TOP_PROCESSES}, found {v}"),
                    ));
                    10
                }
            },
        };
        let fresh = cfg::bool(&map, "fresh", &mut issues).unwrap_or(false);
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(Context {
            host: self.host.clone(),
            include,
            top_n,
            fresh,
        }))
    }
}

struct Context {
    host: Arc<HostSampler>,
    include: Vec<String>,
    top_n: usize,
    fresh: bool,
}

impl NodeExecutor for Context {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let shared = self.execute_shared(ctx).await?;
            Ok(Arc::unwrap_or_clone(shared))
        })
    }

    /// Every node asking one snapshot for the same sections gets the same
    /// output, built once.
    fn execute_shared<'a>(
        &'a self,
        _ctx: &'a NodeContext<'a>,
    ) -> BoxFuture<'a, Result<Arc<Value>, NodeError>> {
        Box::pin(async move {
            let snap = if self.fresh {
                self.host.sample().await
            } else {
                self.host.snapshot(MAX_SNAPSHOT_AGE).await
            };
            Ok(shared_sections(&snap, &self.include, self.top_n))
        })
    }
}

/// [`sections`], built once per snapshot and selection, then shared.
pub fn shared_sections(snap: &HostSnapshot, include: &[String], top_n: usize) -> Arc<Value> {
    let mut outputs = match snap.outputs.lock() {
        Ok(o) => o,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((_, _, out)) = outputs.iter().find(|(i, n, _)| i == include && *n == top_n) {
        return out.clone();
    }
    let out = Arc::new(sections(snap, include, top_n));
    // A few selections per snapshot in practice; bound it regardless.
    if outputs.len() < 32 {
        outputs.push((include.to_vec(), top_n, out.clone()));
    }
    out
}

/// Processes per ranking in the cached rendering; other `top_n` values are
/// rendered on demand.
const CACHED_TOP_N: usize = 10;

/// The chosen sections of a snapshot as the node's output. Every section is
/// rendered to JSON once per snapshot and cloned from then on.
pub fn sections(snap: &HostSnapshot, include: &[String], top_n: usize) -> Value {
    let rendered = snap.rendered.get_or_init(|| render_all(snap));
    let mut out = Map::new();
    let mut unavailable = Map::new();
    out.insert("taken_at".into(), json!(snap.taken_at));
    for section in include {
        let value = if section == "processes" && top_n != CACHED_TOP_N {
            processes(snap, top_n)
        } else {
            match rendered.get(section.as_str()) {
                Some(v) => v.clone(),
                None => continue,
            }
        };
        if value.is_null()
            && let Some(reason) = unavailable_reason(section)
        {
            unavailable.insert(section.clone(), json!(reason));
        }
        out.insert(section.clone(), value);
    }
    if !unavailable.is_empty() {
        out.insert("unavailable".into(), Value::Object(unavailable));
    }
    Value::Object(out)
}

fn unavailable_reason(section: &str) -> Option<&'static str> {
    match section {
        "temperatures" => Some("this host exposes no temperature sensors"),
        "raid" => Some("no /proc/mdstat: the md RAID driver is not loaded"),
        _ => None,
    }
}

fn processes(snap: &HostSnapshot, top_n: usize) -> Value {
    let p = &snap.processes;
    json!({
        "count": p.count,
        "top_cpu": &p.top_cpu[..top_n.min(p.top_cpu.len())],
        "top_memory": &p.top_memory[..top_n.min(p.top_memory.len())],
    })
}

fn render_all(snap: &HostSnapshot) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("cpu".into(), json!(snap.cpu));
    m.insert("memory".into(), json!(snap.memory));
    let mut disk = json!({ "mounts": snap.disks });
    if !snap.mounts_not_responding.is_empty() {
        disk["not_responding"] = json!(snap.mounts_not_responding);
    }
    m.insert("disk".into(), disk);
    m.insert("network".into(), json!({ "interfaces": snap.network }));
    m.insert("processes".into(), processes(snap, CACHED_TOP_N));
    m.insert("system".into(), json!(snap.system));
    m.insert(
        "temperatures".into(),
        snap.temperatures
            .as_ref()
            .map_or(Value::Null, |t| json!({ "sensors": t })),
    );
    m.insert("ports".into(), json!({ "listening": snap.ports }));
    m.insert("reboot".into(), json!(snap.reboot));
    m.insert(
        "raid".into(),
        snap.raid
            .as_ref()
            .map_or(Value::Null, |a| json!({ "arrays": a })),
    );
    m
}
