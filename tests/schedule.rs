//! The scheduler against the real daemon: counts with tolerant bounds, no
//! overlap with a slow node, reload adds and removes timers, one catch-up
//! run after a restart (and none with catch_up false), next run times shown;
//! and, in-process with a clock the test steps, timers that go on after
//! the wall clock is stepped back.

mod support;

use chrono::Utc;
use herald::config::Config;
use herald::definition::{DefinitionSet, SharedDefinitions, parse_definition};
use herald::engine::Engine;
use herald::metrics::Metrics;
use herald::nodes::{HandlerRegistry, Services};
use herald::scheduler::{Clock, Scheduler};
use herald::store::{RunQuery, Store, StoreOptions};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
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

/// The wall clock stepped back an hour (NTP correcting a fast clock at
/// boot, a VM restored from a snapshot): an `every: 1s` timer goes on about
/// once a second instead of waiting out the hour.
#[tokio::test]
async fn a_wall_clock_stepped_back_does_not_stall_the_timers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let text = every("1s", false).to_string();
    let mut set = DefinitionSet::default();
    set.set_valid(parse_definition("tick", "tick.json", &text, &handlers).unwrap());
    let definitions: SharedDefinitions = Arc::new(arc_swap::ArcSwap::from_pointee(set));
    let offset_ms = Arc::new(AtomicI64::new(0));
    let clock: Clock = {
        let offset_ms = offset_ms.clone();
        Arc::new(move || {
            Utc::now() + chrono::Duration::milliseconds(offset_ms.load(Ordering::Relaxed))
        })
    };
    let scheduler = Arc::new(
        Scheduler::new(
            definitions,
            Engine::new(Some(store.clone())),
            store.clone(),
            Arc::new(Metrics::new()),
        )
        .with_clock(clock),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = scheduler.spawn(stopped);
    let runs = || {
        store
            .list_runs(&RunQuery {
                definition: Some("tick".into()),
                limit: 1000,
                ..RunQuery::default()
            })
            .unwrap()
            .runs
            .len()
    };
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let before = runs();
    assert!(before >= 1, "the timer runs before the step: {before} runs");

    offset_ms.store(-3_600_000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after = runs() - before;
    assert!(
        after >= 2,
        "{after} runs in the 3.5 s after the clock went back an hour"
    );
    let next = scheduler.next_run("tick").unwrap();
    let now = Utc::now() - chrono::Duration::hours(1);
    assert!(
        next <= now + chrono::Duration::seconds(2),
        "the next tick ({next}) follows the new time ({now})"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
