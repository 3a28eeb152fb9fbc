//! Background pruning: every minute, delete what is past `retention` or
//! beyond `max_runs`, in small batches so that no single pass holds up the
//! writers for long, and so that shutdown never waits for more than one
//! batch (a backlog after a storm can take minutes to prune). After a pass,
//! compact the store if its file has outgrown `[store] compact_above_mb`
//! (sled does not give the space back by itself; see [`super::compact`]).

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

const BATCH: usize = 256;
const INTERVAL: Duration = Duration::from_secs(60);

/// Runs the pruner until `stop` turns true; the handle finishes after the
/// batch in progress, leaving the rest for the next start.
pub fn spawn_pruner(store: Store, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stopping = Arc::new(AtomicBool::new(false));
        while !*stop.borrow() {
            let pass = store.clone();
            let flag = stopping.clone();
            let mut work = tokio::task::spawn_blocking(move || {
                let pruned = prune_all(&pass, Utc::now(), BATCH, || flag.load(Ordering::Relaxed));
                if !flag.load(Ordering::Relaxed) {
                    compact_if_due(&pass);
                }
                pruned
            });
            let outcome = tokio::select! {
                outcome = &mut work => outcome,
                _ = stopped(&mut stop) => {
                    stopping.store(true, Ordering::Relaxed);
                    work.await
                }
            };
            match outcome {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    pruned = n,
                    "retention: pruned old runs, incidents and deliveries"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "retention: pruning failed"),
                Err(_) => return,
            }
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    })
}

/// Compacts the store online when its file has outgrown
/// `[store] compact_above_mb` (writes wait meanwhile), and says so.
fn compact_if_due(store: &Store) {
    match store.compact_if_due() {
        None => {}
        Some(Ok(done)) => done.log(),
        Some(Err(e @ StoreError::NoRoomToCompact { .. })) => tracing::warn!(
            error = %e,
            retry_in_s = super::compact::NO_ROOM_PAUSE.as_secs(),
            "compaction skipped"
        ),
        Some(Err(e)) => tracing::error!(error = %e, "compaction failed; the store is unchanged"),
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Prunes batch after batch until a batch leaves every kind (runs,
/// deliveries, incidents) short of a full batch — nothing more is due, or
/// what is left is new work that the next pass will take — or `stop`
/// answers true; how many records it deleted.
///
/// Why not "until a batch deletes nothing": beyond `max_runs` with a long
/// queue, every run a worker finishes is due at once, so under steady load
/// batches never come back empty and the pass (and the compaction after
/// it) never ended.
pub fn prune_all(
    store: &Store,
    now: DateTime<Utc>,
    batch: usize,
    stop: impl Fn() -> bool,
) -> Result<usize, StoreError> {
    let mut total = 0;
    while !stop() {
        let pruned = store.prune_batch(now, batch)?;
        total += pruned.total();
        if !pruned.filled(batch) {
            break;
        }
    }
    Ok(total)
}
