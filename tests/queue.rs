//! The durable queue in-process: a job whose caller goes away while it
//! waits for the flush still runs; jobs left in the store are run at the
//! next open.

use arc_swap::ArcSwap;
use herald::config::Config;
use herald::definition::DefinitionSet;
use herald::engine::queue::Queue;
use herald::engine::{Engine, RunRequest};
use herald::metrics::Metrics;
use herald::nodes::{HandlerRegistry, Services};
use herald::payload::Payload;
use herald::store::{Store, StoreOptions};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn definitions(
    handlers: &HandlerRegistry,
) -> (
    herald::definition::SharedDefinitions,
    Arc<herald::definition::Definition>,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("quick.json"),
        r#"{"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"x": "payload.x"}}}]}"#,
    )
    .unwrap();
    let set = DefinitionSet::load_dir(dir.path(), handlers).unwrap();
    let def = set.get("quick").unwrap();
    (Arc::new(ArcSwap::from_pointee(set)), def)
}

async fn wait_finished(store: &Store, run_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if store
            .get_run(run_id)
            .unwrap()
            .is_some_and(|r| r.is_finished())
        {
            return;
        }
        assert!(Instant::now() < deadline, "run {run_id} never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_even_if_its_caller_goes_away_mid_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let (shared, def) = definitions(&handlers);
    let metrics = Arc::new(Metrics::new());
    let queue = Queue::open(store.clone(), 10, metrics).unwrap();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let _workers = queue.spawn_workers(1, Engine::new(Some(store.clone())), shared, stop_rx);

    let record = Engine::new_record(
        &def,
        RunRequest {
            payload: Payload::from_value(json!({"x": 1})),
            ..RunRequest::default()
        },
    );
    {
        // Poll the enqueue once (it writes, then waits for the flush), then drop it.
        let enqueue = queue.enqueue(std::slice::from_ref(&record));
        tokio::pin!(enqueue);
        tokio::select! {
            biased;
            _ = &mut enqueue => {}
            _ = std::future::ready(()) => {}
        }
    }
    wait_finished(&store, &record.run_id).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while queue.depth() != 0 {
        assert!(Instant::now() < deadline, "depth stays {}", queue.depth());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_left_in_the_store_run_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let (shared, def) = definitions(&handlers);
    let ids: Vec<String> = {
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let queue = Queue::open(store.clone(), 10, Arc::new(Metrics::new())).unwrap();
        // No workers: the jobs stay queued.
        let records: Vec<_> = (0..3)
            .map(|i| {
                Engine::new_record(
                    &def,
                    RunRequest {
                        payload: Payload::from_value(json!({"x": i})),
                        ..RunRequest::default()
                    },
                )
            })
            .collect();
        queue.enqueue(&records).await.unwrap();
        assert_eq!(queue.depth(), 3);
        assert!(
            queue.enqueue(&vec![records[0].clone(); 8]).await.is_err(),
            "capacity 10 is enforced"
        );
        records.iter().map(|r| r.run_id.clone()).collect()
    };
    tokio::time::sleep(Duration::from_millis(100)).await; // let the old flusher task end with its store
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let queue = Queue::open(store.clone(), 10, Arc::new(Metrics::new())).unwrap();
    assert_eq!(queue.depth(), 3);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let _workers = queue.spawn_workers(2, Engine::new(Some(store.clone())), shared, stop_rx);
    for id in &ids {
        wait_finished(&store, id).await;
    }
}

/// A start gives up on a job that earlier processes began three times
/// without finishing (`abandoned`, FAILED, its job gone), and only on
/// that: a start whose workers never reach a job does not count.
#[tokio::test]
async fn a_job_begun_three_times_without_finishing_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let (_shared, def) = definitions(&handlers);
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let open = |store: &Store| {
        Queue::open(store.clone(), 10, Arc::new(Metrics::new()))
            .unwrap()
            .depth()
    };
    let queue = Queue::open(store.clone(), 10, Arc::new(Metrics::new())).unwrap();
    let records: Vec<_> = (0..2)
        .map(|_| Engine::new_record(&def, RunRequest::default()))
        .collect();
    queue.enqueue(&records).await.unwrap();
    let (twice, thrice) = (&records[0].run_id, &records[1].run_id);
    let begun = |id: &str, n: u32| {
        let mut job = store.jobs_get(id).unwrap().unwrap();
        job.recovered_starts = n;
        store.put_job(&job).unwrap();
    };
    begun(twice, 2);
    begun(thrice, 3);
    // A resume of a FAILED run, begun three times: its record may still
    // say FAILED (what the resume rewrote never reached the disk).
    let mut failed = Engine::new_record(&def, RunRequest::default());
    failed.status = herald::store::RunStatus::Failed;
    failed.completed_at = Some(chrono::Utc::now());
    store.put_run(&failed).unwrap();
    store
        .put_job(&herald::store::Job {
            run_id: failed.run_id.clone(),
            kind: herald::store::JobKind::Resume,
            enqueued_at: chrono::Utc::now(),
            recovered_starts: 3,
        })
        .unwrap();
    let starts = |id: &str| store.jobs_get(id).unwrap().map(|j| j.recovered_starts);

    assert_eq!(open(&store), 1, "two jobs given up, one queued");
    assert_eq!(starts(&failed.run_id), None, "the resume is given up too");
    let resumed = store.get_run(&failed.run_id).unwrap().unwrap();
    assert_eq!(resumed.last_error.unwrap().error_type, "abandoned");
    assert_eq!(starts(thrice), None, "its job is gone");
    let run = store.get_run(thrice).unwrap().unwrap();
    assert_eq!(run.status, herald::store::RunStatus::Failed);
    assert!(run.completed_at.is_some());
    let error = run.last_error.unwrap();
    assert_eq!(error.error_type, "abandoned");
    assert!(error.message.contains("3 starts"), "{}", error.message);
    // Starts with no worker to begin it do not count.
    assert_eq!(open(&store), 1);
    assert_eq!(open(&store), 1);
    assert_eq!(starts(twice), Some(2));
}
