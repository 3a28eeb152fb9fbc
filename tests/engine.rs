//! Engine semantics with a probe node type whose behaviour the definition
//! sets: follows `next`, skip rules, optional vs required failures, retries,
//! non-retryable errors, timeouts, outputs flowing on, honest statuses, resume.

mod support;

use herald::config::Config;
use herald::definition::{Definition, parse_definition};
use herald::engine::{Engine, EngineError, RunRequest};
use herald::nodes::{
    BoxFuture, ConfigIssue, HandlerRegistry, NodeContext, NodeError, NodeErrorKind, NodeExecutor,
    NodeHandler, Services,
};
use herald::payload::Payload;
use herald::store::{RunStatus, StageStatus, Store, StoreOptions};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::Receiver;

/// Calls per node id, and the order nodes executed in.
#[derive(Default)]
struct Log {
    calls: Mutex<HashMap<String, u32>>,
    order: Mutex<Vec<String>>,
}

impl Log {
    fn calls(&self, id: &str) -> u32 {
        self.calls.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    fn order(&self) -> Vec<String> {
        self.order.lock().unwrap().clone()
    }
}

/// `probe` config: `fail_times` (fail the first N calls), `retryable`,
/// `retry_after_s` (the wait a failure asks for), `sleep_ms`, `output`
/// (returned as `value`), `panic` (a bug in a node).
struct ProbeHandler(Arc<Log>);

struct Probe {
    log: Arc<Log>,
    fail_times: u32,
    retryable: bool,
    retry_after: Option<Duration>,
    sleep: Duration,
    output: Value,
    panic: bool,
}

impl NodeHandler for ProbeHandler {
    fn summary(&self) -> &'static str {
        "test probe"
    }
    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        Ok(Arc::new(Probe {
            log: self.0.clone(),
            fail_times: config["fail_times"].as_u64().unwrap_or(0) as u32,
            retryable: config["retryable"].as_bool().unwrap_or(true),
            retry_after: config["retry_after_s"].as_u64().map(Duration::from_secs),
            sleep: Duration::from_millis(config["sleep_ms"].as_u64().unwrap_or(0)),
            output: config.get("output").cloned().unwrap_or(Value::Null),
            panic: config["panic"].as_bool().unwrap_or(false),
        }))
    }
}

impl NodeExecutor for Probe {
    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let call = {
                let mut calls = self.log.calls.lock().unwrap();
                let c = calls.entry(ctx.node_id.to_string()).or_default();
                *c += 1;
                *c
            };
            self.log.order.lock().unwrap().push(ctx.node_id.to_string());
            tokio::time::sleep(self.sleep).await;
            assert!(!self.panic, "probe {} panics on purpose", ctx.node_id);
            if call <= self.fail_times {
                let message = format!("probe failure {call}");
                return Err(if self.retryable {
                    NodeError::unavailable(message).with_retry_after(self.retry_after)
                } else {
                    NodeError::invalid_input(message)
                });
            }
            let seen: serde_json::Map<String, Value> = ctx
                .earlier
                .iter()
                .map(|n| (n.id.to_string(), n.output.clone()))
                .collect();
            Ok(json!({"value": self.output, "call": call, "seen": seen,
                      "incident_id": ctx.incident_id, "attempt": ctx.attempt}))
        })
    }
}

struct World {
    log: Arc<Log>,
    handlers: HandlerRegistry,
}

fn world_with(config: &str) -> World {
    let log = Arc::new(Log::default());
    let config = Arc::new(Config::parse(config).unwrap());
    let mut handlers = HandlerRegistry::builtin(Arc::new(Services::new(config)));
    handlers.register("probe", Arc::new(ProbeHandler(log.clone())));
    World { log, handlers }
}

fn world() -> World {
    world_with("")
}

impl World {
    fn definition(&self, json: Value) -> Definition {
        let mut json = json;
        json["version"] = json!("1");
        json.as_object_mut()
            .unwrap()
            .entry("defaults")
            .or_insert(json!({"backoff": "1ms"}));
        parse_definition("t", "t.json", &json.to_string(), &self.handlers)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

async fn run(def: &Definition) -> herald::engine::RunResult {
    Engine::new(None)
        .run(def, RunRequest::default())
        .await
        .unwrap()
}

/// A node that panics (a bug) fails its stage and its run, with the panic
/// in the error, instead of taking down the task that ran it: a queue
/// worker would otherwise be gone for good, and the job, still queued,
/// would take another worker down at every start.
#[tokio::test]
async fn a_panicking_node_fails_its_run_and_nothing_else() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "first", "type": "probe", "next": "buggy"},
        {"id": "buggy", "type": "probe", "config": {"panic": true}, "retries": 2, "next": "after"},
        {"id": "after", "type": "probe"}]}));
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Failed, "{result:?}");
    let error = result.error.clone().unwrap_or_default();
    assert!(
        error.contains("buggy") && error.contains("panicked") && error.contains("on purpose"),
        "{error}"
    );
    assert_eq!(w.log.calls("buggy"), 1, "a panic is not retried");
    assert_eq!(w.log.calls("after"), 0);
    // The engine goes on running other runs.
    let fine = w.definition(json!({"nodes": [{"id": "only", "type": "probe"}]}));
    assert_eq!(run(&fine).await.status, RunStatus::Completed);
}

/// Runs `def` on `engine` with an interrupt, sends it once the probe
/// `node` has been called, and answers the run's result, which must come
/// within 30 s (the nodes and waits it cuts short are longer).
async fn interrupted_in(
    w: &World,
    def: Definition,
    engine: Engine,
    node: &str,
) -> herald::engine::RunResult {
    let (stop, interrupt) = tokio::sync::watch::channel(false);
    let engine = engine.with_interrupt(interrupt);
    let running = tokio::spawn(async move { engine.run(&def, RunRequest::default()).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while w.log.calls(node) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{node} was not called"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the interrupt did not stop the run")
        .unwrap()
        .unwrap()
}

/// Ctrl-C on a `herald run` that runs the definition itself: the node
/// running fails as `interrupted` (not retried, and ending the run though
/// it is optional), the run ends FAILED, recorded, and nothing after it
/// runs.
#[tokio::test]
async fn an_interrupt_stops_the_run_and_records_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "first", "type": "probe", "next": "slow"},
        {"id": "slow", "type": "probe", "config": {"sleep_ms": 60000}, "timeout": "120s",
         "retries": 2, "required": false, "next": "after"},
        {"id": "after", "type": "probe"}]}));
    let result = interrupted_in(&w, def, Engine::new(Some(store.clone())), "slow").await;

    assert_eq!(result.status, RunStatus::Failed, "{result:?}");
    assert_eq!(w.log.calls("slow"), 1, "an interrupted node is not retried");
    assert_eq!(w.log.calls("after"), 0);
    let run = store.get_run(&result.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(
        run.completed_at.is_some(),
        "finished, so no start continues it"
    );
    let error = run.last_error.unwrap();
    assert_eq!(
        (error.node_id.as_str(), error.error_type.as_str()),
        ("slow", "interrupted")
    );
    let stages = store.stages(&result.run_id).unwrap();
    let last = stages.last().unwrap();
    assert_eq!(
        (last.node_id.as_str(), last.status),
        ("slow", StageStatus::Failed)
    );
    assert_eq!(
        last.error.as_ref().unwrap().kind,
        NodeErrorKind::Interrupted
    );
}

/// An interrupt during the wait before a retry ends the run then, not
/// after the wait (the minute the failure asked for here).
#[tokio::test]
async fn an_interrupt_cuts_the_wait_before_a_retry_short() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "down", "type": "probe", "config": {"fail_times": 100, "retry_after_s": 60},
         "retries": 3}]}));
    let result = interrupted_in(&w, def, Engine::new(None), "down").await;
    assert_eq!(result.status, RunStatus::Failed);
    assert!(result.error.unwrap().contains("interrupted"));
    assert_eq!(w.log.calls("down"), 1, "no attempt after the interrupt");
}

#[tokio::test]
async fn follows_next_not_file_order() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "start", "type": "probe", "next": "c"},
        {"id": "b", "type": "probe"},
        {"id": "c", "type": "probe", "next": "b"}]}));
    let result = run(&def).await;
    assert_eq!(w.log.order(), ["start", "c", "b"]);
    assert_eq!(result.executed_nodes, ["start", "c", "b"]);
    let keys: Vec<&String> = result.node_results.keys().collect();
    assert_eq!(keys, ["start", "c", "b"]);
    assert_eq!(result.status, RunStatus::Completed);
}

#[tokio::test]
async fn skip_if_errors_skips_and_the_chain_goes_on() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "a", "type": "probe", "config": {"fail_times": 9, "retryable": false}, "required": false, "next": "b"},
        {"id": "b", "type": "probe", "skip_if_errors": ["a"], "next": "c"},
        {"id": "c", "type": "probe"}]}));
    let result = run(&def).await;
    assert_eq!(result.skipped_nodes, ["b"]);
    assert_eq!(result.executed_nodes, ["a", "c"]);
    assert_eq!(w.log.calls("b"), 0);
    assert_eq!(w.log.calls("c"), 1, "a skipped node's next is followed");
    assert_eq!(result.node_results["b"].status, StageStatus::Skipped);
    assert_eq!(result.node_results["a"].status, StageStatus::Failed);
    assert_ne!(
        result.status,
        RunStatus::Failed,
        "a failed optional node does not fail the run"
    );
    assert!(result.error.is_none());
}

#[tokio::test]
async fn skip_if_condition_compares_earlier_output() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "a", "type": "probe", "config": {"output": {"level": 5, "state": "WARN"}}, "next": "b"},
        {"id": "b", "type": "probe", "skip_if_condition": "a.value.level > 3", "next": "c"},
        {"id": "c", "type": "probe", "skip_if_condition": "a.value.state == 'OK'", "next": "d"},
        {"id": "d", "type": "probe", "skip_if_condition": "a.has_errors"}]}));
    let result = run(&def).await;
    assert_eq!(result.skipped_nodes, ["b"]);
    assert_eq!(result.executed_nodes, ["a", "c", "d"]);
}

#[tokio::test]
async fn required_failure_stops_the_run() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "a", "type": "probe", "next": "b"},
        {"id": "b", "type": "probe", "config": {"fail_times": 9, "retryable": false}, "next": "c"},
        {"id": "c", "type": "probe"}]}));
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(w.log.calls("c"), 0);
    assert!(!result.node_results.contains_key("c"));
    let error = result.error.unwrap();
    assert!(error.contains("node `b`"), "{error}");
    assert!(error.contains("probe failure 1"), "{error}");
}

#[tokio::test]
async fn retryable_errors_are_retried_until_success() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "flaky", "type": "probe", "config": {"fail_times": 2}, "retries": 3}]}));
    let result = run(&def).await;
    let node = &result.node_results["flaky"];
    assert_eq!(node.status, StageStatus::Succeeded);
    assert_eq!(node.attempts, 3);
    assert_eq!(node.errors.len(), 2);
    assert_eq!(
        node.output["attempt"], 3,
        "the executor sees its attempt number"
    );
    assert_eq!(w.log.calls("flaky"), 3);
}

#[tokio::test]
async fn default_max_retries_means_four_attempts() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "down", "type": "probe", "config": {"fail_times": 100}}]}));
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.node_results["down"].attempts, 4);
    assert_eq!(w.log.calls("down"), 4);
}

#[tokio::test]
async fn non_retryable_error_fails_at_once() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "bad", "type": "probe", "config": {"fail_times": 1, "retryable": false}, "retries": 5}]}));
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.node_results["bad"].attempts, 1);
    assert_eq!(w.log.calls("bad"), 1);
}

#[tokio::test]
async fn timeout_fails_the_attempt_and_is_retried() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "slow", "type": "probe", "config": {"sleep_ms": 5000}, "timeout": "50ms", "retries": 1}]}));
    let result = run(&def).await;
    let node = &result.node_results["slow"];
    assert_eq!(node.status, StageStatus::Failed);
    assert_eq!(node.attempts, 2);
    assert!(
        node.errors[0].contains("did not finish within 50ms"),
        "{:?}",
        node.errors
    );
    assert!(result.duration_ms < 5000, "the slow attempt was cut off");
}

#[tokio::test]
async fn outputs_are_visible_to_later_nodes_and_config_is_untouched() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "a", "type": "probe", "config": {"output": {"x": 1}}, "next": "b"},
        {"id": "b", "type": "transform", "config": {"mapping": {"copied": "a.value.x"}}, "next": "c"},
        {"id": "c", "type": "probe"}]}));
    let before: Vec<Value> = def.nodes.iter().map(|n| n.config.clone()).collect();
    let result = run(&def).await;
    assert_eq!(*result.node_results["b"].output, json!({"copied": 1}));
    let seen = &result.node_results["c"].output["seen"];
    assert_eq!(seen["a"]["value"], json!({"x": 1}));
    assert_eq!(seen["b"], json!({"copied": 1}));
    let after: Vec<Value> = def.nodes.iter().map(|n| n.config.clone()).collect();
    assert_eq!(before, after);
    // And a second run sees a fresh context, not the first run's outputs.
    let again = run(&def).await;
    assert_eq!(
        again.node_results["c"].output["seen"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn ingest_incident_id_flows_to_the_run() {
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "in", "type": "ingest", "next": "p"},
        {"id": "p", "type": "probe"}]}));
    let payload = Payload::from_value(support::fixture_json(
        "alertmanager-0.25-webhook-firing.json",
    ));
    let result = Engine::new(None)
        .run(
            &def,
            RunRequest {
                payload,
                ..RunRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(result.status, RunStatus::Ingested);
    let incident = result.incident_id.clone().expect("incident id");
    assert_eq!(
        result.node_results["in"].output["incident_id"],
        json!(incident)
    );
    assert_eq!(
        result.node_results["p"].output["incident_id"],
        json!(incident)
    );
}

#[tokio::test]
async fn ingest_without_payload_fails_without_retrying() {
    let w = world();
    let def = w.definition(json!({"nodes": [{"id": "in", "type": "ingest"}]}));
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.node_results["in"].attempts, 1);
    assert!(result.error.unwrap().contains("no payload"));
}

fn webhook_world(receiver: &Receiver) -> World {
    world_with(&format!(
        "[notify.webhook.ops]\nurl = \"{}\"\n",
        receiver.url("/hook")
    ))
}

#[tokio::test]
async fn notified_only_when_notify_really_succeeded() {
    let receiver = Receiver::start().await;
    let w = webhook_world(&receiver);
    let def = w.definition(json!({"nodes": [
        {"id": "in", "type": "ingest", "next": "notify"},
        {"id": "notify", "type": "notify", "config": {"driver": "webhook", "channel": "ops"},
         "required": false, "retries": 0}]}));
    let payload = Payload::from_value(support::fixture_json("seed-generic.json"));
    let engine = Engine::new(None);

    receiver.respond_with(&[500]);
    let failed = engine
        .run(
            &def,
            RunRequest {
                payload: payload.clone(),
                ..RunRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        failed.status,
        RunStatus::Ingested,
        "a failed notify is not NOTIFIED"
    );
    assert_eq!(failed.node_results["notify"].status, StageStatus::Failed);

    let ok = engine
        .run(
            &def,
            RunRequest {
                payload,
                ..RunRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(ok.status, RunStatus::Notified);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let last = &got[1];
    assert_eq!(last.path, "/hook");
    assert_eq!(last.body["title"], "Test Alert");
    assert_eq!(last.body["run_id"], json!(ok.run_id));
    assert_eq!(
        last.header("idempotency-key"),
        Some(format!("{}:notify", ok.run_id).as_str())
    );
}

#[tokio::test]
async fn webhook_5xx_is_retried_with_the_same_idempotency_key_4xx_is_not() {
    let receiver = Receiver::start().await;
    let w = webhook_world(&receiver);
    let def = w.definition(json!({"nodes": [
        {"id": "notify", "type": "notify", "config": {"driver": "webhook", "channel": "ops"}, "retries": 2}]}));
    receiver.respond_with(&[503, 200]);
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Notified);
    assert_eq!(result.node_results["notify"].attempts, 2);
    let keys: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);

    receiver.respond_with(&[404]);
    let rejected = run(&def).await;
    assert_eq!(rejected.status, RunStatus::Failed);
    assert_eq!(
        rejected.node_results["notify"].attempts, 1,
        "a 4xx is not retried"
    );
}

/// Slack and PagerDuty answer a burst with 429 and `Retry-After`: the retry
/// waits at least that long, not the definition's 1 ms backoff.
#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_the_wait_asked_for() {
    let receiver = Receiver::start().await;
    let w = webhook_world(&receiver);
    let def = w.definition(json!({"nodes": [
        {"id": "notify", "type": "notify", "config": {"driver": "webhook", "channel": "ops"}, "retries": 2}]}));
    receiver.respond_with_headers(429, &[("retry-after", "2")]);
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Notified);
    let notify = &result.node_results["notify"];
    assert_eq!(notify.attempts, 2);
    assert!(
        notify.errors[0].contains("429") && notify.errors[0].contains("Retry-After: 2s"),
        "{:?}",
        notify.errors
    );
    let got = receiver.received();
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}, asked for 2 s"
    );
}

#[tokio::test]
async fn webhook_to_a_closed_port_fails_retryably() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = world_with(&format!(
        "[notify.webhook.ops]\nurl = \"http://127.0.0.1:{port}/\"\n"
    ));
    let def = w.definition(json!({"nodes": [
        {"id": "notify", "type": "notify", "config": {"driver": "webhook", "channel": "ops"}, "retries": 1}]}));
    let result = run(&def).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.node_results["notify"].attempts, 2);
    let error = result.error.unwrap();
    assert!(error.contains("could not connect"), "{error}");
    assert!(
        !error.contains(&port.to_string()),
        "the URL is not echoed: {error}"
    );
}

#[tokio::test]
async fn runs_and_stages_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "a", "type": "probe", "config": {"fail_times": 1}, "next": "b"},
        {"id": "b", "type": "probe", "skip_if_condition": "a.call == 2"}]}));
    let engine = Engine::new(Some(store.clone()));
    let result = engine
        .run(
            &def,
            RunRequest {
                source: Some("test".into()),
                payload: Payload::from_value(json!({"k": 1})),
                ..RunRequest::default()
            },
        )
        .await
        .unwrap();
    let run = store.get_run(&result.run_id).unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.source.as_deref(), Some("test"));
    assert_eq!(run.payload.value(), &json!({"k": 1}));
    assert_eq!(run.definition_version, def.version_hash);
    assert!(run.completed_at.is_some());
    let stages = store.stages(&result.run_id).unwrap();
    let summary: Vec<(String, u32, StageStatus)> = stages
        .iter()
        .map(|s| (s.node_id.clone(), s.attempt, s.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("a".to_string(), 1, StageStatus::Retrying),
            ("a".to_string(), 2, StageStatus::Succeeded),
            ("b".to_string(), 1, StageStatus::Skipped),
        ]
    );
    assert_eq!(stages[1].idempotency_key, format!("{}:a:2", result.run_id));
    assert_eq!(stages[1].output.as_ref().unwrap()["call"], 2);
    assert!(stages[0].error.is_some());
}

#[tokio::test]
async fn resume_repeats_nothing_that_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let w = world();
    let def = w.definition(json!({"nodes": [
        {"id": "a", "type": "probe", "config": {"output": "from-a"}, "next": "b"},
        {"id": "b", "type": "probe", "config": {"fail_times": 1, "retryable": false}, "next": "c"},
        {"id": "c", "type": "probe"}]}));
    let engine = Engine::new(Some(store.clone()));
    let first = engine.run(&def, RunRequest::default()).await.unwrap();
    assert_eq!(first.status, RunStatus::Failed);
    assert_eq!(
        store
            .get_run(&first.run_id)
            .unwrap()
            .unwrap()
            .last_error
            .unwrap()
            .node_id,
        "b"
    );

    let resumed = engine.resume(&def, &first.run_id).await.unwrap();
    assert_eq!(resumed.run_id, first.run_id);
    assert_eq!(resumed.status, RunStatus::Completed);
    assert_eq!(
        w.log.calls("a"),
        1,
        "a succeeded before and is not run again"
    );
    assert_eq!(w.log.calls("b"), 2);
    assert_eq!(w.log.calls("c"), 1);
    // c still sees a's recorded output.
    assert_eq!(
        resumed.node_results["c"].output["seen"]["a"]["value"],
        "from-a"
    );
    let run = store.get_run(&first.run_id).unwrap().unwrap();
    assert_eq!(run.attempts, 2);
    assert!(run.last_error.is_none());
    let keys: Vec<String> = store
        .stages(&first.run_id)
        .unwrap()
        .iter()
        .map(|s| s.idempotency_key.clone())
        .collect();
    let unique: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(
        unique.len(),
        keys.len(),
        "no stage key written twice: {keys:?}"
    );

    match engine.resume(&def, &first.run_id).await {
        Err(EngineError::NotResumable { why, .. }) => assert!(why.contains("COMPLETED"), "{why}"),
        other => panic!("expected NotResumable, got {other:?}"),
    }
    assert!(matches!(
        engine.resume(&def, "01NOPE").await,
        Err(EngineError::RunNotFound(_))
    ));
}
