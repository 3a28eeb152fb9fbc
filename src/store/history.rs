//! Incident and alert history, kept in chunks beside their records.
//!
//! Why: an incident's history (its last 200 events) and an alert's (its
//! last 50 transitions) used to live inside their records, so every change
//! rewrote the whole history. sled writes a changed value whole, and every
//! tenth change to a tree node rewrites the node with all its values; with
//! full histories a flapping alert cost ~150 KB of disk writes per change
//! (`N=100 bash benches/soak.sh`: 3.7 GB written in 4 minutes for 24,000
//! webhooks), and the database file grew with it.
//!
//! Now a record keeps at most [`CHUNK`] recent entries inline. When it has
//! more, the oldest [`CHUNK`] are written to the `history` tree as one
//! value, and the record counts the chunks written so far
//! (`history_chunks`). Only the chunks the cap still needs are kept:
//! writing chunk n deletes chunk n − [`Owner::kept_chunks`]. A read puts the
//! chunks and the inline entries back together. A record from before this
//! (its whole history inline) is moved out the first time it is saved again.
//!
//! Order of writes, for a crash: new chunks, then the record, then the
//! deletion of old chunks. A crash after the chunks leaves a record that
//! does not count them yet; its next save writes the same chunk numbers
//! again. A chunk a record counts but that is gone reads as empty.
//!
//! Key: a kind byte (`i` incident, `a` alert), the owner's id, `\0`, the
//! chunk number (u32, big endian). Chunks are only read and deleted by
//! exact key, never by a prefix scan: an alert's key is whatever a payload
//! sent, `\0` included.

use super::{StoreError, decode, encode};
use crate::alerts::incident::{ALERT_HISTORY, INCIDENT_HISTORY};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;

/// Entries a record keeps inline, at most; also the size of a chunk.
pub const CHUNK: usize = 16;

/// Whose history.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner<'a> {
    /// An incident, by id.
    Incident(&'a str),
    /// An alert, by its `source/fingerprint` key.
    Alert(&'a str),
}

impl Owner<'_> {
    fn key(self, chunk: u32) -> Vec<u8> {
        let (kind, id) = match self {
            Owner::Incident(id) => (b'i', id),
            Owner::Alert(key) => (b'a', key),
        };
        let mut key = Vec::with_capacity(id.len() + 6);
        key.push(kind);
        key.extend_from_slice(id.as_bytes());
        key.push(0);
        key.extend_from_slice(&chunk.to_be_bytes());
        key
    }

    /// Entries shown, newest last.
    fn cap(self) -> usize {
        match self {
            Owner::Incident(_) => INCIDENT_HISTORY,
            Owner::Alert(_) => ALERT_HISTORY,
        }
    }

    /// Chunks kept: enough that, with at least one entry inline, the cap
    /// is always covered.
    pub(super) fn kept_chunks(self) -> u32 {
        self.cap().div_ceil(CHUNK) as u32
    }
}

/// Moves the oldest entries of `inline` into new chunks while it holds
/// more than [`CHUNK`], counting them in `chunks`. Returns the keys of the
/// chunks no longer needed: delete them once the record is written.
pub(super) fn spill<T: Serialize>(
    tree: &sled::Tree,
    owner: Owner<'_>,
    inline: &mut Vec<T>,
    chunks: &mut u32,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut stale = Vec::new();
    while inline.len() > CHUNK {
        let chunk: Vec<T> = inline.drain(..CHUNK).collect();
        tree.insert(owner.key(*chunks), encode(&chunk)?)?;
        if let Some(old) = chunks.checked_sub(owner.kept_chunks()) {
            stale.push(owner.key(old));
        }
        *chunks += 1;
    }
    Ok(stale)
}

/// `record` as it is to be stored: itself while its inline history (of
/// `inline_len` entries) is short, else a copy whose oldest entries were
/// moved out by [`spill`]; with the chunks to [`delete`] once it is stored.
pub(super) fn prepare<'r, R: Clone, T: Serialize>(
    tree: &sled::Tree,
    owner: Owner<'_>,
    record: &'r R,
    inline_len: usize,
    history: impl FnOnce(&mut R) -> (&mut Vec<T>, &mut u32),
) -> Result<(Cow<'r, R>, Vec<Vec<u8>>), StoreError> {
    if inline_len <= CHUNK {
        return Ok((Cow::Borrowed(record), Vec::new()));
    }
    let mut copy = record.clone();
    let (inline, chunks) = history(&mut copy);
    let stale = spill(tree, owner, inline, chunks)?;
    Ok((Cow::Owned(copy), stale))
}

/// Deletes chunks [`spill`] said are no longer needed.
pub(super) fn delete(tree: &sled::Tree, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
    for key in keys {
        tree.remove(key)?;
    }
    Ok(())
}

/// The whole history: the kept chunks, then `inline`; the newest
/// [`Owner::cap`] entries, oldest first.
pub(super) fn read<T: DeserializeOwned + Clone>(
    tree: &sled::Tree,
    owner: Owner<'_>,
    inline: &[T],
    chunks: u32,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for n in chunks.saturating_sub(owner.kept_chunks())..chunks {
        if let Some(bytes) = tree.get(owner.key(n))? {
            out.extend(decode::<Vec<T>>("history chunk", &bytes)?);
        }
    }
    out.extend_from_slice(inline);
    let excess = out.len().saturating_sub(owner.cap());
    out.drain(..excess);
    Ok(out)
}

/// Deletes every chunk an owner may still have (it is being deleted).
pub(super) fn delete_all(
    tree: &sled::Tree,
    owner: Owner<'_>,
    chunks: u32,
) -> Result<(), StoreError> {
    for n in chunks.saturating_sub(owner.kept_chunks())..chunks {
        tree.remove(owner.key(n))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("history").unwrap()
    }

    /// Appends `n` numbered entries one at a time, saving after each as the
    /// store does; returns the inline part and the chunk count.
    fn append(tree: &sled::Tree, owner: Owner<'_>, n: u32) -> (Vec<u32>, u32) {
        let (mut inline, mut chunks) = (Vec::new(), 0);
        for i in 0..n {
            inline.push(i);
            let stale = spill(tree, owner, &mut inline, &mut chunks).unwrap();
            delete(tree, stale).unwrap();
        }
        (inline, chunks)
    }

    #[test]
    fn a_long_history_reads_back_whole_up_to_the_cap() {
        let t = tree();
        let owner = Owner::Incident("inc-1");
        let (inline, chunks) = append(&t, owner, 1000);
        assert!(inline.len() <= CHUNK, "{} inline", inline.len());
        let all = read(&t, owner, &inline, chunks).unwrap();
        assert_eq!(all, (800..1000).collect::<Vec<u32>>());
        // Only the chunks still needed are stored.
        assert_eq!(t.len(), owner.kept_chunks() as usize);
    }

    #[test]
    fn a_short_history_stays_inline() {
        let t = tree();
        let owner = Owner::Alert("alertmanager/x");
        let (inline, chunks) = append(&t, owner, CHUNK as u32);
        assert_eq!((inline.len(), chunks, t.len()), (CHUNK, 0, 0));
        assert_eq!(
            read(&t, owner, &inline, chunks).unwrap(),
            (0..CHUNK as u32).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_record_with_its_whole_history_inline_is_moved_out_at_once() {
        let t = tree();
        let owner = Owner::Alert("alertmanager/x");
        let mut inline: Vec<u32> = (0..50).collect();
        let mut chunks = 0;
        let stale = spill(&t, owner, &mut inline, &mut chunks).unwrap();
        assert!(stale.is_empty());
        assert_eq!((inline.len(), chunks), (2, 3));
        assert_eq!(
            read(&t, owner, &inline, chunks).unwrap(),
            (0..50).collect::<Vec<_>>()
        );
    }

    #[test]
    fn owners_do_not_share_chunks_and_deleting_one_leaves_the_other() {
        let t = tree();
        // An alert key may hold `\0`: exact keys keep owners apart anyway.
        let (a, b) = (Owner::Alert("x"), Owner::Alert("x\0\0\0\0\0"));
        let (ia, ca) = append(&t, a, 40);
        let (ib, cb) = append(&t, b, 70);
        delete_all(&t, b, cb).unwrap();
        assert_eq!(read(&t, a, &ia, ca).unwrap(), (0..40).collect::<Vec<_>>());
        assert_eq!(
            read(&t, b, &ib, cb).unwrap(),
            ib,
            "only the inline part left"
        );
        assert_eq!(t.len(), ca as usize);
    }
}
