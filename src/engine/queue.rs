//! The durable queue and its workers.
//!
//! Accepting a job writes it to the store and waits for a flush to disk
//! before the caller answers 2xx; concurrent accepts share one flush (a
//! single flusher task drains every waiting request, flushes once, answers
//! all). Workers take jobs in order and run them through the engine. At
//! startup every job still in the store is queued again, and so is every
//! unfinished run without one (a sync run a crash cut short); an
//! interrupted run continues from its first stage that did not succeed,
//! unless it was begun again by [`MAX_RECOVERED_STARTS`] processes and
//! herald died each time: then it may be the cause, and it is given up.

use super::Engine;
use crate::definition::SharedDefinitions;
use crate::metrics::Metrics;
use crate::store::{Job, JobKind, PipelineRun, RunError, RunStatus, Store, StoreError};
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full ({capacity} jobs); retry later")]
    Full { capacity: usize },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not make the job durable: {0}")]
    Flush(String),
}

/// After a job left by an earlier process has been begun this many times
/// without finishing, the queue gives up on it: a run going on each time
/// herald dies (killed by the OOM killer, a crash in a library) may be
/// what kills it, and under systemd's restarts it would keep herald down
/// for good, every alert queued behind it waiting. The run is recorded
/// FAILED (`abandoned`), resumable by hand once the cause is known.
///
/// Each such beginning is written to the job and flushed before the run
/// goes on, so that a run that kills herald at once is counted too. Only
/// the first jobs left by an earlier process that a process begins pay for
/// that flush ([`COUNTED_PICKUPS`], or twice the workers if more): in a
/// crash loop the culprit is one of them. Workers take the oldest job
/// first, and at most one per worker was going when herald died; the
/// others finish in the next life, so from then on the culprit is among
/// the first taken.
pub const MAX_RECOVERED_STARTS: u32 = 3;

/// The error type of a run the queue gave up on (see
/// [`MAX_RECOVERED_STARTS`]); the scheduler holds a schedule whose last
/// run ended so.
pub const ABANDONED: &str = "abandoned";

/// How many recovered jobs a process counts as it begins them, at least.
/// A flush for every one slowed the draining of a crash's backlog by a
/// third (30,000 jobs: 21 – 23 s against 15 s).
const COUNTED_PICKUPS: usize = 16;

/// A job for the workers: its run, and whether an earlier process left it.
struct Ready {
    run_id: String,
    recovered: bool,
}

/// Accepts jobs durably and hands them to workers.
pub struct Queue {
    store: Store,
    capacity: usize,
    depth: AtomicUsize,
    /// Recovered jobs begun so far by this process (see [`COUNTED_PICKUPS`]).
    counted_pickups: AtomicUsize,
    /// How many workers the pool has.
    workers: AtomicUsize,
    ready_tx: async_channel::Sender<Ready>,
    ready_rx: async_channel::Receiver<Ready>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Opens the queue over `store` and queues again every job left in it.
    pub fn open(
        store: Store,
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Queue>, StoreError> {
        let (ready_tx, ready_rx) = async_channel::unbounded();
        let queue = Arc::new(Queue {
            store: store.clone(),
            capacity,
            depth: AtomicUsize::new(0),
            counted_pickups: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            ready_tx,
            ready_rx,
            metrics,
        });
        let cut_short = store.requeue_unfinished()?;
        if let Some(first) = cut_short.first() {
            tracing::warn!(
                runs = cut_short.len(),
                first = %first,
                "queue: runs cut short by the last stop (sync or scheduled runs, which have no \
                 job) continue from their first stage that did not succeed"
            );
        }
        let mut recovered = 0;
        for job in store.jobs()? {
            let Some(record) = store.get_record(&job.run_id)? else {
                store.remove_job(&job.run_id)?; // accepted by nobody: its run was never written
                continue;
            };
            if job.recovered_starts >= MAX_RECOVERED_STARTS && runnable(&job, &record) {
                abandon(&store, &queue.metrics, record, job.recovered_starts)?;
                continue;
            }
            queue.depth.fetch_add(1, Ordering::Relaxed);
            let _ = queue.ready_tx.try_send(Ready {
                run_id: job.run_id,
                recovered: true,
            });
            recovered += 1;
        }
        if recovered > 0 {
            tracing::info!(
                jobs = recovered,
                "queue: picked up jobs left from the last run"
            );
        }
        queue.publish_depth();
        Ok(queue)
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn publish_depth(&self) {
        self.metrics.set_queue(self.depth(), self.capacity);
    }

    /// Makes new runs durable, then queues them. Either all are accepted or
    /// none; a full queue is an error before anything is written.
    pub async fn enqueue(&self, runs: &[PipelineRun]) -> Result<(), QueueError> {
        self.enqueue_jobs(runs, JobKind::Run, || Ok(())).await
    }

    /// The writing half of [`enqueue`](Self::enqueue), for a caller that
    /// must write more in the same critical section (the intake thread):
    /// writes the jobs, then `after` — a record that, if it survives a
    /// crash, proves the jobs did too (sled recovers a prefix of its
    /// writes) — and hands the jobs to the workers. Nothing is durable until
    /// the caller's [`flush`](Self::flush).
    pub fn write_then(
        &self,
        runs: &[PipelineRun],
        after: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), QueueError> {
        self.write_jobs(runs, JobKind::Run, after)
    }

    /// Queues a FAILED run to be resumed.
    pub async fn enqueue_resume(&self, run: &PipelineRun) -> Result<(), QueueError> {
        self.enqueue_jobs(std::slice::from_ref(run), JobKind::Resume, || Ok(()))
            .await
    }

    async fn enqueue_jobs(
        &self,
        runs: &[PipelineRun],
        kind: JobKind,
        after: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), QueueError> {
        self.write_jobs(runs, kind, after)?;
        self.flush().await
    }

    fn write_jobs(
        &self,
        runs: &[PipelineRun],
        kind: JobKind,
        after: impl FnOnce() -> Result<(), StoreError>,
    ) -> Result<(), QueueError> {
        let n = runs.len();
        let reserved = self.depth.fetch_add(n, Ordering::AcqRel);
        if reserved + n > self.capacity {
            self.depth.fetch_sub(n, Ordering::AcqRel);
            return Err(QueueError::Full {
                capacity: self.capacity,
            });
        }
        let written = (|| -> Result<(), StoreError> {
            for run in runs {
                self.store.put_job(&Job {
                    run_id: run.run_id.clone(),
                    kind,
                    enqueued_at: Utc::now(),
                    recovered_starts: 0,
                })?;
                if kind == JobKind::Run {
                    self.store.put_run(run)?;
                }
            }
            after()
        })();
        if let Err(e) = written {
            self.depth.fetch_sub(n, Ordering::AcqRel);
            return Err(e.into());
        }
        // Hand the jobs to the workers before waiting for the flush: if the
        // caller goes away while it waits (a client hanging up drops the
        // request), the written jobs must still run, not sit until restart.
        for run in runs {
            let _ = self.ready_tx.try_send(Ready {
                run_id: run.run_id.clone(),
                recovered: false,
            });
        }
        self.publish_depth();
        Ok(())
    }

    /// Waits until everything written so far is on disk (one flush shared
    /// by every caller waiting at the same time).
    pub async fn flush(&self) -> Result<(), QueueError> {
        // Without the flush the caller is told the jobs may not be durable.
        self.store.flush_grouped().await.map_err(|e| {
            tracing::error!(error = %e, "queue: flush failed");
            QueueError::Flush(e.to_string())
        })
    }

    /// Starts `n` workers. They stop taking jobs when `stop` turns true.
    pub fn spawn_workers(
        self: &Arc<Self>,
        n: usize,
        engine: Engine,
        definitions: SharedDefinitions,
        stop: watch::Receiver<bool>,
    ) -> Workers {
        let mut workers = Workers {
            set: JoinSet::new(),
            retire: Vec::new(),
            queue: self.clone(),
            engine,
            definitions,
            stop,
        };
        workers.resize(n);
        workers
    }

    async fn process(&self, ready: Ready, engine: &Engine, definitions: &SharedDefinitions) {
        let run_id = ready.run_id.as_str();
        if let Err(e) = self
            .process_inner(run_id, ready.recovered, engine, definitions)
            .await
        {
            // The job stays in the store and is tried again at the next start.
            tracing::error!(run_id, error = %e, "queue: job failed to run");
            return;
        }
        if let Err(e) = self.store.remove_job(run_id) {
            tracing::error!(run_id, error = %e, "queue: cannot remove a finished job");
        }
        self.depth.fetch_sub(1, Ordering::AcqRel);
        self.publish_depth();
    }

    async fn process_inner(
        &self,
        run_id: &str,
        recovered: bool,
        engine: &Engine,
        definitions: &SharedDefinitions,
    ) -> Result<(), QueueError> {
        let Some(mut job) = self.store.jobs_get(run_id)? else {
            return Ok(()); // already done
        };
        let Some(record) = self.store.get_run(run_id)? else {
            // Cannot happen short of a damaged store (retention never takes
            // a queued run); said, since it is an accepted job not run.
            tracing::warn!(
                run_id,
                "queue: a job whose run is not in the store; dropped"
            );
            return Ok(());
        };
        if !runnable(&job, &record) {
            return Ok(()); // finished before a crash removed its job
        }
        let Some(definition) = definitions.load().get(&record.definition) else {
            // Said where an operator looks: the run is FAILED, resumable
            // once the definition is back.
            tracing::warn!(
                run_id,
                definition = %record.definition,
                "run failed: its definition is no longer loaded (removed while the job was \
                 queued); put it back, then resume the run"
            );
            let message = format!("definition `{}` is no longer loaded", record.definition);
            fail_run(
                &self.store,
                &self.metrics,
                record,
                "definition_missing",
                String::new(),
                message,
            )?;
            return Ok(());
        };
        let counted = COUNTED_PICKUPS.max(2 * self.workers.load(Ordering::Relaxed));
        if recovered && self.counted_pickups.fetch_add(1, Ordering::Relaxed) < counted {
            // On disk before the run goes on: if it kills herald at once,
            // the next start still knows it was begun.
            job.recovered_starts += 1;
            self.store.put_job(&job)?;
            self.flush().await?;
        }
        engine
            .continue_recorded(&definition, record)
            .await
            .map_err(|e| match e {
                super::EngineError::Store(s) => QueueError::Store(s),
                other => QueueError::Flush(other.to_string()),
            })?;
        Ok(())
    }
}

/// Whether `job` still has work to do on `record`, or its run finished
/// before a crash removed it.
fn runnable(job: &Job, record: &PipelineRun) -> bool {
    match job.kind {
        JobKind::Run => !record.is_finished(),
        // A resume that a crash cut short no longer says FAILED: its
        // record was rewritten as the run went on. It is unfinished, and
        // continues like any interrupted run.
        JobKind::Resume => record.status == RunStatus::Failed || !record.is_finished(),
    }
}

/// Records `record` FAILED with an error of `error_type` (at `node_id`,
/// if it concerns a node), finished now, and counts it with the runs that
/// failed (no duration: it did not run).
fn fail_run(
    store: &Store,
    metrics: &Metrics,
    mut record: PipelineRun,
    error_type: &str,
    node_id: String,
    message: String,
) -> Result<(), StoreError> {
    record.status = RunStatus::Failed;
    record.completed_at = Some(Utc::now());
    record.last_error = Some(RunError {
        error_type: error_type.into(),
        message,
        retryable: false,
        node_id,
    });
    store.put_run(&record)?;
    metrics.run_failed_unrun(&record.definition);
    Ok(())
}

/// Gives up on a run begun `starts` times by processes that each died
/// before it finished: FAILED, its job removed, said at error.
fn abandon(
    store: &Store,
    metrics: &Metrics,
    record: PipelineRun,
    starts: u32,
) -> Result<(), StoreError> {
    let run_id = record.run_id.clone();
    let node = record.current_node.clone().unwrap_or_default();
    tracing::error!(
        run_id,
        definition = %record.definition,
        node,
        starts,
        "queue: run abandoned: begun again by {starts} starts of herald in a row, and herald \
         stopped each time before it finished (a crash, a kill, a power loss, or a stop past \
         shutdown_grace); it may be what stops herald, so it is not started again by itself. \
         `herald runs resume {run_id}` continues it once the cause is known"
    );
    // The node it was in, if that reached the disk before herald died.
    let during = match node.as_str() {
        "" => String::new(),
        node => format!(" (during node `{node}` the last time)"),
    };
    let message = format!(
        "abandoned: begun again by {starts} starts of herald in a row, and herald stopped each \
         time before it finished{during}; not started again by itself, in case it is what \
         stops herald. `herald runs resume {run_id}` continues it"
    );
    fail_run(store, metrics, record, ABANDONED, node, message)?;
    store.remove_job(&run_id)
}

/// The running workers.
pub struct Workers {
    set: JoinSet<()>,
    /// One flag per live worker; set, the worker leaves after its job.
    retire: Vec<Arc<AtomicBool>>,
    queue: Arc<Queue>,
    engine: Engine,
    definitions: SharedDefinitions,
    stop: watch::Receiver<bool>,
}

impl Workers {
    pub fn count(&self) -> usize {
        self.retire.len()
    }

    /// Grows or shrinks the pool to `n` (at least 1). A worker asked to
    /// leave finishes the job it has first.
    pub fn resize(&mut self, n: usize) {
        let n = n.max(1);
        self.queue.workers.store(n, Ordering::Relaxed);
        while self.retire.len() > n {
            if let Some(flag) = self.retire.pop() {
                flag.store(true, Ordering::Release);
            }
        }
        while self.retire.len() < n {
            let retire = Arc::new(AtomicBool::new(false));
            self.retire.push(retire.clone());
            let queue = self.queue.clone();
            let engine = self.engine.clone();
            let definitions = self.definitions.clone();
            let mut stop = self.stop.clone();
            self.set.spawn(async move {
                loop {
                    if *stop.borrow() || retire.load(Ordering::Acquire) {
                        return;
                    }
                    let ready = tokio::select! {
                        biased;
                        _ = stop.changed() => return,
                        next = queue.ready_rx.recv() => match next {
                            Ok(ready) => ready,
                            Err(_) => return,
                        },
                    };
                    queue.process(ready, &engine, &definitions).await;
                }
            });
        }
    }

    /// Waits for the workers to finish their current job, at most `grace`;
    /// then cancels what is left (those runs stay queued for the next start).
    pub async fn finish(mut self, grace: Duration) {
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                grace = %crate::definition::duration::format_duration(grace),
                "shutdown: runs still going after the grace period stay queued for the next start"
            );
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
        }
    }
}
