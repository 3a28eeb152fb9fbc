//! `check`: judges this host → one result per check and an overall status.
//! A failing check is output (`status: CRITICAL`), not a node error.
//!
//! config:
//! - `checks`: names or objects. Built in: `cpu`, `memory` (70/90 %), `disk`
//!   (80/95 % per mount, worst wins; `mounts` overrides per mount), `inodes`
//!   (80/95 %), `temperature` (80/90 °C), `process` (`"process": "sshd"` must
//!   run), `ports` (`"allow": [22, 443]`: any other listening TCP port
//!   warns), `reboot` (Debian's reboot-required: WARNING), `raid` (degraded:
//!   CRITICAL, rebuilding: WARNING), and `plugin` (`"command": [...]`,
//!   `"timeout"`: a Nagios-style plugin from an allowed directory).
//!   Default: cpu, memory, disk. Thresholds: `"warning"`, `"critical"` on
//!   the object (or the older `thresholds` map).
//! - `for`: a non-OK status must hold this long across runs before it
//!   counts, so a spike does not page.
//! - `source_node`: read cpu/memory/disk from that `context` node's output
//!   instead of the host snapshot.

use super::config_reader as cfg;
use super::context::MAX_SNAPSHOT_AGE;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::definition::duration::{format_duration, parse_duration};
use crate::host::plugin::Plugin;
use crate::host::thresholds::{CheckResult, CheckStatus, Threshold};
use crate::host::{HostSampler, HostSnapshot};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CHECKS: &[&str] = &[
    "cpu",
    "memory",
    "disk",
    "inodes",
    "temperature",
    "process",
    "ports",
    "reboot",
    "raid",
    "plugin",
];
const DEFAULT_CHECKS: &[&str] = &["cpu", "memory", "disk"];

pub struct CheckHandler {
    host: Arc<HostSampler>,
    plugin_dirs: Vec<PathBuf>,
}

impl CheckHandler {
    pub fn new(host: Arc<HostSampler>, plugin_dirs: Vec<PathBuf>) -> Self {
        CheckHandler { host, plugin_dirs }
    }
}

/// One configured check.
#[derive(Debug, Clone)]
pub enum Spec {
    Cpu(Threshold),
    Memory(Threshold),
    Disk(Threshold, BTreeMap<String, Threshold>),
    Inodes(Threshold, BTreeMap<String, Threshold>),
    Temperature(Threshold),
    Process(String),
    Ports(Vec<u16>),
    Reboot,
    Raid,
    Plugin(String, Plugin),
}

impl NodeHandler for CheckHandler {
    fn summary(&self) -> &'static str {
        "judge this host against thresholds, and run plugin checks"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(
            &map,
            &["checks", "thresholds", "source_node", "for"],
            &mut issues,
        );
        let legacy = map.get("thresholds").cloned().unwrap_or(Value::Null);
        if !legacy.is_null() && !legacy.is_object() {
            issues.push(ConfigIssue::new("thresholds", "must be an object"));
        }
        let items: Vec<Value> = match map.get("checks") {
            None => DEFAULT_CHECKS.iter().map(|c| json!(c)).collect(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => {
                issues.push(ConfigIssue::new(
                    "checks",
                    "must be a list of check names or objects",
                ));
                Vec::new()
            }
        };
        let mut specs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(spec) = self.spec(i, item, &legacy, &mut issues) {
                specs.push(spec);
            }
        }
        if let Some(obj) = legacy.as_object() {
            for key in obj.keys() {
                if !["cpu", "memory", "disk", "inodes", "temperature"].contains(&key.as_str()) {
                    issues.push(ConfigIssue::new(
                        format!("thresholds.{key}"),
                        format!("unknown check `{key}`; thresholds apply to cpu, memory, disk, inodes, temperature"),
                    ));
                }
            }
        }
        let hold = match map.get("for") {
            None => None,
            Some(Value::String(t)) => match parse_duration(t) {
                Ok(d) => Some(d),
                Err(e) => {
                    issues.push(ConfigIssue::new("for", e));
                    None
                }
            },
            Some(_) => {
                issues.push(ConfigIssue::new("for", "must be a duration like \"2m\""));
                None
            }
        };
        let source_node = cfg::string(&map, "source_node", &mut issues);
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(Check {
            host: self.host.clone(),
            specs,
            hold,
            source_node,
            pending: Mutex::new(HashMap::new()),
        }))
    }
}

impl CheckHandler {
    fn spec(
        &self,
        i: usize,
        item: &Value,
        legacy: &Value,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Spec> {
        let at = |k: &str| {
            if k.is_empty() {
                format!("checks[{i}]")
            } else {
                format!("checks[{i}].{k}")
            }
        };
        let (name, obj) = match item {
            Value::String(n) => (n.clone(), Map::new()),
            Value::Object(o) => match o.get("name").and_then(Value::as_str) {
                Some(n) => (n.to_string(), o.clone()),
                None => {
                    issues.push(ConfigIssue::new(at(""), "a check object needs a `name`"));
                    return None;
                }
            },
            _ => {
                issues.push(ConfigIssue::new(
                    at(""),
                    "must be a check name or an object with `name`",
                ));
                return None;
            }
        };
        let known: &[&str] = match name.as_str() {
            "cpu" | "memory" | "temperature" => &["name", "warning", "critical"],
            "disk" | "inodes" => &["name", "warning", "critical", "mounts"],
            "process" => &["name", "process"],
            "ports" => &["name", "allow"],
            "reboot" | "raid" => &["name"],
            "plugin" => &["name", "label", "command", "timeout"],
            other => {
                let hint = crate::definition::did_you_mean(other, CHECKS)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                issues.push(ConfigIssue::new(
                    at(if item.is_object() { "name" } else { "" }),
                    format!(
                        "unknown check `{other}`; {hint}known: {}",
                        CHECKS.join(", ")
                    ),
                ));
                return None;
            }
        };
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                issues.push(ConfigIssue::new(
                    at(key),
                    crate::definition::unknown_key_message(key, known),
                ));
            }
        }
        let threshold = |default: Threshold, issues: &mut Vec<ConfigIssue>| {
            let base = threshold_from(
                legacy.get(&name),
                default,
                &format!("thresholds.{name}"),
                issues,
            );
            threshold_from(Some(&Value::Object(obj.clone())), base, &at(""), issues)
        };
        let mounts = |default: Threshold, issues: &mut Vec<ConfigIssue>| {
            let mut out = BTreeMap::new();
            if let Some(m) = obj.get("mounts") {
                match m.as_object() {
                    Some(m) => {
                        for (mount, t) in m {
                            out.insert(
                                mount.clone(),
                                threshold_from(
                                    Some(t),
                                    default,
                                    &format!("{}.{mount}", at("mounts")),
                                    issues,
                                ),
                            );
                        }
                    }
                    None => issues.push(ConfigIssue::new(
                        at("mounts"),
                        "must map mount points to {\"warning\", \"critical\"}",
                    )),
                }
            }
            out
        };
        Some(match name.as_str() {
            "cpu" => Spec::Cpu(threshold(Threshold::CPU, issues)),
            "memory" => Spec::Memory(threshold(Threshold::MEMORY, issues)),
            "temperature" => Spec::Temperature(threshold(Threshold::TEMPERATURE, issues)),
            "disk" => {
                let t = threshold(Threshold::DISK, issues);
                Spec::Disk(t, mounts(t, issues))
            }
            "inodes" => {
                let t = threshold(Threshold::INODES, issues);
                Spec::Inodes(t, mounts(t, issues))
            }
            "process" => match obj.get("process").and_then(Value::as_str) {
                Some(p) if !p.is_empty() => Spec::Process(p.to_string()),
                _ => {
                    issues.push(ConfigIssue::new(
                        at("process"),
                        "name the process that must run, e.g. \"process\": \"sshd\"",
                    ));
                    return None;
                }
            },
            "ports" => {
                let allow: Option<Vec<u16>> = obj.get("allow").and_then(Value::as_array).map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
                        .collect()
                });
                match allow {
                    Some(a) if a.len() == obj["allow"].as_array().map_or(0, Vec::len) => {
                        Spec::Ports(a)
                    }
                    _ => {
                        issues.push(ConfigIssue::new(
                            at("allow"),
                            "must list the TCP ports allowed to listen, e.g. [22, 443]",
                        ));
                        return None;
                    }
                }
            }
            "reboot" => Spec::Reboot,
            "raid" => Spec::Raid,
            _ => {
                let argv: Option<Vec<String>> =
                    obj.get("command").and_then(Value::as_array).map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    });
                let Some(argv) = argv else {
                    issues.push(ConfigIssue::new(
                        at("command"),
                        "needs `command`: the plugin's path and arguments, as a list",
                    ));
                    return None;
                };
                let timeout = match obj.get("timeout") {
                    None => Duration::from_secs(10),
                    Some(Value::String(t)) => match parse_duration(t) {
                        Ok(d) if !d.is_zero() => d,
                        Ok(_) => {
                            issues
                                .push(ConfigIssue::new(at("timeout"), "must be longer than zero"));
                            return None;
                        }
                        Err(e) => {
                            issues.push(ConfigIssue::new(at("timeout"), e));
                            return None;
                        }
                    },
                    Some(_) => {
                        issues.push(ConfigIssue::new(
                            at("timeout"),
                            "must be a duration like \"10s\"",
                        ));
                        return None;
                    }
                };
                let label = obj
                    .get("label")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        argv.first()
                            .and_then(|p| p.rsplit('/').next())
                            .unwrap_or("plugin")
                            .to_string()
                    });
                match Plugin::new(argv, timeout, &self.plugin_dirs) {
                    Ok(p) => Spec::Plugin(label, p),
                    Err(e) => {
                        issues.push(ConfigIssue::new(at("command"), e));
                        return None;
                    }
                }
            }
        })
    }
}

/// Reads `warning`/`critical` from `value` over `default`.
fn threshold_from(
    value: Option<&Value>,
    default: Threshold,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Threshold {
    let Some(obj) = value.and_then(Value::as_object) else {
        if value.is_some_and(|v| !v.is_null()) {
            issues.push(ConfigIssue::new(
                path,
                "must be an object like {\"warning\": 70, \"critical\": 90}",
            ));
        }
        return default;
    };
    let mut t = default;
    for (key, slot) in [("warning", &mut t.warning), ("critical", &mut t.critical)] {
        if let Some(v) = obj.get(key) {
            match v.as_f64() {
                Some(x) if (0.0..=1000.0).contains(&x) => *slot = x,
                _ => issues.push(ConfigIssue::new(
                    format!("{path}.{key}"),
                    format!("must be a number, found {v}"),
                )),
            }
        }
    }
    if t.warning > t.critical {
        issues.push(ConfigIssue::new(
            path,
            format!("warning ({}) is above critical ({})", t.warning, t.critical),
        ));
    }
    t
}

struct Check {
    host: Arc<HostSampler>,
    specs: Vec<Spec>,
    hold: Option<Duration>,
    source_node: Option<String>,
    /// Since when each check has been non-OK, for `for`: a monotonic
    /// instant, so that a wall clock stepped back cannot hold an alert back
    /// for the length of the step (nor one stepped forward fire it early).
    pending: Mutex<HashMap<String, Instant>>,
}

/// cpu/memory/disk values taken from a `context` node's output.
pub struct FromContext {
    pub cpu: Option<f64>,
    pub memory: Option<f64>,
    pub disks: Vec<(String, f64)>,
}

impl FromContext {
    pub fn read(output: &Value) -> FromContext {
        FromContext {
            cpu: output.pointer("/cpu/usage_percent").and_then(Value::as_f64),
            memory: output.pointer("/memory/percent").and_then(Value::as_f64),
            disks: output
                .pointer("/disk/mounts")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(|m| {
                            Some((
                                m.get("mount")?.as_str()?.to_string(),
                                m.get("percent")?.as_f64()?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn level(what: &str, value: f64, unit: &str, t: &Threshold, status: CheckStatus) -> String {
    match status {
        CheckStatus::Ok => format!("{what} {value:.1}{unit} is below {:.0}{unit}", t.warning),
        CheckStatus::Warning => format!(
            "{what} {value:.1}{unit} is at or above the warning level {:.0}{unit}",
            t.warning
        ),
        _ => format!(
            "{what} {value:.1}{unit} is at or above the critical level {:.0}{unit}",
            t.critical
        ),
    }
}

fn threshold_result(
    name: &str,
    what: &str,
    value: Option<f64>,
    unit: &str,
    t: &Threshold,
    missing: &str,
) -> CheckResult {
    let (status, message) = match value {
        Some(v) => {
            let s = t.judge(v);
            (s, level(what, v, unit, t, s))
        }
        None => (CheckStatus::Unknown, missing.to_string()),
    };
    CheckResult {
        name: name.to_string(),
        status,
        value,
        warning: Some(t.warning),
        critical: Some(t.critical),
        message,
        details: Value::Null,
    }
}

fn simple(name: &str, status: CheckStatus, message: String, details: Value) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        status,
        value: None,
        warning: None,
        critical: None,
        message,
        details,
    }
}

/// Per-mount judging: every mount against its own threshold; worst wins.
fn per_mount(
    name: &str,
    what: &str,
    values: &[(String, f64)],
    default: &Threshold,
    mounts: &BTreeMap<String, Threshold>,
) -> CheckResult {
    let judged: Vec<(String, f64, Threshold, CheckStatus)> = values
        .iter()
        .map(|(m, v)| {
            let t = mounts.get(m).copied().unwrap_or(*default);
            (m.clone(), *v, t, t.judge(*v))
        })
        .collect();
    let Some(worst) = judged
        .iter()
        .max_by(|a, b| a.3.cmp(&b.3).then(a.1.total_cmp(&b.1)))
    else {
        return threshold_result(
            name,
            what,
            None,
            "%",
            default,
            &format!("no mounted file system reports {what}"),
        );
    };
    let mut r = CheckResult {
        name: name.to_string(),
        status: worst.3,
        value: Some(worst.1),
        warning: Some(worst.2.warning),
        critical: Some(worst.2.critical),
        message: level(
            &format!("{what} on {}", worst.0),
            worst.1,
            "%",
            &worst.2,
            worst.3,
        ),
        details: Value::Null,
    };
    r.details = json!(judged
        .iter()
        .map(|(m, v, t, s)| json!({"mount": m, "percent": v, "status": s, "warning": t.warning, "critical": t.critical}))
        .collect::<Vec<_>>());
    r
}

/// A mount whose statvfs never returned is CRITICAL whatever the usage of
/// the others: what is on it hangs too.
fn with_mounts_not_responding(mut r: CheckResult, stuck: &[String]) -> CheckResult {
    if stuck.is_empty() {
        return r;
    }
    r.status = CheckStatus::Critical;
    r.message = format!(
        "{} not responding (statvfs did not return; a network file system whose server is gone?); {}",
        stuck.join(", "),
        r.message
    );
    let mut details = match r.details.take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    details.extend(
        stuck
            .iter()
            .map(|m| json!({"mount": m, "status": CheckStatus::Critical, "responding": false})),
    );
    r.details = Value::Array(details);
    r
}

/// Judges every built-in check against a snapshot (plugins excluded).
pub fn judge(
    spec: &Spec,
    snap: &HostSnapshot,
    from_context: Option<&FromContext>,
) -> Option<CheckResult> {
    let ctx = from_context;
    Some(match spec {
        Spec::Cpu(t) => threshold_result(
            "cpu",
            "CPU usage",
            ctx.and_then(|c| c.cpu).or(Some(snap.cpu.usage_percent)),
            "%",
            t,
            "CPU usage is not available",
        ),
        Spec::Memory(t) => threshold_result(
            "memory",
            "memory usage",
            ctx.and_then(|c| c.memory).or(Some(snap.memory.percent)),
            "%",
            t,
            "memory usage is not available",
        ),
        Spec::Disk(t, mounts) => {
            let values: Vec<(String, f64)> = match ctx.filter(|c| !c.disks.is_empty()) {
                Some(c) => c.disks.clone(),
                None => snap
                    .disks
                    .iter()
                    .map(|d| (d.mount.clone(), d.percent))
                    .collect(),
            };
            let r = per_mount("disk", "disk usage", &values, t, mounts);
            with_mounts_not_responding(r, &snap.mounts_not_responding)
        }
        Spec::Inodes(t, mounts) => {
            let values: Vec<(String, f64)> = snap
                .disks
                .iter()
                .filter_map(|d| Some((d.mount.clone(), d.inodes_percent?)))
                .collect();
            per_mount("inodes", "inode usage", &values, t, mounts)
        }
        Spec::Temperature(t) => {
            let hottest = snap
                .temperatures
                .as_ref()
                .and_then(|ts| ts.iter().map(|t| t.celsius).max_by(f64::total_cmp));
            match hottest {
                Some(_) => {
                    threshold_result("temperature", "the hottest sensor", hottest, "°C", t, "")
                }
                // Most VMs have no sensors: nothing to judge is not a problem.
                None => simple(
                    "temperature",
                    CheckStatus::Ok,
                    "this host exposes no temperature sensors".into(),
                    Value::Null,
                ),
            }
        }
        Spec::Process(p) => {
            if snap.processes.names.contains(p) {
                simple(
                    &format!("process:{p}"),
                    CheckStatus::Ok,
                    format!("{p} is running"),
                    Value::Null,
                )
            } else {
                simple(
                    &format!("process:{p}"),
                    CheckStatus::Critical,
                    format!("{p} is not running"),
                    Value::Null,
                )
            }
        }
        Spec::Ports(allow) => {
            let mut unexpected: Vec<u16> = snap
                .ports
                .iter()
                .filter(|s| s.protocol.starts_with("tcp") && !allow.contains(&s.port))
                .map(|s| s.port)
                .collect();
            unexpected.sort_unstable();
            unexpected.dedup();
            let details = json!(
                snap.ports
                    .iter()
                    .filter(|s| unexpected.contains(&s.port))
                    .collect::<Vec<_>>()
            );
            if unexpected.is_empty() {
                simple(
                    "ports",
                    CheckStatus::Ok,
                    "only allowed TCP ports are listening".into(),
                    Value::Null,
                )
            } else {
                let list: Vec<String> = unexpected.iter().map(u16::to_string).collect();
                let mut r = simple(
                    "ports",
                    CheckStatus::Warning,
                    format!(
                        "TCP ports listening outside the allowlist: {}",
                        list.join(", ")
                    ),
                    details,
                );
                r.value = Some(unexpected.len() as f64);
                r
            }
        }
        Spec::Reboot => {
            if snap.reboot.required {
                let pkgs = if snap.reboot.packages.is_empty() {
                    String::new()
                } else {
                    format!(" (for {})", snap.reboot.packages.join(", "))
                };
                simple(
                    "reboot",
                    CheckStatus::Warning,
                    format!("a reboot is required{pkgs}"),
                    json!(snap.reboot.packages),
                )
            } else {
                simple(
                    "reboot",
                    CheckStatus::Ok,
                    "no reboot required".into(),
                    Value::Null,
                )
            }
        }
        Spec::Raid => match &snap.raid {
            None => simple(
                "raid",
                CheckStatus::Ok,
                "no md RAID on this host".into(),
                Value::Null,
            ),
            Some(arrays) => {
                let status = arrays
                    .iter()
                    .map(|a| match a.state.as_str() {
                        "degraded" | "inactive" => CheckStatus::Critical,
                        "rebuilding" => CheckStatus::Warning,
                        _ => CheckStatus::Ok,
                    })
                    .max()
                    .unwrap_or(CheckStatus::Ok);
                let states: Vec<String> = arrays
                    .iter()
                    .map(|a| format!("{} {}", a.name, a.state))
                    .collect();
                let message = if states.is_empty() {
                    "no md arrays".to_string()
                } else {
                    states.join(", ")
                };
                simple("raid", status, message, json!(arrays))
            }
        },
        Spec::Plugin(..) => return None,
    })
}

impl Check {
    /// Applies `for`: a non-OK status that has not held long enough is
    /// reported as OK, with what is pending.
    fn hold_back(&self, mut r: CheckResult, now: Instant) -> CheckResult {
        let Some(hold) = self.hold else { return r };
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !matches!(r.status, CheckStatus::Warning | CheckStatus::Critical) {
            pending.remove(&r.name);
            return r;
        }
        let since = *pending.entry(r.name.clone()).or_insert(now);
        let held = now.saturating_duration_since(since);
        if held < hold {
            r.message = format!(
                "{} (pending: {} for {} of {})",
                r.message,
                r.status.as_str(),
                format_duration(Duration::from_secs(held.as_secs())),
                format_duration(hold)
            );
            r.status = CheckStatus::Ok;
        }
        r
    }
}

impl NodeExecutor for Check {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let snap = self.host.snapshot(MAX_SNAPSHOT_AGE).await;
            let context = match &self.source_node {
                Some(id) => ctx.output(id),
                None => ctx.latest_of_type("context"),
            }
            .map(FromContext::read);
            let now = Instant::now();
            let mut results = Vec::with_capacity(self.specs.len());
            for spec in &self.specs {
                let r = match spec {
                    Spec::Plugin(label, plugin) => {
                        let out = plugin.run().await;
                        let mut r = simple(
                            &format!("plugin:{label}"),
                            out.status,
                            out.message.clone(),
                            json!({"exit_code": out.exit_code, "perfdata": out.perfdata}),
                        );
                        r.value = out.perfdata.first().map(|p| p.value);
                        r
                    }
                    other => match judge(other, &snap, context.as_ref()) {
                        Some(r) => r,
                        None => continue,
                    },
                };
                results.push(self.hold_back(r, now));
            }
            let status = results
                .iter()
                .map(|r| r.status)
                .max()
                .unwrap_or(CheckStatus::Ok);
            let disks: Map<String, Value> = snap
                .disks
                .iter()
                .map(|d| (d.mount.clone(), json!(d.percent)))
                .collect();
            Ok(json!({
                "status": status,
                "checks": results,
                "metrics": {
                    "taken_at": snap.taken_at,
                    "cpu_percent": context.as_ref().and_then(|c| c.cpu).unwrap_or(snap.cpu.usage_percent),
                    "memory_percent": context.as_ref().and_then(|c| c.memory).unwrap_or(snap.memory.percent),
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
