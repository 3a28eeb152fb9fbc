//! `ingest`: reads the run's payload as alerts (Alertmanager envelope or a
//! generic JSON alert) and opens the incident they form. Its `incident.id`
//! becomes the run's incident id.
//!
//! config: `driver` (`auto` by default; `alertmanager`, `generic`), or the
//! seed app's `source_hint` meaning the same.

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler};
use crate::alerts::{self, Alert, AlertStatus, Severity};
use serde_json::{Value, json};
use std::sync::Arc;

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
            if ctx.payload.is_null() {
                return Err(NodeError::invalid_input(
                    "this run has no payload to ingest (pass one with --payload, or remove the ingest node)",
                ));
            }
            // Unless configured, read the payload as the webhook that brought it.
            let driver = self
                .driver
                .as_deref()
                .or(ctx.source.filter(|s| alerts::DRIVERS.contains(s)));
            let (driver, alerts) = alerts::normalize(ctx.payload, driver)
                .map_err(|e| NodeError::invalid_input(format!("cannot read the payload: {e}")))?;
            Ok(output(ctx, &driver, &alerts))
        })
    }
}

fn output(ctx: &NodeContext<'_>, driver: &str, alerts: &[Alert]) -> Value {
    let firing: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .collect();
    let severity = firing
        .iter()
        .map(|a| a.severity)
        .max()
        .unwrap_or(Severity::Info);
    let status = if firing.is_empty() {
        "resolved"
    } else {
        "open"
    };
    let title = match alerts {
        [one] => match alerts::instance_of(one) {
            Some(instance) => format!("{} on {instance}", one.name),
            None => one.name.clone(),
        },
        many => format!("{} alerts: {}", many.len(), distinct_names(many)),
    };
    // A caller-supplied incident id wins; otherwise the run opens one.
    let incident_id = ctx
        .incident_id
        .map(str::to_string)
        .unwrap_or_else(|| format!("inc-{}", ctx.run_id.to_ascii_lowercase()));
    json!({
        "driver": driver,
        "alert_count": alerts.len(),
        "firing_count": firing.len(),
        "alerts": alerts,
        "incident": {
            "id": incident_id,
            "title": title,
            "severity": severity,
            "status": status,
        },
        "incident_id": incident_id,
    })
}

fn distinct_names(alerts: &[Alert]) -> String {
    let mut names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}
