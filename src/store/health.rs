//! Whether the store can still write to disk, and why not.
//!
//! sled makes an IO error on its log sticky: once a write or a flush fails
//! (a full disk, a file size limit, a failing device), every later write
//! fails too, even after the disk has room again. The only way back is to
//! open the database anew from what reached the disk. After a failed fsync
//! the kernel may also have dropped the pages it could not write, so going
//! on from memory would not be safe anyway (PostgreSQL's lesson).
//!
//! A restart is that reopen, and the queue is built to survive one: every
//! 2xx was sent after its flush. So the first failure is recorded here;
//! from then on requests that need the store are answered 503
//! `store_unavailable`, `/readyz` says why, and the daemon stops with an
//! error, for its service manager to start it again (the packaged unit has
//! `Restart=on-failure`). Until the disk has room, that start fails with
//! the reason, and is tried again.

use super::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often an idle daemon checks that its store can still write (a
/// failure is also noticed at once by any flush a request waits for).
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The store's first write failure, if it has had one.
pub(super) struct Health {
    failure: watch::Sender<Option<Arc<str>>>,
}

impl Health {
    pub(super) fn new() -> Health {
        Health {
            failure: watch::Sender::new(None),
        }
    }

    /// Records `cause` unless a failure is already recorded; says so once.
    pub(super) fn fail(&self, cause: &str) {
        self.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            // Said before anyone waiting on the failure hears of it.
            tracing::error!(
                %cause,
                "the store cannot write to disk; requests that need it are answered 503 from now on"
            );
            *failure = Some(Arc::from(cause));
            true
        });
    }

    pub(super) fn failure(&self) -> Option<Arc<str>> {
        self.failure.borrow().clone()
    }

    /// Resolves with the cause once the store has failed.
    pub(super) async fn failed(&self) -> Arc<str> {
        let mut rx = self.failure.subscribe();
        loop {
            if let Some(cause) = rx.borrow_and_update().clone() {
                return cause;
            }
            if rx.changed().await.is_err() {
                // The store is gone; it can no longer fail.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What went wrong, in words an operator can act on ("No space left on
/// device (os error 28)"), for the sled errors that mean the disk failed a
/// write; `None` for any other error.
pub(super) fn disk_failure(e: &sled::Error) -> Option<String> {
    match e {
        sled::Error::Io(io) => Some(match io.raw_os_error() {
            Some(_) => io.to_string(),
            // sled re-wraps some OS errors, keeping only their kind.
            None => io.kind().to_string(),
        }),
        _ => None,
    }
}

impl StoreError {
    /// The cause, if this error means the store cannot write to disk
    /// (rather than, say, a corrupt record).
    pub fn disk_failure(&self) -> Option<String> {
        match self {
            StoreError::Unavailable(cause) => Some(cause.clone()),
            StoreError::Sled(e) => disk_failure(e),
            _ => None,
        }
    }
}

/// Checks every few seconds, until `stop`, that the store can still write,
/// so that an idle daemon notices a failure of sled's own background
/// flushes too.
pub fn spawn_probe(store: Store, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while store.failure().is_none() {
            tokio::select! {
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let probe = store.clone();
            if tokio::task::spawn_blocking(move || probe.flush())
                .await
                .is_err()
            {
                return;
            }
        }
    })
}
