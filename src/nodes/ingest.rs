//! `ingest`: reads the run's payload as alerts (any driver) and reports
//! them, with what they did to incidents: the incident ids, the count of
//! each change (opened, escalated, resolved, unchanged, …) and `material`,
//! so that later nodes can skip when nothing material happened
//! (`"skip_if_condition": "ingest.material == false"`). Alerts are applied
//! to incidents when they arrive ([`crate::intake`]); a run with no intake
//! (a bare `herald run`) reports `tracked: false` and one incident of its own.
//!
//! config: `driver` (`auto` by default, or one of [`alerts::DRIVERS`]), or
//! the seed app's `source_hint` meaning the same.

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::alerts::{self, Alert, AlertStatus, Severity};
use serde_json::{Value, json};
use std::sync::Arc;

/// Alerts kept in the node's output; `alert_count` tells the whole number.
pub const MAX_ALERTS_IN_OUTPUT: usize = 1000;

pub struct IngestHandler;

impl NodeHandler for IngestHandler {
    fn summary(&self) -> &'static str {
        "read the payload as alerts and open an incident"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(&map, &["driver", "source_hint"], &mut issues);
        let driver = cfg::string(&map, "driver", &mut issues);
        let hint = cfg::string(&map, "source_hint", &mut issues);
        let (key, driver) = match (driver, hint) {
            (Some(d), _) => ("driver", Some(d)),
            (None, Some(h)) => ("source_hint", Some(h)),
            (None, None) => ("driver", None),
        };
        if let Some(d) = &driver
            && d != "auto"
            && !alerts::DRIVERS.contains(&d.as_str())
        {
            issues.push(ConfigIssue::new(
                key,
                format!(
                    "unknown alert driver `{d}`; known in this version: auto, {}",
                    alerts::DRIVERS.join(", ")
                ),
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Arc::new(Ingest { driver }))
    }
}

struct Ingest {
    driver: Option<String>,
}

impl NodeExecutor for Ingest {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let Some(text) = ctx.payload.text() else {
                return Err(NodeError::invalid_input(
                    "this run has no payload to ingest (pass one with --payload, or remove the ingest node)",
                ));
            };
            // Unless configured, read the payload as the webhook that brought it.
            let driver = self
                .driver
                .as_deref()
                .or(ctx.source.filter(|s| alerts::DRIVERS.contains(s)));
            let mut summary = Summary::default();
            let (driver, count) = alerts::scan_text(text, driver, |a| summary.add(a))
                .map_err(|e| NodeError::invalid_input(format!("cannot read the payload: {e}")))?;
            let mut out = summary.output(ctx, &driver, count);
            merge_intake(&mut out, ctx.intake);
            Ok(out)
        })
    }
}

/// What the node keeps of the alerts as they stream by: the first
/// [`MAX_ALERTS_IN_OUTPUT`] in full, and counts over all of them.
#[derive(Default)]
struct Summary {
    kept: Vec<Alert>,
    firing: usize,
    worst_firing: Option<Severity>,
    names: std::collections::BTreeSet<String>,
}

/// Distinct alert names named in an incident title.
const MAX_NAMES_IN_TITLE: usize = 10;

impl Summary {
    fn add(&mut self, alert: Alert) {
        if alert.status == AlertStatus::Firing {
            self.firing += 1;
            self.worst_firing = self.worst_firing.max(Some(alert.severity));
        }
        if self.names.len() < MAX_NAMES_IN_TITLE {
            self.names.insert(alert.name.clone());
        }
        if self.kept.len() < MAX_ALERTS_IN_OUTPUT {
            self.kept.push(alert);
        }
    }

    fn output(self, ctx: &NodeContext<'_>, driver: &str, count: usize) -> Value {
        let severity = self.worst_firing.unwrap_or(Severity::Info);
        let status = if self.firing == 0 { "resolved" } else { "open" };
        let title = match self.kept.as_slice() {
            [one] if count == 1 => match alerts::instance_of(one) {
                Some(instance) => format!("{} on {instance}", one.name),
                None => one.name.clone(),
            },
            _ => {
                let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
                format!("{count} alerts: {}", names.join(", "))
            }
        };
        // A caller-supplied incident id wins; otherwise the run opens one.
        let incident_id = ctx
            .incident_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("inc-{}", ctx.run_id.to_ascii_lowercase()));
        json!({
            "driver": driver,
            "alert_count": count,
            "firing_count": self.firing,
            // A storm's group can hold thousands; the output keeps the first ones.
            "alerts": self.kept,
            "alerts_truncated": count > self.kept.len(),
            "incident": {
                "id": incident_id,
                "title": title,
                "severity": severity,
                "status": status,
            },
            "incident_id": incident_id,
        })
    }
}

/// Adds what the alerts did to incidents, or says that they were not tracked.
fn merge_intake(out: &mut Value, intake: Option<&Value>) {
    let Some(map) = out.as_object_mut() else {
        return;
    };
    match intake {
        Some(intake) => {
            map.insert("tracked".into(), Value::Bool(true));
            for key in [
                "delivery_id",
                "material",
                "changes",
                "incident_ids",
                "alert_changes",
                "alert_changes_truncated",
            ] {
                if let Some(v) = intake.get(key) {
                    map.insert(key.into(), v.clone());
                }
            }
            // The run is about the first incident that changed.
            if let Some(first) = intake
                .get("incident_ids")
                .and_then(|ids| ids.get(0))
                .cloned()
            {
                map.insert("incident_id".into(), first.clone());
                if let Some(inc) = map.get_mut("incident").and_then(Value::as_object_mut) {
                    inc.insert("id".into(), first);
                }
            }
        }
        None => {
            map.insert("tracked".into(), Value::Bool(false));
            map.insert("material".into(), Value::Bool(true));
        }
    }
}
