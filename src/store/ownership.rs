//! Who may write the data dir.
//!
//! The packaged service runs as the `herald` user and owns its data dir. An
//! operator who runs `herald run`, `herald runs list` or `herald store
//! compact` as root while the service is stopped would have sled write
//! files there owned by root — and the service would then fail to open its
//! own store, with nothing but "Permission denied". So root is refused on a
//! data dir that belongs to another user, with the command to use instead;
//! and when opening fails all the same, the error names the first file
//! owned by someone else and the `chown` that gives it back.

use super::StoreError;
use crate::accounts::user_name;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Refuses to let root write in a data dir that belongs to another user.
pub(super) fn refuse_root_in_another_users_dir(dir: &Path) -> Result<(), StoreError> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(()); // not there yet: root makes it, and owns it
    };
    if meta.uid() == 0 {
        return Ok(());
    }
    let owner = user_name(meta.uid());
    Err(StoreError::Open {
        path: dir.to_path_buf(),
        message: format!(
            "it belongs to user `{owner}` (uid {uid}), and this is root: files root made \
             there would keep herald running as `{owner}` from opening its store. Run this \
             as that user instead: sudo -u {owner} herald …",
            uid = meta.uid()
        ),
    })
}

/// After an open failed: the first file in `dir` owned by another user
/// than this process's, and the command that gives the dir back.
pub(super) fn explain_foreign_files(dir: &Path) -> Option<String> {
    // SAFETY: geteuid cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    if me == 0 {
        return None; // root is not stopped by ownership
    }
    let foreign =
        candidates(dir)
            .into_iter()
            .find_map(|path| match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.uid() != me => Some((path, meta.uid())),
                _ => None,
            })?;
    let (path, uid) = foreign;
    let user = user_name(me);
    Some(format!(
        "{} belongs to `{}`, not to `{user}`, which herald runs as: \
         chown -R {user}: {}",
        path.display(),
        user_name(uid),
        dir.display()
    ))
}

/// The data dir, what is in it, and what is in its database directory.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![dir.to_path_buf()];
    for sub in [dir.to_path_buf(), dir.join("db"), dir.join("payloads")] {
        if let Ok(entries) = std::fs::read_dir(&sub) {
            let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            found.sort();
            paths.extend(found);
        }
    }
    paths
}
