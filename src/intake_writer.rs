//! The one thread that changes incidents.
//!
//! A delivery (a webhook body, or a pipeline request whose definition
//! ingests) must be applied to incidents and have its runs written before
//! the next delivery looks at the same alerts: otherwise two copies of one
//! alert arriving together (Alertmanager in HA sends each notification from
//! every replica) would both count as a change and both notify.
//!
//! That used to be an async mutex held by the request's task. Under load it
//! convoyed: each release handed the lock to a waiting task that then had
//! to wait for a runtime thread, busy with other requests and with pipeline
//! stages, while the lock sat idle — 32 connections spent ~5 ms per request
//! waiting for a lock that was held ~0.15 ms. Here the critical sections
//! are closures run back to back on a thread of their own: no hand-off gap,
//! and a storm's body that takes seconds to apply never blocks a runtime
//! thread. Callers await the result; the flush to disk happens after, on
//! the caller's side, so that concurrent deliveries share it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures one at a time, in arrival order, on the `herald-intake`
/// thread. Cloning shares the thread; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct IntakeWriter {
    jobs: mpsc::Sender<Job>,
}

/// The thread is gone (it could not be started, or the process is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the intake thread is not running")]
pub struct Stopped;

impl IntakeWriter {
    pub fn start() -> std::io::Result<IntakeWriter> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("herald-intake".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    // A panicking job drops its answer channel (its caller
                    // sees `Stopped`); the thread goes on with the next.
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("intake: a delivery panicked; it was not applied");
                    }
                }
            })?;
        Ok(IntakeWriter { jobs })
    }

    /// Submits `section` now, to run after every section submitted before
    /// it; the future answers what it returned.
    pub fn run<T, F>(&self, section: F) -> impl Future<Output = Result<T, Stopped>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.jobs.send(Box::new(move || {
            let _ = tx.send(section());
        }));
        async move {
            sent.map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn sections_run_one_at_a_time_in_order() {
        let writer = IntakeWriter::start().unwrap();
        let inside = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waits = Vec::new();
        for i in 0..50 {
            let (inside, order) = (inside.clone(), order.clone());
            waits.push(writer.run(move || {
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two sections at once"
                );
                std::thread::sleep(std::time::Duration::from_micros(100));
                order.lock().unwrap().push(i);
                inside.fetch_sub(1, Ordering::SeqCst);
                i * 2
            }));
        }
        let results = futures_join(waits).await;
        assert_eq!(results, (0..50).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(*order.lock().unwrap(), (0..50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_section_fails_alone() {
        let writer = IntakeWriter::start().unwrap();
        let failed = writer.run(|| -> u32 { panic!("boom") }).await;
        assert!(failed.is_err());
        assert_eq!(writer.run(|| 7).await.unwrap(), 7);
    }

    async fn futures_join<T>(
        waits: Vec<impl std::future::Future<Output = Result<T, Stopped>>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for w in waits {
            out.push(w.await.unwrap());
        }
        out
    }
}
