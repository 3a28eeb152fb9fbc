//! Compaction: copy the live records into a fresh database and swap it in.
//!
//! sled 0.34 gives back little of the space its log leaves behind. Under a
//! steady 100 accepted webhooks a second, with retention holding the live
//! data near 50 MB, the database file grew by about 1.3 MB a second and
//! never stopped; a 150-second burst at 800 a second left a 4.9 GB file
//! for 41 MB of records, and neither pruning nor hours idle shrank it. A
//! bigger file also means a slower start (sled reads its whole log) and
//! more memory (sled keeps state for every page it has written).
//!
//! The cure is a copy: every tree, record by record, into a new database,
//! which then replaces the old one. It runs with the store closed (the data
//! dir's lock held) from `herald store compact` or at daemon start, or on
//! the open store ([`super::Store::compact_online`]): the copy is made
//! while writes go on, the keys they change are replayed into it (module
//! `changes`), and writes are held back by the store's write gate only for
//! the last replay and the swap. The daemon does either when the file has
//! grown past `[store] compact_above_mb`.
//!
//! Every step leaves a state a crash can be recovered from, and
//! [`finish_interrupted`] (run by every opener, under the lock) does so:
//!
//! 1. copy into `db.compacting/`, check it against the original, sync;
//! 2. rename it to `db.compacted/`: the copy is complete;
//! 3. rename `db/` to `db.old/`, then `db.compacted/` to `db/`;
//! 4. remove `db.old/`.
//!
//! A crash during 1 leaves `db.compacting/`, which is deleted; after 2 or
//! during 3, the swap is finished; after 3, `db.old/` is deleted.
//!
//! A fresh copy is not always smaller: sled writes a leaf several times
//! while it fills, so a copy takes about 1.7 times its live data, and a
//! store with little garbage (one just compacted, say) can be smaller
//! than its copy. Offline, such a copy is thrown away before step 2 and
//! the original kept as it was ([`Compaction::discarded_copy_bytes`]).
//! Online compaction always swaps: it runs only on a file that has grown
//! to twice what the last compaction left ([`due`]), and sled rounds a
//! file up to a whole segment as it opens it, so the open original and a
//! fresh copy would not weigh alike.

use super::changes::{self, Changes};
use super::{StoreError, StoreOptions};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What a compaction did; also kept in `compaction.json` in the data dir,
/// so that the start-up check knows what size a fresh copy had.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compaction {
    pub at: chrono::DateTime<chrono::Utc>,
    pub before_bytes: u64,
    pub after_bytes: u64,
    pub records: u64,
    #[serde(with = "millis")]
    pub took: Duration,
    /// How long writes waited for it: online, the last replay and the swap;
    /// offline, all of it (nothing could write).
    #[serde(default, with = "millis")]
    pub writes_held: Duration,
    /// Online: keys written while the copy was made, replayed into it.
    #[serde(default)]
    pub replayed: u64,
    /// The size of a copy that was not smaller than the original, and so
    /// was thrown away: the original is kept, untouched. `None`: the copy
    /// took the original's place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discarded_copy_bytes: Option<u64>,
}

impl Compaction {
    /// Says what was done, in the log.
    pub fn log(&self) {
        if let Some(copy_bytes) = self.discarded_copy_bytes {
            tracing::info!(
                database_bytes = self.before_bytes,
                copy_bytes,
                records = self.records,
                took_ms = self.took.as_millis() as u64,
                "store compaction kept the original: a fresh copy was not smaller"
            );
            return;
        }
        tracing::info!(
            before_bytes = self.before_bytes,
            after_bytes = self.after_bytes,
            records = self.records,
            took_ms = self.took.as_millis() as u64,
            writes_held_ms = self.writes_held.as_millis() as u64,
            replayed = self.replayed,
            "store compacted"
        );
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

const RECORD_FILE: &str = "compaction.json";
/// Records copied per sled batch.
const COPY_BATCH: usize = 1024;
/// Online: replays of changed keys made while writes go on, at most, before
/// the last one (with writes held back).
const CATCH_UP_ROUNDS: usize = 5;
/// Online: few enough changed keys to replay with writes held back.
const SMALL_REPLAY: usize = 2_000;
/// After a compaction stopped for want of disk space, the next try.
pub const NO_ROOM_PAUSE: Duration = Duration::from_secs(3600);

/// The free space a compaction leaves on the data dir's file system: 5 %
/// of it, and never under 64 MiB. The copy needs room for all the live
/// data; a copy that filled the disk would make the store itself fail a
/// write (and herald stop, see `health`), so the copy stops first.
fn reserve(fs_bytes: u64) -> u64 {
    (fs_bytes / 20).max(64 << 20)
}

/// Errs, saying how much room there is, when the file system of `dir` has
/// less free space than [`reserve`] (checked as the copy grows).
fn check_room(dir: &Path) -> Result<(), StoreError> {
    let Some((size, available)) = space(dir) else {
        return Ok(()); // unknown: statvfs failed; the copy goes on
    };
    let reserve = reserve(size);
    if available >= reserve {
        return Ok(());
    }
    Err(StoreError::NoRoomToCompact {
        available_mib: available >> 20,
        reserve_mib: reserve >> 20,
    })
}

#[cfg(not(test))]
fn space(dir: &Path) -> Option<(u64, u64)> {
    crate::host::procfs::space(dir)
}

// Tests set the file system's size and free space the copy sees: one
// reading per check, the last one repeated.
#[cfg(test)]
thread_local! {
    static SPACE: std::cell::RefCell<Vec<(u64, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn space(dir: &Path) -> Option<(u64, u64)> {
    SPACE
        .with_borrow_mut(|readings| match readings.len() {
            0 => None,
            1 => Some(readings[0]),
            _ => Some(readings.remove(0)),
        })
        .or_else(|| crate::host::procfs::space(dir))
}

/// The data dir's paths that compaction moves around.
struct Paths {
    db: PathBuf,
    compacting: PathBuf,
    compacted: PathBuf,
    old: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            db: dir.join("db"),
            compacting: dir.join("db.compacting"),
            compacted: dir.join("db.compacted"),
            old: dir.join("db.old"),
        }
    }
}

/// The data dir's lock, held by whoever has the store open (or is
/// compacting it). Released when dropped.
pub(super) fn lock(dir: &Path) -> Result<File, StoreError> {
    let open_err = |e: std::io::Error| StoreError::Open {
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    if let Err(refused) = super::ownership::refuse_root_in_another_users_dir(dir) {
        // With the service running, the CLI goes through it and writes
        // nothing here: say "in use", as to anyone.
        if let Ok(held) = File::open(dir.join("lock"))
            && matches!(held.try_lock(), Err(std::fs::TryLockError::WouldBlock))
        {
            return Err(StoreError::InUse(dir.to_path_buf()));
        }
        return Err(refused);
    }
    if dir.exists() && !dir.is_dir() {
        return Err(StoreError::Open {
            path: dir.to_path_buf(),
            message: "it is a file, not a directory".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(open_err)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(open_err)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::InUse(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(open_err(e)),
    }
}

/// Completes or undoes a compaction that a crash interrupted. Call with the
/// data dir's lock held.
pub(super) fn finish_interrupted(dir: &Path) -> std::io::Result<()> {
    let p = Paths::new(dir);
    if p.compacting.exists() {
        tracing::warn!("removing an unfinished compaction copy");
        remove_dir(&p.compacting)?;
    }
    if p.compacted.exists() {
        tracing::warn!("finishing a compaction that was interrupted");
        if p.db.exists() {
            rename(&p.db, &p.old)?;
        }
        rename(&p.compacted, &p.db)?;
        sync_dir(dir)?;
    }
    if p.old.exists() {
        if p.db.exists() {
            remove_dir(&p.old)?;
        } else {
            rename(&p.old, &p.db)?;
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// `std::fs::remove_dir_all`, with the path in its error.
fn remove_dir(path: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("removing {}: {e}", path.display())))
}

/// `std::fs::rename`, with both paths in its error.
fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("renaming {} to {}: {e}", from.display(), to.display()),
        )
    })
}

/// Size of the database file in the data dir (0 when there is none).
pub fn database_bytes(dir: &Path) -> u64 {
    file_bytes(&Paths::new(dir).db)
}

/// Size of the file of the sled database in `db_dir` (0 when there is none).
fn file_bytes(db_dir: &Path) -> u64 {
    std::fs::metadata(db_dir.join("db"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// The last compaction's record, if any.
pub fn last_compaction(dir: &Path) -> Option<Compaction> {
    let text = std::fs::read_to_string(dir.join(RECORD_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Whether the store is due a compaction: its file is at least
/// `threshold_bytes` (0: never) and at least twice the size the last
/// compaction left, so that a store whose live data is simply large is not
/// copied over and over.
pub fn due(dir: &Path, threshold_bytes: u64) -> bool {
    if threshold_bytes == 0 {
        return false;
    }
    let size = database_bytes(dir);
    let floor = last_compaction(dir).map_or(0, |c| c.after_bytes.saturating_mul(2));
    size >= threshold_bytes && size >= floor
}

fn step_err(dir: &Path, step: &str, e: std::io::Error) -> StoreError {
    StoreError::Open {
        path: dir.to_path_buf(),
        message: format!("compaction: {step}: {e}"),
    }
}

/// Compacts the store in `dir`, which must not be open ([`StoreError::InUse`]
/// otherwise). On any error the original database is left in place.
pub fn compact(dir: &Path, options: &StoreOptions) -> Result<Compaction, StoreError> {
    let started = Instant::now();
    let missing = || StoreError::Open {
        path: dir.to_path_buf(),
        message: "there is no store here to compact".into(),
    };
    if !dir.is_dir() {
        return Err(missing());
    }
    let _lock = lock(dir)?;
    finish_interrupted(dir).map_err(|e| step_err(dir, "recovering an earlier compaction", e))?;
    let p = Paths::new(dir);
    if !p.db.is_dir() {
        return Err(missing());
    }
    let before_bytes = database_bytes(dir);
    let old = super::open_db(dir, &p.db, options.cache_bytes)?;
    let copied = copy_and_seal(dir, &old, before_bytes, options.cache_bytes)?;
    // The old database stays open (so sled's own lock on it stays held)
    // until the copy has taken its place.
    if copied.discarded_copy_bytes.is_none() {
        swap_in(dir)?;
    }
    drop(old);
    Ok(finish(dir, started, before_bytes, copied))
}

impl super::Store {
    /// Compacts the open store. The live records are copied while writes
    /// go on; the keys written meanwhile are replayed into the copy, in
    /// rounds, until few are left; then writes wait while the rest is
    /// replayed and the copy is swapped in. Reads go on throughout. On any
    /// error the original stays in use.
    pub fn compact_online(&self) -> Result<Compaction, StoreError> {
        let started = Instant::now();
        let dir = self.path().to_path_buf();
        let cache = self.options().cache_bytes;
        let p = Paths::new(&dir);
        let hold_writes = || {
            self.inner
                .writes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let old = self.inner.trees.load_full();
        let before_bytes = database_bytes(&dir);
        // Subscribed while no write is in progress, so none goes unseen.
        let changes = {
            let _held = hold_writes();
            Changes::watch(&old.db)?
        };
        let copied = copy_live(&old.db, &changes, &p.compacting, cache);
        let (new, mut copied) = match copied {
            Ok(copied) => copied,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&p.compacting);
                return Err(e);
            }
        };
        let held_since = Instant::now(); // writers queue from here on
        let gate = hold_writes();
        let caught_up = catch_up(&old.db, &new, &p.compacting, changes.finish(), &mut copied);
        drop(new);
        if let Err(e) = caught_up.and_then(|()| seal(&dir)) {
            let _ = std::fs::remove_dir_all(&p.compacting);
            let _ = std::fs::remove_dir_all(&p.compacted);
            return Err(e);
        }
        swap_in(&dir)?;
        let reopened = super::open_db(&dir, &p.db, cache)
            .and_then(|db| super::Trees::open(db).map_err(StoreError::from));
        let trees = match reopened {
            Ok(trees) => trees,
            Err(e) => {
                // Put the original back under its name before any write
                // reaches it again: the next start must not prefer the copy.
                // Renames only (the copy becomes an unfinished one, which
                // the next open removes): nothing half-deleted is left.
                rename(&p.db, &p.compacting)
                    .and_then(|()| rename(&p.old, &p.db))
                    .and_then(|()| sync_dir(&dir))
                    .map_err(|undo| step_err(&dir, "putting the original back", undo))?;
                return Err(e);
            }
        };
        self.inner.trees.store(std::sync::Arc::new(trees));
        drop(gate);
        copied.writes_held = Some(held_since.elapsed());
        drop(old);
        Ok(finish(&dir, started, before_bytes, copied))
    }

    /// Compacts online when [`due`] says so (the threshold is
    /// `[store] compact_above_mb`); `None` when it is not due, or within
    /// [`NO_ROOM_PAUSE`] of a compaction stopped for want of disk space
    /// (each try would write up to all the free space, only to delete it).
    pub fn compact_if_due(&self) -> Option<Result<Compaction, StoreError>> {
        let threshold = self
            .inner
            .compact_above_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut paused = self
            .inner
            .compaction_paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if paused.is_some_and(|until| Instant::now() < until) || !due(self.path(), threshold) {
            return None;
        }
        let result = self.compact_online();
        *paused = match result {
            Err(StoreError::NoRoomToCompact { .. }) => Some(Instant::now() + NO_ROOM_PAUSE),
            _ => None,
        };
        Some(result)
    }
}

/// Online, step 1 while writes go on: the copy at `to`, then the keys
/// written meanwhile replayed into it, round after round, until a round is
/// small (or [`CATCH_UP_ROUNDS`] have run).
fn copy_live(
    old: &sled::Db,
    changes: &Changes,
    to: &Path,
    cache_bytes: u64,
) -> Result<(sled::Db, Copied), StoreError> {
    let new = open_fresh(to, cache_bytes)?;
    let mut records = copy_trees(old, &new, to)? as i64;
    let mut replayed = 0;
    for _ in 0..CATCH_UP_ROUNDS {
        let round = changes.take();
        let keys = changes::count(&round);
        replayed += keys as u64;
        records += changes::replay(old, &new, round)?;
        if keys <= SMALL_REPLAY {
            break;
        }
    }
    let copied = Copied {
        records: records.max(0) as u64,
        replayed,
        writes_held: None,
        discarded_copy_bytes: None,
    };
    Ok((new, copied))
}

/// Online, the end of step 1 with writes held back: the last changed keys
/// replayed, checked against the original, and the copy flushed.
fn catch_up(
    old: &sled::Db,
    new: &sled::Db,
    to: &Path,
    rest: changes::Changed,
    copied: &mut Copied,
) -> Result<(), StoreError> {
    copied.replayed += changes::count(&rest) as u64;
    let delta = changes::replay(old, new, rest.clone())?;
    copied.records = copied.records.saturating_add_signed(delta);
    if !changes::agree(old, new, &rest)? {
        return Err(StoreError::Open {
            path: to.to_path_buf(),
            message: "compaction: the copy differs from the original; the original is kept".into(),
        });
    }
    new.flush()?;
    Ok(())
}

/// Steps 1 and 2: the copy in `db.compacting/`, checked and synced, renamed
/// `db.compacted/`; or, when the copy is no smaller than the original's
/// `before_bytes`, removed again (`discarded_copy_bytes`). On error nothing
/// is left.
fn copy_and_seal(
    dir: &Path,
    old: &sled::Db,
    before_bytes: u64,
    cache_bytes: u64,
) -> Result<Copied, StoreError> {
    let p = Paths::new(dir);
    // The copy is closed (dropped) before its size is read.
    let sealed = open_fresh(&p.compacting, cache_bytes)
        .and_then(|new| copy_trees(old, &new, &p.compacting))
        .and_then(|records| {
            let mut copied = Copied {
                records,
                replayed: 0,
                writes_held: None,
                discarded_copy_bytes: None,
            };
            let copy_bytes = file_bytes(&p.compacting);
            if copy_bytes >= before_bytes {
                remove_dir(&p.compacting).map_err(|e| step_err(dir, "removing the copy", e))?;
                copied.discarded_copy_bytes = Some(copy_bytes);
                return Ok(copied);
            }
            seal(dir).map(|()| copied)
        });
    if sealed.is_err() {
        let _ = std::fs::remove_dir_all(&p.compacting);
        let _ = std::fs::remove_dir_all(&p.compacted);
    }
    sealed
}

/// Step 2: the finished copy in `db.compacting/` (closed) is synced and
/// renamed `db.compacted/`.
fn seal(dir: &Path) -> Result<(), StoreError> {
    let p = Paths::new(dir);
    sync_dir(&p.compacting)
        .and_then(|()| rename(&p.compacting, &p.compacted))
        .and_then(|()| sync_dir(dir))
        .map_err(|e| step_err(dir, "sealing the copy", e))
}

/// Step 3: the copy takes the database's place. If the second rename
/// fails, the first is undone, so `db/` is always the one in use.
fn swap_in(dir: &Path) -> Result<(), StoreError> {
    let p = Paths::new(dir);
    rename(&p.db, &p.old).map_err(|e| step_err(dir, "moving the old database aside", e))?;
    if let Err(e) = rename(&p.compacted, &p.db) {
        let _ = rename(&p.old, &p.db);
        let _ = std::fs::remove_dir_all(&p.compacted);
        return Err(step_err(dir, "putting the copy in place", e));
    }
    sync_dir(dir).map_err(|e| step_err(dir, "syncing the data dir", e))
}

/// What a copy held, and (online) what it replayed and how long writes
/// waited (`None`: the whole time); the copy's size when it was thrown
/// away for being no smaller than the original.
struct Copied {
    records: u64,
    replayed: u64,
    writes_held: Option<Duration>,
    discarded_copy_bytes: Option<u64>,
}

fn millis(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Step 4, and the record of what was done.
fn finish(dir: &Path, started: Instant, before_bytes: u64, copied: Copied) -> Compaction {
    if copied.discarded_copy_bytes.is_none()
        && let Err(e) = remove_dir(&Paths::new(dir).old)
    {
        // The copy is in place; the next open removes what is left.
        tracing::warn!(error = %e, "compaction: could not remove the old database");
    }
    let record = Compaction {
        at: chrono::Utc::now(),
        before_bytes,
        after_bytes: database_bytes(dir),
        records: copied.records,
        took: millis(started.elapsed()),
        writes_held: millis(copied.writes_held.unwrap_or(started.elapsed())),
        replayed: copied.replayed,
        discarded_copy_bytes: copied.discarded_copy_bytes,
    };
    if let Ok(text) = serde_json::to_vec_pretty(&record) {
        // Only a hint for `due`: losing it costs one needless copy.
        let _ = std::fs::write(dir.join(RECORD_FILE), text);
    }
    record
}

/// A new, empty database at `to` (anything there before is removed), for
/// a copy.
fn open_fresh(to: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(|e| StoreError::Open {
            path: to.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(sled::Config::new()
        .path(to)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None)
        .open()?)
}

/// Copies every tree of `old` into `new` (at `to`), checks that the copy
/// holds what was read (a hash of every tree name, key and value, taken
/// while copying and again over the copy), and flushes it. How many records
/// it copied.
fn copy_trees(old: &sled::Db, new: &sled::Db, to: &Path) -> Result<u64, StoreError> {
    let mut read = Digest::default();
    check_room(to)?;
    for name in old.tree_names() {
        read.tree(&name);
        let from = old.open_tree(&name)?;
        let into = new.open_tree(&name)?;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for item in from.iter() {
            let (key, value) = item?;
            read.record(&key, &value);
            batch.insert(key, value);
            in_batch += 1;
            if in_batch == COPY_BATCH {
                into.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
                check_room(to)?;
            }
        }
        into.apply_batch(batch)?;
    }
    new.flush()?;
    let mut written = Digest::default();
    for name in old.tree_names() {
        written.tree(&name);
        for item in new.open_tree(&name)?.iter() {
            let (key, value) = item?;
            written.record(&key, &value);
        }
    }
    if read != written {
        return Err(StoreError::Open {
            path: to.to_path_buf(),
            message: "compaction: the copy differs from the original; the original is kept".into(),
        });
    }
    Ok(read.records)
}

/// A running hash of tree names and records, with the record count. The
/// hasher is std's SipHash with fixed keys: the same input gives the same
/// value within the process, which is all the comparison needs.
#[derive(Default, PartialEq)]
struct Digest {
    hash: u64,
    records: u64,
}

impl Digest {
    fn tree(&mut self, name: &[u8]) {
        self.mix(b"tree", name);
    }

    fn record(&mut self, key: &[u8], value: &[u8]) {
        self.records += 1;
        self.mix(key, value);
    }

    fn mix(&mut self, a: &[u8], b: &[u8]) {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.hash.hash(&mut h);
        a.hash(&mut h);
        b.hash(&mut h);
        self.hash = h.finish();
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::{Digest, SPACE};
    use crate::store::{Store, StoreError, StoreOptions};

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    /// A store with 5,000 records in a tree of its own (five copy batches).
    fn store_with_records(dir: &std::path::Path) -> Store {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let scratch = store.trees().db.open_tree("scratch").unwrap();
        for i in 0..5_000u32 {
            scratch.insert(i.to_be_bytes(), &[7u8; 100][..]).unwrap();
        }
        store.flush().unwrap();
        store
    }

    fn records(store: &Store) -> usize {
        store.trees().db.open_tree("scratch").unwrap().len()
    }

    #[test]
    fn a_copy_that_would_eat_into_the_reserve_stops_and_keeps_the_original() {
        let dir = tempfile::tempdir().unwrap();
        drop(store_with_records(dir.path()));
        // Room at the start, none after the first batch: it stops mid-copy.
        SPACE.set(vec![
            (10 * GIB, GIB),
            (10 * GIB, GIB),
            (10 * GIB, 100 * MIB),
        ]);
        let refused = super::compact(dir.path(), &StoreOptions::default());
        SPACE.take();
        match refused {
            Err(StoreError::NoRoomToCompact {
                available_mib: 100,
                reserve_mib: 512,
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            !dir.path().join("db.compacting").exists(),
            "the partial copy is gone"
        );
        assert!(super::last_compaction(dir.path()).is_none());
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert_eq!(records(&store), 5_000);
    }

    #[test]
    fn online_a_compaction_out_of_room_waits_before_trying_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_records(dir.path());
        let options = StoreOptions::default();
        store.set_limits(options.retention, options.max_runs, 1);
        // A small disk: the reserve is 64 MiB, not 5 % of 200 MiB.
        SPACE.set(vec![(200 * MIB, 60 * MIB)]);
        match store.compact_if_due() {
            Some(Err(StoreError::NoRoomToCompact {
                available_mib: 60,
                reserve_mib: 64,
            })) => {}
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("db.compacting").exists());
        SPACE.set(vec![(200 * MIB, 150 * MIB)]);
        assert!(
            store.compact_if_due().is_none(),
            "paused after running out of room"
        );
        *store.inner.compaction_paused_until.lock().unwrap() = None; // an hour later
        let done = store.compact_if_due().expect("due again").unwrap();
        SPACE.take();
        assert_eq!(done.records, 5_000);
        assert_eq!(records(&store), 5_000);
    }

    fn digest(trees: &[(&str, &[(&str, &str)])]) -> Digest {
        let mut d = Digest::default();
        for (name, records) in trees {
            d.tree(name.as_bytes());
            for (k, v) in *records {
                d.record(k.as_bytes(), v.as_bytes());
            }
        }
        d
    }

    #[test]
    fn the_digest_tells_a_faithful_copy_from_a_damaged_one() {
        let original = digest(&[("runs", &[("a", "1"), ("b", "2")]), ("stages", &[])]);
        assert!(original == digest(&[("runs", &[("a", "1"), ("b", "2")]), ("stages", &[])]));
        for damaged in [
            digest(&[("runs", &[("a", "1"), ("b", "3")]), ("stages", &[])]),
            digest(&[("runs", &[("a", "1")]), ("stages", &[])]),
            digest(&[("runs", &[("a", "1")]), ("stages", &[("b", "2")])]),
            digest(&[("runs", &[("a", "12")]), ("stages", &[])]),
        ] {
            assert!(original != damaged);
        }
    }
}
