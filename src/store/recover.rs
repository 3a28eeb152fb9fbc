//! Recovering a store that sled cannot open because a file is damaged.
//!
//! sled keeps a log and a snapshot of where each page is in it. A damaged
//! snapshot (a crash on a disk that lies about fsync, a bad sector) stops
//! sled from opening the database although the log holds everything:
//! without the snapshot, sled rebuilds it by reading the whole log. A
//! damaged log is read up to the damage; what was written after it is
//! lost.
//!
//! herald does not do this by itself. It refuses to start on a damaged
//! store, says so and names the command; `herald store recover` keeps a
//! copy of the damaged database, sets the snapshot aside, opens the store
//! from its log, and says what it found — so that an operator decides,
//! and nothing is thrown away.

use super::{Store, StoreError, StoreOptions, compact};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What a recovery did and found.
#[derive(Debug, Serialize)]
pub struct Recovery {
    /// The damaged database, as it was.
    pub damaged_copy: PathBuf,
    pub snapshots_set_aside: usize,
    pub runs: u64,
    pub queued_jobs: usize,
    /// Unfinished runs without a job (the damage took it, or a sync run
    /// was cut short), queued again so that they continue from their
    /// first stage that did not succeed.
    pub requeued: usize,
    pub incidents: usize,
}

/// The sentence a damaged store's open error ends with.
pub(super) fn advice(dir: &Path) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!(
        "the database is damaged, and herald will not start on it by itself. Stop herald and run \
         `herald store recover` (with this data dir): it keeps a copy of the damaged files and \
         opens the store from its log, losing at most what was written after the damage. Or move \
         {} aside to start with an empty store",
        dir.display()
    )
}

/// Keeps a copy of `dir`'s database, sets its snapshot files aside, and
/// opens it from its log. `herald serve` must be stopped.
pub fn recover(dir: &Path, options: &StoreOptions) -> Result<Recovery, StoreError> {
    let dir = &std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let db = dir.join("db");
    let fail = |message: String| StoreError::Open {
        path: dir.to_path_buf(),
        message,
    };
    if !db.is_dir() {
        return Err(fail("there is no database here to recover".into()));
    }
    let lock = compact::lock(dir)?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let damaged_copy = dir.join(format!("db.damaged-{stamp}"));
    let needed = dir_bytes(&db);
    if let Some((_, available)) = crate::host::procfs::space(dir)
        && available < needed.saturating_add(64 << 20)
    {
        return Err(fail(format!(
            "no room to keep a copy of the damaged database first ({} MiB, {} MiB free); \
             free space, or copy {} elsewhere yourself and move it aside",
            needed >> 20,
            available >> 20,
            db.display()
        )));
    }
    copy_dir(&db, &damaged_copy)
        .map_err(|e| fail(format!("could not copy the damaged database: {e}")))?;
    let mut snapshots_set_aside = 0;
    for entry in std::fs::read_dir(&db).map_err(|e| fail(e.to_string()))? {
        let path = entry.map_err(|e| fail(e.to_string()))?.path();
        let is_snapshot = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap."));
        if is_snapshot {
            std::fs::remove_file(&path).map_err(|e| fail(e.to_string()))?;
            snapshots_set_aside += 1;
        }
    }
    drop(lock); // Store::open takes it again
    let store = Store::open(dir, options.clone()).map_err(|e| {
        let why = match &e {
            // Without the advice to run this very command.
            StoreError::Open { message, .. } => message
                .split(": the database is damaged")
                .next()
                .unwrap_or(message)
                .to_string(),
            other => other.to_string(),
        };
        fail(format!(
            "could not recover: the store still does not open ({why}). The damaged database is \
             kept at {}; move {} aside to start with an empty store",
            damaged_copy.display(),
            dir.display()
        ))
    })?;
    // A log read up to its damage can hold a run's start and not its job.
    let requeued = store.requeue_unfinished()?.len();
    let recovery = Recovery {
        damaged_copy,
        snapshots_set_aside,
        runs: store.run_count(),
        queued_jobs: store.jobs()?.len(),
        requeued,
        incidents: store.incident_count(),
    };
    store.flush()?;
    Ok(recovery)
}

fn dir_bytes(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| p.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
