//! This host's state: a sysinfo sampler that keeps one snapshot shared by
//! every node ([`HostSampler`]), and the threshold checks over it
//! ([`thresholds`]).
//!
//! CPU usage needs two readings some time apart. The sampler keeps its
//! `System` between samples so that, in the daemon, each sample is one cheap
//! refresh; a cold sampler (a one-off `herald run`) waits sysinfo's minimum
//! interval once.

pub mod thresholds;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sysinfo::{Disks, System};

/// File systems that are not storage an operator fills up.
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
    "autofs",
    "binfmt_misc",
    "nsfs",
    "ramfs",
    "squashfs",
    "efivarfs",
    "rpc_pipefs",
    "selinuxfs",
];

/// One reading of the host.
#[derive(Debug, Clone, Serialize)]
pub struct HostSnapshot {
    pub taken_at: DateTime<Utc>,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub disks: Vec<DiskStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuStats {
    /// Average busy percentage over all cores since the previous sample.
    pub usage_percent: f64,
    pub per_core_percent: Vec<f64>,
    pub load_1: f64,
    pub load_5: f64,
    pub load_15: f64,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryStats {
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    /// Used share of total, from `available` (what the kernel could give).
    pub percent: f64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskStats {
    pub mount: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub percent: f64,
}

/// Takes host snapshots and shares the latest.
pub struct HostSampler {
    system: Mutex<Sampling>,
    latest: ArcSwapOption<HostSnapshot>,
}

struct Sampling {
    system: System,
    disks: Disks,
    /// When the CPU counters were last refreshed (None: never).
    cpu_refreshed: Option<Instant>,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    pub fn new() -> Self {
        HostSampler {
            system: Mutex::new(Sampling {
                system: System::new(),
                disks: Disks::new(),
                cpu_refreshed: None,
            }),
            latest: ArcSwapOption::empty(),
        }
    }

    /// The latest snapshot if it is younger than `max_age`, else a new one.
    /// Callers that arrive together share one new sample.
    pub async fn snapshot(self: &Arc<Self>, max_age: Duration) -> Arc<HostSnapshot> {
        if let Some(snap) = self.fresh(max_age) {
            return snap;
        }
        let this = Arc::clone(self);
        match tokio::task::spawn_blocking(move || this.sample_blocking(Some(max_age))).await {
            Ok(snap) => snap,
            // The blocking pool is gone only at shutdown; sample inline then.
            Err(_) => self.sample_blocking(Some(max_age)),
        }
    }

    /// Takes a new snapshot now (off the async threads) and publishes it.
    pub async fn sample(self: &Arc<Self>) -> Arc<HostSnapshot> {
        let this = Arc::clone(self);
        match tokio::task::spawn_blocking(move || this.sample_blocking(None)).await {
            Ok(snap) => snap,
            Err(_) => self.sample_blocking(None),
        }
    }

    fn fresh(&self, max_age: Duration) -> Option<Arc<HostSnapshot>> {
        let snap = self.latest.load_full()?;
        let age = Utc::now().signed_duration_since(snap.taken_at);
        age.to_std().is_ok_and(|a| a <= max_age).then_some(snap)
    }

    fn sample_blocking(&self, reuse_younger_than: Option<Duration>) -> Arc<HostSnapshot> {
        let mut guard = match self.system.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Someone else may have sampled while this caller waited for the lock.
        if let Some(snap) = reuse_younger_than.and_then(|age| self.fresh(age)) {
            return snap;
        }
        let s = &mut *guard;
        let since = s.cpu_refreshed.map(|t| t.elapsed());
        if since.is_none_or(|d| d < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL) {
            s.system.refresh_cpu_usage();
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        }
        s.system.refresh_cpu_usage();
        s.cpu_refreshed = Some(Instant::now());
        s.system.refresh_memory();
        s.disks.refresh(true);
        if s.disks.list().is_empty() {
            s.disks = Disks::new_with_refreshed_list();
        }

        let load = System::load_average();
        let per_core: Vec<f64> = s
            .system
            .cpus()
            .iter()
            .map(|c| round2(c.cpu_usage() as f64))
            .collect();
        let total = s.system.total_memory();
        let available = s.system.available_memory();
        let snapshot = HostSnapshot {
            taken_at: Utc::now(),
            cpu: CpuStats {
                usage_percent: round2(s.system.global_cpu_usage() as f64),
                logical_cores: per_core.len(),
                per_core_percent: per_core,
                load_1: load.one,
                load_5: load.five,
                load_15: load.fifteen,
                physical_cores: System::physical_core_count(),
            },
            memory: MemoryStats {
                total_bytes: total,
                used_bytes: total.saturating_sub(available),
                available_bytes: available,
                percent: percent(total.saturating_sub(available), total),
                swap_total_bytes: s.system.total_swap(),
                swap_used_bytes: s.system.used_swap(),
            },
            disks: disk_stats(&s.disks),
        };
        let snapshot = Arc::new(snapshot);
        self.latest.store(Some(snapshot.clone()));
        snapshot
    }
}

fn disk_stats(disks: &Disks) -> Vec<DiskStats> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<DiskStats> = disks
        .list()
        .iter()
        .filter_map(|d| {
            let fs_type = d.file_system().to_string_lossy().into_owned();
            let mount = d.mount_point().to_string_lossy().into_owned();
            let total = d.total_space();
            if total == 0 || PSEUDO_FS.contains(&fs_type.as_str()) || !seen.insert(mount.clone()) {
                return None;
            }
            let available = d.available_space();
            let used = total.saturating_sub(available);
            Some(DiskStats {
                mount,
                fs_type,
                total_bytes: total,
                used_bytes: used,
                available_bytes: available,
                percent: percent(used, total),
            })
        })
        .collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round2(part as f64 * 100.0 / whole as f64)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
