//! The scheduler against the real daemon: counts with tolerant bounds, no
//! overlap with a slow node, reload adds and removes timers, one catch-up
//! run after a restart (and none with catch_up false), next run times shown;
//! a schedule held once its run was abandoned in a crash loop;
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
use support::Receiver;
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
    let metrics = metrics_text(&d).await;
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

/// The time in `record[field]`, if it holds one.
fn time_of(record: &Value, field: &str) -> Option<chrono::DateTime<Utc>> {
    record[field].as_str()?.parse().ok()
}

async fn metrics_text(d: &Daemon) -> String {
    reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn get_json(d: &Daemon, path: &str) -> Value {
    reqwest::get(d.url(path))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Whether run `id` has a stage RUNNING that this process began (at or
/// after `began`).
async fn going(d: &Daemon, id: &str, began: chrono::DateTime<Utc>) -> bool {
    let detail = get_json(d, &format!("/orchestration/pipeline/{id}/")).await;
    detail["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|stage| {
            stage["status"] == "RUNNING"
                && time_of(stage, "started_at").is_some_and(|at| at >= began)
        })
}

/// Waits until `pick` names a run going in this process (see [`going`]).
async fn wait_going(
    d: &Daemon,
    began: chrono::DateTime<Utc>,
    pick: impl AsyncFn() -> Option<String>,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(id) = pick().await
            && going(d, &id, began).await
        {
            return id;
        }
        if std::time::Instant::now() >= deadline {
            let id = pick().await.unwrap_or_default();
            let run = get_json(d, &format!("/orchestration/pipeline/{id}/")).await;
            panic!("run {id} never began in this process: {run:#}\n{}", d.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A receiver that answers after `delay`, a workspace whose `[notify.webhook.target]`
/// channel points at it, and a definition that notifies it every second.
async fn notifying_schedule(delay: Duration) -> (Receiver, Workspace) {
    let receiver = Receiver::start_with_delay(delay).await;
    let ws = Workspace::new(&format!(
        "[notify.webhook.target]\nurl = \"{}\"\n",
        receiver.url("/")
    ));
    (receiver, ws)
}

/// The definition of [`notifying_schedule`]: every second, one notify.
fn notify_every_second(description: &str, catch_up: bool) -> Value {
    json!({"version": "1", "description": description,
           "schedule": {"every": "1s", "catch_up": catch_up},
           "nodes": [{"id": "n", "type": "notify", "retries": 0, "timeout": "100s",
                      "config": {"driver": "webhook", "channel": "target"}}]})
}

/// The id of `name`'s newest scheduled run, if it has one.
async fn newest_scheduled_run(d: &Daemon, name: &str) -> Option<String> {
    let runs = scheduled_runs(d, name).await;
    runs.first()?["run_id"].as_str().map(str::to_string)
}

/// A scheduled run cut short by a crash is continued after the restart
/// (by the queue), and the schedule's ticks wait for it as for a run of
/// their own: the two never overlap.
#[tokio::test]
async fn a_run_left_by_a_crash_is_not_overlapped_after_the_restart() {
    let (_receiver, ws) = notifying_schedule(Duration::from_millis(3000)).await;
    ws.definition("slow", &notify_every_second("", true));
    let began = Utc::now();
    let mut d = ws.start();
    let first = wait_going(&d, began, async || newest_scheduled_run(&d, "slow").await).await;
    d.kill9();
    let restarted = Utc::now();
    let d = ws.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let finished_at = loop {
        let run = get_json(&d, &format!("/orchestration/pipeline/{first}/")).await;
        if let Some(at) = time_of(&run, "completed_at") {
            assert_eq!(run["status"], "NOTIFIED", "{run:#}");
            break at;
        }
        assert!(std::time::Instant::now() < deadline, "{run:#}\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = |r: &Value| time_of(r, "created_at").unwrap();
    let runs = scheduled_runs(&d, "slow").await;
    let overlapping: Vec<&Value> = runs
        .iter()
        .filter(|r| r["run_id"] != first.as_str() && at(r) >= restarted && at(r) < finished_at)
        .collect();
    assert!(overlapping.is_empty(), "{overlapping:#?}");
    assert!(d.log().contains("left by the last stop"), "{}", d.log());
    // Then the schedule goes on.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !scheduled_runs(&d, "slow")
        .await
        .iter()
        .any(|r| at(r) > finished_at)
    {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A scheduled run that herald dies during at every start is abandoned by
/// the queue (as any job is); its schedule must then stop firing, or each
/// tick would start a run that kills herald again. Changing the
/// definition releases it.
#[tokio::test]
async fn a_schedule_whose_run_was_abandoned_is_held_until_the_definition_changes() {
    // A notify that never answers in the test's time: herald is killed
    // while it waits, as if that run were what killed it.
    let (_receiver, ws) = notifying_schedule(Duration::from_secs(120)).await;
    ws.definition("stuck", &notify_every_second("first", false));
    let mut began = Utc::now();
    let mut d = ws.start();
    let first = wait_going(&d, began, async || newest_scheduled_run(&d, "stuck").await).await;
    // Begun by the process that fired it, then by three restarts.
    for _ in 0..3 {
        d.kill9();
        began = Utc::now();
        d = ws.start();
        wait_going(&d, began, async || Some(first.clone())).await;
    }
    d.kill9();
    let held_from = Utc::now();
    let d = ws.start();
    let abandoned = get_json(&d, &format!("/orchestration/pipeline/{first}/")).await;
    assert_eq!(
        abandoned["last_error"]["error_type"], "abandoned",
        "{abandoned:#}"
    );

    // Three ticks go by: none starts a run.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let fired_since = |runs: &[Value], since: chrono::DateTime<Utc>| {
        runs.iter()
            .filter(|r| time_of(r, "created_at").is_some_and(|at| at >= since))
            .count()
    };
    let runs = scheduled_runs(&d, "stuck").await;
    assert_eq!(fired_since(&runs, held_from), 0, "{runs:#?}");
    let shown = get_json(&d, "/orchestration/definitions/stuck/").await;
    assert_eq!(shown["schedule_held_by"], first.as_str(), "{shown:#}");
    let listed = get_json(&d, "/orchestration/definitions/").await;
    assert!(
        listed["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "stuck" && i["schedule_held_by"] == first.as_str()),
        "{listed:#}"
    );
    let metrics = metrics_text(&d).await;
    assert!(metrics.contains("herald_schedules_held 1"), "{metrics}");
    let cli = ws.command(&["definitions"]).output().unwrap();
    let cli = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.contains(&format!(
            "schedule held: its last run {first} was abandoned"
        )),
        "{cli}"
    );

    assert!(
        d.log().contains("schedule: held") && d.log().contains(&first),
        "{}",
        d.log()
    );

    // A changed definition is a new version: its schedule runs again.
    let released_from = Utc::now();
    ws.definition("stuck", &notify_every_second("second", false));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while fired_since(&scheduled_runs(&d, "stuck").await, released_from) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the changed definition never ran:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = get_json(&d, "/orchestration/definitions/stuck/").await;
    assert!(shown["schedule_held_by"].is_null(), "{shown:#}");
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
