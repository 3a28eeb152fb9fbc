//! The `context` node's cost: building its output from the latest snapshot,
//! with every section (what a node does on the request path).
//!
//!     cargo bench --bench host

use criterion::{Criterion, criterion_group, criterion_main};
use herald::host::HostSampler;
use herald::nodes::context::{SECTIONS, sections};
use std::sync::Arc;

fn context_sections(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sampler = Arc::new(HostSampler::new());
    let snap = runtime.block_on(sampler.sample());
    let all: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
    let basic: Vec<String> = ["cpu", "memory", "disk"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    c.bench_function("context_all_sections", |b| {
        b.iter(|| sections(&snap, &all, 10))
    });
    c.bench_function("context_cpu_memory_disk", |b| {
        b.iter(|| sections(&snap, &basic, 10))
    });
    c.bench_function("sampler_one_sample", |b| {
        b.iter(|| runtime.block_on(sampler.sample()))
    });
}

criterion_group!(benches, context_sections);
criterion_main!(benches);
