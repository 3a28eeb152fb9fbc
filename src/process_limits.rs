//! Process-wide settings the daemon changes at start, and gives back to
//! the plugins it runs.
//!
//! - **Open files.** systemd starts a service with a soft limit of 1024
//!   open files and a hard limit far above it (524288 on Debian): the soft
//!   one is low only for programs that still use `select()`. herald uses
//!   epoll, and every client connection (up to `server.max_connections`,
//!   1024 by default), outgoing notify connection, plugin pipe and sled
//!   file takes one: at the soft limit `accept()` fails and clients wait.
//!   So the daemon raises its soft limit to the hard one, as Go programs
//!   do, and says so when even that is below what its config allows.
//! - **SIGXFSZ.** Past a file size limit (`ulimit -f`, systemd's
//!   `LimitFSIZE`) a write raises SIGXFSZ, whose default action kills the
//!   process mid-write. Ignored, the write fails with EFBIG instead, and
//!   herald stops as it does for a full disk (see `store::health`).
//!
//! A plugin inherits both, so [`restore_in_child`] puts back the soft limit
//! and the signal's default action between fork and exec.

use std::sync::atomic::{AtomicU64, Ordering};

/// Files the daemon opens besides client connections: sled's, the
/// listener, epoll and inotify, notify connections, plugin pipes.
const FILES_BESIDES_CLIENTS: u64 = 128;

/// The soft open-files limit herald started with, when it raised it.
static ORIGINAL_SOFT_NOFILE: AtomicU64 = AtomicU64::new(u64::MAX);

/// Raises the soft open-files limit to the hard one and ignores SIGXFSZ.
/// Answers the open-files limit now in force.
pub fn prepare_daemon() -> u64 {
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let Some(limit) = open_files() else {
        return u64::MAX;
    };
    if limit.rlim_cur >= limit.rlim_max {
        return limit.rlim_cur;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: a valid rlimit, read back above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), soft = limit.rlim_cur, "could not raise the open-files limit");
        return limit.rlim_cur;
    }
    ORIGINAL_SOFT_NOFILE.store(limit.rlim_cur, Ordering::Relaxed);
    tracing::debug!(
        from = limit.rlim_cur,
        to = limit.rlim_max,
        "raised the soft open-files limit to the hard one"
    );
    limit.rlim_max
}

/// Warns when `max_connections` clients could use up the open-files limit.
pub fn check_room_for_connections(open_files_limit: u64, max_connections: usize) {
    let needed = (max_connections as u64).saturating_add(FILES_BESIDES_CLIENTS);
    if open_files_limit < needed {
        tracing::warn!(
            open_files_limit,
            max_connections,
            "the open-files limit is below server.max_connections + {FILES_BESIDES_CLIENTS}: \
             past it, new connections wait; raise LimitNOFILE= in the unit (or `ulimit -n`), \
             or lower server.max_connections"
        );
    }
}

/// Gives a plugin about to be exec'd the limits herald started with.
/// Async-signal-safe: only system calls, for `pre_exec`.
pub fn restore_in_child() {
    // SAFETY: signal() and setrlimit() are plain system calls; the rlimit
    // is valid, its hard limit unchanged from the parent's.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
        let soft = ORIGINAL_SOFT_NOFILE.load(Ordering::Relaxed);
        if soft != u64::MAX {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur = soft;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}

fn open_files() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}
