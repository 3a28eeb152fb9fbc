//! What a run returns: the JSON of `herald run --json` and of the sync HTTP
//! endpoints.

use crate::nodes::NodeError;
use crate::store::{RunStatus, StageStatus};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub trace_id: String,
    pub run_id: String,
    pub definition: String,
    pub definition_version: String,
    pub status: RunStatus,
    pub incident_id: Option<String>,
    /// Nodes that ran (succeeded or failed), in order.
    pub executed_nodes: Vec<String>,
    pub skipped_nodes: Vec<String>,
    /// Every node reached, in execution order.
    pub node_results: IndexMap<String, NodeResult>,
    pub duration_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeResult {
    pub node_type: String,
    pub status: StageStatus,
    /// Shared: later nodes, the stage record and the result read one copy.
    pub output: Arc<Value>,
    /// One line per failed attempt.
    pub errors: Vec<String>,
    pub attempts: u32,
    pub duration_ms: u64,
    /// The final error of a failed node.
    #[serde(skip)]
    pub error: Option<NodeError>,
    /// Why the node was skipped.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub skip_reason: Option<String>,
}

impl NodeResult {
    pub fn failed(&self) -> bool {
        self.status == StageStatus::Failed
    }
}
