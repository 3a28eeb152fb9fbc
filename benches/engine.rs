//! Engine overhead: a 3-node transform-only definition, run without the store
//! and with it (every run and stage recorded in sled).
//!
//!     cargo bench --bench engine

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald::config::Config;
use herald::definition::parse_definition;
use herald::engine::{Engine, RunRequest};
use herald::nodes::{HandlerRegistry, Services};
use herald::store::{Store, StoreOptions};
use serde_json::json;
use std::sync::Arc;

fn definition() -> herald::definition::Definition {
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let text = json!({"version": "1", "nodes": [
        {"id": "a", "type": "transform", "config": {"mapping": {"name": "payload.name", "sev": "payload.severity"}}, "next": "b"},
        {"id": "b", "type": "transform", "config": {"source_node": "a", "mapping": {"title": "name", "level": "sev", "kind": {"literal": "bench"}}}, "next": "c"},
        {"id": "c", "type": "transform", "config": {"mapping": {"title": "b.title", "missing": "a.nothing"}, "defaults": {"missing": 0}}}
    ]})
    .to_string();
    parse_definition("bench", "bench.json", &text, &handlers).expect("valid bench definition")
}

fn request() -> RunRequest {
    RunRequest {
        payload: herald::payload::Payload::from_value(
            json!({"name": "HighCPU", "severity": "critical", "labels": {"instance": "web-1"}}),
        ),
        source: Some("bench".into()),
        ..RunRequest::default()
    }
}

fn engine_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let def = definition();
    let mut group = c.benchmark_group("engine_3_transforms");
    group.throughput(Throughput::Elements(1));

    let engine = Engine::new(None);
    group.bench_function("without_store", |b| {
        b.to_async(&runtime)
            .iter(|| async { engine.run(&def, request()).await.unwrap() })
    });

    let dir = tempfile::tempdir().unwrap();
    // Enough headroom that retention never prunes during the bench.
    let options = StoreOptions {
        max_runs: u64::MAX,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let engine = Engine::new(Some(store));
    group.bench_function("with_store", |b| {
        b.to_async(&runtime)
            .iter(|| async { engine.run(&def, request()).await.unwrap() })
    });
    group.finish();
}

criterion_group!(benches, engine_overhead);
criterion_main!(benches);
