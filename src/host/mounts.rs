//! Disk usage of the mounted file systems, read so that a mount that does
//! not answer cannot stall the rest of the host's data.
//!
//! statvfs(2) on a network file system whose server is gone can block in
//! the kernel for good (`df` hangs): a hard NFS mount, sshfs, SMB3, Ceph.
//! Each sample lists the mounts from `/proc/self/mounts` and hands them to
//! a thread of its own, which statvfs's them one by one; the sample waits
//! for it at most [`PATIENCE`]. The mount that thread is stuck on is then
//! reported as not responding, and later samples skip it until that call
//! returns — if it never does, one thread stays blocked per such mount,
//! not one per sample.
//!
//! Network file systems are only probed for an answer: their usage is the
//! server's business (a share 95 % full would alarm every host mounting
//! it), so it is not reported as this host's disk.

use std::collections::HashSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a sample waits for the statvfs calls of all mounts.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// File systems that are not storage an operator fills up, or that are
/// always full (read-only images).
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "cgroup",
    "cgroup2",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "configfs",
    "fusectl",
    "hugetlbfs",
    // A trigger: statvfs on it mounts what it stands for.
    "autofs",
    "binfmt_misc",
    "nsfs",
    "ramfs",
    "rootfs",
    "squashfs",
    "iso9660",
    "erofs",
    "cramfs",
    "udf",
    "fuse.snapfuse",
    "fuse.lxcfs",
    "efivarfs",
    "rpc_pipefs",
    "selinuxfs",
];

/// Where container runtimes mount each container's root and volumes: one
/// mount per container, each the host's own disk seen again.
const CONTAINER_MOUNTS: &[&str] = &[
    "/var/lib/docker/",
    "/var/lib/containers/",
    "/var/lib/kubelet/",
    "/var/lib/containerd/",
];

/// File systems served from elsewhere: probed for an answer only.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "fuse.ceph",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "fuse.s3fs",
    "fuse.rclone",
    "davfs",
    "9p",
    "afs",
    "lustre",
    "gpfs",
];

/// A mounted file system worth reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub point: String,
    pub fs_type: String,
    /// Served from elsewhere: probed for an answer, usage not reported.
    pub network: bool,
}

/// What statvfs said of a mount, in bytes and inodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Space {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
}

/// One sample's readings.
#[derive(Debug, Default)]
pub struct Readings {
    pub measured: Vec<(Mount, Space)>,
    /// Mounts whose statvfs has not returned, sorted.
    pub not_responding: Vec<String>,
}

type Statvfs = Arc<dyn Fn(&str) -> Option<Space> + Send + Sync>;

/// Reads the mounts, remembering which ones do not answer.
pub struct MountProbe {
    /// Mounts whose statvfs call has not returned; its thread takes the
    /// mount out when it does.
    stuck: Arc<Mutex<HashSet<String>>>,
    patience: Duration,
    statvfs: Statvfs,
}

impl Default for MountProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl MountProbe {
    pub fn new() -> MountProbe {
        MountProbe {
            stuck: Arc::default(),
            patience: PATIENCE,
            statvfs: Arc::new(statvfs),
        }
    }

    /// The mounts of this host, read now.
    pub fn read(&self) -> Readings {
        let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        self.read_mounts(parse_mounts(&text))
    }

    fn read_mounts(&self, mounts: Vec<Mount>) -> Readings {
        let already_stuck = lock(&self.stuck).clone();
        let to_probe: Vec<Mount> = mounts
            .iter()
            .filter(|m| !already_stuck.contains(&m.point))
            .cloned()
            .collect();
        // The mount the thread is in statvfs on. Held while it is taken to
        // be stuck and while the thread finds out whether it was, so both
        // see the same order of events.
        let current: Arc<Mutex<Option<String>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let spawned = {
            let (stuck, current, statvfs) =
                (self.stuck.clone(), current.clone(), self.statvfs.clone());
            std::thread::Builder::new()
                .name("herald-statvfs".into())
                .spawn(move || {
                    for mount in to_probe {
                        *lock(&current) = Some(mount.point.clone());
                        let space = statvfs(&mount.point);
                        {
                            let mut now = lock(&current);
                            *now = None;
                            if lock(&stuck).remove(&mount.point) {
                                return; // given up on: that sample is over
                            }
                        }
                        if tx.send((mount, space)).is_err() {
                            return;
                        }
                    }
                })
        };
        let mut readings = Readings::default();
        if spawned.is_ok() {
            let deadline = Instant::now() + self.patience;
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok((mount, Some(space))) => readings.measured.push((mount, space)),
                    Ok((_, None)) => {} // gone, or not ours to read
                    Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => {
                        let now = lock(&current);
                        if let Some(point) = now.as_ref() {
                            lock(&self.stuck).insert(point.clone());
                        }
                        break;
                    }
                }
            }
        }
        let stuck = lock(&self.stuck);
        readings.not_responding = mounts
            .iter()
            .filter(|m| stuck.contains(&m.point))
            .map(|m| m.point.clone())
            .collect();
        readings.not_responding.sort();
        readings
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The mounts in `/proc/self/mounts` text worth reading: pseudo and
/// read-only image file systems left out, `/proc`, `/sys` and `/run`
/// (but `/run/media`) left out, container runtimes' mounts left out, one
/// entry per mount point (the last, which is the one a path there
/// reaches).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(point), Some(fs_type)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let point = unescape(point);
        let ignored_point = point.starts_with("/proc")
            || point.starts_with("/sys")
            || (point.starts_with("/run") && !point.starts_with("/run/media"))
            || CONTAINER_MOUNTS.iter().any(|dir| point.starts_with(dir));
        if PSEUDO_FS.contains(&fs_type) || ignored_point || source.starts_with("sunrpc") {
            continue;
        }
        out.retain(|m| m.point != point);
        out.push(Mount {
            point,
            fs_type: fs_type.to_string(),
            network: NETWORK_FS.contains(&fs_type),
        });
    }
    out
}

/// `/proc/self/mounts` writes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn statvfs(point: &str) -> Option<Space> {
    let st = super::procfs::statvfs(std::path::Path::new(point))?;
    let unit = st.f_frsize;
    Some(Space {
        total_bytes: st.f_blocks.saturating_mul(unit),
        available_bytes: st.f_bavail.saturating_mul(unit),
        total_inodes: st.f_files,
        free_inodes: st.f_ffree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn mounts_worth_reading() {
        let text = "\
sysfs /sys sysfs rw 0 0
proc /proc proc rw 0 0
/dev/sda1 / ext4 rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/sdb1 /run/media/usb vfat rw 0 0
/dev/loop3 /snap/core/1 squashfs ro 0 0
server:/export /mnt/share nfs4 rw 0 0
/dev/sdc1 /srv/my\\040data xfs rw 0 0
/dev/sdd1 /srv/my\\040data ext4 rw 0 0
overlay /var/lib/docker/overlay2/0123abcd/merged overlay rw 0 0
/dev/sda1 /var/lib/kubelet/pods/x/volumes/y ext4 rw 0 0
";
        let mounts = parse_mounts(text);
        let points: Vec<&str> = mounts.iter().map(|m| m.point.as_str()).collect();
        assert_eq!(
            points,
            ["/", "/run/media/usb", "/mnt/share", "/srv/my data"]
        );
        assert!(mounts[2].network);
        assert!(!mounts[0].network);
        assert_eq!(mounts[3].fs_type, "ext4", "the last mount on a point wins");
    }

    fn mount(point: &str) -> Mount {
        Mount {
            point: point.into(),
            fs_type: "ext4".into(),
            network: false,
        }
    }

    /// `/hung` blocks in statvfs until released, as a dead server's mount.
    #[test]
    fn a_mount_that_does_not_answer_is_reported_and_skipped_until_it_does() {
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let hung_calls = Arc::new(AtomicUsize::new(0));
        let probe = MountProbe {
            stuck: Arc::default(),
            patience: Duration::from_millis(300),
            statvfs: {
                let hung_calls = hung_calls.clone();
                Arc::new(move |point: &str| {
                    if point == "/hung" {
                        hung_calls.fetch_add(1, Ordering::SeqCst);
                        let _ = lock(&released).recv();
                    }
                    Some(Space {
                        total_bytes: 100,
                        available_bytes: 40,
                        total_inodes: 10,
                        free_inodes: 5,
                    })
                })
            },
        };
        let all = || vec![mount("/a"), mount("/hung"), mount("/b")];
        let measured = |r: &Readings| -> Vec<String> {
            r.measured.iter().map(|(m, _)| m.point.clone()).collect()
        };

        let first = probe.read_mounts(all());
        assert_eq!(measured(&first), ["/a"], "stopped at the mount that hangs");
        assert_eq!(first.not_responding, ["/hung"]);

        let second = probe.read_mounts(all());
        assert_eq!(measured(&second), ["/a", "/b"], "the others are read");
        assert_eq!(second.not_responding, ["/hung"]);
        assert_eq!(
            hung_calls.load(Ordering::SeqCst),
            1,
            "not asked again while stuck"
        );

        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lock(&probe.stuck).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the stuck call returned but stayed stuck"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        release.send(()).unwrap(); // for the next call on /hung
        let third = probe.read_mounts(all());
        assert_eq!(measured(&third), ["/a", "/hung", "/b"]);
        assert!(third.not_responding.is_empty());
    }

    #[test]
    fn this_host_has_a_root_file_system() {
        let readings = MountProbe::new().read();
        assert!(
            readings.measured.iter().any(|(_, s)| s.total_bytes > 0),
            "{readings:?}"
        );
    }
}
