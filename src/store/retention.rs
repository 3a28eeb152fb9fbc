//! Background pruning: every minute, delete what is past `retention` or
//! beyond `max_runs`, in small batches so that the store is never locked
//! up for long.

use super::Store;
use std::time::Duration;

const BATCH: usize = 256;
const INTERVAL: Duration = Duration::from_secs(60);

/// Runs the pruner until the returned handle is aborted.
pub fn spawn_pruner(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            loop {
                let store = store.clone();
                let pruned =
                    tokio::task::spawn_blocking(move || store.prune(chrono::Utc::now(), BATCH))
                        .await;
                match pruned {
                    Ok(Ok(n)) if n == BATCH => tokio::task::yield_now().await,
                    Ok(Ok(n)) => {
                        if n > 0 {
                            tracing::info!(
                                pruned = n,
                                "retention: pruned old runs, incidents and deliveries"
                            );
                        }
                        break;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "retention: pruning failed");
                        break;
                    }
                    Err(_) => return,
                }
            }
            tokio::time::sleep(INTERVAL).await;
        }
    })
}
