//! The threads that change incidents.
//!
//! A delivery (a webhook body, or a pipeline request whose definition
//! ingests) must be applied to incidents and have its runs written before
//! the next delivery decides anything about the same alerts: otherwise two
//! copies of one alert arriving together (Alertmanager in HA sends each
//! notification from every replica) would both count as a change and both
//! notify.
//!
//! That used to be an async mutex held by the request's task. Under load it
//! convoyed: each release handed the lock to a waiting task that then had
//! to wait for a runtime thread, busy with other requests and with pipeline
//! stages, while the lock sat idle; and a storm's body, applied for seconds,
//! held a runtime thread. Here the work is closures run back to back on two
//! threads of their own, a two-stage pipeline:
//!
//! - `herald-intake` applies deliveries to incidents, one at a time;
//! - `herald-intake-write` then writes each one's runs and delivery record,
//!   in the same order, while the next delivery is being applied.
//!
//! A delivery being written is *in flight* ([`crate::store::Flight`]); when
//! the apply thread meets an alert last changed by such a delivery, it waits
//! for that delivery to land before deciding, so the outcome is the same as
//! if each delivery had been applied and written before the next began.
//! Callers await the result; the flush to disk happens after, on the
//! caller's side, so that concurrent deliveries share it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// Runs closures one at a time, in arrival order, on the `herald-intake`
/// thread, and their second halves on `herald-intake-write`. Cloning shares
/// the threads; they stop when the last clone is dropped.
#[derive(Clone)]
pub struct IntakeWriter {
    apply: mpsc::Sender<Job>,
    write: mpsc::Sender<Job>,
    counts: Arc<Counts>,
}

/// Jobs handed to the two threads, and jobs they have finished.
#[derive(Default)]
struct Counts {
    queued: AtomicU64,
    done: AtomicU64,
}

/// How far the threads have got: for a watchdog that must tell a thread
/// that hangs from one busy with a storm's bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub queued: u64,
    pub done: u64,
}

impl Progress {
    /// Whether, since `earlier`, the threads finished something or have
    /// nothing to do.
    pub fn moved_on_since(&self, earlier: Progress) -> bool {
        self.done >= self.queued || self.done > earlier.done
    }
}

/// The thread is gone (it could not be started, or the process is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the intake thread is not running")]
pub struct Stopped;

impl IntakeWriter {
    pub fn start() -> std::io::Result<IntakeWriter> {
        let counts = Arc::new(Counts::default());
        Ok(IntakeWriter {
            apply: worker("herald-intake", counts.clone())?,
            write: worker("herald-intake-write", counts.clone())?,
            counts,
        })
    }

    /// Jobs handed to the threads so far, and jobs finished.
    pub fn progress(&self) -> Progress {
        // `done` first: read the other way, a job finishing in between
        // could make done pass queued.
        let done = self.counts.done.load(Ordering::Acquire);
        Progress {
            queued: self.counts.queued.load(Ordering::Acquire).max(done),
            done,
        }
    }

    /// Runs `section` on the apply thread, after every section submitted
    /// before it; the closure it returns runs on the write thread, in the
    /// same order, while the apply thread goes on. The future answers what
    /// the second closure returned.
    pub fn run_then<T, W, F>(
        &self,
        section: F,
    ) -> impl Future<Output = Result<T, Stopped>> + use<T, W, F>
    where
        T: Send + 'static,
        W: FnOnce() -> T + Send + 'static,
        F: FnOnce() -> W + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let write = self.write.clone();
        let counts = self.counts.clone();
        self.counts.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.apply.send(Box::new(move || {
            let then = section();
            counts.queued.fetch_add(1, Ordering::AcqRel);
            // A write thread gone drops `then` and `tx`: the caller sees `Stopped`.
            let _ = write.send(Box::new(move || {
                let _ = tx.send(then());
            }));
        }));
        async move {
            sent.map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)
        }
    }

    /// Submits `section` now, to run after every section submitted before
    /// it; the future answers what it returned.
    pub fn run<T, F>(&self, section: F) -> impl Future<Output = Result<T, Stopped>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.counts.queued.fetch_add(1, Ordering::AcqRel);
        let sent = self.apply.send(Box::new(move || {
            let _ = tx.send(section());
        }));
        async move {
            sent.map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)
        }
    }
}

/// A thread that runs jobs in order until every sender is gone.
fn worker(name: &str, counts: Arc<Counts>) -> std::io::Result<mpsc::Sender<Job>> {
    let (jobs, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                // A panicking job drops its answer channel (its caller sees
                // `Stopped`); the thread goes on with the next.
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("intake: a delivery panicked; it was not applied");
                }
                counts.done.fetch_add(1, Ordering::AcqRel);
            }
        })?;
    Ok(jobs)
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
    async fn second_halves_run_in_order_while_the_next_first_half_runs() {
        let writer = IntakeWriter::start().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut waits = Vec::new();
        for i in 0..20 {
            let log = log.clone();
            waits.push(writer.run_then(move || {
                log.lock().unwrap().push(format!("apply {i}"));
                move || {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    log.lock().unwrap().push(format!("write {i}"));
                    i
                }
            }));
        }
        assert_eq!(futures_join(waits).await, (0..20).collect::<Vec<_>>());
        let log = log.lock().unwrap();
        let writes: Vec<&String> = log.iter().filter(|l| l.starts_with("write")).collect();
        let expected: Vec<String> = (0..20).map(|i| format!("write {i}")).collect();
        assert_eq!(
            writes,
            expected.iter().collect::<Vec<_>>(),
            "writes keep the order"
        );
        // Each write comes after its own apply.
        for i in 0..20 {
            let at = |l: String| log.iter().position(|x| *x == l).unwrap();
            assert!(at(format!("apply {i}")) < at(format!("write {i}")));
        }
        // Applying did not wait for the (slow) writes: apply 19 came before write 18.
        let at = |l: &str| log.iter().position(|x| x == l).unwrap();
        assert!(at("apply 19") < at("write 18"), "{log:?}");
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

    /// The watchdog's view: a thread stuck in a job makes no progress
    /// while work waits; busy but finishing, or idle, does.
    #[tokio::test]
    async fn progress_tells_a_stuck_thread_from_a_busy_one() {
        let writer = IntakeWriter::start().unwrap();
        let idle = writer.progress();
        assert!(idle.moved_on_since(idle), "idle: {idle:?}");

        let (release, released) = std::sync::mpsc::channel::<()>();
        let stuck = writer.run(move || {
            let _ = released.recv();
        });
        let waiting = writer.run(|| ());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let before = writer.progress();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let after = writer.progress();
        assert!(!after.moved_on_since(before), "{before:?} then {after:?}");

        release.send(()).unwrap();
        stuck.await.unwrap();
        waiting.await.unwrap();
        // A job answers its caller before the thread counts it done: wait
        // for the count to catch up (bounded, not a timing assertion).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut done = writer.progress();
        while done.done != done.queued && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            done = writer.progress();
        }
        assert!(done.moved_on_since(after), "{after:?} then {done:?}");
        assert_eq!(done.done, done.queued);
    }
}
