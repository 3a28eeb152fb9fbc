//! Incidents through the real daemon: dedup across re-sends, resolve and
//! close, re-fire, one incident per host, escalation, the endpoints and the
//! CLI — and a real Prometheus Alertmanager delivering to herald.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::client::{assert_error, call, get, post, raw};
use support::daemon::{Daemon, Workspace};
use support::fixture;

fn body(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

async fn webhook(d: &Daemon, path: &str, content: Vec<u8>) -> Value {
    let r = raw(
        &d.url(path),
        content,
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    r.body
}

fn am_alert(name: &str, instance: &str, status: &str, severity: &str) -> Vec<u8> {
    json!({"version": "4", "status": status, "receiver": "herald", "groupKey": "{}",
           "alerts": [{"status": status,
                       "labels": {"alertname": name, "instance": instance, "severity": severity},
                       "annotations": {"description": format!("{name} on {instance}")},
                       "startsAt": "2026-11-29T01:00:00Z"}]})
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn dedup_resolve_refire_and_hosts() {
    let ws = Workspace::new("");
    let d = ws.start();

    // Firing: opens one incident and starts the built-in pipeline.
    let first = webhook(
        &d,
        "/alerts/webhook/",
        body("alertmanager-0.25-webhook-firing.json"),
    )
    .await;
    assert_eq!(first["changes"]["opened"], 1, "{first:#}");
    assert_eq!(first["definitions"], json!(["default"]));
    let incident = first["incident_ids"][0].as_str().unwrap().to_string();

    // The same body again: unchanged, nothing runs.
    for _ in 0..3 {
        let again = webhook(
            &d,
            "/alerts/webhook/",
            body("alertmanager-0.25-webhook-firing.json"),
        )
        .await;
        assert_eq!(again["changes"]["unchanged"], 1, "{again:#}");
        assert_eq!(again["run_ids"], json!([]), "a re-send starts nothing");
    }

    let open = get(&d, "/alerts/incidents/?status=open").await;
    assert_eq!(open.body["count"], 1, "{:#}", open.body);
    assert_eq!(open.body["results"][0]["id"], incident.as_str());
    assert_eq!(
        open.body["results"][0]["title"],
        "DiskSpaceLow on db-server-01"
    );
    // A listing carries no history; the detail does.
    assert!(
        open.body["results"][0].get("history").is_none(),
        "{:#}",
        open.body
    );

    // Resolved: closes the alert and the incident, and runs again.
    let resolved = webhook(
        &d,
        "/alerts/webhook/",
        body("alertmanager-0.25-webhook-resolved.json"),
    )
    .await;
    assert_eq!(resolved["changes"]["closed"], 1, "{resolved:#}");
    assert_eq!(resolved["run_ids"].as_array().unwrap().len(), 1);
    let detail = get(&d, &format!("/alerts/incidents/{incident}/")).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["status"], "resolved");
    assert!(detail.body["resolved_at"].is_string());
    let alert = &detail.body["alerts"][0];
    assert_eq!(alert["key"], "alertmanager/4e70aa3763bd0be1");
    let changes: Vec<&str> = alert["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["opened", "closed"]);
    let events: Vec<&str> = detail.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["change"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["opened", "closed"]);
    assert_eq!(
        detail.body["runs"].as_array().unwrap().len(),
        2,
        "{:#}",
        detail.body
    );

    // Re-fire within the reopen window: the same incident, re-opened.
    let refire = webhook(
        &d,
        "/alerts/webhook/",
        body("alertmanager-0.25-webhook-firing.json"),
    )
    .await;
    assert_eq!(refire["changes"]["reopened"], 1, "{refire:#}");
    assert_eq!(refire["incident_ids"][0], incident.as_str());

    // The same alert on two other hosts: two more incidents, not one.
    let a = webhook(
        &d,
        "/alerts/webhook/",
        am_alert("HighLoad", "web-01", "firing", "warning"),
    )
    .await;
    let b = webhook(
        &d,
        "/alerts/webhook/",
        am_alert("HighLoad", "web-02", "firing", "warning"),
    )
    .await;
    assert_eq!(
        (
            a["changes"]["opened"].as_u64(),
            b["changes"]["opened"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_ne!(a["incident_ids"][0], b["incident_ids"][0]);

    // Severity up: escalated; down again: updated, and nothing runs.
    let up = webhook(
        &d,
        "/alerts/webhook/",
        am_alert("HighLoad", "web-01", "firing", "critical"),
    )
    .await;
    assert_eq!(up["changes"]["escalated"], 1, "{up:#}");
    // Alertmanager's fingerprint covers every label, severity included: the
    // warning alert is still the first one, unchanged.
    let down = webhook(
        &d,
        "/alerts/webhook/",
        am_alert("HighLoad", "web-01", "firing", "warning"),
    )
    .await;
    assert_eq!(down["changes"]["unchanged"], 1, "{down:#}");
    // A sender's own id keeps the alert across a severity change: going
    // down is an update, and starts nothing.
    let flappy = |sev: &str| json!({"name": "Flappy", "fingerprint": "flappy-1", "instance": "web-09", "severity": sev});
    let opened = post(&d, "/alerts/webhook/generic/", flappy("warning")).await;
    assert_eq!(opened.body["changes"]["opened"], 1, "{:#}", opened.body);
    let updated = post(&d, "/alerts/webhook/generic/", flappy("info")).await;
    assert_eq!(updated.body["changes"]["updated"], 1, "{:#}", updated.body);
    assert_eq!(updated.body["run_ids"], json!([]));
    let critical = get(&d, "/alerts/incidents/?severity=critical").await;
    assert_eq!(critical.body["count"], 1, "{:#}", critical.body);
    assert_eq!(critical.body["results"][0]["id"], a["incident_ids"][0]);
    let shouted = get(&d, "/alerts/incidents/?severity=CRITICAL&status=OPEN").await;
    assert_eq!(shouted.body["count"], 1, "{:#}", shouted.body);

    // Pages newest first with a cursor.
    let page = get(&d, "/alerts/incidents/?limit=2").await;
    assert_eq!(page.body["count"], 2);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = get(&d, &format!("/alerts/incidents/?limit=2&cursor={cursor}")).await;
    assert_eq!(rest.body["count"], 2);
    assert_eq!(
        rest.body["results"][1]["id"],
        incident.as_str(),
        "oldest last"
    );
    assert!(rest.body["next_cursor"].is_null(), "the last page");

    // Bad parameters and unknown ids.
    assert_error(
        &get(&d, "/alerts/incidents/?status=sleepy").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );
    assert_error(
        &get(&d, "/alerts/incidents/?severity=p1").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );
    assert_error(
        &get(&d, "/alerts/incidents/?colour=red").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );
    assert_error(
        &get(&d, "/alerts/incidents/inc-nope/").await,
        StatusCode::NOT_FOUND,
        "incident_not_found",
    );

    // The ingest node reports what changed, for later nodes to use.
    let run_id = refire["run_ids"][0].as_str().unwrap();
    let started = Instant::now();
    let run = loop {
        let r = get(&d, &format!("/orchestration/pipeline/{run_id}/")).await;
        if r.body["completed_at"].is_string() || started.elapsed() > Duration::from_secs(20) {
            break r.body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run["incident_id"], incident.as_str(), "{run:#}");
    let ingest = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node_id"] == "ingest")
        .unwrap();
    assert_eq!(ingest["output"]["tracked"], true);
    assert_eq!(ingest["output"]["material"], true);
    assert_eq!(ingest["output"]["changes"]["reopened"], 1);
    assert_eq!(ingest["output"]["incident_ids"][0], incident.as_str());

    // The CLI reads the same through the daemon.
    let out = ws.command(&["incidents", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("HighLoad on web-02") && text.contains(&incident),
        "{text}"
    );
    assert!(
        text.contains("OPENED (UTC)"),
        "times say their zone:\n{text}"
    );
    let out = ws
        .command(&["incidents", "show", &incident])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alertmanager/4e70aa3763bd0be1") && text.contains("reopened"),
        "{text}"
    );

    // A dry run through the daemon says what would happen and changes nothing.
    let (_, report) = dry_run_of(&ws, &am_alert("HighLoad", "web-03", "firing", "warning"));
    assert_eq!(report["driver"], "alertmanager");
    assert_eq!(report["alerts"][0]["change"], "opened");
    assert_eq!(report["would_start"], json!(["default"]));
    let after = get(&d, "/alerts/incidents/?limit=1000").await;
    assert_eq!(after.body["count"], 4, "the dry run opened nothing");
}

/// Writes `body` to a file in the workspace and runs `herald ingest
/// --dry-run --json` on it; the file and the report it printed.
fn dry_run_of(ws: &Workspace, body: &[u8]) -> (std::path::PathBuf, Value) {
    let file = ws.dir.path().join("p.json");
    std::fs::write(&file, body).unwrap();
    let out = ws
        .command(&["ingest", "--dry-run", "--json", file.to_str().unwrap()])
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (file, report)
}

/// `herald ingest --dry-run` through a daemon whose source has a secret:
/// the CLI reads the same config, so it signs as a sender would.
#[tokio::test]
async fn a_dry_run_is_signed_for_a_source_with_a_secret() {
    let ws = Workspace::new("[webhooks.secrets]\nalertmanager = \"s3cret\"\n");
    let d = ws.start();
    let (file, report) = dry_run_of(&ws, &am_alert("HighLoad", "web-09", "firing", "warning"));
    assert_eq!(report["driver"], "alertmanager", "{report:#}");
    assert_eq!(report["alerts"][0]["change"], "opened", "{report:#}");
    // Signed with another secret (a CLI reading another config): the
    // daemon's reason is passed on, not taken for a token problem.
    let other = ws.dir.path().join("other.toml");
    let config = std::fs::read_to_string(ws.dir.path().join("config.toml")).unwrap();
    std::fs::write(&other, config.replace("s3cret", "not-it")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(&other)
        .args(["ingest", "--dry-run", file.to_str().unwrap()])
        .current_dir(ws.dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not match the body"), "{err}");
    assert!(!err.contains("requires a token"), "{err}");
    // The daemon still refuses the same body unsigned.
    let unsigned = raw(
        &d.url("/alerts/webhook/?dry_run=true"),
        std::fs::read(&file).unwrap(),
        &[],
    )
    .await;
    assert_eq!(
        unsigned.status,
        StatusCode::UNAUTHORIZED,
        "{:#}",
        unsigned.body
    );
}

/// A definition's trigger claims matching changed alerts; the rest go to
/// the built-in pipeline; `default_route = "none"` runs nothing for them.
#[tokio::test]
async fn triggers_route_changed_alerts() {
    let ws = Workspace::new("[webhooks]\ndefault_route = \"none\"\n");
    ws.definition(
        "db-critical",
        &json!({"version": "1", "trigger": {"sources": ["alertmanager"],
                 "match": {"severity": "critical", "labels.team": "db"}, "status": ["firing"]},
                "nodes": [{"id": "ingest", "type": "ingest"}]}),
    );
    let d = ws.start();
    let db = |sev: &str| {
        json!({"alerts": [{"status": "firing", "labels": {"alertname": "Replication", "team": "db",
               "instance": "db-01", "severity": sev}}]})
    };
    let warn = post(&d, "/alerts/webhook/", db("warning")).await;
    assert_eq!(warn.status, StatusCode::ACCEPTED);
    assert_eq!(
        warn.body["definitions"],
        json!([]),
        "no match, default_route none"
    );
    let crit = post(&d, "/alerts/webhook/", db("critical")).await;
    assert_eq!(
        crit.body["definitions"],
        json!(["db-critical"]),
        "{:#}",
        crit.body
    );
    let again = post(&d, "/alerts/webhook/", db("critical")).await;
    assert_eq!(again.body["definitions"], json!([]), "unchanged: no run");
}

/// Alertmanager in HA sends every notification from each replica, at the
/// same moment: the copies must make one change and one run, not one each.
#[tokio::test]
async fn simultaneous_copies_of_an_alert_notify_once() {
    let ws = Workspace::new("");
    let d = ws.start();
    let copies = 16;
    let mut sends = Vec::new();
    for _ in 0..copies {
        let url = d.url("/alerts/webhook/alertmanager/");
        sends.push(tokio::spawn(async move {
            raw(
                &url,
                am_alert("ReplicaLag", "db-07", "firing", "critical"),
                &[("content-type", "application/json")],
            )
            .await
        }));
    }
    let mut opened = 0;
    let mut unchanged = 0;
    let mut runs = Vec::new();
    for send in sends {
        let r = send.await.unwrap();
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
        opened += r.body["changes"]["opened"].as_u64().unwrap_or(0);
        unchanged += r.body["changes"]["unchanged"].as_u64().unwrap_or(0);
        runs.extend(r.body["run_ids"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(opened, 1, "one copy opens the incident");
    assert_eq!(unchanged, copies - 1, "the others change nothing");
    assert_eq!(runs.len(), 1, "one run for the alert: {runs:?}");
    let list = get(&d, "/alerts/incidents/").await;
    assert_eq!(list.body["count"], 1, "{:#}", list.body);
}

#[tokio::test]
async fn every_vendor_fixture_opens_an_incident_over_http() {
    let ws = Workspace::new("");
    let d = ws.start();
    for (path, file, opened) in [
        ("/alerts/webhook/", "vendors/grafana-unified-firing.json", 2),
        (
            "/alerts/webhook/",
            "vendors/grafana-legacy-alerting.json",
            1,
        ),
        ("/alerts/webhook/", "vendors/prometheus-alerts.json", 1),
        ("/alerts/webhook/", "seed-pagerduty-v3.json", 1),
        ("/alerts/webhook/", "vendors/datadog-triggered.json", 1),
        ("/alerts/webhook/", "vendors/newrelic-classic-open.json", 1),
        ("/alerts/webhook/", "vendors/opsgenie-create.json", 1),
        ("/alerts/webhook/", "vendors/zabbix-problem.json", 1),
        ("/alerts/webhook/herald/", "vendors/herald-forward.json", 1),
        ("/alerts/webhook/", "seed-grafana-alert.json", 1),
    ] {
        let r = webhook(&d, path, body(file)).await;
        assert_eq!(r["changes"]["opened"], opened, "{file}: {r:#}");
    }
    // Their resolutions close them.
    for file in [
        "vendors/grafana-legacy-ok.json",
        "vendors/pagerduty-v3-resolved.json",
        "vendors/datadog-recovered.json",
        "vendors/opsgenie-close.json",
        "vendors/zabbix-resolved.json",
    ] {
        let r = webhook(&d, "/alerts/webhook/", body(file)).await;
        assert_eq!(r["changes"]["closed"], 1, "{file}: {r:#}");
    }
    // A ping is accepted and does nothing.
    let ping = webhook(
        &d,
        "/alerts/webhook/",
        body("vendors/pagerduty-v3-ping.json"),
    )
    .await;
    assert_eq!(
        (ping["alerts"].as_u64(), ping["run_ids"].clone()),
        (Some(0), json!([]))
    );
    // Hostile bodies: 4xx, never 5xx, and the daemon still answers.
    let url = d.url("/alerts/webhook/");
    for bad in [
        b"{\"alerts\": [".to_vec(),
        vec![0xff, 0xfe],
        b"{\"event\": {\"event_type\": \"incident.triggered\"}}".to_vec(),
        "[".repeat(100_000).into_bytes(),
        b"{\"alerts\": [{\"labels\": {\"alertname\": []}}]}".to_vec(),
    ] {
        let r = raw(&url, bad, &[]).await;
        assert!(r.status.is_client_error(), "{:#}", r.body);
    }
    let forced = raw(
        &d.url("/alerts/webhook/zabbix/"),
        body("vendors/datadog-triggered.json"),
        &[],
    )
    .await;
    assert_error(&forced, StatusCode::BAD_REQUEST, "invalid_payload");
    assert!(
        forced.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing required field")
    );
    assert_eq!(get(&d, "/healthz").await.status, StatusCode::OK);
}

/// Debian's prometheus-alertmanager on loopback, with `receivers` (YAML,
/// indented as under `receivers:`) and the route `route`; killed when
/// dropped. `None` when the binary is missing and CI does not require it
/// (`HERALD_REQUIRE_ALERTMANAGER=1`): the test then skips, loudly.
struct Alertmanager {
    child: std::process::Child,
    /// Its `/api/v2/alerts`, where alerts are posted to it.
    alerts_url: String,
}

impl Alertmanager {
    async fn start(ws: &Workspace, test: &str, route: &str, receivers: &str) -> Option<Self> {
        let binary = ["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            if std::env::var_os("HERALD_REQUIRE_ALERTMANAGER").is_some() {
                panic!(
                    "prometheus-alertmanager is required here (HERALD_REQUIRE_ALERTMANAGER is set) but not installed"
                );
            }
            eprintln!(
                "\n*** SKIPPED {test}: install Debian's prometheus-alertmanager to run it ***\n"
            );
            return None;
        };
        let am_port = free_port();
        let cluster_port = free_port();
        let config = ws.dir.path().join("alertmanager.yml");
        std::fs::write(&config, format!("route:\n{route}receivers:\n{receivers}")).unwrap();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                ws.dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg(format!("--cluster.listen-address=127.0.0.1:{cluster_port}"))
            .arg("--cluster.advertise-address=127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("alertmanager starts");
        Some(Alertmanager {
            child,
            alerts_url: format!("http://127.0.0.1:{am_port}/api/v2/alerts"),
        })
    }

    /// Posts `alerts` to it, waiting (bounded) for it to listen first.
    async fn post(&self, alerts: &Value) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client.post(&self.alerts_url).json(alerts).send().await {
                Ok(r) if r.status().is_success() => return,
                _ if Instant::now() > deadline => panic!("alertmanager did not accept the alerts"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Alertmanager's route for these tests: quick to send.
fn quick_route(group_by: &str) -> String {
    format!(
        "  receiver: herald\n  group_by: [{group_by}]\n  group_wait: 100ms\n  group_interval: 1s\n  repeat_interval: 1h\n"
    )
}

/// Debian's prometheus-alertmanager, on loopback, with herald's webhook as
/// its only receiver, authenticating with `basic_auth` (the token as the
/// password), as many Alertmanager setups do. Mandatory in CI
/// (`HERALD_REQUIRE_ALERTMANAGER=1`); skipped loudly elsewhere when the
/// binary is missing.
#[tokio::test]
async fn a_real_alertmanager_opens_and_closes_an_incident() {
    let ws = Workspace::new("auth_tokens = [\"am-pass\"]\n");
    let d = ws.start();
    let receivers = format!(
        "  - name: herald\n    webhook_configs:\n      - url: '{}'\n        send_resolved: true\n        http_config:\n          basic_auth:\n            username: alertmanager\n            password: am-pass\n",
        d.url("/alerts/webhook/alertmanager/")
    );
    let Some(am) = Alertmanager::start(
        &ws,
        "a_real_alertmanager_opens_and_closes_an_incident",
        &quick_route("'alertname', 'instance'"),
        &receivers,
    )
    .await
    else {
        return;
    };
    let starts = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
    let alert = |ends: Option<&str>| {
        let mut a = json!({"labels": {"alertname": "RealAMTest", "instance": "am-host", "severity": "critical"},
                           "annotations": {"summary": "from a real Alertmanager"},
                           "startsAt": starts});
        if let Some(e) = ends {
            a["endsAt"] = json!(e);
        }
        json!([a])
    };
    am.post(&alert(None)).await;
    let incident = wait_for_incident(&d, "open")
        .await
        .unwrap_or_else(|| panic!("herald opened no incident; log:\n{}", d.log()));
    assert_eq!(incident["title"], "RealAMTest on am-host");
    assert_eq!(incident["severity"], "critical");
    // The resolution: an end in the past.
    let ended = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    am.post(&alert(Some(&ended))).await;
    let closed = wait_for_incident(&d, "resolved")
        .await
        .unwrap_or_else(|| panic!("herald did not close the incident; log:\n{}", d.log()));
    assert_eq!(closed["id"], incident["id"]);
}

/// A real Alertmanager whose receiver has `max_alerts: 1`, sent a group of
/// three: herald gets one alert, and says in its log and /metrics that
/// two were left out.
#[tokio::test]
async fn a_real_alertmanagers_max_alerts_is_reported() {
    let ws = Workspace::new("auth_tokens = [\"am-pass\"]\n");
    let d = ws.start();
    let receivers = format!(
        "  - name: herald\n    webhook_configs:\n      - url: '{}'\n        max_alerts: 1\n        http_config:\n          authorization:\n            credentials: am-pass\n",
        d.url("/alerts/webhook/alertmanager/")
    );
    let Some(am) = Alertmanager::start(
        &ws,
        "a_real_alertmanagers_max_alerts_is_reported",
        &quick_route("'alertname'"),
        &receivers,
    )
    .await
    else {
        return;
    };
    let starts = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
    let group: Vec<Value> = ["a", "b", "c"]
        .iter()
        .map(|host| json!({"labels": {"alertname": "CutShort", "instance": host}, "startsAt": starts}))
        .collect();
    am.post(&json!(group)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.log().contains("left out by the sender") {
        assert!(Instant::now() < deadline, "no warning; log:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.log().contains("2 alerts of its group"), "{}", d.log());
    let metrics = call(Method::GET, &d.url("/metrics"), None, Some("am-pass")).await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains("herald_webhook_alerts_left_out_total{driver=\"alertmanager\"} 2"),
        "{text}"
    );
}

async fn wait_for_incident(d: &Daemon, status: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let url = d.url(&format!("/alerts/incidents/?status={status}"));
        let r = call(Method::GET, &url, None, Some("am-pass")).await;
        if let Some(first) = r.body["results"].get(0) {
            return Some(first.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A change whose delivery never finished (the process died before the
/// runs were written, or the queue said 429) is reported again by the
/// retried webhook, not taken for an unchanged re-send.
#[test]
fn an_unfinished_delivery_is_reported_again() {
    use herald::intake;
    use herald::store::{Delivery, Store, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let body = String::from_utf8(body("alertmanager-0.25-webhook-firing.json")).unwrap();
    let window = Duration::from_secs(3600);
    let receive = |delivery: &str| {
        intake::receive(&mut store.book(), &body, None, &[], delivery, window).unwrap()
    };
    let first = receive(&intake::new_delivery_id());
    assert!(first.material() && first.wrote);
    // No delivery record was written: the retry reports the opening again,
    // into the same incident.
    let retry_id = intake::new_delivery_id();
    let retry = receive(&retry_id);
    assert!(retry.material(), "{retry:?}");
    assert_eq!(retry.changes[0].change.as_str(), "opened");
    assert_eq!(retry.incident_ids, first.incident_ids);
    // Once the retry's delivery is recorded, a re-send is unchanged and
    // writes nothing.
    store
        .put_delivery(&Delivery {
            id: retry_id,
            at: chrono::Utc::now(),
            driver: "alertmanager".into(),
            alert_count: 1,
            run_ids: vec![],
        })
        .unwrap();
    let resend = receive(&intake::new_delivery_id());
    assert!(!resend.material() && !resend.wrote, "{resend:?}");
    // A delivery older than the pending window counts as finished.
    let other = String::from_utf8(am_alert("Old", "h1", "firing", "warning")).unwrap();
    let stale = "01ARZ3NDEKTSV4RRFFQ69G5FAV"; // a ULID from 2016
    intake::receive(&mut store.book(), &other, None, &[], stale, window).unwrap();
    let again = intake::receive(
        &mut store.book(),
        &other,
        None,
        &[],
        &intake::new_delivery_id(),
        window,
    )
    .unwrap();
    assert!(!again.material(), "{again:?}");
}

/// Retention removes incidents resolved before the cutoff, with their alert
/// states and indexes; open incidents stay however old.
#[test]
fn retention_prunes_resolved_incidents_only() {
    use herald::intake;
    use herald::store::{Store, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let window = Duration::from_secs(3600);
    let send = |body: &[u8]| {
        let text = String::from_utf8(body.to_vec()).unwrap();
        intake::receive(
            &mut store.book(),
            &text,
            None,
            &[],
            &intake::new_delivery_id(),
            window,
        )
        .unwrap()
    };
    let fired = send(&am_alert("Gone", "h1", "firing", "warning"));
    let closed = fired.incident_ids[0].clone();
    let alert_key = fired.changes[0].key.clone();
    store
        .add_incident_runs(
            std::slice::from_ref(&closed),
            &["01ARZ3NDEKTSV4RRFFQ69G5FAV".into()],
        )
        .unwrap();
    assert_eq!(
        send(&am_alert("Gone", "h1", "resolved", "warning")).changes[0]
            .change
            .as_str(),
        "closed"
    );
    let open = send(&am_alert("Stays", "h2", "firing", "warning")).incident_ids[0].clone();

    // Not yet past retention: nothing goes.
    store.prune(chrono::Utc::now(), 100).unwrap();
    assert!(store.get_incident(&closed).unwrap().is_some());
    assert!(store.get_alert_state(&alert_key).unwrap().is_some());

    let later = chrono::Utc::now() + chrono::Duration::days(400);
    store.prune(later, 100).unwrap();
    assert!(
        store.get_incident(&closed).unwrap().is_none(),
        "resolved and old: pruned"
    );
    assert!(store.incident_runs(&closed, 10).unwrap().is_empty());
    assert!(
        store.get_alert_state(&alert_key).unwrap().is_none(),
        "its alert state too"
    );
    assert!(store.get_incident(&open).unwrap().is_some(), "open: kept");
    // The pruned alert firing again opens a new incident, not the old id.
    let again = send(&am_alert("Gone", "h1", "firing", "warning"));
    assert_eq!(again.changes[0].change.as_str(), "opened");
    assert_ne!(again.incident_ids[0], closed);
}
