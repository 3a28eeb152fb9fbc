//! The `context` node's cost on the request path: a one-node definition run
//! by the engine (no store), reading the sampler's latest snapshot, with
//! every section and with the default three; plus rendering the sections
//! from scratch, which happens once per snapshot.
//!
//!     cargo bench --bench host -- --warm-up-time 1 --measurement-time 3

use criterion::{Criterion, criterion_group, criterion_main};
use herald::config::Config;
use herald::definition::parse_definition;
use herald::engine::{Engine, RunRequest};
use herald::nodes::context::{SECTIONS, sections};
use herald::nodes::{HandlerRegistry, Services};
use serde_json::json;
use std::sync::Arc;

fn context_node(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let services = Arc::new(Services::new(Arc::new(Config::default())));
    let host = services.host.clone();
    let handlers = HandlerRegistry::builtin(services);
    let engine = Engine::new(None);
    for (label, include) in [
        ("context_node_all_sections", SECTIONS.to_vec()),
        (
            "context_node_cpu_memory_disk",
            vec!["cpu", "memory", "disk"],
        ),
    ] {
        let text = json!({"version": "1", "nodes": [{"id": "c", "type": "context", "config": {"include": include}}]}).to_string();
        let def = parse_definition("bench", "bench.json", &text, &handlers).unwrap();
        // A fresh snapshot, as the daemon's sampler keeps one (valid 10 s).
        runtime.block_on(host.sample());
        c.bench_function(label, |b| {
            b.to_async(&runtime)
                .iter(|| async { engine.run(&def, RunRequest::default()).await.unwrap() })
        });
    }
    let snap = runtime.block_on(host.sample());
    let all: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
    c.bench_function("render_all_sections_once_per_snapshot", |b| {
        b.iter(|| {
            let fresh = herald::host::HostSnapshot {
                rendered: Default::default(),
                outputs: Default::default(),
                ..clone_parts(&snap)
            };
            sections(&fresh, &all, 10)
        })
    });
}

/// A copy of a snapshot's data (the snapshot itself is not Clone: it
/// carries its rendering caches).
fn clone_parts(s: &herald::host::HostSnapshot) -> herald::host::HostSnapshot {
    herald::host::HostSnapshot {
        taken_at: s.taken_at,
        cpu: s.cpu.clone(),
        memory: s.memory.clone(),
        disks: s.disks.clone(),
        mounts_not_responding: s.mounts_not_responding.clone(),
        network: s.network.clone(),
        processes: s.processes.clone(),
        system: s.system.clone(),
        temperatures: s.temperatures.clone(),
        ports: s.ports.clone(),
        reboot: s.reboot.clone(),
        raid: s.raid.clone(),
        rendered: Default::default(),
        outputs: Default::default(),
    }
}

criterion_group!(benches, context_node);
criterion_main!(benches);
