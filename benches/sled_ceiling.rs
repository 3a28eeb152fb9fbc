//! What sled 0.34 alone can do with the writes of an accepted webhook,
//! outside herald: no HTTP, no parsing, no runs. Writer threads each
//! write an "accept" (the records herald writes for a new alert) and wait
//! for a shared group-commit flush before the next, as herald's accept
//! path does before its 202. It prints the durable accepts per second and
//! the process's CPU per accept: the floor under herald's own figure.
//!
//!     cargo bench --bench sled_ceiling
//!     RECORDS=1 cargo bench --bench sled_ceiling     # one record per accept
//!
//! Environment: `WRITERS` (32, as load.sh's connections), `RUN_SECONDS` (10),
//! `RECORDS` (11: herald's writes for a new alert and its run; 1: only the
//! smallest durable trace of an accept, one record of `VALUE_BYTES`, 1500
//! by default), `PIPELINE`
//! (0; 1: writers go on writing while the flusher flushes what they wrote,
//! as herald's two intake threads do, and an accept counts once a flush
//! that began after it has ended).
//!
//! The sizes are those of a store after `benches/load.sh`'s async case
//! (values averaged per tree); alert states and incident groups are keyed
//! by a hash (they land anywhere in their tree), the rest by a growing id,
//! as herald's ULIDs do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Tree, value bytes, keyed by a hash (else by a growing id).
const ACCEPT: [(&str, usize, bool); 11] = [
    ("alerts", 1226, true),
    ("incidents", 494, false),
    ("incident_groups", 30, true),
    ("deliveries", 153, false),
    ("incident_runs", 0, false),
    ("queue", 120, false),
    ("runs", 577, false),
    ("runs_by_status", 0, false),
    ("runs_by_definition", 0, false),
    ("payloads", 800, false),
    ("intakes", 496, false),
];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A group commit: writers note the generation they need, one flusher
/// flushes everything written so far and publishes the generation it
/// covered.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<(u64, u64)>, // (wanted, flushed)
    wake: Condvar,
}

impl GroupCommit {
    fn wait(&self, stop: &AtomicBool) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        let want = state.0;
        self.wake.notify_all();
        while state.1 < want && !stop.load(Ordering::Relaxed) {
            state = self
                .wake
                .wait_timeout(state, Duration::from_millis(10))
                .unwrap()
                .0;
        }
    }

    fn run(&self, db: &sled::Db, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let target = {
                let mut state = self.state.lock().unwrap();
                while state.0 == state.1 && !stop.load(Ordering::Relaxed) {
                    state = self
                        .wake
                        .wait_timeout(state, Duration::from_millis(10))
                        .unwrap()
                        .0;
                }
                state.0
            };
            db.flush().expect("flush");
            self.state.lock().unwrap().1 = target;
            self.wake.notify_all();
        }
    }
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

/// Bytes this process has caused to be written to disk so far
/// (`write_bytes` of /proc/self/io).
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let writers = env("WRITERS", 32);
    let seconds = env("RUN_SECONDS", 10);
    let records = env("RECORDS", 11) as usize;
    let pipeline = env("PIPELINE", 0) == 1;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(16 << 20)
        .flush_every_ms(Some(500))
        .open()
        .expect("open sled");
    let trees: Vec<(sled::Tree, usize, bool)> = if records == 1 {
        let size = env("VALUE_BYTES", 1500) as usize;
        vec![(db.open_tree("accepts").unwrap(), size, false)]
    } else {
        ACCEPT
            .iter()
            .take(records)
            .map(|(name, size, hashed)| (db.open_tree(name).unwrap(), *size, *hashed))
            .collect()
    };
    let trees = Arc::new(trees);
    let commit = Arc::new(GroupCommit::default());
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let next_id = Arc::new(AtomicU64::new(0));

    let durable = Arc::new(AtomicU64::new(0));
    let flusher = {
        let (db, commit, stop) = (db.clone(), commit.clone(), stop.clone());
        let (accepted, durable) = (accepted.clone(), durable.clone());
        std::thread::spawn(move || {
            if !pipeline {
                return commit.run(&db, &stop);
            }
            while !stop.load(Ordering::Relaxed) {
                let written = accepted.load(Ordering::Acquire);
                db.flush().expect("flush");
                durable.store(written, Ordering::Relaxed);
            }
        })
    };
    let cpu_before = cpu_seconds();
    let written_before = written_bytes();
    let started = Instant::now();
    let handles: Vec<_> = (0..writers)
        .map(|_| {
            let (trees, commit, stop, accepted, next_id) = (
                trees.clone(),
                commit.clone(),
                stop.clone(),
                accepted.clone(),
                next_id.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let hashed = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    for (tree, size, by_hash) in trees.iter() {
                        let key = if *by_hash { hashed } else { id };
                        tree.insert(key.to_be_bytes(), vec![b'x'; *size])
                            .expect("insert");
                    }
                    if !pipeline {
                        commit.wait(&stop);
                    }
                    accepted.fetch_add(1, Ordering::Release);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let n = if pipeline {
        durable.load(Ordering::Relaxed)
    } else {
        accepted.load(Ordering::Relaxed)
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let written = written_bytes() - written_before;
    commit.wake.notify_all();
    for h in handles {
        h.join().unwrap();
    }
    flusher.join().unwrap();
    println!(
        "{records} record(s) per accept, {writers} writers{}, {seconds} s: {:.0} durable accepts/s, {:.0} µs CPU per accept ({:.2} cores busy), {:.1} KB written per accept",
        if pipeline { " (pipelined)" } else { "" },
        n as f64 / elapsed,
        cpu * 1e6 / n.max(1) as f64,
        cpu / elapsed,
        written as f64 / 1000.0 / n.max(1) as f64
    );
}
