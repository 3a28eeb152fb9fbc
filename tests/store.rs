//! The sled store: round trip, newest-first pagination and filters, reopen
//! after close, retention by age and by count, and the in-use error.

mod support;

use chrono::{Duration as ChronoDuration, Utc};
use herald::store::{
    Job, JobKind, PipelineRun, RunQuery, RunStatus, StageExecution, StageStatus, Store, StoreError,
    StoreOptions,
};
use serde_json::json;
use std::time::Duration;

fn run_at(ms: u64, definition: &str, status: RunStatus) -> PipelineRun {
    let id = ulid::Ulid::from_parts(ms, fastrand_u128()).to_string();
    let created = chrono::DateTime::from_timestamp_millis(ms as i64).unwrap();
    PipelineRun {
        run_id: id.clone(),
        trace_id: format!("trace-{id}"),
        definition: definition.to_string(),
        definition_version: "v1".into(),
        source: Some(
            if ms.is_multiple_of(2) {
                "cli"
            } else {
                "webhook"
            }
            .into(),
        ),
        environment: None,
        status,
        current_stage: None,
        current_node: None,
        incident_id: None,
        intake: None,
        attempts: 1,
        max_retries: 3,
        last_error: None,
        executed_nodes: vec![],
        skipped_nodes: vec![],
        created_at: created,
        started_at: Some(created),
        completed_at: Some(created),
        duration_ms: Some(1),
        payload: herald::payload::Payload::from_value(json!({"n": ms})),
    }
}

fn fastrand_u128() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed) as u128
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreOptions::default()).unwrap()
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis() as u64
}

#[test]
fn round_trip_with_stages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let run = run_at(now_ms(), "d", RunStatus::Notified);
    store.put_run(&run).unwrap();
    for (seq, node) in ["a", "b"].iter().enumerate() {
        store
            .put_stage(&StageExecution {
                run_id: run.run_id.clone(),
                seq: seq as u32,
                node_id: node.to_string(),
                stage: "notify".into(),
                attempt: 1,
                idempotency_key: StageExecution::key(&run.run_id, node, 1),
                status: StageStatus::Succeeded,
                started_at: Utc::now(),
                completed_at: Some(Utc::now()),
                duration_ms: Some(2),
                output: Some(std::sync::Arc::new(json!({"ok": node}))),
                error: None,
            })
            .unwrap();
    }
    assert_eq!(store.get_run(&run.run_id).unwrap(), Some(run.clone()));
    let stages = store.stages(&run.run_id).unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[1].output.as_deref(), Some(&json!({"ok": "b"})));
    assert_eq!(store.get_run("01MISSING").unwrap(), None);
}

#[test]
fn lists_newest_first_with_cursor_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let base = now_ms() - 100_000;
    let mut ids = Vec::new();
    for i in 0..25 {
        let r = run_at(base + i * 10, "d", RunStatus::Completed);
        ids.push(r.run_id.clone());
        store.put_run(&r).unwrap();
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_runs(&RunQuery {
                limit: 10,
                cursor: cursor.clone(),
                ..RunQuery::default()
            })
            .unwrap();
        seen.extend(page.runs.iter().map(|r| r.run_id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every run once, newest first");
}

#[test]
fn filters_by_status_definition_source_and_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let base = now_ms() - 100_000;
    for i in 0..12u64 {
        let status = if i.is_multiple_of(3) {
            RunStatus::Failed
        } else {
            RunStatus::Notified
        };
        let def = if i.is_multiple_of(2) { "even" } else { "odd" };
        let mut run = run_at(base + i * 1000, def, status);
        run.source = Some(if i < 4 { "webhook" } else { "cli" }.into());
        store.put_run(&run).unwrap();
    }
    let q = |q: RunQuery| store.list_runs(&RunQuery { limit: 100, ..q }).unwrap().runs;
    let failed = q(RunQuery {
        status: Some(RunStatus::Failed),
        ..RunQuery::default()
    });
    assert_eq!(failed.len(), 4);
    assert!(failed.iter().all(|r| r.status == RunStatus::Failed));
    let even = q(RunQuery {
        definition: Some("even".into()),
        ..RunQuery::default()
    });
    assert_eq!(even.len(), 6);
    let even_failed = q(RunQuery {
        definition: Some("even".into()),
        status: Some(RunStatus::Failed),
        ..RunQuery::default()
    });
    assert_eq!(even_failed.len(), 2, "i = 0, 6");
    let webhook = q(RunQuery {
        source: Some("webhook".into()),
        ..RunQuery::default()
    });
    assert_eq!(webhook.len(), 4);
    assert!(
        webhook
            .iter()
            .all(|r| r.source.as_deref() == Some("webhook"))
    );
    let since = chrono::DateTime::from_timestamp_millis((base + 9000) as i64).unwrap();
    let recent = q(RunQuery {
        since: Some(since),
        ..RunQuery::default()
    });
    assert_eq!(recent.len(), 3, "i = 9, 10, 11");
}

#[test]
fn status_index_follows_updates() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut run = run_at(now_ms(), "d", RunStatus::Pending);
    store.put_run(&run).unwrap();
    run.status = RunStatus::Failed;
    store.put_run(&run).unwrap();
    let by = |s| {
        store
            .list_runs(&RunQuery {
                status: Some(s),
                limit: 10,
                ..RunQuery::default()
            })
            .unwrap()
            .runs
            .len()
    };
    assert_eq!(by(RunStatus::Pending), 0);
    assert_eq!(by(RunStatus::Failed), 1);
    assert_eq!(store.run_count(), 1, "an update is not a new run");
}

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_at(now_ms(), "d", RunStatus::Notified);
    {
        let store = open(dir.path());
        store.put_run(&run).unwrap();
        store.flush().unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.get_run(&run.run_id).unwrap(), Some(run));
    assert_eq!(store.run_count(), 1);
}

#[test]
fn a_second_open_of_the_same_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    match Store::open(dir.path(), StoreOptions::default()) {
        Err(e @ StoreError::InUse(_)) => {
            let text = e.to_string();
            assert!(text.contains("is in use"), "{text}");
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("second open succeeded"),
    }
}

#[test]
fn a_file_where_the_data_dir_should_be_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    match Store::open(&file, StoreOptions::default()) {
        Err(e @ StoreError::Open { .. }) => {
            assert!(e.to_string().contains("cannot open data dir"), "{e}");
            assert!(
                e.to_string().contains("it is a file, not a directory"),
                "{e}"
            );
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a file as a data dir"),
    }
}

/// A store keeping an hour, and a time two hours ago (in ms) to make
/// runs past it at.
fn store_keeping_an_hour() -> (tempfile::TempDir, Store, u64) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        retention: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let two_hours_ago = (Utc::now() - ChronoDuration::hours(2)).timestamp_millis() as u64;
    (dir, store, two_hours_ago)
}

#[test]
fn retention_prunes_by_age_in_batches() {
    let (_dir, store, old_ms) = store_keeping_an_hour();
    let now = Utc::now();
    let mut old_ids = Vec::new();
    for i in 0..30 {
        let r = run_at(old_ms + i, "d", RunStatus::Notified);
        old_ids.push(r.run_id.clone());
        store.put_run(&r).unwrap();
        store
            .put_stage(&StageExecution {
                run_id: r.run_id.clone(),
                seq: 0,
                node_id: "a".into(),
                stage: "notify".into(),
                attempt: 1,
                idempotency_key: StageExecution::key(&r.run_id, "a", 1),
                status: StageStatus::Succeeded,
                started_at: now,
                completed_at: None,
                duration_ms: None,
                output: None,
                error: None,
            })
            .unwrap();
    }
    let fresh = run_at(now.timestamp_millis() as u64, "d", RunStatus::Notified);
    store.put_run(&fresh).unwrap();

    assert_eq!(store.prune(now, 10).unwrap(), 10, "one batch at a time");
    assert_eq!(store.prune(now, 100).unwrap(), 20);
    assert_eq!(store.prune(now, 100).unwrap(), 0);
    assert_eq!(store.run_count(), 1);
    assert!(store.get_run(&fresh.run_id).unwrap().is_some());
    for id in &old_ids {
        assert!(store.get_run(id).unwrap().is_none());
        assert!(
            store.stages(id).unwrap().is_empty(),
            "stages go with their run"
        );
    }
    let listed = store
        .list_runs(&RunQuery {
            definition: Some("d".into()),
            limit: 100,
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(listed.runs.len(), 1, "index entries go too");
}

/// A run still waiting in the queue is an alert herald answered 2xx for:
/// retention never takes it, however old (herald stopped for longer than
/// `retention`, with jobs on disk), or its job would find no run.
#[test]
fn retention_never_takes_a_run_whose_job_is_still_queued() {
    let (_dir, store, old_ms) = store_keeping_an_hour();
    let now = Utc::now();
    let finished = run_at(old_ms, "d", RunStatus::Notified);
    store.put_run(&finished).unwrap();
    let mut queued = run_at(old_ms + 1, "d", RunStatus::Pending);
    queued.completed_at = None;
    store.put_run(&queued).unwrap();
    store
        .put_job(&Job {
            run_id: queued.run_id.clone(),
            kind: JobKind::Run,
            enqueued_at: now - ChronoDuration::hours(2),
            recovered_starts: 0,
        })
        .unwrap();

    assert_eq!(store.prune(now, 100).unwrap(), 1);
    assert!(store.get_run(&finished.run_id).unwrap().is_none());
    assert!(
        store.get_run(&queued.run_id).unwrap().is_some(),
        "a queued run was pruned"
    );
    // Once its job is done, it goes like any other.
    store.remove_job(&queued.run_id).unwrap();
    assert_eq!(store.prune(now, 100).unwrap(), 1);
    assert!(store.get_run(&queued.run_id).unwrap().is_none());
}

/// At start-up every unfinished run without a job (a sync run a crash cut
/// short) is given one; finished runs, and unfinished ones already queued,
/// are left as they are.
#[test]
fn unfinished_runs_without_a_job_are_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ms = now_ms();
    let finished = run_at(ms, "d", RunStatus::Checked);
    let mut cut_short = [
        run_at(ms + 1, "d", RunStatus::Pending),
        run_at(ms + 2, "d", RunStatus::Checked),
    ];
    let mut queued = run_at(ms + 3, "d", RunStatus::Pending);
    for run in cut_short.iter_mut().chain([&mut queued]) {
        run.completed_at = None;
    }
    for run in [&finished, &cut_short[0], &cut_short[1], &queued] {
        store.put_run(run).unwrap();
    }
    let queued_at = Utc::now() - ChronoDuration::minutes(5);
    store
        .put_job(&Job {
            run_id: queued.run_id.clone(),
            kind: JobKind::Resume,
            enqueued_at: queued_at,
            recovered_starts: 0,
        })
        .unwrap();

    let requeued = store.requeue_unfinished().unwrap();
    let expected: Vec<String> = cut_short.iter().map(|r| r.run_id.clone()).collect();
    assert_eq!(requeued, expected);
    for id in &expected {
        let job = store.jobs_get(id).unwrap().expect("given a job");
        assert_eq!(job.kind, JobKind::Run);
    }
    assert!(store.jobs_get(&finished.run_id).unwrap().is_none());
    let kept = store.jobs_get(&queued.run_id).unwrap().unwrap();
    assert_eq!(
        (kept.kind, kept.enqueued_at),
        (JobKind::Resume, queued_at),
        "a queued run's job is not rewritten"
    );
    // Nothing is left to give a job to.
    assert!(store.requeue_unfinished().unwrap().is_empty());
}

#[test]
fn retention_keeps_at_most_max_runs_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_runs: 5,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let base = now_ms() - 10_000;
    let mut ids = Vec::new();
    for i in 0..8 {
        let r = run_at(base + i * 100, "d", RunStatus::Notified);
        ids.push(r.run_id.clone());
        store.put_run(&r).unwrap();
    }
    // An unfinished old run is not pruned for count.
    let mut running = run_at(base - 1000, "d", RunStatus::Pending);
    running.completed_at = None;
    store.put_run(&running).unwrap();
    assert_eq!(store.prune(Utc::now(), 100).unwrap(), 4);
    assert_eq!(store.run_count(), 5);
    assert!(store.get_run(&running.run_id).unwrap().is_some());
    for id in &ids[..4] {
        assert!(
            store.get_run(id).unwrap().is_none(),
            "oldest finished runs go first"
        );
    }
    for id in &ids[4..] {
        assert!(store.get_run(id).unwrap().is_some());
    }
}

#[test]
fn a_large_payload_lives_in_a_file_that_goes_with_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut run = run_at(now_ms(), "big", RunStatus::Pending);
    let big = json!({"blob": "x".repeat(2 * 1024 * 1024)});
    run.payload = herald::payload::Payload::from_value(big.clone());
    store.put_run(&run).unwrap();
    let small = run_at(now_ms(), "small", RunStatus::Pending);
    store.put_run(&small).unwrap();

    let files = dir.path().join("payloads");
    let file = files.join(format!("{}.json", run.run_id));
    assert!(file.exists());
    assert_eq!(
        std::fs::read_dir(&files).unwrap().count(),
        1,
        "small stays in sled"
    );
    assert_eq!(
        store.get_run(&run.run_id).unwrap().unwrap().payload.value(),
        &big
    );

    // A file whose run never reached disk (a crash between the two) is
    // removed at the next open; the file of a stored run is not.
    let orphan = files.join(format!("{}.json", ulid::Ulid::new()));
    std::fs::write(&orphan, "{}").unwrap();
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(!orphan.exists());
    assert!(file.exists());
    assert_eq!(
        store
            .get_run(&small.run_id)
            .unwrap()
            .unwrap()
            .payload
            .value(),
        small.payload.value()
    );

    // A file gone from under its run (pruned just before a crash that
    // undid the pruning in sled): the run still reads, without a payload.
    std::fs::rename(&file, files.join("aside")).unwrap();
    assert!(
        store
            .get_run(&run.run_id)
            .unwrap()
            .unwrap()
            .payload
            .is_none()
    );
    std::fs::rename(files.join("aside"), &file).unwrap();

    assert!(store.delete_run(&run.run_id).unwrap());
    assert!(!file.exists(), "deleting the run deletes its payload file");
}

/// A batch that deletes runs and deliveries both is not the last one:
/// pruning goes on until nothing is left (it once stopped after one batch
/// whenever its total was not exactly the batch size, leaving the rest for
/// the next minute).
#[test]
fn pruning_goes_on_until_nothing_expired_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_expired_runs(dir.path(), 50);
    let old_ms = (Utc::now() - ChronoDuration::hours(2)).timestamp_millis() as u64;
    for i in 0..50 {
        let id = ulid::Ulid::from_parts(old_ms + i, i as u128).to_string();
        store
            .put_delivery(&herald::store::Delivery {
                id: id.clone(),
                at: Utc::now(),
                driver: "generic".into(),
                alert_count: 1,
                run_ids: vec![],
            })
            .unwrap();
    }
    let pruned = herald::store::prune_all(&store, Utc::now(), 8, || false).unwrap();
    assert_eq!(pruned, 100, "50 runs and 50 deliveries");
    assert_eq!(store.run_count(), 0);
}

/// Beyond `max_runs` with a long queue, every run a worker finishes is due
/// at once: a pass used to go on as long as runs kept finishing (and the
/// compaction after it never came). It now ends once a batch is not full.
#[test]
fn a_pass_ends_while_workers_keep_finishing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        max_runs: 10,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    // 200 queued runs: over max_runs, but unfinished, so not prunable.
    let queued: Vec<PipelineRun> = (0..200)
        .map(|i| PipelineRun {
            completed_at: None,
            ..run_at(now_ms() - 10_000 + i, "d", RunStatus::Pending)
        })
        .collect();
    for run in &queued {
        store.put_run(run).unwrap();
    }
    // Between batches, a worker finishes the next run in the queue.
    let batches = std::cell::Cell::new(0);
    let pruned = herald::store::prune_all(&store, Utc::now(), 8, || {
        let n = batches.get();
        batches.set(n + 1);
        let mut done = queued[n].clone();
        done.status = RunStatus::Completed;
        done.completed_at = Some(Utc::now());
        store.put_run(&done).unwrap();
        false
    })
    .unwrap();
    assert!(batches.get() <= 2, "{} batches", batches.get());
    assert!(pruned >= 1, "the finished run is pruned");
}

/// `old` expired runs, two hours old, in a store with a one-hour retention.
fn store_with_expired_runs(dir: &std::path::Path, old: u64) -> Store {
    let options = StoreOptions {
        retention: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open(dir, options).unwrap();
    let old_ms = (Utc::now() - ChronoDuration::hours(2)).timestamp_millis() as u64;
    for i in 0..old {
        store
            .put_run(&run_at(old_ms + i, "d", RunStatus::Notified))
            .unwrap();
    }
    store
}

/// Pruning a backlog stops between batches when asked: shutdown once
/// waited for a whole backlog (minutes after a storm) to be pruned.
#[test]
fn pruning_stops_between_batches_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_expired_runs(dir.path(), 40);
    let batches = std::cell::Cell::new(0);
    let pruned = herald::store::prune_all(&store, Utc::now(), 8, || {
        batches.set(batches.get() + 1);
        batches.get() > 2
    })
    .unwrap();
    assert_eq!(pruned, 16, "two batches of 8");
    assert_eq!(store.run_count(), 24, "the rest is left for later");
}

/// The background pruner ends soon after the stop signal, with the backlog
/// only partly pruned, instead of holding the runtime's shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_task_ends_on_the_stop_signal() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_expired_runs(dir.path(), 5_000);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pruner = herald::store::spawn_pruner(store.clone(), stop_rx);
    // Stop once the pass is under way (the first batch is done).
    while store.run_count() == 5_000 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), pruner)
        .await
        .expect("the pruner ended")
        .unwrap();
    assert!(
        store.run_count() > 0,
        "stopped before pruning all 5,000 runs"
    );
}

/// A deleted run leaves no entry in its incidents' run index.
#[test]
fn deleting_a_run_removes_it_from_its_incidents_run_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut run = run_at(now_ms(), "d", RunStatus::Notified);
    run.intake = Some(std::sync::Arc::new(
        json!({"incident_ids": ["inc-a", "inc-b"]}),
    ));
    store.put_run(&run).unwrap();
    let kept = run_at(now_ms() + 1, "d", RunStatus::Notified);
    store.put_run(&kept).unwrap();
    let ids = ["inc-a".to_string(), "inc-b".to_string()];
    store
        .add_incident_runs(&ids, std::slice::from_ref(&run.run_id))
        .unwrap();
    store
        .add_incident_runs(&ids[..1], std::slice::from_ref(&kept.run_id))
        .unwrap();
    assert_eq!(
        store.incident_runs("inc-b", 10).unwrap(),
        vec![run.run_id.clone()]
    );
    assert!(store.delete_run(&run.run_id).unwrap());
    assert_eq!(store.incident_runs("inc-a", 10).unwrap(), vec![kept.run_id]);
    assert!(store.incident_runs("inc-b", 10).unwrap().is_empty());
}

/// A store whose file holds far more than its records: runs written,
/// rewritten through their statuses, and most deleted again. Returns the
/// ids of the runs left.
fn bloated_store(dir: &std::path::Path) -> Vec<String> {
    let store = open(dir);
    let mut kept = Vec::new();
    for i in 0..600u64 {
        let mut run = run_at(now_ms() + i, "d", RunStatus::Pending);
        run.payload =
            herald::payload::Payload::from_value(json!({"n": i, "pad": "x".repeat(2000)}));
        store.put_run(&run).unwrap();
        for status in [RunStatus::Ingested, RunStatus::Checked, RunStatus::Notified] {
            run.status = status;
            store.put_run(&run).unwrap();
        }
        store
            .put_stage(&StageExecution {
                run_id: run.run_id.clone(),
                seq: 0,
                node_id: "n".into(),
                stage: "transform".into(),
                attempt: 1,
                idempotency_key: StageExecution::key(&run.run_id, "n", 1),
                status: StageStatus::Succeeded,
                started_at: Utc::now(),
                completed_at: Some(Utc::now()),
                duration_ms: Some(1),
                output: Some(std::sync::Arc::new(json!({"i": i}))),
                error: None,
            })
            .unwrap();
        if i % 10 == 0 {
            kept.push(run.run_id.clone());
        } else {
            store.delete_run(&run.run_id).unwrap();
        }
        if i % 50 == 0 {
            store.flush().unwrap();
        }
    }
    store.flush().unwrap();
    kept
}

#[test]
fn compaction_keeps_every_record_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let kept = bloated_store(dir.path());
    let before = {
        let store = open(dir.path());
        kept.iter()
            .map(|id| {
                (
                    store.get_run(id).unwrap().unwrap(),
                    store.stages(id).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let size_before = herald::store::database_bytes(dir.path());

    let done = herald::store::compact(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(done.before_bytes, size_before);
    assert_eq!(done.after_bytes, herald::store::database_bytes(dir.path()));
    assert!(
        done.after_bytes * 2 < done.before_bytes,
        "{} -> {} bytes",
        done.before_bytes,
        done.after_bytes
    );
    assert!(done.records > kept.len() as u64);
    assert_eq!(herald::store::last_compaction(dir.path()), Some(done));
    for leftover in ["db.compacting", "db.compacted", "db.old"] {
        assert!(
            !dir.path().join(leftover).exists(),
            "{leftover} left behind"
        );
    }

    let store = open(dir.path());
    assert_eq!(store.run_count(), kept.len() as u64);
    for (run, stages) in before {
        assert_eq!(store.get_run(&run.run_id).unwrap().as_ref(), Some(&run));
        assert_eq!(store.stages(&run.run_id).unwrap(), stages);
    }
    let page = store
        .list_runs(&RunQuery {
            status: Some(RunStatus::Notified),
            limit: 1000,
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(page.runs.len(), kept.len(), "the status index came along");
}

/// A store with no garbage to give back (one run, written once): the
/// copy is no smaller, so it is thrown away and the original kept as it
/// was.
#[test]
fn a_copy_no_smaller_than_the_original_is_not_swapped_in() {
    let dir = tempfile::tempdir().unwrap();
    let id = store_with_one_run(dir.path());
    let size_before = herald::store::database_bytes(dir.path());
    let inode = |dir: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir.join("db").join("db")).unwrap().ino()
    };
    let original = inode(dir.path());

    let done = herald::store::compact(dir.path(), &StoreOptions::default()).unwrap();
    let copy_bytes = done.discarded_copy_bytes.expect("the copy was thrown away");
    assert!(copy_bytes >= size_before, "{copy_bytes} < {size_before}");
    assert_eq!(done.before_bytes, size_before);
    assert_eq!(
        done.records, 4,
        "the run, its payload and its two index entries"
    );
    assert_eq!(
        inode(dir.path()),
        original,
        "the original's file is in place"
    );
    assert_eq!(done.after_bytes, herald::store::database_bytes(dir.path()));
    assert_eq!(herald::store::last_compaction(dir.path()), Some(done));
    for leftover in ["db.compacting", "db.compacted", "db.old"] {
        assert!(
            !dir.path().join(leftover).exists(),
            "{leftover} left behind"
        );
    }
    assert!(open(dir.path()).get_run(&id).unwrap().is_some());
}

#[test]
fn compaction_refuses_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _open = open(dir.path());
    match herald::store::compact(dir.path(), &StoreOptions::default()) {
        Err(StoreError::InUse(_)) => {}
        other => panic!("expected in use, got {other:?}"),
    }
}

/// A store in `dir` holding one run, closed; its id.
fn store_with_one_run(dir: &std::path::Path) -> String {
    let store = open(dir);
    let run = run_at(now_ms(), "d", RunStatus::Notified);
    store.put_run(&run).unwrap();
    store.flush().unwrap();
    run.run_id
}

/// Each place a crash can stop a compaction, as the directories it
/// leaves, and the database the next open must see.
#[test]
fn an_interrupted_compaction_is_finished_or_undone_at_open() {
    // `original` holds run A; `copy` (another store moved in) holds run B.
    let setup = |layout: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let sources = tempfile::tempdir().unwrap();
        let a = store_with_one_run(&sources.path().join("a"));
        let b = store_with_one_run(&sources.path().join("b"));
        std::fs::create_dir_all(dir.path()).unwrap();
        for (from, to) in layout {
            let src = match *from {
                "original" => sources.path().join("a").join("db"),
                "copy" => sources.path().join("b").join("db"),
                _ => unreachable!(),
            };
            std::fs::rename(src, dir.path().join(to)).unwrap();
        }
        (dir, a, b)
    };
    let sees = |dir: &std::path::Path, id: &str| {
        let store = open(dir);
        let found = store.get_run(id).unwrap().is_some();
        assert_eq!(store.run_count(), 1);
        for leftover in ["db.compacting", "db.compacted", "db.old"] {
            assert!(!dir.join(leftover).exists(), "{leftover} left behind");
        }
        found
    };
    // Crash while copying: the copy is dropped.
    let (dir, a, _) = setup(&[("original", "db"), ("copy", "db.compacting")]);
    assert!(sees(dir.path(), &a));
    // Copy sealed, swap not begun: the swap is finished.
    let (dir, _, b) = setup(&[("original", "db"), ("copy", "db.compacted")]);
    assert!(sees(dir.path(), &b));
    // Between the two renames.
    let (dir, _, b) = setup(&[("original", "db.old"), ("copy", "db.compacted")]);
    assert!(sees(dir.path(), &b));
    // Swapped, old one not yet removed.
    let (dir, _, b) = setup(&[("original", "db.old"), ("copy", "db")]);
    assert!(sees(dir.path(), &b));
}

#[test]
fn compaction_at_start_is_due_only_when_the_file_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    bloated_store(dir.path());
    let size = herald::store::database_bytes(dir.path());
    assert!(size > 0);
    assert!(!herald::store::due(dir.path(), 0), "0 turns it off");
    assert!(!herald::store::due(dir.path(), size + 1));
    assert!(herald::store::due(dir.path(), size));
    let done = herald::store::compact(dir.path(), &StoreOptions::default()).unwrap();
    // Just compacted: not due again until it has doubled, whatever the threshold.
    assert!(!herald::store::due(dir.path(), 1));
    assert!(done.after_bytes > 0);
}

/// Something in the way of a compaction's recovery is an open error that
/// names it, and changes nothing.
#[test]
fn a_file_in_the_way_of_compaction_recovery_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let id = store_with_one_run(dir.path());
    std::fs::write(dir.path().join("db.compacting"), "not a directory").unwrap();
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("open fails")
        .to_string();
    assert!(err.contains("db.compacting"), "{err}");
    std::fs::remove_file(dir.path().join("db.compacting")).unwrap();
    assert!(open(dir.path()).get_run(&id).unwrap().is_some());
}

/// Compaction of the open store: writes made while it copies wait and then
/// land in the new database; nothing written before or during is lost, and
/// the file shrinks.
#[test]
fn online_compaction_loses_no_write_made_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let kept = bloated_store(dir.path());
    let store = open(dir.path());
    let before = herald::store::database_bytes(dir.path());
    // A writer busy before, during and after the compaction.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let run = run_at(now_ms() + 10_000 + i, "w", RunStatus::Notified);
                store.put_run(&run).unwrap();
                ids.push(run.run_id);
            }
            ids
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let done = store.compact_online().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(!written.is_empty());
    // The writer went on while the copy was made: what it wrote meanwhile
    // was replayed into the copy, not held back for the whole compaction.
    assert!(done.replayed > 0, "{done:?}");
    assert!(done.writes_held < done.took, "{done:?}");
    assert!(
        done.after_bytes < before,
        "{before} -> {}",
        done.after_bytes
    );
    for leftover in ["db.compacting", "db.compacted", "db.old"] {
        assert!(
            !dir.path().join(leftover).exists(),
            "{leftover} left behind"
        );
    }
    let all: Vec<&String> = kept.iter().chain(&written).collect();
    for id in &all {
        assert!(store.get_run(id).unwrap().is_some(), "{id} lost");
    }
    assert_eq!(store.run_count(), all.len() as u64);
    // And on disk, after a flush and a reopen.
    store.flush().unwrap();
    drop(store);
    let store = open(dir.path());
    for id in &all {
        assert!(store.get_run(id).unwrap().is_some(), "{id} lost at reopen");
    }
    let page = store
        .list_runs(&RunQuery {
            definition: Some("w".into()),
            limit: 1000,
            ..RunQuery::default()
        })
        .unwrap();
    assert_eq!(page.runs.len(), written.len());
}

#[test]
fn online_compaction_runs_only_when_due() {
    let dir = tempfile::tempdir().unwrap();
    bloated_store(dir.path());
    let store = open(dir.path());
    let options = StoreOptions::default();
    store.set_limits(options.retention, options.max_runs, 0);
    assert!(store.compact_if_due().is_none(), "0 turns it off");
    store.set_limits(options.retention, options.max_runs, 1);
    let done = store.compact_if_due().expect("due").unwrap();
    assert!(done.after_bytes > 0);
    assert!(
        store.compact_if_due().is_none(),
        "not due again until the file doubles"
    );
}

/// What the daemon does every minute, end to end on a real store: the
/// background pruner deletes what is past retention, finds the file grown
/// past `compact_above_mb`, and compacts it online while a writer keeps
/// writing; every run written before or during that is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pruner_compacts_online_after_pruning_while_writes_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_expired_runs(dir.path(), 0);
    let old_ms = (Utc::now() - ChronoDuration::hours(2)).timestamp_millis() as u64;
    for i in 0..1_500u64 {
        let mut run = run_at(old_ms + i, "old", RunStatus::Notified);
        run.payload =
            herald::payload::Payload::from_value(json!({"n": i, "pad": "x".repeat(2000)}));
        store.put_run(&run).unwrap();
    }
    store.flush().unwrap();
    let before = herald::store::database_bytes(dir.path());
    assert!(
        before > 2 * 1024 * 1024,
        "a file worth compacting: {before}"
    );
    store.set_limits(Duration::from_secs(3600), 100_000, 1024 * 1024);

    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (store, writing) = (store.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut written = Vec::new();
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let run = run_at(now_ms(), "new", RunStatus::Notified);
                store.put_run(&run).unwrap();
                written.push(run.run_id);
                std::thread::sleep(Duration::from_millis(1));
            }
            written
        })
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let pruner = herald::store::spawn_pruner(store.clone(), stop_rx);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        if let Some(done) = herald::store::last_compaction(dir.path()) {
            break done;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction after the first pruning pass"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), pruner)
        .await
        .expect("the pruner ended")
        .unwrap();

    assert!(done.before_bytes >= before, "{done:?}");
    assert!(
        done.after_bytes * 2 < done.before_bytes,
        "the pruned runs' space came back: {done:?}"
    );
    assert!(!written.is_empty());
    let old_left = store
        .list_runs(&RunQuery {
            definition: Some("old".into()),
            limit: 10,
            ..RunQuery::default()
        })
        .unwrap();
    assert!(old_left.runs.is_empty(), "every expired run pruned");
    for id in &written {
        assert!(store.get_run(id).unwrap().is_some(), "{id} lost");
    }
    assert_eq!(store.run_count(), written.len() as u64);
}

/// A damaged snapshot keeps sled from opening a store whose log is whole.
/// herald refuses to start on it and names the command; the recovery
/// keeps a copy of the damaged files and opens the store from its log,
/// with every run; an unfinished run without its job is queued again.
#[test]
fn a_damaged_snapshot_is_refused_then_recovered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, unfinished) = {
        let store = open(dir.path());
        let ids: Vec<String> = (0..20)
            .map(|i| {
                let run = run_at(now_ms() + i, "d", RunStatus::Notified);
                store.put_run(&run).unwrap();
                run.run_id
            })
            .collect();
        // Started, its job lost: what a log read up to its damage can hold.
        let mut cut = run_at(now_ms() + 100, "d", RunStatus::Checked);
        cut.completed_at = None;
        store.put_run(&cut).unwrap();
        store.flush().unwrap();
        (ids, cut.run_id)
    };
    // sled writes its snapshot when it opens a database: once more.
    drop(open(dir.path()));
    let snapshots = support::damage_sled_snapshots(&dir.path().join("db"));

    let refused = match Store::open(dir.path(), StoreOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a store with a damaged snapshot"),
    };
    assert!(
        refused.contains("damaged") && refused.contains("herald store recover"),
        "{refused}"
    );

    let recovery = herald::store::recover(dir.path(), &StoreOptions::default()).unwrap();
    assert_eq!(recovery.runs, 21);
    assert_eq!(recovery.requeued, 1);
    assert_eq!(recovery.snapshots_set_aside, snapshots);
    assert!(recovery.damaged_copy.join("db").is_file(), "{recovery:?}");
    let store = open(dir.path());
    for id in &ids {
        assert!(store.get_run(id).unwrap().is_some(), "run {id} lost");
    }
    let jobs: Vec<String> = store
        .jobs()
        .unwrap()
        .into_iter()
        .map(|j| j.run_id)
        .collect();
    assert_eq!(jobs, [unfinished], "the unfinished run is queued again");
}
