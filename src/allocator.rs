//! The `herald` binary's memory allocator: jemalloc, unless built with
//! `--no-default-features`.
//!
//! Why: ingesting a storm is allocation-heavy (sled clones and rewrites its
//! tree nodes on every insert and split). Under glibc's malloc a quarter of
//! the daemon's CPU went to `_int_malloc`, `_int_free` and
//! `malloc_consolidate`; with jemalloc, new alerts into incidents through
//! HTTP went from ~23,000/s to ~35,000/s on the same machine
//! (`ROUTE=none bash benches/ingest.sh`).
//!
//! It is configured for a small daemon rather than a big server: one arena
//! (herald's work is serialized by the intake thread and sled, not by the
//! allocator), and freed memory handed back to the OS within a quarter of
//! a second instead of ten: sled's node rewrites free memory as fast as
//! they take it, and with a 1 s decay RSS under load held ~10 MB more of
//! it, at the same throughput (`bash benches/load.sh`).

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start-up (tikv's build
/// prefixes jemalloc's symbols with `_rjem_`); `_RJEM_MALLOC_CONF` in the
/// environment still overrides it.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 46] = b"narenas:1,dirty_decay_ms:250,muzzy_decay_ms:0\0";
