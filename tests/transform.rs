//! `transform` paths: seed semantics (path against the source node's whole
//! output, or starting with its id/type), list indexes, literals, defaults,
//! missing → null, and node-rooted paths without a source node.

use herald::config::Config;
use herald::definition::parse_definition;
use herald::engine::{Engine, RunRequest};
use herald::nodes::{HandlerRegistry, Services};
use serde_json::{Value, json};
use std::sync::Arc;

async fn transform(mapping: Value, extra: Value, payload: Value) -> Value {
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let mut config = json!({"mapping": mapping});
    if let Some(obj) = extra.as_object() {
        for (k, v) in obj {
            config[k] = v.clone();
        }
    }
    let def = json!({"version": "1", "nodes": [
        {"id": "in", "type": "ingest", "next": "t"},
        {"id": "t", "type": "transform", "config": config}]});
    let def = parse_definition("t", "t.json", &def.to_string(), &handlers)
        .unwrap_or_else(|e| panic!("{e}"));
    let result = Engine::new(None)
        .run(
            &def,
            RunRequest {
                payload: herald::payload::Payload::from_value(payload),
                ..RunRequest::default()
            },
        )
        .await
        .unwrap();
    assert!(result.error.is_none(), "{:?}", result.error);
    (*result.node_results["t"].output).clone()
}

fn alert_payload() -> Value {
    json!({"name": "HighCPU", "severity": "critical", "labels": {"instance": "web-1"}, "cpu": 97})
}

#[tokio::test]
async fn seed_paths_resolve_against_the_source_output() {
    let out = transform(
        json!({
            "count": "alert_count",
            "count_via_id": "in.alert_count",
            "count_via_type": "ingest.alert_count",
            "first_name": "alerts.0.name",
            "instance": "alerts.0.labels.instance",
        }),
        json!({"source_node": "in"}),
        alert_payload(),
    )
    .await;
    assert_eq!(
        out,
        json!({"count": 1, "count_via_id": 1, "count_via_type": 1, "first_name": "HighCPU", "instance": "web-1"})
    );
}

#[tokio::test]
async fn missing_is_null_unless_a_default_is_given() {
    let out = transform(
        json!({"a": "alerts.5.name", "b": "nothing.here", "c": "alerts.0.name.deeper"}),
        json!({"source_node": "in", "defaults": {"b": "n/a"}}),
        alert_payload(),
    )
    .await;
    assert_eq!(out, json!({"a": null, "b": "n/a", "c": null}));
}

#[tokio::test]
async fn literals_are_taken_as_written() {
    let out = transform(
        json!({"kind": {"literal": "host"}, "n": 3, "flag": true, "obj": {"k": "v"}}),
        json!({"source_node": "in"}),
        alert_payload(),
    )
    .await;
    assert_eq!(
        out,
        json!({"kind": "host", "n": 3, "flag": true, "obj": {"k": "v"}})
    );
}

#[tokio::test]
async fn without_source_node_paths_start_with_a_node_id_or_payload() {
    let out = transform(
        json!({"sev": "in.alerts.0.severity", "cpu": "payload.cpu", "who": "payload.labels.instance"}),
        json!({}),
        alert_payload(),
    )
    .await;
    assert_eq!(out, json!({"sev": "critical", "cpu": 97, "who": "web-1"}));
}

#[test]
fn bad_mappings_are_validation_errors() {
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let def = json!({"version": "1", "nodes": [
        {"id": "t", "type": "transform", "config": {"mapping": {"a": "", "b": "x..y"}, "defaults": 3, "extra": 1}}]});
    let err = parse_definition("t", "t.json", &def.to_string(), &handlers)
        .unwrap_err()
        .to_string();
    for needle in [
        "nodes[0].config.mapping.a",
        "nodes[0].config.mapping.b",
        "nodes[0].config.defaults",
        "nodes[0].config.extra",
    ] {
        assert!(err.contains(needle), "{needle} not in {err}");
    }
    let def = json!({"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {}}]});
    let err = parse_definition("t", "t.json", &def.to_string(), &handlers)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a `mapping`"), "{err}");
}
