//! Which keys of a database changed while it was being copied.
//!
//! Online compaction ([`super::Store::compact_online`]) copies the live
//! records while writes go on, then replays into the copy what changed
//! meanwhile: in catch-up rounds while writes still go on, and once more
//! with writes held back, so that writes wait for that last round only, not
//! for the whole copy.
//!
//! What changed comes from sled's own change feed (`Tree::watch_prefix`
//! with an empty prefix), one subscriber per tree, each drained by a thread
//! into a set of keys. sled hands a write's event to its subscribers before
//! the write returns and makes the writer wait when a subscriber is 1024
//! events behind, so no change goes missing — provided the subscriptions
//! were made while no write was in progress (a write that had already
//! passed sled's subscriber check would go unseen). The caller holds the
//! store's write gate for that moment.

use super::StoreError;
use sled::IVec;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The keys changed in each tree since the last [`Changes::take`].
pub(super) type Changed = Vec<(IVec, HashSet<IVec>)>;

/// How long a draining thread waits for an event before looking at its
/// orders again.
const POLL: Duration = Duration::from_millis(20);

/// What the draining threads are told to do.
const WATCH: u8 = 0;
/// Collect what is left, then stop (writes are held back: nothing new comes).
const DRAIN: u8 = 1;
/// Stop now (the compaction gave up).
const ABANDON: u8 = 2;

/// Watches every tree of a database for changed keys until finished.
pub(super) struct Changes {
    names: Vec<IVec>,
    keys: Arc<Mutex<Vec<HashSet<IVec>>>>,
    order: Arc<AtomicU8>,
    threads: Vec<JoinHandle<()>>,
}

impl Changes {
    /// Starts watching every tree of `db`. Call while no write is in
    /// progress; changes made from then on are all collected.
    pub fn watch(db: &sled::Db) -> Result<Changes, StoreError> {
        let names = db.tree_names();
        let keys = Arc::new(Mutex::new(vec![HashSet::new(); names.len()]));
        let order = Arc::new(AtomicU8::new(WATCH));
        let mut changes = Changes {
            names: Vec::new(),
            keys,
            order,
            threads: Vec::new(),
        };
        for (index, name) in names.into_iter().enumerate() {
            let mut subscriber = db.open_tree(&name)?.watch_prefix(vec![]);
            let (keys, order) = (changes.keys.clone(), changes.order.clone());
            let thread = std::thread::Builder::new()
                .name("herald-compact-watch".into())
                .spawn(move || drain(&mut subscriber, index, &keys, &order))
                .map_err(|e| StoreError::Open {
                    path: std::path::PathBuf::new(),
                    message: format!("compaction: cannot start a watcher thread: {e}"),
                })?;
            changes.names.push(name);
            changes.threads.push(thread);
        }
        Ok(changes)
    }

    /// The keys changed since the last call (or since watching began).
    pub fn take(&self) -> Changed {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        self.names
            .iter()
            .cloned()
            .zip(keys.iter_mut().map(std::mem::take))
            .collect()
    }

    /// Stops watching once every change made so far has been collected,
    /// and returns those not taken yet. Call with writes held back:
    /// the threads stop when their feed is empty.
    pub fn finish(mut self) -> Changed {
        self.order.store(DRAIN, Ordering::Release);
        for thread in self.threads.drain(..) {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.take()
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        // Given up (an error): the threads stop at their next event or poll.
        if !self.threads.is_empty() {
            self.order.store(ABANDON, Ordering::Release);
            for thread in self.threads.drain(..) {
                thread.thread().unpark();
                let _ = thread.join();
            }
        }
    }
}

/// A draining thread: collects the keys of `subscriber`'s events into
/// `keys[index]` until told to stop.
///
/// The subscriber is polled as a future, with this thread parked between
/// polls: sled 0.34's `Subscriber::next_timeout` never returns another
/// event once a write's event was withdrawn (a write that changed nothing),
/// and its blocking iterator cannot be told to stop.
fn drain(
    subscriber: &mut sled::Subscriber,
    index: usize,
    keys: &Mutex<Vec<HashSet<IVec>>>,
    order: &AtomicU8,
) {
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match order.load(Ordering::Acquire) {
            ABANDON => return,
            ordered => match std::pin::Pin::new(&mut *subscriber).poll(&mut cx) {
                Poll::Ready(Some(event)) => {
                    let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
                    keys[index].insert(event.key().clone());
                }
                // The database is gone: nothing more can change.
                Poll::Ready(None) => return,
                // Nothing waiting. Draining (writes are held back, so every
                // write's event is already in): done.
                Poll::Pending if ordered == DRAIN => return,
                Poll::Pending => std::thread::park_timeout(POLL),
            },
        }
    }
}

/// How many keys `changed` holds.
pub(super) fn count(changed: &Changed) -> usize {
    changed.iter().map(|(_, keys)| keys.len()).sum()
}

/// Makes every key in `changed` hold in `to` what it holds in `from` now
/// (written, or removed). Returns the change in `to`'s record count.
pub(super) fn replay(from: &sled::Db, to: &sled::Db, changed: Changed) -> Result<i64, StoreError> {
    let mut delta = 0;
    for (name, keys) in changed {
        let (source, target) = (from.open_tree(&name)?, to.open_tree(&name)?);
        for key in keys {
            match source.get(&key)? {
                Some(value) => delta += i64::from(target.insert(key, value)?.is_none()),
                None => delta -= i64::from(target.remove(key)?.is_some()),
            }
        }
    }
    Ok(delta)
}

/// Whether every key in `changed` holds the same in both databases.
pub(super) fn agree(a: &sled::Db, b: &sled::Db, changed: &Changed) -> Result<bool, StoreError> {
    for (name, keys) in changed {
        let (a, b) = (a.open_tree(name)?, b.open_tree(name)?);
        for key in keys {
            if a.get(key)? != b.get(key)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    #[test]
    fn every_change_made_while_watching_is_collected_and_replayed() {
        let (from, to) = (db(), db());
        let runs = from.open_tree("runs").unwrap();
        for i in 0..100u32 {
            runs.insert(i.to_be_bytes(), b"before").unwrap();
        }
        let changes = Changes::watch(&from).unwrap();
        // A writer busy on another thread: inserts, rewrites, removes.
        let writer = {
            let runs = runs.clone();
            std::thread::spawn(move || {
                for i in 0..5000u32 {
                    runs.insert((i % 300).to_be_bytes(), &i.to_be_bytes()[..])
                        .unwrap();
                    if i % 7 == 0 {
                        runs.remove(((i * 3) % 300).to_be_bytes()).unwrap();
                    }
                }
            })
        };
        let mut replayed = Vec::new();
        while !writer.is_finished() {
            let round = changes.take();
            replay(&from, &to, round.clone()).unwrap();
            replayed.push(round);
            std::thread::sleep(Duration::from_millis(1));
        }
        writer.join().unwrap();
        let rest = changes.finish();
        replay(&from, &to, rest.clone()).unwrap();
        // Keys never written while watched were not collected (the copy
        // would have them): put the untouched "before" ones in by hand.
        let touched: HashSet<IVec> = replayed
            .iter()
            .chain(std::iter::once(&rest))
            .flat_map(|c| c.iter().flat_map(|(_, k)| k.iter().cloned()))
            .collect();
        let target = to.open_tree("runs").unwrap();
        for item in runs.iter() {
            let (k, v) = item.unwrap();
            if !touched.contains(&k) {
                assert_eq!(&v[..], b"before", "key {:?} changed unseen", &k[..]);
                target.insert(k, v).unwrap();
            }
        }
        let all = |t: &sled::Tree| t.iter().map(|i| i.unwrap()).collect::<Vec<_>>();
        assert_eq!(all(&runs), all(&target));
        assert!(agree(&from, &to, &rest).unwrap());
    }

    #[test]
    fn abandoning_stops_the_threads() {
        let from = db();
        from.open_tree("a").unwrap().insert("k", "v").unwrap();
        let changes = Changes::watch(&from).unwrap();
        from.open_tree("a").unwrap().insert("k", "w").unwrap();
        drop(changes); // joins its threads: a hang here fails the test by timeout
        from.open_tree("a").unwrap().insert("k", "x").unwrap();
    }
}
