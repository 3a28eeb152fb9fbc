//! `intelligence`: analyzes what the run has learned — alerts, check results,
//! metrics — into a summary, a probable cause, a severity and recommendations.
//!
//! Provider `local` is a deterministic heuristic analyzer: it sorts the
//! evidence into categories (cpu, memory, disk, availability, latency,
//! errors), weighs them by severity and explains the heaviest. AI providers
//! are not part of this version; naming one is a validation error.

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub const PROVIDERS: &[&str] = &["local"];
/// Providers people will write that this version does not have yet.
const PLANNED: &[&str] = &["openai", "anthropic", "ollama", "gemini", "azure"];

pub struct IntelligenceHandler;

impl NodeHandler for IntelligenceHandler {
    fn summary(&self) -> &'static str {
        "analyze alerts, checks and metrics (provider: local)"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(&map, &["provider", "provider_config"], &mut issues);
        let provider = cfg::string(&map, "provider", &mut issues).unwrap_or_else(|| "local".into());
        if PLANNED.contains(&provider.as_str()) {
            issues.push(ConfigIssue::new(
                "provider",
                format!(
                    "provider `{provider}` is not available in this version of herald; use \"local\" (the heuristic analyzer)"
                ),
            ));
        } else if !PROVIDERS.contains(&provider.as_str()) {
            issues.push(ConfigIssue::new(
                "provider",
                format!(
                    "unknown provider `{provider}`; known: {}",
                    PROVIDERS.join(", ")
                ),
            ));
        }
        if provider == "local" && map.contains_key("provider_config") {
            issues.push(ConfigIssue::new(
                "provider_config",
                "the local provider takes no provider_config",
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(LocalAnalyzer))
    }
}

struct LocalAnalyzer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Cpu,
    Memory,
    Disk,
    Availability,
    Latency,
    Errors,
    Other,
}

/// One piece of evidence: where it came from and how bad it is (1–3).
struct Signal {
    category: Category,
    weight: u8,
    evidence: String,
}

#[derive(Serialize)]
struct Recommendation {
    title: String,
    description: String,
    priority: &'static str,
    actions: Vec<String>,
}

impl NodeExecutor for LocalAnalyzer {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move { Ok(analyze(ctx)) })
    }
}

fn analyze(ctx: &NodeContext<'_>) -> Value {
    let mut signals = Vec::new();
    let alerts = ctx
        .latest_of_type("ingest")
        .and_then(|o| o.get("alerts"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let firing: Vec<&Value> = alerts
        .iter()
        .filter(|a| a.get("status").and_then(Value::as_str) == Some("firing"))
        .collect();
    for alert in &firing {
        let name = text(alert, "name");
        let severity = text(alert, "severity");
        let haystack = format!(
            "{name} {} {}",
            text(alert, "description"),
            alert
                .get("labels")
                .map(Value::to_string)
                .unwrap_or_default()
        )
        .to_ascii_lowercase();
        signals.push(Signal {
            category: categorize(&haystack),
            weight: severity_weight(&severity),
            evidence: format!("alert {name} ({severity})"),
        });
    }
    let checks = ctx
        .latest_of_type("check")
        .and_then(|o| o.get("checks"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for check in &checks {
        let status = text(check, "status");
        let weight = match status.as_str() {
            "CRITICAL" => 3,
            "WARNING" => 2,
            _ => continue,
        };
        let name = text(check, "name");
        signals.push(Signal {
            category: categorize(&name),
            weight,
            evidence: text(check, "message"),
        });
    }

    let severity = match signals.iter().map(|s| s.weight).max() {
        Some(3) => "critical",
        Some(2) => "warning",
        _ => "info",
    };
    let cause = heaviest(&signals);
    let probable_cause = match cause {
        Some(category) => {
            let evidence: Vec<&str> = signals
                .iter()
                .filter(|s| s.category == category)
                .map(|s| s.evidence.as_str())
                .collect();
            format!(
                "{} (evidence: {})",
                cause_text(category),
                evidence.join("; ")
            )
        }
        None if !alerts.is_empty() => {
            "All alerts are resolved; nothing points at a current problem.".to_string()
        }
        None => "No firing alerts and no failing host checks.".to_string(),
    };
    let mut categories: Vec<Category> = signals.iter().map(|s| s.category).collect();
    categories.sort();
    categories.dedup();
    if let Some(c) = cause {
        categories.retain(|x| *x != c);
        categories.insert(0, c);
    }
    let recommendations: Vec<Recommendation> = categories
        .iter()
        .map(|c| {
            let weight = signals
                .iter()
                .filter(|s| s.category == *c)
                .map(|s| s.weight)
                .max()
                .unwrap_or(1);
            recommendation(*c, weight)
        })
        .collect();

    json!({
        "provider": "local",
        "summary": summary(&firing, alerts.len(), &checks),
        "probable_cause": probable_cause,
        "severity": severity,
        "recommendations": recommendations,
    })
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn severity_weight(severity: &str) -> u8 {
    match severity {
        "critical" => 3,
        "warning" => 2,
        _ => 1,
    }
}

fn categorize(haystack: &str) -> Category {
    let has = |words: &[&str]| words.iter().any(|w| haystack.contains(w));
    if has(&["disk", "space", "filesystem", "inode", "volume", "storage"]) {
        Category::Disk
    } else if has(&["memory", "mem", "oom", "swap"]) {
        Category::Memory
    } else if has(&["cpu", "load", "throttl"]) {
        Category::Cpu
    } else if has(&["down", "unreachable", "unavailable", "absent", "dead"]) {
        Category::Availability
    } else if has(&["latency", "slow", "response time", "timeout"]) {
        Category::Latency
    } else if has(&["error", "5xx", "fail", "exception"]) {
        Category::Errors
    } else {
        Category::Other
    }
}

/// The category with the most weight; ties go to the more basic resource.
fn heaviest(signals: &[Signal]) -> Option<Category> {
    let mut totals: Vec<(Category, u32, u8)> = Vec::new();
    for s in signals {
        match totals.iter_mut().find(|(c, _, _)| *c == s.category) {
            Some(entry) => {
                entry.1 += s.weight as u32;
                entry.2 = entry.2.max(s.weight);
            }
            None => totals.push((s.category, s.weight as u32, s.weight)),
        }
    }
    totals
        .into_iter()
        .max_by(|a, b| (a.2, a.1).cmp(&(b.2, b.1)).then(b.0.cmp(&a.0)))
        .map(|(c, _, _)| c)
}

fn cause_text(category: Category) -> &'static str {
    match category {
        Category::Cpu => "CPU saturation: processes are competing for CPU time",
        Category::Memory => "Memory pressure: the host is running out of available memory",
        Category::Disk => "Disk space exhaustion on at least one file system",
        Category::Availability => "A service or target is down or unreachable",
        Category::Latency => "Slow responses: a service is answering late",
        Category::Errors => "A service is returning errors",
        Category::Other => "An alert without a recognised category is firing",
    }
}

fn recommendation(category: Category, weight: u8) -> Recommendation {
    let priority = match weight {
        3 => "high",
        2 => "medium",
        _ => "low",
    };
    let (title, description, actions): (&str, &str, &[&str]) = match category {
        Category::Cpu => (
            "Find what is using the CPU",
            "Identify the processes with the highest CPU time and whether the load is expected.",
            &[
                "top -o %CPU -b -n 1 | head -20",
                "uptime",
                "journalctl -p warning --since -1h",
            ],
        ),
        Category::Memory => (
            "Find what is using memory",
            "Look for the largest resident processes and recent OOM kills.",
            &[
                "ps aux --sort=-rss | head -15",
                "free -h",
                "journalctl -k --since -1h | grep -i oom",
            ],
        ),
        Category::Disk => (
            "Free disk space",
            "Find the largest directories on the full file system; rotate or delete old logs and caches.",
            &[
                "df -h",
                "du -xh / 2>/dev/null | sort -rh | head -20",
                "journalctl --vacuum-size=500M",
            ],
        ),
        Category::Availability => (
            "Check the service that is down",
            "Confirm the process is running and reachable, then read its recent logs.",
            &[
                "systemctl --failed",
                "ss -tlnp",
                "journalctl -u <service> --since -1h",
            ],
        ),
        Category::Latency => (
            "Find the source of slow responses",
            "Compare latency with CPU, memory and disk I/O to see which resource is saturated.",
            &["iostat -x 1 5", "vmstat 1 5"],
        ),
        Category::Errors => (
            "Read the failing service's errors",
            "The error rate is up: the service's own log usually names the cause.",
            &["journalctl -p err --since -1h"],
        ),
        Category::Other => (
            "Review the alert",
            "Open the alert's source and runbook; herald could not classify it.",
            &[],
        ),
    };
    Recommendation {
        title: title.to_string(),
        description: description.to_string(),
        priority,
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

fn summary(firing: &[&Value], total_alerts: usize, checks: &[Value]) -> String {
    let mut parts = Vec::new();
    if !firing.is_empty() {
        let names: Vec<String> = firing.iter().map(|a| text(a, "name")).collect();
        parts.push(format!(
            "{} firing alert(s): {}",
            firing.len(),
            names.join(", ")
        ));
    } else if total_alerts > 0 {
        parts.push(format!("{total_alerts} alert(s), all resolved"));
    }
    let failing: Vec<String> = checks
        .iter()
        .filter(|c| matches!(text(c, "status").as_str(), "WARNING" | "CRITICAL"))
        .map(|c| format!("{} {}", text(c, "name"), text(c, "status")))
        .collect();
    if !checks.is_empty() {
        if failing.is_empty() {
            parts.push(format!("all {} host checks OK", checks.len()));
        } else {
            parts.push(format!("host checks: {}", failing.join(", ")));
        }
    }
    if parts.is_empty() {
        "Nothing to analyze: no alerts and no host checks in this run.".to_string()
    } else {
        let mut s = parts.join("; ");
        s.push('.');
        s
    }
}
