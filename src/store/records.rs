//! The records herald keeps: one [`PipelineRun`] per run and one
//! [`StageExecution`] per node attempt — the seed app's two tables.

use crate::nodes::NodeError;
use crate::payload::Payload;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a run stands. The progress values are the seed app's, in order;
/// a run's status only moves forward, and `NOTIFIED` means a notify node
/// really succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    Pending,
    Ingested,
    Checked,
    Analyzed,
    Notified,
    /// Finished without failing but without reaching a progress stage
    /// (e.g. a transform-only definition). Not in the seed app.
    Completed,
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 7] = [
        RunStatus::Pending,
        RunStatus::Ingested,
        RunStatus::Checked,
        RunStatus::Analyzed,
        RunStatus::Notified,
        RunStatus::Completed,
        RunStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::Ingested => "INGESTED",
            RunStatus::Checked => "CHECKED",
            RunStatus::Analyzed => "ANALYZED",
            RunStatus::Notified => "NOTIFIED",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<RunStatus> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// The status a succeeded node of this type moves a run to.
    pub fn reached_by(node_type: &str) -> Option<RunStatus> {
        match node_type {
            "ingest" => Some(RunStatus::Ingested),
            "context" | "check" => Some(RunStatus::Checked),
            "intelligence" => Some(RunStatus::Analyzed),
            "notify" => Some(RunStatus::Notified),
            _ => None,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StageStatus {
    Pending,
    Running,
    /// This attempt failed and another is scheduled.
    Retrying,
    Succeeded,
    Failed,
    Skipped,
}

impl StageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "PENDING",
            StageStatus::Running => "RUNNING",
            StageStatus::Retrying => "RETRYING",
            StageStatus::Succeeded => "SUCCEEDED",
            StageStatus::Failed => "FAILED",
            StageStatus::Skipped => "SKIPPED",
        }
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunError {
    /// `invalid_input`, `unavailable`, `timeout`, `rejected`.
    pub error_type: String,
    pub message: String,
    pub retryable: bool,
    /// The node that failed.
    pub node_id: String,
}

impl RunError {
    pub fn from_node(node_id: &str, e: &NodeError) -> Self {
        RunError {
            error_type: serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            message: e.message.clone(),
            retryable: e.retryable(),
            node_id: node_id.to_string(),
        }
    }
}

/// One run of one definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRun {
    pub run_id: String,
    pub trace_id: String,
    pub definition: String,
    pub definition_version: String,
    pub source: Option<String>,
    pub environment: Option<String>,
    pub status: RunStatus,
    /// Type of the node running or last run (the seed's "stage").
    pub current_stage: Option<String>,
    pub current_node: Option<String>,
    pub incident_id: Option<String>,
    /// What the payload's alerts did to incidents on arrival. Stored apart
    /// from the record, like the payload.
    #[serde(skip)]
    pub intake: Option<std::sync::Arc<Value>>,
    /// How many times the run was started (1, plus one per resume).
    pub attempts: u32,
    /// The definition's default retries per node.
    pub max_retries: u32,
    pub last_error: Option<RunError>,
    pub executed_nodes: Vec<String>,
    pub skipped_nodes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    /// The inbound payload, as received. Stored apart from the record (it
    /// can be large and the record is rewritten at every stage); listings
    /// leave it empty.
    #[serde(skip)]
    pub payload: Payload,
}

impl PipelineRun {
    pub fn is_finished(&self) -> bool {
        self.completed_at.is_some()
    }
}

/// One attempt of one node in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageExecution {
    pub run_id: String,
    /// Order of this record within the run (attempts included).
    pub seq: u32,
    pub node_id: String,
    /// The node type (the seed's "stage").
    pub stage: String,
    /// 1-based.
    pub attempt: u32,
    /// `run_id:node_id:attempt`.
    pub idempotency_key: String,
    pub status: StageStatus,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub output: Option<std::sync::Arc<Value>>,
    pub error: Option<NodeError>,
}

impl StageExecution {
    pub fn key(run_id: &str, node_id: &str, attempt: u32) -> String {
        format!("{run_id}:{node_id}:{attempt}")
    }
}

/// A run waiting for a worker, kept until the run finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub run_id: String,
    pub kind: JobKind,
    pub enqueued_at: DateTime<Utc>,
    /// How many times a worker began this job after it was left by an
    /// earlier herald process (recorded durably before the run goes on).
    /// A run that is going each time herald dies may be what kills it; the
    /// queue gives up on it after a few
    /// ([`crate::engine::queue::MAX_RECOVERED_STARTS`]).
    #[serde(default)]
    pub recovered_starts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A new run (or one interrupted before it finished).
    Run,
    /// A FAILED run to resume.
    Resume,
}
