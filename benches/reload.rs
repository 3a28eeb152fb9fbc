//! Hot reload at scale: 1,000 definition files.
//! - the time to load them all at start (a first rescan);
//! - the time from one file's write to its new version being live, past the
//!   100 ms debounce.
//!
//!     cargo bench --bench reload
//!
//! Prints a median over repeated trials (a plain harness: the second figure
//! needs a live watcher, which criterion's loop does not fit).

use arc_swap::ArcSwap;
use herald::config::Config;
use herald::definition::DefinitionSet;
use herald::metrics::Metrics;
use herald::nodes::{HandlerRegistry, Services};
use herald::watch::{DEBOUNCE, Reloader};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILES: usize = 1000;

fn definition(i: usize, value: &str) -> String {
    format!(
        r#"{{"version": "1", "description": "bench {i}", "nodes": [
  {{"id": "metrics", "type": "context", "config": {{"include": ["cpu", "memory"]}}, "next": "shape"}},
  {{"id": "shape", "type": "transform", "config": {{"mapping": {{"v": {{"literal": "{value}"}}, "cpu": "metrics.cpu.usage_percent"}}}}, "next": "notify"}},
  {{"id": "notify", "type": "notify", "config": {{"driver": "log"}}}}]}}"#
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..FILES {
        std::fs::write(dir.path().join(format!("d{i:04}.json")), definition(i, "a")).unwrap();
    }
    let handlers = HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(Config::default()))));
    let new_reloader = || {
        let shared = Arc::new(ArcSwap::from_pointee(DefinitionSet::with_builtin(
            &handlers,
        )));
        let r = Arc::new(Reloader::new(
            dir.path().to_path_buf(),
            handlers.clone(),
            shared.clone(),
            Arc::new(Metrics::new()),
        ));
        (r, shared)
    };

    let mut loads = Vec::new();
    for _ in 0..7 {
        let (r, shared) = new_reloader();
        let t = Instant::now();
        let report = r.rescan().unwrap();
        loads.push(t.elapsed());
        assert_eq!(report.loaded.len(), FILES);
        assert_eq!(shared.load().valid().count(), FILES + 1);
    }
    println!(
        "load {FILES} definitions at start: median {:?} (of {} trials)",
        median(loads.clone()),
        loads.len()
    );

    let (r, shared) = new_reloader();
    r.rescan().unwrap();
    let _watch = runtime.block_on(async { r.watch().unwrap() });
    let mut lags = Vec::new();
    for trial in 0..15 {
        let value = format!("v{trial}");
        let name = format!("d{:04}", trial * 37);
        let before = shared.load().get(&name).unwrap().version_hash.clone();
        let t = Instant::now();
        std::fs::write(
            dir.path().join(format!("{name}.json")),
            definition(trial, &value),
        )
        .unwrap();
        while shared.load().get(&name).unwrap().version_hash == before {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "change never went live"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        lags.push(t.elapsed().saturating_sub(DEBOUNCE));
        std::thread::sleep(Duration::from_millis(300));
    }
    println!(
        "one file's write to its new version live, past the {DEBOUNCE:?} debounce: median {:?}, max {:?} (of {} trials)",
        median(lags.clone()),
        lags.iter().max().unwrap(),
        lags.len()
    );
}
