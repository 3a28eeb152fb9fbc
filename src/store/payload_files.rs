//! Large run payloads, kept as files beside sled instead of inside it.
//!
//! In an alert storm Alertmanager sends one body of tens of MB per group.
//! Written into a sled tree, such a payload is copied into a value, copied
//! again into sled's write buffer and kept in its cache: the 50 MB body of
//! `benches/storm.sh` peaked the daemon at four times its size. A payload
//! of [`LARGE_PAYLOAD_BYTES`] or more is therefore written straight from the
//! shared body text to `payloads/<run id>.json` in the data dir, synced
//! (file, then directory) before its run is, and the `payloads` tree holds
//! only [`IN_FILE`] for it. Small payloads stay in sled, where they are
//! cheaper than a file and an fsync each.
//!
//! A crash after a file is written and before its run is flushed leaves a
//! file no run refers to; [`PayloadFiles::sweep`] removes those at start.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Payloads at least this long go to a file.
pub const LARGE_PAYLOAD_BYTES: usize = 1024 * 1024;

/// The `payloads` tree's value for a payload kept in a file. Payload text
/// is JSON, which never starts with a NUL byte.
pub const IN_FILE: &[u8] = b"\0file";

pub struct PayloadFiles {
    dir: PathBuf,
}

impl PayloadFiles {
    /// The `payloads` directory under `data_dir`, created if missing.
    pub fn open(data_dir: &Path) -> io::Result<PayloadFiles> {
        let dir = data_dir.join("payloads");
        fs::create_dir_all(&dir)?;
        Ok(PayloadFiles { dir })
    }

    /// Writes `text` as the payload of `run_id` and syncs it to disk: once
    /// this returns, the file survives a crash.
    pub fn write(&self, run_id: &str, text: &str) -> io::Result<()> {
        let path = self.path(run_id)?;
        let tmp = path.with_extension("json.tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    pub fn read(&self, run_id: &str) -> io::Result<String> {
        let bytes = fs::read(self.path(run_id)?)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Removes the payload of `run_id`; a missing file is not an error.
    pub fn remove(&self, run_id: &str) -> io::Result<()> {
        match fs::remove_file(self.path(run_id)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes half-written files and payloads whose run is unknown
    /// (`is_referenced` false); returns how many files it removed.
    pub fn sweep(&self, is_referenced: impl Fn(&str) -> bool) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let keep = match name.strip_suffix(".json") {
                Some(run_id) => is_referenced(run_id),
                None => !name.ends_with(".json.tmp"),
            };
            if !keep {
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Run ids are ULIDs; anything else never becomes a path.
    fn path(&self, run_id: &str) -> io::Result<PathBuf> {
        if run_id.is_empty() || !run_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("run id {run_id:?} is not a file name"),
            ));
        }
        Ok(self.dir.join(format!("{run_id}.json")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_removes_a_payload() {
        let dir = tempfile::tempdir().unwrap();
        let files = PayloadFiles::open(dir.path()).unwrap();
        files.write("01ABC", r#"{"alerts": []}"#).unwrap();
        assert_eq!(files.read("01ABC").unwrap(), r#"{"alerts": []}"#);
        files.remove("01ABC").unwrap();
        assert!(files.read("01ABC").is_err());
        files.remove("01ABC").unwrap();
    }

    #[test]
    fn refuses_a_run_id_that_is_not_a_plain_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = PayloadFiles::open(dir.path()).unwrap();
        let err = files.write("../etc/passwd", "{}").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!dir.path().join("etc").exists());
    }

    #[test]
    fn sweep_removes_orphans_and_half_written_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let files = PayloadFiles::open(dir.path()).unwrap();
        files.write("KEPT", "1").unwrap();
        files.write("ORPHAN", "2").unwrap();
        fs::write(files.dir.join("HALF.json.tmp"), "3").unwrap();
        let removed = files.sweep(|id| id == "KEPT").unwrap();
        assert_eq!(removed, 2);
        assert_eq!(files.read("KEPT").unwrap(), "1");
        assert!(files.read("ORPHAN").is_err());
        assert!(!files.dir.join("HALF.json.tmp").exists());
    }
}
