//! The scheduler against the real daemon: counts with tolerant bounds, no
//! overlap with a slow node, reload adds and removes timers, one catch-up
//! run after a restart (and none with catch_up false), next run times shown.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use support::daemon::{Daemon, Workspace};

fn every(interval: &str, catch_up: bool) -> Value {
    json!({"version": "1", "schedule": {"every": interval, "catch_up": catch_up},
           "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"x": {"literal": 1}}}}]})
}

async fn scheduled_runs(d: &Daemon, name: &str) -> Vec<Value> {
    let v: Value = reqwest::get(d.url(&format!(
        "/orchestration/pipelines/?definition={name}&source=schedule&limit=1000"
    )))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    v["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_second_runs_about_once_a_second() {
    let ws = Workspace::new("");
    ws.definition("tick", &every("1s", true));
    let d = ws.start();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let runs = scheduled_runs(&d, "tick").await;
    assert!(
        (2..=4).contains(&runs.len()),
        "{} runs in 3.5 s",
        runs.len()
    );
    assert!(
        runs.iter()
            .all(|r| r["status"] == "COMPLETED" && r["source"] == "schedule")
    );
    let list: Value = reqwest::get(d.url("/orchestration/definitions/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = list["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "tick")
        .unwrap()
        .clone();
    assert!(item["next_run"].is_string(), "{item:#}");
    let cli = ws.command(&["definitions", "--json"]).output().unwrap();
    let cli: Value = serde_json::from_slice(&cli.stdout).unwrap();
    let tick = cli
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "tick")
        .unwrap();
    assert!(
        tick["next_run"].is_string(),
        "the CLI shows the daemon's next run: {tick:#}"
    );
}

#[tokio::test]
async fn a_slow_run_is_never_overlapped() {
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins");
    let ws = Workspace::new(&format!(
        "[host]\nplugin_dirs = [\"{}\"]\n",
        plugins.display()
    ));
    // hang.sh sleeps; its 2.5 s timeout makes each run last 2.5 s.
    ws.definition("slow", &json!({"version": "1", "schedule": {"every": "1s"}, "nodes": [
        {"id": "k", "type": "check", "config": {"checks": [
            {"name": "plugin", "command": [plugins.join("hang.sh").to_str().unwrap()], "timeout": "2500ms"}]}}]}));
    let d = ws.start();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let runs = scheduled_runs(&d, "slow").await;
    assert!(
        (1..=2).contains(&runs.len()),
        "{} runs: overlapping?",
        runs.len()
    );
    let running = runs.iter().filter(|r| r["completed_at"].is_null()).count();
    assert!(running <= 1, "{running} runs at once");
    assert!(
        d.log()
            .contains("tick skipped, the previous run is still going"),
        "{}",
        d.log()
    );
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("herald_schedule_ticks_skipped_total{definition=\"slow\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn reload_adds_and_removes_schedules() {
    let ws = Workspace::new("");
    ws.definition("keep", &every("1s", true));
    let d = ws.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.definition("added", &every("1s", true));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let added = scheduled_runs(&d, "added").await.len();
    assert!(added >= 1, "the new schedule runs");
    std::fs::remove_file(ws.dir.path().join("definitions/added.json")).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_removal = scheduled_runs(&d, "added").await.len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        scheduled_runs(&d, "added").await.len(),
        after_removal,
        "a removed schedule stops"
    );
    assert!(
        scheduled_runs(&d, "keep").await.len() >= 3,
        "the other schedule was not disturbed"
    );
}

async fn catch_up_after_restart(catch_up: bool) -> usize {
    let ws = Workspace::new("");
    ws.definition("nightly", &every("2s", catch_up));
    let mut d = ws.start();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(scheduled_runs(&d, "nightly").await.len(), 1);
    d.signal("TERM");
    d.wait(Duration::from_secs(20));
    // Down for about three ticks.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let d = ws.start();
    tokio::time::sleep(Duration::from_millis(800)).await;
    scheduled_runs(&d, "nightly").await.len() - 1
}

#[tokio::test]
async fn one_catch_up_run_after_downtime() {
    assert_eq!(
        catch_up_after_restart(true).await,
        1,
        "missed ticks give exactly one catch-up run"
    );
}

#[tokio::test]
async fn no_catch_up_when_disabled() {
    assert_eq!(catch_up_after_restart(false).await, 0);
}
