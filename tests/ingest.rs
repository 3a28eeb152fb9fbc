//! The ingest node and the first two drivers, on real fixtures: the
//! Alertmanager envelope (firing and resolved), the seed app's samples, a
//! large group read one alert at a time, and bodies that are not alerts.

mod support;

use herald::alerts::{self, AlertStatus, Severity};
use herald::config::Config;
use herald::definition::parse_definition;
use herald::engine::{Engine, RunRequest};
use herald::nodes::{HandlerRegistry, Services};
use herald::payload::Payload;
use herald::store::RunStatus;
use serde_json::json;
use std::sync::Arc;

fn read(name: &str) -> String {
    std::fs::read_to_string(support::fixture(name)).unwrap()
}

#[test]
fn alertmanager_real_bodies() {
    let (driver, firing) =
        alerts::normalize_text(&read("alertmanager-0.25-webhook-firing.json"), None).unwrap();
    assert_eq!(driver, "alertmanager");
    assert_eq!(firing.len(), 1);
    let a = &firing[0];
    assert_eq!(a.name, "DiskSpaceLow");
    assert_eq!(a.fingerprint, "4e70aa3763bd0be1");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Warning);
    assert_eq!(a.description, "Disk usage above 85%");
    assert_eq!(a.ends_at, None, "0001-01-01T00:00:00Z means still firing");
    assert_eq!(alerts::instance_of(a), Some("db-server-01"));
    let (_, resolved) =
        alerts::normalize_text(&read("alertmanager-0.25-webhook-resolved.json"), None).unwrap();
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(resolved[0].ends_at.as_deref(), Some("2026-11-29T01:46:58Z"));
    assert_eq!(resolved[0].fingerprint, a.fingerprint);
}

#[test]
fn seed_samples_that_the_seed_app_misread() {
    // A bare `alerts` list without the envelope: read by labels, not "Unknown Alert".
    let (driver, list) =
        alerts::normalize_text(&read("seed-alertmanager-alert.json"), None).unwrap();
    assert_eq!(driver, "alertmanager");
    assert_eq!(list[0].name, "DiskSpaceLow");
    assert_eq!(list[0].description, "Disk usage above 85%");
    // A flat alert keyed by `alertname`: a generic alert named HighCPU.
    let (driver, flat) = alerts::normalize_text(&read("seed-grafana-alert.json"), None).unwrap();
    assert_eq!(driver, "generic");
    assert_eq!(flat[0].name, "HighCPU");
    assert_eq!(flat[0].severity, Severity::Critical);
    assert_eq!(
        flat[0].labels.get("instance").map(String::as_str),
        Some("web-server-01")
    );
}

#[test]
fn not_alerts_is_an_error_that_says_why() {
    for (body, needle) in [
        (r#"{"alerts": "no"}"#, "not a alertmanager payload"),
        (r#"{"alerts": []}"#, "empty"),
        (
            r#"{"alerts": [{"labels": {"severity": "x"}}]}"#,
            "missing required field `alerts[0].labels.alertname`",
        ),
        (r#"{"colour": "red"}"#, "no driver recognises"),
        ("[1, 2]", "no driver recognises"),
    ] {
        let err = alerts::normalize_text(body, None).unwrap_err().to_string();
        assert!(err.contains(needle), "{body}: {err}");
    }
}

/// A group larger than the output keeps: every alert is counted, the first
/// 1,000 are kept, and the run records the truncation.
#[tokio::test]
async fn a_large_group_is_counted_whole_and_kept_in_part() {
    let one = json!({"status": "firing", "labels": {"alertname": "Storm", "severity": "critical"}, "annotations": {}});
    let mut group = Vec::new();
    for i in 0..1500 {
        let mut a = one.clone();
        a["labels"]["instance"] = json!(format!("host-{i}"));
        if i == 7 {
            a["status"] = json!("resolved");
        }
        group.push(a);
    }
    let body = json!({"version": "4", "status": "firing", "alerts": group});
    let mut count = 0;
    let (_, n) = alerts::scan_text(&body.to_string(), None, |_| count += 1).unwrap();
    assert_eq!((n, count), (1500, 1500));

    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let def = parse_definition(
        "i",
        "i.json",
        r#"{"version": "1", "nodes": [{"id": "in", "type": "ingest"}]}"#,
        &handlers,
    )
    .unwrap();
    let result = Engine::new(None)
        .run(
            &def,
            RunRequest {
                payload: Payload::from_json_text(body.to_string()),
                ..RunRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Ingested);
    let out = &result.node_results["in"].output;
    assert_eq!(out["alert_count"], 1500);
    assert_eq!(out["firing_count"], 1499);
    assert_eq!(out["alerts"].as_array().unwrap().len(), 1000);
    assert_eq!(out["alerts_truncated"], true);
    assert_eq!(out["incident"]["severity"], "critical");
    assert_eq!(out["incident"]["title"], "1500 alerts: Storm");
}
