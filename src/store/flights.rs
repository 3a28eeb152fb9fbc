//! Deliveries whose runs and delivery record are being written right now.
//!
//! The intake applies a delivery's alerts on one thread and writes its runs
//! on another, so that the next delivery can be applied meanwhile (see
//! [`crate::intake_writer`]). A copy of an alert that arrives in that gap
//! finds the alert's state tagged with a delivery that has no record yet:
//! finished, or failed? It waits for the delivery to *land* — its writes
//! done, or given up — and then asks the record, exactly as if the two
//! deliveries had run one after the other.

use super::Store;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
pub(super) struct Flights {
    map: Mutex<HashMap<String, Arc<Landing>>>,
}

#[derive(Default)]
struct Landing {
    landed: Mutex<bool>,
    signal: Condvar,
}

/// A delivery in flight; it lands when this is dropped (written, failed,
/// or unwound by a panic alike).
pub struct Flight {
    store: Store,
    id: String,
    landing: Arc<Landing>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        lock(&self.store.inner.flights.map).remove(&self.id);
        *lock(&self.landing.landed) = true;
        self.landing.signal.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Marks `delivery` as being written until the returned [`Flight`] is dropped.
    pub fn take_off(&self, delivery: &str) -> Flight {
        let landing = Arc::new(Landing::default());
        lock(&self.inner.flights.map).insert(delivery.to_string(), landing.clone());
        Flight {
            store: self.clone(),
            id: delivery.to_string(),
            landing,
        }
    }

    /// Blocks until `delivery` is not in flight. Only for the intake's
    /// apply thread: the flight it waits for is written by another thread
    /// that never waits for it.
    pub(super) fn wait_landed(&self, delivery: &str) {
        let Some(landing) = lock(&self.inner.flights.map).get(delivery).cloned() else {
            return;
        };
        let mut landed = lock(&landing.landed);
        while !*landed {
            landed = landing
                .signal
                .wait(landed)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn a_wait_ends_when_the_flight_lands() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        store.wait_landed("never-took-off"); // returns at once
        let flight = store.take_off("d1");
        let dropping = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (store, dropping) = (store.clone(), dropping.clone());
            std::thread::spawn(move || {
                store.wait_landed("d1");
                dropping.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "waits while the delivery is in flight"
        );
        dropping.store(true, Ordering::SeqCst);
        drop(flight);
        assert!(
            waiter.join().unwrap(),
            "the wait ended only after the landing"
        );
        store.wait_landed("d1"); // landed: no wait
    }
}
