//! The engine runs one definition for one payload.
//!
//! It starts at the first node and follows `next`. Before each node it
//! applies the skip rules (`skip_if_errors`, `skip_if_condition`); it runs the
//! node with its timeout and retries (exponential backoff, full jitter; only
//! errors the handler calls retryable are retried); it records every attempt
//! as a [`StageExecution`] and keeps the node's output for the nodes after it.
//! A failed required node ends the run as `FAILED`; a failed optional node is
//! recorded and the run goes on.
//!
//! [`Engine::resume`] continues a failed run: nodes whose last attempt
//! succeeded are not run again, their recorded outputs are used instead.

mod backoff;
pub mod queue;
mod result;

pub use backoff::{ceiling as backoff_ceiling, delay as backoff_delay};
pub use result::{NodeResult, RunResult};

use crate::definition::condition::NodeFacts;
use crate::definition::{Definition, Node};
use crate::metrics::Metrics;
use crate::nodes::{EarlierNode, NodeContext, NodeError, NodeErrorKind};
use crate::payload::Payload;
use crate::store::{
    PipelineRun, RunError, RunStatus, StageExecution, StageStatus, Store, StoreError,
};
use chrono::Utc;
use futures_util::FutureExt;
use indexmap::IndexMap;
use serde_json::Value;
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What starts a run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub payload: Payload,
    pub source: Option<String>,
    pub environment: Option<String>,
    pub trace_id: Option<String>,
    pub incident_id: Option<String>,
    /// What the alerts in the payload did to incidents, when they were
    /// applied on arrival (see [`crate::intake`]).
    pub intake: Option<Arc<Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no run with id {0}")]
    RunNotFound(String),
    #[error("run {run_id} cannot be resumed: {why}")]
    NotResumable { run_id: String, why: String },
    #[error("resuming needs the store")]
    NoStore,
}

/// The error of a node stopped by [`Engine::with_interrupt`].
const INTERRUPTED: &str = "interrupted (Ctrl-C) while the node ran";

/// Runs definitions; records them when it has a store, counts them when it
/// has metrics.
#[derive(Clone, Default)]
pub struct Engine {
    store: Option<Store>,
    metrics: Option<Arc<Metrics>>,
    /// The runs this process is running now (shared by every clone).
    running: Arc<Mutex<HashSet<String>>>,
    /// Turns true when the runs must stop now ([`with_interrupt`](Self::with_interrupt)).
    interrupt: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Marks a run as running in this process until dropped (also when the
/// run's future is dropped or panics).
struct Running {
    runs: Arc<Mutex<HashSet<String>>>,
    run_id: String,
}

impl Running {
    /// Marks `run_id` running (again, for a run whose resume claimed it).
    fn start(runs: &Arc<Mutex<HashSet<String>>>, run_id: &str) -> Running {
        lock(runs).insert(run_id.to_string());
        Running {
            runs: runs.clone(),
            run_id: run_id.to_string(),
        }
    }

    /// Marks `run_id` running, unless it already is.
    fn claim(runs: &Arc<Mutex<HashSet<String>>>, run_id: &str) -> Option<Running> {
        lock(runs).insert(run_id.to_string()).then(|| Running {
            runs: runs.clone(),
            run_id: run_id.to_string(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.runs).remove(&self.run_id);
    }
}

fn lock(runs: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    runs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Engine {
    pub fn new(store: Option<Store>) -> Self {
        Engine {
            store,
            metrics: None,
            running: Arc::default(),
            interrupt: None,
        }
    }

    /// Why `record` cannot be resumed, or `None` when it can: it FAILED,
    /// or it is unfinished — and nothing is about to continue it: it is
    /// not running in this process and not queued (an async resume already
    /// accepted, or the run's own job). An unfinished run with neither is
    /// a sync run (which has no job) cut short by a crash, or by a stop
    /// past the grace period.
    pub fn not_resumable(&self, record: &PipelineRun) -> Result<Option<String>, StoreError> {
        if lock(&self.running).contains(&record.run_id) {
            return Ok(Some("it is running now".into()));
        }
        self.not_resumable_unless_running(record)
    }

    /// [`not_resumable`](Self::not_resumable) but for the running check.
    fn not_resumable_unless_running(
        &self,
        record: &PipelineRun,
    ) -> Result<Option<String>, StoreError> {
        if record.is_finished() && record.status != RunStatus::Failed {
            return Ok(Some(format!(
                "it is {}; only a FAILED run, or one a crash left unfinished, can be resumed",
                record.status
            )));
        }
        let queued = match &self.store {
            Some(store) => store.jobs_get(&record.run_id)?.is_some(),
            None => false,
        };
        if queued {
            return Ok(Some(
                "it is queued; a worker will run it (at the next start if herald is stopped)"
                    .into(),
            ));
        }
        Ok(None)
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Stops runs when `interrupt` turns true: the node running fails with
    /// an error of kind `interrupted` (not retried), and the run ends
    /// FAILED, recorded as such and resumable like any failed run. For a
    /// `herald run` that runs the definition itself, on Ctrl-C: the
    /// operator meant to stop it, so it must not be left unfinished, to be
    /// continued by the next `herald serve`.
    pub fn with_interrupt(mut self, interrupt: tokio::sync::watch::Receiver<bool>) -> Self {
        self.interrupt = Some(interrupt);
        self
    }

    /// Completes once the runs must stop; never without an interrupt.
    async fn interrupted(&self) {
        if let Some(mut interrupt) = self.interrupt.clone()
            && interrupt.wait_for(|stop| *stop).await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The record of a new run of `definition` for `request`, not yet written.
    pub fn new_record(definition: &Definition, request: RunRequest) -> PipelineRun {
        let now = Utc::now();
        PipelineRun {
            trace_id: request
                .trace_id
                .unwrap_or_else(|| crate::ids::next().to_string().to_ascii_lowercase()),
            run_id: crate::ids::next().to_string(),
            definition: definition.name.clone(),
            definition_version: definition.version_hash.clone(),
            source: request.source,
            environment: request.environment,
            status: RunStatus::Pending,
            current_stage: None,
            current_node: None,
            incident_id: request.incident_id,
            intake: request.intake,
            attempts: 1,
            max_retries: definition.defaults.max_retries,
            last_error: None,
            executed_nodes: Vec::new(),
            skipped_nodes: Vec::new(),
            created_at: now,
            started_at: None,
            completed_at: None,
            duration_ms: None,
            payload: request.payload,
        }
    }

    /// Runs `definition` once for `request`.
    pub async fn run(
        &self,
        definition: &Definition,
        request: RunRequest,
    ) -> Result<RunResult, EngineError> {
        self.run_record(definition, Self::new_record(definition, request))
            .await
    }

    /// Runs a record made by [`new_record`](Self::new_record) (when the
    /// caller needs the run id before the run starts).
    pub async fn run_record(
        &self,
        definition: &Definition,
        mut record: PipelineRun,
    ) -> Result<RunResult, EngineError> {
        record.started_at = Some(Utc::now());
        self.drive(definition, RunState::new(record, 0), IndexMap::new())
            .await
    }

    /// Continues a FAILED run, or one a crash left unfinished, from its
    /// first node that did not succeed.
    pub async fn resume(
        &self,
        definition: &Definition,
        run_id: &str,
    ) -> Result<RunResult, EngineError> {
        let store = self.store.as_ref().ok_or(EngineError::NoStore)?;
        let record = store
            .get_run(run_id)?
            .ok_or_else(|| EngineError::RunNotFound(run_id.to_string()))?;
        // Marked running before the other checks, in one step with the
        // check that it is not: two resumes at once cannot both pass.
        let not_resumable = |why: String| EngineError::NotResumable {
            run_id: run_id.to_string(),
            why,
        };
        let _claim = Running::claim(&self.running, run_id)
            .ok_or_else(|| not_resumable("it is running now".into()))?;
        if let Some(why) = self.not_resumable_unless_running(&record)? {
            return Err(not_resumable(why));
        }
        self.continue_recorded(definition, record).await
    }

    /// Runs a run that is already recorded: a queued one that has not
    /// started, one interrupted by a crash, or a failed one being resumed.
    /// Nodes whose last attempt succeeded are not run again; their recorded
    /// outputs are used, and attempt numbers continue.
    pub async fn continue_recorded(
        &self,
        definition: &Definition,
        mut record: PipelineRun,
    ) -> Result<RunResult, EngineError> {
        let store = self.store.as_ref().ok_or(EngineError::NoStore)?;
        let stages = store.stages(&record.run_id)?;
        let mut done: IndexMap<String, NodeResult> = IndexMap::new();
        for stage in &stages {
            if stage.status == StageStatus::Succeeded {
                let attempts = stages
                    .iter()
                    .filter(|s| s.node_id == stage.node_id && s.seq <= stage.seq)
                    .count() as u32;
                done.insert(
                    stage.node_id.clone(),
                    NodeResult {
                        node_type: stage.stage.clone(),
                        status: StageStatus::Succeeded,
                        output: stage.output.clone().unwrap_or_default(),
                        errors: Vec::new(),
                        attempts,
                        duration_ms: stage.duration_ms.unwrap_or(0),
                        error: None,
                        skip_reason: None,
                    },
                );
            }
        }
        if record.definition_version != definition.version_hash {
            tracing::warn!(
                run_id = %record.run_id,
                definition = %definition.name,
                recorded = %record.definition_version,
                current = %definition.version_hash,
                "continuing a run with a changed definition"
            );
        }
        if !stages.is_empty() || record.is_finished() {
            record.attempts += 1;
        }
        record.definition_version = definition.version_hash.clone();
        record.last_error = None;
        record.completed_at = None;
        record.duration_ms = None;
        record.executed_nodes.clear();
        record.skipped_nodes.clear();
        record.status = RunStatus::Pending;
        record.started_at = Some(Utc::now());
        let next_seq = stages.iter().map(|s| s.seq + 1).max().unwrap_or(0);
        let mut state = RunState::new(record, next_seq);
        for stage in &stages {
            let n = state
                .prior_attempts
                .entry(stage.node_id.clone())
                .or_default();
            *n = (*n).max(stage.attempt);
        }
        self.drive(definition, state, done).await
    }

    async fn drive(
        &self,
        definition: &Definition,
        mut state: RunState,
        mut done: IndexMap<String, NodeResult>,
    ) -> Result<RunResult, EngineError> {
        let started = Instant::now();
        let _running = Running::start(&self.running, &state.record.run_id);
        self.save_run(&state.record)?;
        // At info, a run is one line: its finish (with its status). Its
        // start and each stage are debug: at a storm's rate, seven lines an
        // alert went past journald's rate limit, which then dropped the
        // errors too; every stage is in the store (`herald runs show`).
        tracing::debug!(
            run_id = %state.record.run_id,
            trace_id = %state.record.trace_id,
            definition = %definition.name,
            version = %definition.version_hash,
            "run started"
        );
        let mut failure: Option<String> = None;
        for node in definition.chain() {
            if let Some(previous) = done.shift_remove(&node.id) {
                // Succeeded before a resume: use its output, do not run it again.
                state.absorb(node, previous);
                continue;
            }
            if let Some(reason) = skip_reason(node, &state) {
                tracing::debug!(run_id = %state.record.run_id, node = %node.id, %reason, "stage skipped");
                let seq = state.take_seq();
                let stage = state.stage_record(node, seq, 1, StageStatus::Skipped);
                self.save_stage(&stage)?;
                state.record.skipped_nodes.push(node.id.clone());
                state.results.insert(
                    node.id.clone(),
                    NodeResult {
                        node_type: node.node_type.clone(),
                        status: StageStatus::Skipped,
                        output: Arc::default(),
                        errors: Vec::new(),
                        attempts: 0,
                        duration_ms: 0,
                        error: None,
                        skip_reason: Some(reason),
                    },
                );
                continue;
            }
            // Recorded as the node starts, so that a run looked at while a
            // slow stage runs names that stage, not the one before it.
            state.record.current_node = Some(node.id.clone());
            state.record.current_stage = Some(node.node_type.clone());
            self.save_run(&state.record)?;
            let result = self.execute_node(definition, node, &mut state).await?;
            let failed = result.failed();
            let error = result.error.clone();
            let interrupted = error
                .as_ref()
                .is_some_and(|e| e.kind == NodeErrorKind::Interrupted);
            state.absorb(node, result);
            if failed && (node.required || interrupted) {
                let e = error.unwrap_or_else(|| NodeError::unavailable("failed"));
                failure = Some(format!(
                    "node `{}` ({}) failed: {}",
                    node.id, node.node_type, e.message
                ));
                state.record.last_error = Some(RunError::from_node(&node.id, &e));
                break;
            }
        }

        let record = &mut state.record;
        if failure.is_some() {
            record.status = RunStatus::Failed;
        } else if record.status == RunStatus::Pending {
            record.status = RunStatus::Completed;
        }
        let now = Utc::now();
        record.completed_at = Some(now);
        let duration_ms = started.elapsed().as_millis() as u64;
        record.duration_ms = Some(duration_ms);
        self.save_run(record)?;
        if let Some(m) = &self.metrics {
            m.run_finished(
                &definition.name,
                record.status.as_str(),
                duration_ms as f64 / 1000.0,
            );
        }
        match &failure {
            None => tracing::info!(
                run_id = %record.run_id,
                trace_id = %record.trace_id,
                definition = %definition.name,
                status = %record.status,
                duration_ms,
                "run finished"
            ),
            Some(error) => tracing::warn!(
                run_id = %record.run_id,
                trace_id = %record.trace_id,
                definition = %definition.name,
                status = %record.status,
                duration_ms,
                %error,
                "run finished"
            ),
        }
        Ok(RunResult {
            trace_id: record.trace_id.clone(),
            run_id: record.run_id.clone(),
            definition: record.definition.clone(),
            definition_version: record.definition_version.clone(),
            status: record.status,
            incident_id: record.incident_id.clone(),
            executed_nodes: record.executed_nodes.clone(),
            skipped_nodes: record.skipped_nodes.clone(),
            node_results: state.results,
            duration_ms,
            error: failure,
        })
    }

    /// Runs one node: attempts, timeout, retries, a stage record per attempt.
    async fn execute_node(
        &self,
        definition: &Definition,
        node: &Node,
        state: &mut RunState,
    ) -> Result<NodeResult, EngineError> {
        let max_attempts = node.retries + 1;
        let mut errors = Vec::new();
        let node_started = Instant::now();
        // Attempt numbers continue across resumes, so stage keys never repeat.
        let offset = state.prior_attempts.get(&node.id).copied().unwrap_or(0);
        let mut attempt = 1;
        loop {
            let seq = state.take_seq();
            let mut stage = state.stage_record(node, seq, offset + attempt, StageStatus::Running);
            self.save_stage(&stage)?;
            let attempt_started = Instant::now();
            let outcome = {
                let earlier = state.earlier();
                let ctx = NodeContext {
                    run_id: &state.record.run_id,
                    trace_id: &state.record.trace_id,
                    definition: &definition.name,
                    node_id: &node.id,
                    attempt: offset + attempt,
                    source: state.record.source.as_deref(),
                    environment: state.record.environment.as_deref(),
                    payload: &state.record.payload,
                    incident_id: state.record.incident_id.as_deref(),
                    intake: state.record.intake.as_deref(),
                    earlier: &earlier,
                };
                // A panic in a node is a bug; it fails this stage (not
                // retried) instead of the task that runs the run: a queue
                // worker would be gone for good.
                let execution = AssertUnwindSafe(node.executor.execute_shared(&ctx)).catch_unwind();
                tokio::select! {
                    biased;
                    _ = self.interrupted() => Err(NodeError::interrupted(INTERRUPTED)),
                    timed = tokio::time::timeout(node.timeout, execution) => match timed {
                        Ok(Ok(outcome)) => outcome,
                        Ok(Err(panic)) => {
                            let message = panic_message(panic.as_ref());
                            tracing::error!(run_id = %state.record.run_id, node = %node.id, %message, "a node panicked; its stage failed");
                            Err(NodeError::internal(format!("the node panicked: {message}")))
                        }
                        Err(_) => Err(NodeError::timeout(format!(
                            "did not finish within {}",
                            crate::definition::duration::format_duration(node.timeout)
                        ))),
                    },
                }
            };
            let attempt_elapsed = attempt_started.elapsed();
            let attempt_ms = attempt_elapsed.as_millis() as u64;
            if let Some(m) = &self.metrics {
                let status = if outcome.is_ok() {
                    "succeeded"
                } else {
                    "failed"
                };
                m.stage_attempt(
                    &definition.name,
                    &node.id,
                    status,
                    attempt_elapsed.as_secs_f64(),
                );
            }
            stage.completed_at = Some(Utc::now());
            stage.duration_ms = Some(attempt_ms);
            match outcome {
                Ok(output) => {
                    stage.status = StageStatus::Succeeded;
                    stage.output = Some(output.clone());
                    self.save_stage(&stage)?;
                    if node.executor.has_side_effects()
                        && let Some(store) = &self.store
                    {
                        // Durable before going on: a crash from here on
                        // must not send this notification again.
                        store.flush_grouped().await?;
                    }
                    tracing::debug!(run_id = %state.record.run_id, node = %node.id, attempt, duration_ms = attempt_ms, "stage succeeded");
                    return Ok(NodeResult {
                        node_type: node.node_type.clone(),
                        status: StageStatus::Succeeded,
                        output,
                        errors,
                        attempts: attempt,
                        duration_ms: node_started.elapsed().as_millis() as u64,
                        error: None,
                        skip_reason: None,
                    });
                }
                Err(e) => {
                    errors.push(format!("attempt {attempt}: {e}"));
                    let retry = e.retryable() && attempt < max_attempts;
                    stage.status = if retry {
                        StageStatus::Retrying
                    } else {
                        StageStatus::Failed
                    };
                    stage.error = Some(e.clone());
                    self.save_stage(&stage)?;
                    tracing::warn!(run_id = %state.record.run_id, node = %node.id, attempt, error = %e, retry, "stage attempt failed");
                    if !retry {
                        return Ok(NodeResult {
                            node_type: node.node_type.clone(),
                            status: StageStatus::Failed,
                            output: Arc::default(),
                            errors,
                            attempts: attempt,
                            duration_ms: node_started.elapsed().as_millis() as u64,
                            error: Some(e),
                            skip_reason: None,
                        });
                    }
                    // At least as long as the peer asked, if it did.
                    let wait = backoff::delay_honouring(
                        definition.defaults.backoff,
                        attempt,
                        e.retry_after,
                    );
                    // Interrupted while waiting: the next attempt fails at once.
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.interrupted() => {}
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn save_run(&self, run: &PipelineRun) -> Result<(), StoreError> {
        match &self.store {
            Some(store) => store.put_run(run),
            None => Ok(()),
        }
    }

    fn save_stage(&self, stage: &StageExecution) -> Result<(), StoreError> {
        match &self.store {
            Some(store) => store.put_stage(stage),
            None => Ok(()),
        }
    }
}

/// Why a node should be skipped, if it should.
fn skip_reason(node: &Node, state: &RunState) -> Option<String> {
    if let Some(failed) = node.skip_if_errors.iter().find(|id| state.has_errors(id)) {
        return Some(format!("skip_if_errors: `{failed}` failed"));
    }
    match &node.skip_if_condition {
        Some(condition) if condition.evaluate(state) => {
            Some(format!("skip_if_condition: {condition}"))
        }
        _ => None,
    }
}

/// One run in progress.
struct RunState {
    record: PipelineRun,
    results: IndexMap<String, NodeResult>,
    next_seq: u32,
    /// Attempts recorded before a resume, by node id.
    prior_attempts: std::collections::HashMap<String, u32>,
}

impl RunState {
    fn new(record: PipelineRun, next_seq: u32) -> Self {
        RunState {
            record,
            results: IndexMap::new(),
            next_seq,
            prior_attempts: Default::default(),
        }
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn earlier(&self) -> Vec<EarlierNode<'_>> {
        self.results
            .iter()
            .filter(|(_, r)| r.status != StageStatus::Skipped)
            .map(|(id, r)| EarlierNode {
                id,
                node_type: &r.node_type,
                output: &r.output,
                failed: r.failed(),
            })
            .collect()
    }

    fn stage_record(
        &self,
        node: &Node,
        seq: u32,
        attempt: u32,
        status: StageStatus,
    ) -> StageExecution {
        let now = Utc::now();
        StageExecution {
            run_id: self.record.run_id.clone(),
            seq,
            node_id: node.id.clone(),
            stage: node.node_type.clone(),
            attempt,
            idempotency_key: StageExecution::key(&self.record.run_id, &node.id, attempt),
            status,
            started_at: now,
            completed_at: (status == StageStatus::Skipped).then_some(now),
            duration_ms: None,
            output: None,
            error: None,
        }
    }

    /// Takes a finished node's result into the run.
    fn absorb(&mut self, node: &Node, result: NodeResult) {
        self.record.executed_nodes.push(node.id.clone());
        if result.status == StageStatus::Succeeded {
            if let Some(reached) = RunStatus::reached_by(&node.node_type)
                && reached > self.record.status
            {
                self.record.status = reached;
            }
            if node.node_type == "ingest"
                && let Some(id) = result.output.get("incident_id").and_then(Value::as_str)
            {
                self.record.incident_id = Some(id.to_string());
            }
        }
        self.results.insert(node.id.clone(), result);
    }
}

impl NodeFacts for RunState {
    fn has_errors(&self, node: &str) -> bool {
        self.results.get(node).is_some_and(NodeResult::failed)
    }

    fn output(&self, node: &str) -> Option<&Value> {
        self.results
            .get(node)
            .filter(|r| r.status == StageStatus::Succeeded)
            .map(|r| &*r.output)
    }
}

/// The text a panic was raised with (`panic!("…")`, `assert!`, `unwrap`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_string()
    }
}
