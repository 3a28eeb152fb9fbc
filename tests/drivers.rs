//! Every driver on its fixtures: detection (never "first that parses"), the
//! normalized fields, the status and severity vocabularies, forced drivers
//! that cannot read a body, and hostile bodies that must be errors, not
//! panics.

mod support;

use herald::alerts::{self, Alert, AlertStatus, Severity};

fn read(name: &str) -> String {
    std::fs::read_to_string(support::fixture(name)).unwrap()
}

fn auto(name: &str) -> (String, Vec<Alert>) {
    alerts::normalize_text(&read(name), None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn label<'a>(a: &'a Alert, k: &str) -> Option<&'a str> {
    a.labels.get(k).map(String::as_str)
}

#[test]
fn alertmanager_real_body_keeps_its_raw_entry() {
    let (driver, list) = auto("alertmanager-0.25-webhook-firing.json");
    assert_eq!(driver, "alertmanager");
    let raw: serde_json::Value = serde_json::from_str(list[0].raw.as_ref().unwrap().get()).unwrap();
    assert_eq!(raw["fingerprint"], "4e70aa3763bd0be1");
}

/// `truncatedAlerts` (Alertmanager's `max_alerts`, Grafana's unified body)
/// is read: herald must be able to say it never saw those alerts.
#[test]
fn alerts_the_sender_left_out_are_counted() {
    for (name, driver) in [
        ("alertmanager-0.25-webhook-firing.json", "alertmanager"),
        ("vendors/grafana-unified-firing.json", "grafana"),
    ] {
        let text = read(name);
        let whole = alerts::scan(&text, None, |_| {}).unwrap();
        assert_eq!((whole.driver.as_str(), whole.truncated), (driver, 0));
        let cut = text
            .replace("\"truncatedAlerts\": 0", "\"truncatedAlerts\": 7")
            .replace("\"truncatedAlerts\":0", "\"truncatedAlerts\":7");
        assert_ne!(cut, text, "{name} has truncatedAlerts");
        let scanned = alerts::scan(&cut, None, |_| {}).unwrap();
        assert_eq!(scanned.truncated, 7, "{name}");
        assert_eq!(scanned.count, whole.count, "{name}");
    }
}

#[test]
fn grafana_unified_is_told_apart_from_alertmanager() {
    let (driver, list) = auto("vendors/grafana-unified-firing.json");
    assert_eq!(driver, "grafana");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].name, "HighMemoryUsage");
    assert_eq!(list[0].source, "grafana");
    assert_eq!(list[0].fingerprint, "9a3f0c1e2b4d5f60");
    assert_eq!(list[0].severity, Severity::Critical);
    assert_eq!(list[1].severity, Severity::Warning);
    assert_eq!(list[0].instance(), Some("web-01:9100"));
    assert_eq!(list[0].description, "Memory usage is 96.2%");
    assert_eq!(list[0].ends_at, None);
    // The seed's sample has `state` and `title`, no orgId: still Grafana.
    let (driver, list) = auto("seed-grafana-state-alerting.json");
    assert_eq!(driver, "grafana");
    assert_eq!(list[0].name, "HighMemoryUsage");
    // Forced as alertmanager, the same body reads under that source.
    let (_, forced) = alerts::normalize_text(
        &read("vendors/grafana-unified-firing.json"),
        Some("alertmanager"),
    )
    .unwrap();
    assert_eq!(forced[0].source, "alertmanager");
}

#[test]
fn grafana_legacy_alerting_and_ok() {
    let (driver, list) = auto("vendors/grafana-legacy-alerting.json");
    assert_eq!(driver, "grafana");
    let a = &list[0];
    assert_eq!(a.name, "Test notification");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.fingerprint, "0:0");
    assert_eq!(a.instance(), Some("db-01"));
    assert_eq!(
        a.annotations.get("value.High value").map(String::as_str),
        Some("100")
    );
    let (_, ok) = auto("vendors/grafana-legacy-ok.json");
    assert_eq!(ok[0].status, AlertStatus::Resolved);
    assert_eq!(ok[0].fingerprint, a.fingerprint);
}

#[test]
fn prometheus_list_status_comes_from_ends_at() {
    let (driver, list) = auto("vendors/prometheus-alerts.json");
    assert_eq!(driver, "prometheus");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].status, AlertStatus::Firing, "endsAt in the future");
    assert_eq!(list[1].status, AlertStatus::Resolved, "endsAt in the past");
    assert_eq!(list[0].severity, Severity::Critical);
    assert_eq!(
        list[0].fingerprint,
        alerts::fingerprint("InstanceDown", &list[0].labels)
    );
    assert_ne!(list[0].fingerprint, list[1].fingerprint);
}

#[test]
fn pagerduty_v3_v2_and_ping() {
    let (driver, list) = auto("seed-pagerduty-v3.json");
    assert_eq!(driver, "pagerduty");
    let a = &list[0];
    assert_eq!(a.name, "High CPU on web-server-01");
    assert_eq!(a.fingerprint, "P123ABC", "the PagerDuty incident id");
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical, "urgency high");
    assert_eq!(label(a, "service"), Some("Production Web Servers"));
    assert_eq!(
        a.annotations.get("process").map(String::as_str),
        Some("nginx")
    );
    let (_, resolved) = auto("vendors/pagerduty-v3-resolved.json");
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(resolved[0].fingerprint, "P123ABC");
    assert_eq!(resolved[0].severity, Severity::Critical, "priority P1");
    let (_, v2) = auto("vendors/pagerduty-v2-messages.json");
    assert_eq!(v2.len(), 2);
    assert_eq!(v2[0].fingerprint, "PIJ90N7");
    assert_eq!(v2[0].severity, Severity::Warning, "urgency low");
    assert_eq!(v2[1].status, AlertStatus::Resolved);
    assert_eq!(v2[1].name, "Queue backlog on worker-07");
    let (_, ping) = auto("vendors/pagerduty-v3-ping.json");
    assert!(ping.is_empty(), "a ping carries no alert");
}

#[test]
fn datadog_trigger_and_recovery_are_one_alert() {
    let (driver, fired) = auto("vendors/datadog-triggered.json");
    assert_eq!(driver, "datadog");
    let a = &fired[0];
    assert_eq!(
        a.name, "High CPU usage",
        "title without its transition prefix"
    );
    assert_eq!(a.fingerprint, "12345678:web-01");
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(label(a, "team"), Some("web"));
    assert_eq!(a.instance(), Some("web-01"));
    let (_, rec) = auto("vendors/datadog-recovered.json");
    assert_eq!(rec[0].status, AlertStatus::Resolved);
    assert_eq!(
        (rec[0].name.as_str(), rec[0].fingerprint.as_str()),
        (a.name.as_str(), a.fingerprint.as_str())
    );
}

#[test]
fn newrelic_classic_and_workflow() {
    let (driver, list) = auto("vendors/newrelic-classic-open.json");
    assert_eq!(driver, "newrelic");
    let a = &list[0];
    assert_eq!(
        (a.name.as_str(), a.fingerprint.as_str()),
        ("CPU usage too high", "98765")
    );
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.instance(), Some("db-03"));
    let (driver, list) = auto("vendors/newrelic-workflow-closed.json");
    assert_eq!(driver, "newrelic");
    let w = &list[0];
    assert_eq!(w.name, "Disk usage high");
    assert_eq!(w.status, AlertStatus::Resolved);
    assert_eq!(w.severity, Severity::Warning, "HIGH is a warning threshold");
    assert_eq!(w.fingerprint, "b8a2f8a0-9c1e-4f54-8d7a-2d4c0f6c1e11");
    assert_eq!(w.instance(), Some("db-04"));
}

#[test]
fn opsgenie_create_and_close() {
    let (driver, list) = auto("vendors/opsgenie-create.json");
    assert_eq!(driver, "opsgenie");
    let a = &list[0];
    assert_eq!(a.name, "RAID array degraded on storage-01");
    assert_eq!(a.severity, Severity::Critical, "P2");
    assert_eq!(a.instance(), Some("storage-01"));
    assert_eq!(label(a, "array"), Some("md0"));
    let (_, closed) = auto("vendors/opsgenie-close.json");
    assert_eq!(closed[0].status, AlertStatus::Resolved);
    assert_eq!(closed[0].fingerprint, a.fingerprint);
}

#[test]
fn zabbix_problem_and_recovery() {
    let (driver, list) = auto("vendors/zabbix-problem.json");
    assert_eq!(driver, "zabbix");
    let a = &list[0];
    assert_eq!(a.fingerprint, "88231");
    assert_eq!(a.severity, Severity::Warning, "Average");
    assert_eq!(a.instance(), Some("app-05"));
    assert_eq!(label(a, "component"), Some("cpu"));
    let (_, rec) = auto("vendors/zabbix-resolved.json");
    assert_eq!(rec[0].status, AlertStatus::Resolved);
    assert_eq!(rec[0].fingerprint, a.fingerprint);
}

#[test]
fn herald_forward_keeps_the_alert_and_names_the_sender() {
    let (driver, list) = auto("vendors/herald-forward.json");
    assert_eq!(driver, "herald");
    let a = &list[0];
    assert_eq!(a.source, "herald");
    assert_eq!(a.fingerprint, "4e70aa3763bd0be1");
    assert_eq!(label(a, "origin_source"), Some("alertmanager"));
    assert_eq!(label(a, "herald_host"), Some("edge-02"));
    assert_eq!(a.instance(), Some("edge-02"));
    let err = alerts::normalize_text(
        r#"{"herald": {"version": 2, "host": "x"}, "alerts": []}"#,
        None,
    )
    .unwrap_err();
    assert!(err.0.contains("version 2 is not supported"), "{err}");
}

#[test]
fn seed_samples_the_seed_app_misread() {
    let (driver, list) = auto("seed-alertmanager-alert.json");
    assert_eq!(driver, "alertmanager");
    assert_eq!(list[0].name, "DiskSpaceLow");
    let (driver, flat) = auto("seed-grafana-alert.json");
    assert_eq!(driver, "generic");
    assert_eq!(flat[0].name, "HighCPU");
}

/// Each vendor's vocabulary, word by word.
#[test]
fn severity_mapping_tables() {
    use herald::alerts::{datadog, newrelic, pagerduty, zabbix};
    let c = Some(Severity::Critical);
    let w = Some(Severity::Warning);
    let i = Some(Severity::Info);
    for (word, want) in [
        ("P1", c),
        ("P2", c),
        ("P3", w),
        ("P4", i),
        ("P5", i),
        ("P9", None),
    ] {
        assert_eq!(pagerduty::priority_severity(word), want, "{word}");
    }
    for (word, want) in [("high", c), ("low", w), ("medium", None)] {
        assert_eq!(pagerduty::urgency_severity(word), want, "{word}");
    }
    for (word, want) in [
        ("error", c),
        ("warning", w),
        ("info", i),
        ("success", i),
        ("odd", None),
    ] {
        assert_eq!(datadog::type_severity(word), want, "{word}");
    }
    for (word, want) in [("CRITICAL", c), ("WARNING", w), ("INFO", i), ("x", None)] {
        assert_eq!(newrelic::classic_severity(word), want, "{word}");
    }
    for (word, want) in [("CRITICAL", c), ("HIGH", w), ("MEDIUM", w), ("LOW", i)] {
        assert_eq!(newrelic::workflow_severity(word), want, "{word}");
    }
    for (word, want) in [
        ("Disaster", c),
        ("High", c),
        ("Average", w),
        ("Warning", w),
        ("Information", i),
        ("Not classified", i),
        ("5", c),
        ("2", w),
        ("0", i),
        ("Apocalyptic", None),
    ] {
        assert_eq!(zabbix::severity(word), want, "{word}");
    }
}

#[test]
fn unknown_words_are_recorded_not_dropped() {
    let body = r#"{"alerts": [{"status": "smouldering", "labels": {"alertname": "A", "severity": "spicy"}}]}"#;
    let (_, list) = alerts::normalize_text(body, None).unwrap();
    assert_eq!(list[0].status, AlertStatus::Firing);
    assert_eq!(list[0].status_raw.as_deref(), Some("smouldering"));
    assert_eq!(list[0].severity, Severity::Warning);
    assert_eq!(list[0].severity_raw.as_deref(), Some("spicy"));
    let (_, dd) = alerts::normalize_text(
        r#"{"alert_id": 1, "title": "T", "alert_transition": "Exploded", "alert_type": "purple"}"#,
        None,
    )
    .unwrap();
    assert_eq!(dd[0].status_raw.as_deref(), Some("Exploded"));
    assert_eq!(dd[0].severity_raw.as_deref(), Some("purple"));
}

#[test]
fn nothing_matches_names_every_driver() {
    let err = alerts::normalize_text(r#"{"colour": "red"}"#, None)
        .unwrap_err()
        .0;
    for d in alerts::DRIVERS {
        assert!(err.contains(&format!("{d}:")), "{d} missing from: {err}");
    }
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn forced_driver_names_the_missing_field() {
    for (driver, body, needle) in [
        (
            "pagerduty",
            r#"{"event": {"event_type": "incident.triggered", "data": {"title": "x"}}}"#,
            "`data.id`",
        ),
        ("pagerduty", r#"{"foo": 1}"#, "`event` (or `messages`)"),
        ("datadog", r#"{"alert_id": 1}"#, "`title`"),
        ("opsgenie", r#"{"action": "Create"}"#, "`alert`"),
        (
            "opsgenie",
            r#"{"action": "Create", "alert": {"alertId": "1"}}"#,
            "`alert.message`",
        ),
        (
            "zabbix",
            r#"{"trigger_name": "x"}"#,
            "`status` (or `event_value`)",
        ),
        ("newrelic", r#"{"current_state": "open"}"#, "`incident_id`"),
        ("alertmanager", r#"{"receiver": "x"}"#, "`alerts`"),
        (
            "alertmanager",
            r#"{"alerts": [{"labels": {}}]}"#,
            "`alerts[0].labels.alertname`",
        ),
        (
            "prometheus",
            r#"[{"labels": {"job": "x"}}]"#,
            "`[0].labels.alertname`",
        ),
        ("grafana", r#"{"state": "alerting"}"#, "`ruleName`"),
        ("herald", r#"{"alerts": []}"#, "`herald`"),
        ("generic", r#"{"colour": "red"}"#, "`name`"),
    ] {
        let err = alerts::normalize_text(body, Some(driver)).unwrap_err().0;
        assert!(err.contains(needle), "{driver} {body}: {err}");
        assert!(
            err.starts_with(driver) || err.contains(driver),
            "{driver}: {err}"
        );
    }
}

#[test]
fn hostile_bodies_are_errors_not_panics() {
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let deep_obj = r#"{"alerts": "#.to_string() + &"[".repeat(5000) + &"]".repeat(5000) + "}";
    let huge_label = format!(
        r#"{{"alerts": [{{"labels": {{"alertname": "{}"}}}}]}}"#,
        "x".repeat(1 << 20)
    );
    let bodies: Vec<String> = vec![
        String::new(),
        "{".into(),
        r#"{"alerts": [{"labels": {"alertname": "A"}"#.into(),
        "null".into(),
        "42".into(),
        r#""text""#.into(),
        "[]".into(),
        "[1, 2]".into(),
        r#"{"alerts": {"labels": 1}}"#.into(),
        r#"{"alerts": [{"labels": ["a"]}]}"#.into(),
        r#"{"alerts": [{"labels": {"alertname": 5}, "status": 3}]}"#.into(),
        r#"{"event": "string"}"#.into(),
        r#"{"messages": [1, "x", null]}"#.into(),
        r#"{"action": 1, "alert": []}"#.into(),
        r#"{"herald": {"version": 1, "host": "h"}, "alerts": [{"name": 1}]}"#.into(),
        deep,
        deep_obj,
    ];
    for body in &bodies {
        for driver in std::iter::once(None).chain(alerts::DRIVERS.iter().map(|d| Some(*d))) {
            // Either reads or says why; must not panic.
            let _ = alerts::normalize_text(body, driver);
        }
    }
    // A label of 1 MiB is fine: it is data, not structure.
    let (_, list) = alerts::normalize_text(&huge_label, None).unwrap();
    assert_eq!(list[0].name.len(), 1 << 20);
    assert!(alerts::normalize_text("[1, 2]", None).is_err());
    assert!(
        alerts::normalize_text("{", None)
            .unwrap_err()
            .0
            .contains("invalid JSON")
    );
}
