//! Background pruning: every minute, delete what is past `retention` or
//! beyond `max_runs`, in small batches so that no single pass holds up the
//! writers for long.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::time::Duration;

const BATCH: usize = 256;
const INTERVAL: Duration = Duration::from_secs(60);

/// Runs the pruner until the returned handle is aborted.
pub fn spawn_pruner(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let pass = store.clone();
            match tokio::task::spawn_blocking(move || prune_all(&pass, Utc::now(), BATCH)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(
                    pruned = n,
                    "retention: pruned old runs, incidents and deliveries"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "retention: pruning failed"),
                Err(_) => return,
            }
            tokio::time::sleep(INTERVAL).await;
        }
    })
}

/// Prunes batch after batch until a batch finds nothing to delete; how
/// many records it deleted. A batch deletes up to `batch` of each kind
/// (runs, deliveries, incidents), so its total says nothing about whether
/// more is left: only an empty batch does.
pub fn prune_all(store: &Store, now: DateTime<Utc>, batch: usize) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        match store.prune(now, batch)? {
            0 => return Ok(total),
            n => total += n,
        }
    }
}
