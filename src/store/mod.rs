//! The store: every run and stage execution, kept in sled. The only module
//! that knows sled.
//!
//! Trees:
//! - `runs`: run id → [`PipelineRun`] (JSON). Run ids are ULIDs, so key
//!   order is time order and "newest first" is a reverse range scan.
//! - `stages`: run id ++ seq (u32, big endian) → [`StageExecution`].
//! - `runs_by_status`, `runs_by_definition`: `value \0 run id` → (). Index
//!   entries are hints: a listing always re-reads the run and re-checks the
//!   filter, so an entry left behind by a crash can never show a wrong run.
//! - `payloads`, `intakes`: run id → the inbound payload text, and what its
//!   alerts did to incidents: written once, kept out of the run record,
//!   which is rewritten at every stage. A payload of 1 MiB or more is a
//!   file in `payloads/` instead (module `payload_files`).
//! - `queue`: run id → [`Job`]: runs accepted and not yet finished. A job is
//!   written before its run record, so a crash between the two leaves a job
//!   without a run (dropped at startup), never a run nobody will execute.
//!
//! The database and its trees (`Trees`) sit behind one swappable handle,
//! and every write holds a shared gate: that is what lets a compaction
//! ([`Store::compact_online`]) replace the database under a running daemon
//! without losing a write. Reads take the handle only; writes take
//! `Store::writing`, once per operation.

mod changes;
mod compact;
mod flights;
mod health;
mod history;
mod incidents;
mod ownership;
mod payload_files;
mod records;
mod recover;
mod retention;

pub use compact::{Compaction, compact, database_bytes, due, last_compaction};
pub use flights::Flight;
pub use health::spawn_probe as spawn_health_probe;
pub use incidents::{
    DRY_DELIVERY, Delivery, DryBook, IncidentPage, IncidentQuery, StoreBook, change_counts,
    new_incident_id,
};
pub use records::{Job, JobKind, PipelineRun, RunError, RunStatus, StageExecution, StageStatus};
pub use recover::{Recovery, recover};
pub use retention::{prune_all, spawn_pruner};

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "data dir {0} is in use by another herald process (is `herald serve` running?); stop it or use another --data-dir"
    )]
    InUse(PathBuf),
    #[error("cannot open data dir {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("payload file of run {run_id}: {source}")]
    PayloadFile {
        run_id: String,
        source: std::io::Error,
    },
    #[error(
        "compaction stopped: {available_mib} MiB free on the data dir's file system, under the {reserve_mib} MiB it leaves for the store; the original is kept"
    )]
    NoRoomToCompact {
        available_mib: u64,
        reserve_mib: u64,
    },
    /// The disk failed a write; nothing more can be written until a
    /// restart (see [`health`]).
    #[error("the store cannot write to disk: {0}")]
    Unavailable(String),
}

/// How big the store may get.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub cache_bytes: u64,
    pub retention: Duration,
    pub max_runs: u64,
    /// Compact (at start, and online after pruning) once the database file
    /// reaches this size and twice what the last compaction left; 0: never.
    pub compact_above_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let c = crate::config::StoreConfig::default();
        StoreOptions::from(&c)
    }
}

impl From<&crate::config::StoreConfig> for StoreOptions {
    fn from(c: &crate::config::StoreConfig) -> Self {
        StoreOptions {
            cache_bytes: c.cache_mb * 1024 * 1024,
            retention: c.retention,
            max_runs: c.max_runs,
            compact_above_bytes: c.compact_above_mb.saturating_mul(1024 * 1024),
        }
    }
}

/// A filter and a page position for listing runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub definition: Option<String>,
    pub source: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
    /// The last run id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RunPage {
    pub runs: Vec<PipelineRun>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database and its trees; an online compaction swaps them.
    trees: arc_swap::ArcSwap<Trees>,
    /// Held shared by every write, and exclusively by an online compaction
    /// while it copies and swaps: no write can land in the old database
    /// after the copy began.
    writes: std::sync::RwLock<()>,
    payload_files: payload_files::PayloadFiles,
    flights: flights::Flights,
    run_count: AtomicU64,
    options: StoreOptions,
    /// Live retention limits (config reload changes them).
    retention_secs: AtomicU64,
    max_runs: AtomicU64,
    /// Compact online when the database file passes this (0: never).
    compact_above_bytes: AtomicU64,
    /// Whether the disk has failed a write.
    health: health::Health,
    /// No online compaction before then: the last one ran out of room.
    compaction_paused_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// The group-commit flusher, started on first use.
    flusher: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<FlushWaiter>>,
    path: PathBuf,
    /// The data dir's lock file, held while the store is open.
    _lock: std::fs::File,
}

/// The sled database and its trees: what a compaction replaces, all at once.
pub(super) struct Trees {
    db: sled::Db,
    runs: sled::Tree,
    stages: sled::Tree,
    by_status: sled::Tree,
    by_definition: sled::Tree,
    queue: sled::Tree,
    payloads: sled::Tree,
    intakes: sled::Tree,
    book: incidents::Trees,
}

impl Trees {
    fn open(db: sled::Db) -> Result<Trees, sled::Error> {
        Ok(Trees {
            runs: db.open_tree("runs")?,
            stages: db.open_tree("stages")?,
            by_status: db.open_tree("runs_by_status")?,
            by_definition: db.open_tree("runs_by_definition")?,
            queue: db.open_tree("queue")?,
            payloads: db.open_tree("payloads")?,
            intakes: db.open_tree("intakes")?,
            book: incidents::Trees::open(&db)?,
            db,
        })
    }
}

/// The trees, with the write gate held shared for as long as this lives.
pub(super) struct Writing<'a> {
    trees: Arc<Trees>,
    _gate: std::sync::RwLockReadGuard<'a, ()>,
}

impl std::ops::Deref for Writing<'_> {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        &self.trees
    }
}

impl Store {
    /// The current trees, for reading.
    fn trees(&self) -> Arc<Trees> {
        self.inner.trees.load_full()
    }

    /// The current trees, for writing: a compaction waits until this is
    /// dropped. Never held by a caller of another `writing`.
    fn writing(&self) -> Writing<'_> {
        let gate = self
            .inner
            .writes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Writing {
            trees: self.inner.trees.load_full(),
            _gate: gate,
        }
    }

    /// Opens (or creates) the store in `dir`. A second process on the same
    /// dir gets [`StoreError::InUse`]; root, on a dir that belongs to
    /// another user, an error saying to run as that user; anyone, on a dir
    /// holding files of another user, an error naming one and the `chown`.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        Self::open_unexplained(dir, options).map_err(|e| match e {
            StoreError::Open { path, message } => {
                let message = match ownership::explain_foreign_files(dir) {
                    Some(why) => format!("{message}; {why}"),
                    None => message,
                };
                // `./data` says little in a service's log: say where.
                let path = std::path::absolute(&path).unwrap_or(path);
                StoreError::Open { path, message }
            }
            other => other,
        })
    }

    fn open_unexplained(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.to_path_buf(),
            message,
        };
        let lock = compact::lock(dir)?;
        compact::finish_interrupted(dir)
            .map_err(|e| open_err(format!("recovering an interrupted compaction: {e}")))?;
        let trees = Trees::open(open_db(dir, &dir.join("db"), options.cache_bytes)?)?;
        let run_count = AtomicU64::new(trees.runs.len() as u64);
        let payloads = &trees.payloads;
        let payload_files =
            payload_files::PayloadFiles::open(dir).map_err(|e| open_err(e.to_string()))?;
        // Files written just before a crash, whose run never reached disk.
        let swept = payload_files
            .sweep(|run_id| payloads.contains_key(run_id.as_bytes()).unwrap_or(true))
            .map_err(|e| open_err(e.to_string()))?;
        if swept > 0 {
            tracing::info!(files = swept, "removed payload files no run refers to");
        }
        Ok(Store {
            inner: Arc::new(Inner {
                trees: arc_swap::ArcSwap::from_pointee(trees),
                writes: std::sync::RwLock::new(()),
                payload_files,
                flights: flights::Flights::default(),
                run_count,
                compact_above_bytes: AtomicU64::new(options.compact_above_bytes),
                retention_secs: AtomicU64::new(options.retention.as_secs()),
                max_runs: AtomicU64::new(options.max_runs),
                health: health::Health::new(),
                compaction_paused_until: std::sync::Mutex::new(None),
                flusher: std::sync::OnceLock::new(),
                options,
                path: dir.to_path_buf(),
                _lock: lock,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Changes retention, `max_runs` and the compaction threshold (from a
    /// reloaded config).
    pub fn set_limits(&self, retention: Duration, max_runs: u64, compact_above_bytes: u64) {
        self.inner
            .retention_secs
            .store(retention.as_secs(), Ordering::Relaxed);
        self.inner.max_runs.store(max_runs, Ordering::Relaxed);
        self.inner
            .compact_above_bytes
            .store(compact_above_bytes, Ordering::Relaxed);
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Writes a run (new or updated) and keeps its indexes in step.
    pub fn put_run(&self, run: &PipelineRun) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let t = self.writing();
        let bytes = encode(run)?;
        let old = t.runs.insert(run.run_id.as_bytes(), bytes)?;
        // Only the old status matters here; read just that field.
        #[derive(serde::Deserialize)]
        struct StatusOnly {
            status: RunStatus,
        }
        let old_status = match &old {
            Some(bytes) => decode::<StatusOnly>(&run.run_id, bytes)
                .ok()
                .map(|o| o.status),
            None => {
                inner.run_count.fetch_add(1, Ordering::Relaxed);
                if let Some(text) = run.payload.text() {
                    self.put_payload(&t, &run.run_id, text)?;
                }
                if let Some(intake) = &run.intake {
                    t.intakes
                        .insert(run.run_id.as_bytes(), encode(intake.as_ref())?)?;
                }
                t.by_definition
                    .insert(index_key(&run.definition, &run.run_id), &[])?;
                None
            }
        };
        if old_status != Some(run.status) {
            if let Some(status) = old_status {
                t.by_status
                    .remove(index_key(status.as_str(), &run.run_id))?;
            }
            t.by_status
                .insert(index_key(run.status.as_str(), &run.run_id), &[])?;
        }
        Ok(())
    }

    /// Stores a new run's payload: in the `payloads` tree, or as a synced
    /// file when large.
    fn put_payload(&self, t: &Trees, run_id: &str, text: &str) -> Result<(), StoreError> {
        let inner = &*self.inner;
        if text.len() < payload_files::LARGE_PAYLOAD_BYTES {
            t.payloads.insert(run_id.as_bytes(), text.as_bytes())?;
            return Ok(());
        }
        inner
            .payload_files
            .write(run_id, text)
            .map_err(|source| StoreError::PayloadFile {
                run_id: run_id.to_string(),
                source,
            })?;
        t.payloads
            .insert(run_id.as_bytes(), payload_files::IN_FILE)?;
        Ok(())
    }

    fn get_payload(&self, run_id: &str) -> Result<Option<String>, StoreError> {
        let inner = &*self.inner;
        let Some(bytes) = self.trees().payloads.get(run_id.as_bytes())? else {
            return Ok(None);
        };
        if bytes.as_ref() == payload_files::IN_FILE {
            return match inner.payload_files.read(run_id) {
                Ok(text) => Ok(Some(text)),
                // Pruned just before a crash undid the pruning in sled, or
                // removed by hand: the run reads as one without a payload
                // (an ingest node then fails saying so) rather than not at all.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(run_id, "the run's payload file is missing");
                    Ok(None)
                }
                Err(source) => Err(StoreError::PayloadFile {
                    run_id: run_id.to_string(),
                    source,
                }),
            };
        }
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// A run with its payload.
    pub fn get_run(&self, run_id: &str) -> Result<Option<PipelineRun>, StoreError> {
        let Some(mut run) = self.get_record(run_id)? else {
            return Ok(None);
        };
        if let Some(text) = self.get_payload(run_id)? {
            run.payload = crate::payload::Payload::from_json_text(text);
        }
        if let Some(bytes) = self.trees().intakes.get(run_id.as_bytes())? {
            run.intake = Some(std::sync::Arc::new(decode(run_id, &bytes)?));
        }
        Ok(Some(run))
    }

    /// A run without its payload (nor its intake).
    pub fn get_record(&self, run_id: &str) -> Result<Option<PipelineRun>, StoreError> {
        match self.trees().runs.get(run_id.as_bytes())? {
            Some(bytes) => Ok(Some(decode(run_id, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn put_stage(&self, stage: &StageExecution) -> Result<(), StoreError> {
        self.writing()
            .stages
            .insert(stage_key(&stage.run_id, stage.seq), encode(stage)?)?;
        Ok(())
    }

    /// A run's stage executions, in the order they were recorded.
    pub fn stages(&self, run_id: &str) -> Result<Vec<StageExecution>, StoreError> {
        let mut prefix = run_id.as_bytes().to_vec();
        prefix.push(b':');
        self.trees()
            .stages
            .scan_prefix(prefix)
            .map(|item| {
                let (key, bytes) = item?;
                decode(&String::from_utf8_lossy(&key), &bytes)
            })
            .collect()
    }

    /// Runs newest first, filtered, one page at a time.
    pub fn list_runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let inner = self.trees();
        let limit = query.limit.max(1);
        let since_ms = query.since.map(|t| t.timestamp_millis().max(0) as u64);
        // Pick the narrowest index the filter allows.
        let (tree, prefix): (&sled::Tree, Vec<u8>) = match (&query.definition, query.status) {
            (Some(def), _) => (&inner.by_definition, index_prefix(def)),
            (None, Some(status)) => (&inner.by_status, index_prefix(status.as_str())),
            (None, None) => (&inner.runs, Vec::new()),
        };
        let mut upper = prefix.clone();
        match &query.cursor {
            Some(cursor) => upper.extend_from_slice(cursor.as_bytes()),
            None => upper.push(0xff),
        }
        let mut runs = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in tree.range(prefix.clone()..upper).rev() {
            let (key, _) = item?;
            let run_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let (Some(since), Some(created)) = (since_ms, ulid_millis(&run_id))
                && created < since
            {
                break; // everything after this is older still
            }
            let Some(run) = self.get_record(&run_id)? else {
                continue; // a stale index entry
            };
            if !matches(&run, query) {
                continue;
            }
            if runs.len() == limit {
                more = true;
                break;
            }
            runs.push(run);
        }
        let next_cursor = if more {
            runs.last().map(|r| r.run_id.clone())
        } else {
            None
        };
        Ok(RunPage { runs, next_cursor })
    }

    /// Removes a run with its stages and index entries.
    pub fn delete_run(&self, run_id: &str) -> Result<bool, StoreError> {
        let inner = &*self.inner;
        let t = self.writing();
        let Some(bytes) = t.runs.remove(run_id.as_bytes())? else {
            return Ok(false);
        };
        inner.run_count.fetch_sub(1, Ordering::Relaxed);
        if let Some(old) = t.payloads.remove(run_id.as_bytes())?
            && old.as_ref() == payload_files::IN_FILE
            && let Err(e) = inner.payload_files.remove(run_id)
        {
            tracing::warn!(run_id, error = %e, "could not remove a payload file");
        }
        if let Some(intake) = t.intakes.remove(run_id.as_bytes())? {
            // The incidents' run indexes point at this run: without this,
            // a long-lived (flapping) incident's index grows by one dead
            // entry per run for as long as the incident lives.
            #[derive(serde::Deserialize)]
            struct IncidentIds {
                #[serde(default)]
                incident_ids: Vec<String>,
            }
            if let Ok(ids) = decode::<IncidentIds>(run_id, &intake) {
                incidents::remove_incident_runs(&t, &ids.incident_ids, run_id)?;
            }
        }
        if let Ok(run) = decode::<IndexedFields>(run_id, &bytes) {
            t.by_status.remove(index_key(run.status.as_str(), run_id))?;
            t.by_definition.remove(index_key(&run.definition, run_id))?;
        }
        let mut prefix = run_id.as_bytes().to_vec();
        prefix.push(b':');
        let mut batch = sled::Batch::default();
        for key in t.stages.scan_prefix(prefix).keys() {
            batch.remove(key?);
        }
        t.stages.apply_batch(batch)?;
        Ok(true)
    }

    /// Records that a run is waiting for a worker.
    pub fn put_job(&self, job: &Job) -> Result<(), StoreError> {
        self.writing()
            .queue
            .insert(job.run_id.as_bytes(), encode(job)?)?;
        Ok(())
    }

    pub fn jobs_get(&self, run_id: &str) -> Result<Option<Job>, StoreError> {
        match self.trees().queue.get(run_id.as_bytes())? {
            Some(bytes) => Ok(Some(decode(run_id, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn remove_job(&self, run_id: &str) -> Result<(), StoreError> {
        self.writing().queue.remove(run_id.as_bytes())?;
        Ok(())
    }

    /// Gives a job to every unfinished run that has none, and returns
    /// their ids, oldest first. Such a run was cut short by a stop: a sync
    /// or scheduled run (those have no job) when herald crashed or was
    /// stopped past its grace period, or a queued one whose job a damaged
    /// log lost. With a job it continues like any queued run, from its
    /// first stage that did not succeed. Call it when nothing is running:
    /// a run going on now is unfinished too.
    ///
    /// Reads every run record, but only as far as its `completed_at`: the
    /// store holds at most `max_runs` finished runs.
    pub fn requeue_unfinished(&self) -> Result<Vec<String>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Finish {
            completed_at: Option<serde::de::IgnoredAny>,
        }
        let t = self.trees();
        let mut unfinished = Vec::new();
        for item in t.runs.iter() {
            let (key, bytes) = item?;
            let run_id = String::from_utf8_lossy(&key);
            let finished = match decode::<Finish>(&run_id, &bytes) {
                Ok(run) => run.completed_at.is_some(),
                Err(_) => true, // unreadable: get_run fails on it too; not ours to run
            };
            if !finished && !t.queue.contains_key(&key)? {
                unfinished.push(run_id.into_owned());
            }
        }
        for run_id in &unfinished {
            self.put_job(&Job {
                run_id: run_id.clone(),
                kind: JobKind::Run,
                enqueued_at: Utc::now(),
                recovered_starts: 0,
            })?;
        }
        Ok(unfinished)
    }

    /// Every waiting job, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        self.trees()
            .queue
            .iter()
            .map(|item| {
                let (key, bytes) = item?;
                decode(&String::from_utf8_lossy(&key), &bytes)
            })
            .collect()
    }

    pub fn run_count(&self) -> u64 {
        self.inner.run_count.load(Ordering::Relaxed)
    }

    /// Makes every write so far durable on disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        let flushed = self.trees().db.flush();
        flushed.map(|_| ()).map_err(|e| self.flush_failed(e))
    }

    pub async fn flush_async(&self) -> Result<(), StoreError> {
        let db = self.trees().db.clone();
        let flushed = db.flush_async().await;
        flushed.map(|_| ()).map_err(|e| self.flush_failed(e))
    }

    /// A failed flush: if the disk failed it, the store has failed for good
    /// (until a restart); recorded, and said so once.
    fn flush_failed(&self, e: sled::Error) -> StoreError {
        match health::disk_failure(&e) {
            Some(cause) => {
                self.inner.health.fail(&cause);
                StoreError::Unavailable(cause)
            }
            None => e.into(),
        }
    }

    /// Why the store cannot write, once the disk has failed it.
    pub fn failure(&self) -> Option<String> {
        self.inner.health.failure().map(|c| c.to_string())
    }

    /// Resolves, with the cause, once the disk has failed the store.
    pub async fn failed(&self) -> String {
        self.inner.health.failed().await.to_string()
    }

    /// Waits until everything written so far is on disk, sharing one flush
    /// with every caller waiting at the same time (group commit). Concurrent
    /// sled flushes of their own slow each other down badly; this runs one
    /// at a time and answers everyone who asked before it started.
    pub async fn flush_grouped(&self) -> Result<(), StoreError> {
        let sender = self.inner.flusher.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(group_flusher(Arc::downgrade(&self.inner), rx));
            tx
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::Open {
            path: self.inner.path.clone(),
            message: "the flusher has stopped".into(),
        };
        sender.send(tx).map_err(|_| stopped())?;
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| self.flush_failed(e))
    }

    /// Deletes up to `batch` runs that are past retention or beyond
    /// `max_runs`, oldest first (unfinished runs are kept until they are
    /// past retention), and up to `batch` each of old deliveries and
    /// incidents. Returns how many it deleted.
    pub fn prune(&self, now: DateTime<Utc>, batch: usize) -> Result<usize, StoreError> {
        Ok(self.prune_batch(now, batch)?.total())
    }

    /// [`prune`](Self::prune), saying how many of each kind it deleted.
    pub fn prune_batch(&self, now: DateTime<Utc>, batch: usize) -> Result<Pruned, StoreError> {
        let inner = &*self.inner;
        let retention = Duration::from_secs(inner.retention_secs.load(Ordering::Relaxed));
        let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        let cutoff_ms = cutoff.timestamp_millis().max(0) as u64;
        let mut deleted = 0;
        let mut victims = Vec::new();
        let mut excess = self
            .run_count()
            .saturating_sub(inner.max_runs.load(Ordering::Relaxed));
        // Bounded: beyond `max_runs` with a long queue, the oldest runs
        // are unfinished, and every batch would read them all again.
        let trees = self.trees();
        for item in trees.runs.iter().take(MAX_RUNS_SCANNED) {
            if victims.len() >= batch {
                break;
            }
            let (key, bytes) = item?;
            let run_id = String::from_utf8_lossy(&key).into_owned();
            let expired = ulid_millis(&run_id).is_some_and(|ms| ms < cutoff_ms);
            if !expired && excess == 0 {
                break; // keys are in time order: nothing later is expired
            }
            // A run whose job is still queued is an alert answered 2xx and
            // not yet handled (herald was stopped longer than `retention`,
            // with jobs on disk): never taken, however old.
            if trees.queue.contains_key(&key)? {
                continue;
            }
            // Decoded only when age alone does not decide (a full decode of
            // every run made a large backlog slow to prune).
            let doomed = expired
                || decode::<IndexedFields>(&run_id, &bytes)
                    .map(|r| r.completed_at.is_some())
                    .unwrap_or(true);
            if doomed {
                victims.push(run_id);
                excess = excess.saturating_sub(1);
            }
        }
        for run_id in victims {
            if self.delete_run(&run_id)? {
                deleted += 1;
            }
        }
        Ok(Pruned {
            runs: deleted,
            deliveries: self.prune_deliveries(cutoff_ms, batch)?,
            incidents: self.prune_incidents(cutoff, batch)?,
        })
    }
}

/// Runs read per pruning batch, at most.
const MAX_RUNS_SCANNED: usize = 10_000;

/// What one pruning batch deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub runs: usize,
    pub deliveries: usize,
    pub incidents: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.runs + self.deliveries + self.incidents
    }

    /// Whether some kind filled its batch, so more of it may be left.
    pub fn filled(&self, batch: usize) -> bool {
        [self.runs, self.deliveries, self.incidents]
            .iter()
            .any(|&n| n >= batch)
    }
}

/// The fields of a stored run that its index entries and pruning need,
/// read without decoding the rest (stage outputs, dates).
#[derive(serde::Deserialize)]
struct IndexedFields {
    status: RunStatus,
    definition: String,
    #[serde(default)]
    completed_at: Option<serde::de::IgnoredAny>,
}

type FlushWaiter = tokio::sync::oneshot::Sender<Result<(), sled::Error>>;

/// One flush for every waiter that arrived while the previous one ran.
/// It holds the store weakly, and flushes whichever database is current
/// (a compaction may have swapped it since the last flush).
async fn group_flusher(
    inner: std::sync::Weak<Inner>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<FlushWaiter>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let Some(db) = inner.upgrade().map(|i| i.trees.load().db.clone()) else {
            return;
        };
        let result = match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(r) => r.map(|_| ()),
            Err(e) => Err(sled::Error::ReportableBug(format!(
                "the flush task died: {e}"
            ))),
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

fn matches(run: &PipelineRun, q: &RunQuery) -> bool {
    q.status.is_none_or(|s| run.status == s)
        && q.definition.as_ref().is_none_or(|d| &run.definition == d)
        && q.source
            .as_ref()
            .is_none_or(|s| run.source.as_deref() == Some(s.as_str()))
        && q.since.is_none_or(|t| run.created_at >= t)
}

/// Opens the sled database at `path` (in data dir `dir`), with the data
/// dir's lock already held. sled's own lock on its file can outlive the
/// handle that held it by a moment (its background writes finish first),
/// so a conflict on it is retried briefly before it counts as "in use".
fn open_db(dir: &Path, path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(500))
            .open();
        return match opened {
            Ok(db) => Ok(db),
            Err(sled::Error::Io(io)) if is_lock_error(&io) => {
                if std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(StoreError::InUse(dir.to_path_buf()))
            }
            Err(sled::Error::Io(io)) => Err(StoreError::Open {
                path: dir.to_path_buf(),
                message: io.to_string(),
            }),
            Err(e @ sled::Error::Corruption { .. }) => Err(StoreError::Open {
                path: dir.to_path_buf(),
                message: format!("{}: {}", describe_corruption(&e), recover::advice(dir)),
            }),
            Err(other) => Err(StoreError::Open {
                path: dir.to_path_buf(),
                message: other.to_string(),
            }),
        };
    }
}

/// sled's `Corruption` prints as "Read corrupted data at file offset None
/// backtrace ()".
fn describe_corruption(e: &sled::Error) -> String {
    match e {
        sled::Error::Corruption { at: Some(at), .. } => {
            format!("sled found damaged data in its files (at {at})")
        }
        _ => "sled found damaged data in its files".to_string(),
    }
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock
        || e.raw_os_error() == Some(11)
        || e.to_string().contains("could not acquire lock")
}

/// Milliseconds since the epoch encoded in a ULID run id.
fn ulid_millis(run_id: &str) -> Option<u64> {
    ulid::Ulid::from_string(run_id)
        .ok()
        .map(|u| u.timestamp_ms())
}

fn index_prefix(value: &str) -> Vec<u8> {
    let mut key = value.as_bytes().to_vec();
    key.push(0);
    key
}

fn index_key(value: &str, run_id: &str) -> Vec<u8> {
    let mut key = index_prefix(value);
    key.extend_from_slice(run_id.as_bytes());
    key
}

fn stage_key(run_id: &str, seq: u32) -> Vec<u8> {
    let mut key = run_id.as_bytes().to_vec();
    key.push(b':');
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: String::new(),
        message: e.to_string(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        message: e.to_string(),
    })
}
