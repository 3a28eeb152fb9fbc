//! Node types: the [`NodeHandler`] trait, the registry of handlers by type
//! name, and one module per built-in type.
//!
//! A handler is asked twice in a node's life. At load time, [`NodeHandler::build`]
//! checks the node's `config` and returns an executor holding the parsed
//! config, so a bad config is a validation error with a path, never a run-time
//! surprise. At run time, [`NodeExecutor::execute`] gets a read-only
//! [`NodeContext`] (the payload, the earlier nodes' results) and returns an
//! output or a typed [`NodeError`] that says whether a retry can help.
//! Executors never touch the store or the HTTP server.

pub mod check;
pub mod context;
pub mod ingest;
pub mod intelligence;
pub mod notify;
pub mod transform;

use crate::config::{ChannelCas, Config, ConfigError};
use crate::host::HostSampler;
use crate::payload::Payload;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future, so that executors can be stored as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Checks a node type's config at load time and builds its executor.
pub trait NodeHandler: Send + Sync {
    /// One line for `herald definitions --types` and error messages.
    fn summary(&self) -> &'static str;

    /// Validates `config` (always a JSON object) and builds the executor.
    /// Issue paths are relative to `config` (`provider`, `include[2]`).
    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>>;
}

/// The built, ready-to-run form of one node's config.
pub trait NodeExecutor: Send + Sync {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>>;

    /// What the engine calls: the output behind an `Arc`, so an executor
    /// whose output is already built (the context node's rendering of a
    /// snapshot) can hand it out without copying it.
    fn execute_shared<'a>(
        &'a self,
        ctx: &'a NodeContext<'a>,
    ) -> BoxFuture<'a, Result<Arc<Value>, NodeError>> {
        Box::pin(async move { self.execute(ctx).await.map(Arc::new) })
    }

    /// Whether the node acts on the world (sends a notification). The
    /// engine makes such a stage's SUCCEEDED record durable at once, so a
    /// crash right after cannot make a resumed run repeat it.
    fn has_side_effects(&self) -> bool {
        false
    }

    /// Other nodes this one reads (e.g. transform's `source_node`), with the
    /// config path that names them, so the loader can check they exist and
    /// run earlier.
    fn references(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A problem in a node's config, found at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Path relative to the node's `config`; empty for the config itself.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Why a node failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct NodeError {
    pub kind: NodeErrorKind,
    pub message: String,
    /// How long the peer asked to be left alone before a retry (an HTTP
    /// `Retry-After`), if it said; the engine waits at least that long.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeErrorKind {
    /// The input cannot be processed; retrying gives the same answer.
    InvalidInput,
    /// A dependency (network peer, host) failed in a way that may pass.
    Unavailable,
    /// The node did not finish within its timeout.
    Timeout,
    /// A peer refused the request for good (4xx, bad credentials).
    Rejected,
    /// A bug in herald (the node panicked); retrying would meet it again.
    Internal,
    /// The run was stopped from outside while the node ran (Ctrl-C on a
    /// `herald run` that runs it itself); it ends the run, optional node or not.
    Interrupted,
}

impl NodeError {
    pub fn invalid_input(message: impl Into<String>) -> Self {
        NodeError {
            kind: NodeErrorKind::InvalidInput,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        NodeError {
            kind: NodeErrorKind::Unavailable,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn rejected(message: impl Into<String>) -> Self {
        NodeError {
            kind: NodeErrorKind::Rejected,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        NodeError {
            kind: NodeErrorKind::Timeout,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        NodeError {
            kind: NodeErrorKind::Internal,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        NodeError {
            kind: NodeErrorKind::Interrupted,
            message: message.into(),
            retry_after: None,
        }
    }
    /// The same error, with the wait the peer asked for.
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }
    pub fn retryable(&self) -> bool {
        matches!(
            self.kind,
            NodeErrorKind::Unavailable | NodeErrorKind::Timeout
        )
    }
}

/// What a run knows when a node executes. Read-only: an executor cannot change
/// the run, only return its output.
pub struct NodeContext<'a> {
    pub run_id: &'a str,
    pub trace_id: &'a str,
    pub definition: &'a str,
    pub node_id: &'a str,
    pub attempt: u32,
    pub source: Option<&'a str>,
    pub environment: Option<&'a str>,
    /// The inbound payload (none for a scheduled or manual run without one).
    pub payload: &'a Payload,
    pub incident_id: Option<&'a str>,
    /// What the payload's alerts did to incidents on arrival, if they were
    /// applied (webhooks and the pipeline endpoints do; a bare `herald run`
    /// does not).
    pub intake: Option<&'a Value>,
    /// Results of the nodes that ran before this one, in execution order.
    pub earlier: &'a [EarlierNode<'a>],
}

/// One earlier node's result as seen by later nodes.
pub struct EarlierNode<'a> {
    pub id: &'a str,
    pub node_type: &'a str,
    pub output: &'a Value,
    pub failed: bool,
}

impl NodeContext<'_> {
    /// The output of the node with this id, if it ran.
    pub fn output(&self, id: &str) -> Option<&Value> {
        self.earlier
            .iter()
            .rev()
            .find(|n| n.id == id && !n.failed)
            .map(|n| n.output)
    }

    /// The output of the most recent successful node of this type.
    pub fn latest_of_type(&self, node_type: &str) -> Option<&Value> {
        self.earlier
            .iter()
            .rev()
            .find(|n| n.node_type == node_type && !n.failed)
            .map(|n| n.output)
    }

    /// The key a receiver can use to drop a repeated side effect: `run_id:node_id`,
    /// stable across retries and resumes (unlike the per-attempt stage key).
    pub fn delivery_key(&self) -> String {
        format!("{}:{}", self.run_id, self.node_id)
    }
}

/// What handlers share: the host sampler, HTTP clients, the notify channels.
pub struct Services {
    pub host: Arc<HostSampler>,
    /// The client for every outbound request, trusting the public roots.
    pub http: reqwest::Client,
    /// Clients for the notify channels with a `ca_file`: they trust its
    /// CAs as well.
    channel_http: BTreeMap<String, reqwest::Client>,
    pub config: Arc<Config>,
}

impl Services {
    /// Services with a host sampler of their own; a notify channel's
    /// `ca_file` that cannot be used is logged and left out (tests,
    /// benches). The daemon and the CLI use [`Services::checked`].
    pub fn new(config: Arc<Config>) -> Self {
        let cas = config.channel_cas().unwrap_or_else(|e| {
            tracing::error!("{e}");
            ChannelCas::new()
        });
        Self::with_host(Arc::new(HostSampler::new()), config, &cas)
    }

    /// Services with a host sampler of their own, or the error of a notify
    /// channel's `ca_file`.
    pub fn checked(config: Arc<Config>) -> Result<Self, ConfigError> {
        let cas = config.channel_cas()?;
        Ok(Self::with_host(Arc::new(HostSampler::new()), config, &cas))
    }

    /// Services sharing a running host sampler (a config reload).
    pub fn with_host(host: Arc<HostSampler>, config: Arc<Config>, cas: &ChannelCas) -> Self {
        let channel_http = cas
            .iter()
            .map(|(name, pem)| (name.clone(), http_client(Some(pem))))
            .collect();
        Services {
            host,
            http: http_client(None),
            channel_http,
            config,
        }
    }

    /// The client for notify channel `name`.
    pub fn channel_http(&self, name: &str) -> &reqwest::Client {
        self.channel_http.get(name).unwrap_or(&self.http)
    }
}

/// An HTTP client that says it is herald, trusting `extra_cas` (PEM) as
/// well as the public roots.
fn http_client(extra_cas: Option<&[u8]>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        // A 301 or 302 would be followed as a GET without the body, and a
        // 200 for that taken as delivered: a notify step sees the redirect
        // itself and fails, saying so.
        .redirect(reqwest::redirect::Policy::none());
    // Checked by Config::channel_cas before it got here.
    for cert in extra_cas
        .and_then(|pem| reqwest::Certificate::from_pem_bundle(pem).ok())
        .unwrap_or_default()
    {
        builder = builder.add_root_certificate(cert);
    }
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot build an HTTP client with these settings; using the defaults");
        reqwest::Client::new()
    })
}

/// Handlers by node type name.
#[derive(Clone)]
pub struct HandlerRegistry {
    handlers: BTreeMap<String, Arc<dyn NodeHandler>>,
}

impl HandlerRegistry {
    /// An empty registry, for tests that bring their own handlers.
    pub fn empty() -> Self {
        HandlerRegistry {
            handlers: BTreeMap::new(),
        }
    }

    /// The six built-in node types.
    pub fn builtin(services: Arc<Services>) -> Self {
        let mut registry = Self::empty();
        registry.register("ingest", Arc::new(ingest::IngestHandler));
        registry.register(
            "context",
            Arc::new(context::ContextHandler::new(services.host.clone())),
        );
        registry.register(
            "check",
            Arc::new(check::CheckHandler::new(
                services.host.clone(),
                services.config.host.plugin_dirs.clone(),
            )),
        );
        registry.register("intelligence", Arc::new(intelligence::IntelligenceHandler));
        registry.register("notify", Arc::new(notify::NotifyHandler::new(services)));
        registry.register("transform", Arc::new(transform::TransformHandler));
        registry
    }

    pub fn register(&mut self, node_type: &str, handler: Arc<dyn NodeHandler>) {
        self.handlers.insert(node_type.to_string(), handler);
    }

    pub fn get(&self, node_type: &str) -> Option<&Arc<dyn NodeHandler>> {
        self.handlers.get(node_type)
    }

    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}

/// Helpers shared by handlers to read a config object strictly.
pub(crate) mod config_reader {
    use super::ConfigIssue;
    use serde_json::{Map, Value};

    /// Reports every key of `config` not in `known`, with a suggestion.
    pub fn unknown_keys(
        config: &Map<String, Value>,
        known: &[&str],
        issues: &mut Vec<ConfigIssue>,
    ) {
        for key in config.keys() {
            if !known.contains(&key.as_str()) {
                issues.push(ConfigIssue::new(
                    key.clone(),
                    crate::definition::unknown_key_message(key, known),
                ));
            }
        }
    }

    pub fn string(
        config: &Map<String, Value>,
        key: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<String> {
        match config.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                issues.push(ConfigIssue::new(
                    key,
                    format!(
                        "must be a string, found {}",
                        crate::definition::kind_of(other)
                    ),
                ));
                None
            }
        }
    }

    pub fn bool(
        config: &Map<String, Value>,
        key: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<bool> {
        match config.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                issues.push(ConfigIssue::new(
                    key,
                    format!(
                        "must be true or false, found {}",
                        crate::definition::kind_of(other)
                    ),
                ));
                None
            }
        }
    }

    pub fn string_list(
        config: &Map<String, Value>,
        key: &str,
        issues: &mut Vec<ConfigIssue>,
    ) -> Option<Vec<String>> {
        match config.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => issues.push(ConfigIssue::new(
                            format!("{key}[{i}]"),
                            format!(
                                "must be a string, found {}",
                                crate::definition::kind_of(other)
                            ),
                        )),
                    }
                }
                Some(out)
            }
            other => {
                issues.push(ConfigIssue::new(
                    key,
                    format!(
                        "must be a list of strings, found {}",
                        crate::definition::kind_of(other)
                    ),
                ));
                None
            }
        }
    }
}
