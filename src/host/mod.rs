//! This host's state: a sysinfo sampler that keeps one snapshot shared by
//! every node ([`HostSampler`]), and the threshold checks over it
//! ([`thresholds`]).
//!
//! CPU usage needs two readings some time apart. The sampler keeps its
//! `System` between samples so that, in the daemon, each sample is one cheap
//! refresh; a cold sampler (a one-off `herald run`) waits sysinfo's minimum
//! interval once.
//!
//! One sample at a time, on one blocking thread: a caller that finds a
//! sample under way waits for it on the async side, for a while, then takes
//! the latest snapshot. A sample can get stuck in the kernel (a `/proc`
//! read, a statvfs — though [`mounts`] gives each sample's statvfs calls a
//! deadline), and callers queueing on its lock would each hold a blocking
//! thread, one more per check, until the pool the store's flushes also use
//! was gone and no webhook could be acknowledged.

pub mod mounts;
pub mod plugin;
pub mod procfs;
pub mod thresholds;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sysinfo::{
    Components, Networks, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind, Users,
};
use tokio::sync::watch;

/// One reading of the host.
#[derive(Debug, Serialize)]
pub struct HostSnapshot {
    pub taken_at: DateTime<Utc>,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub disks: Vec<DiskStats>,
    /// Mounts whose statvfs has not returned (a network file system whose
    /// server is gone); see [`mounts`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts_not_responding: Vec<String>,
    pub network: Vec<NetworkStats>,
    pub processes: ProcessStats,
    pub system: SystemInfo,
    /// `None` when the host exposes no sensors.
    pub temperatures: Option<Vec<Temperature>>,
    pub ports: Vec<procfs::ListeningSocket>,
    pub reboot: procfs::RebootStatus,
    /// `None` when there is no `/proc/mdstat` (no md driver).
    pub raid: Option<Vec<procfs::RaidArray>>,
    /// The `context` node's sections as JSON, built once per snapshot by
    /// the first node that reads it (see `nodes::context`).
    #[serde(skip)]
    pub rendered: std::sync::OnceLock<serde_json::Map<String, serde_json::Value>>,
    /// Whole `context` outputs already built from this snapshot, by
    /// (sections, top_n): nodes asking the same share one.
    #[serde(skip)]
    pub outputs: std::sync::Mutex<Vec<SharedOutput>>,
}

/// A `context` output built from a snapshot: (sections, top_n, output).
pub type SharedOutput = (Vec<String>, usize, Arc<serde_json::Value>);

/// Processes kept per ranking in a snapshot; nodes take their `top_n` of these.
pub const TOP_PROCESSES: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct NetworkStats {
    pub interface: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Since the previous sample; 0 on the first.
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
    pub rx_errors: u64,
    pub tx_errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub name: String,
    pub user: Option<String>,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessStats {
    pub count: usize,
    pub top_cpu: Vec<ProcessInfo>,
    pub top_memory: Vec<ProcessInfo>,
    /// Every process name, for process-must-run checks.
    #[serde(skip)]
    pub names: std::collections::BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemInfo {
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub uptime_seconds: u64,
    pub boot_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Temperature {
    pub label: String,
    pub celsius: f64,
    pub critical: Option<f64>,
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
    pub swap_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskStats {
    pub mount: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub percent: f64,
    pub inodes_total: Option<u64>,
    pub inodes_used: Option<u64>,
    pub inodes_percent: Option<f64>,
}

/// How long a caller waits for a sample under way before it takes the
/// latest snapshot instead.
const PATIENCE: Duration = Duration::from_secs(10);

/// Takes host snapshots and shares the latest.
pub struct HostSampler {
    system: Mutex<Sampling>,
    latest: ArcSwapOption<HostSnapshot>,
    /// Whether a sample is being taken.
    sampling: AtomicBool,
    /// Bumped each time a sample is published.
    published: watch::Sender<u64>,
    patience: Duration,
    /// Whether a stuck sample has been reported (once until it finishes).
    said_stuck: AtomicBool,
    /// Threads that have begun a sample, for the test that counts them.
    #[cfg(test)]
    begun: std::sync::atomic::AtomicUsize,
}

/// Marks the sample finished when dropped: when it is done, when it
/// panicked, or when its task was dropped unrun at shutdown.
struct SamplingDone(Arc<HostSampler>);

impl Drop for SamplingDone {
    fn drop(&mut self) {
        self.0.sampling.store(false, Ordering::Release);
    }
}

struct Sampling {
    system: System,
    mounts: mounts::MountProbe,
    networks: Networks,
    components: Components,
    users: Users,
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
                mounts: mounts::MountProbe::new(),
                networks: Networks::new(),
                components: Components::new(),
                users: Users::new(),
                cpu_refreshed: None,
            }),
            latest: ArcSwapOption::empty(),
            sampling: AtomicBool::new(false),
            published: watch::Sender::new(0),
            patience: PATIENCE,
            said_stuck: AtomicBool::new(false),
            #[cfg(test)]
            begun: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The latest snapshot if it is younger than `max_age`, else a new one.
    /// Callers that arrive together share one new sample.
    pub async fn snapshot(self: &Arc<Self>, max_age: Duration) -> Arc<HostSnapshot> {
        match self.fresh(max_age) {
            Some(snap) => snap,
            None => self.next_sample().await,
        }
    }

    /// Takes a new snapshot now (off the async threads) and publishes it,
    /// or joins the one under way.
    pub async fn sample(self: &Arc<Self>) -> Arc<HostSnapshot> {
        self.next_sample().await
    }

    /// The next sample published, starting one unless one is under way. A
    /// sample that takes longer than the patience leaves the caller with
    /// the latest snapshot (said once); with none yet, the caller waits.
    async fn next_sample(self: &Arc<Self>) -> Arc<HostSnapshot> {
        loop {
            let mut published = self.published.subscribe();
            if !self.sampling.swap(true, Ordering::AcqRel) {
                let done = SamplingDone(Arc::clone(self));
                // Detached: the sample is published whoever waits for it.
                drop(tokio::task::spawn_blocking(move || {
                    let sampler = Arc::clone(&done.0);
                    sampler.sample_blocking();
                    sampler.said_stuck.store(false, Ordering::Relaxed);
                    // No longer sampling, before the waiters hear of it.
                    drop(done);
                    sampler.published.send_modify(|n| *n = n.wrapping_add(1));
                }));
            }
            let latest = self.latest.load_full();
            let waited = match &latest {
                Some(_) => tokio::time::timeout(self.patience, published.changed()).await,
                None => Ok(published.changed().await),
            };
            match (waited, latest) {
                (Ok(_), _) => {
                    if let Some(snap) = self.latest.load_full() {
                        return snap;
                    }
                }
                (Err(_), Some(stale)) => {
                    if !self.said_stuck.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            waited_s = self.patience.as_secs(),
                            snapshot_taken_at = %stale.taken_at,
                            "host sampling has not finished (a file system not answering?); \
                             checks use the last snapshot until it does"
                        );
                    }
                    return stale;
                }
                (Err(_), None) => {}
            }
        }
    }

    fn fresh(&self, max_age: Duration) -> Option<Arc<HostSnapshot>> {
        let snap = self.latest.load_full()?;
        let age = Utc::now().signed_duration_since(snap.taken_at);
        age.to_std().is_ok_and(|a| a <= max_age).then_some(snap)
    }

    fn sample_blocking(&self) -> Arc<HostSnapshot> {
        #[cfg(test)]
        self.begun.fetch_add(1, Ordering::Relaxed);
        let mut guard = match self.system.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let s = &mut *guard;
        let first = s.cpu_refreshed.is_none();
        let since = s.cpu_refreshed.map(|t| t.elapsed());
        let process_kind = ProcessRefreshKind::nothing()
            .with_cpu()
            .with_memory()
            .with_user(UpdateKind::OnlyIfNotSet);
        if since.is_none_or(|d| d < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL) {
            // CPU usage is a difference: take a first reading and wait.
            s.system.refresh_cpu_usage();
            s.system
                .refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind);
            s.networks.refresh(true);
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        }
        let elapsed = s
            .cpu_refreshed
            .map_or(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL, |t| t.elapsed())
            .as_secs_f64()
            .max(0.001);
        s.system.refresh_cpu_usage();
        s.system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, process_kind);
        s.cpu_refreshed = Some(Instant::now());
        s.system.refresh_memory();
        let mounts = s.mounts.read();
        if first {
            s.components = Components::new_with_refreshed_list();
            s.users = Users::new_with_refreshed_list();
        } else {
            s.components.refresh(true);
        }
        s.networks.refresh(true);
        let elapsed = if first {
            sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.as_secs_f64()
        } else {
            elapsed
        };

        let load = System::load_average();
        let per_core: Vec<f64> = s
            .system
            .cpus()
            .iter()
            .map(|c| round2(c.cpu_usage() as f64))
            .collect();
        let total = s.system.total_memory();
        let available = s.system.available_memory();
        let swap_total = s.system.total_swap();
        let swap_used = s.system.used_swap();
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
                swap_total_bytes: swap_total,
                swap_used_bytes: swap_used,
                swap_percent: percent(swap_used, swap_total),
            },
            disks: disk_stats(&mounts.measured),
            mounts_not_responding: mounts.not_responding,
            network: network_stats(&s.networks, elapsed),
            processes: process_stats(&s.system, &s.users),
            system: SystemInfo {
                hostname: System::host_name(),
                os: System::long_os_version(),
                kernel: System::kernel_version(),
                uptime_seconds: System::uptime(),
                boot_time: DateTime::from_timestamp(System::boot_time() as i64, 0),
            },
            temperatures: temperatures(&s.components),
            ports: procfs::listening_sockets(),
            reboot: procfs::reboot_status(std::path::Path::new("/var/run")),
            raid: std::fs::read_to_string("/proc/mdstat")
                .ok()
                .map(|t| procfs::parse_mdstat(&t)),
            rendered: std::sync::OnceLock::new(),
            outputs: std::sync::Mutex::new(Vec::new()),
        };
        let snapshot = Arc::new(snapshot);
        self.latest.store(Some(snapshot.clone()));
        drop(guard);
        // Sampling allocates and frees a few MB (process tables, /proc
        // reads); hand the freed pages back so an idle daemon stays small.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory; it is thread-safe.
        unsafe {
            libc::malloc_trim(0);
        }
        snapshot
    }

    /// Samples every `interval` until the task is aborted, so that nodes
    /// read a recent snapshot instead of sampling on the request path.
    pub fn spawn_background(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                this.sample().await;
                tokio::time::sleep(interval).await;
            }
        })
    }
}

fn network_stats(networks: &Networks, elapsed: f64) -> Vec<NetworkStats> {
    let mut out: Vec<NetworkStats> = networks
        .list()
        .iter()
        .map(|(name, data)| NetworkStats {
            interface: name.clone(),
            rx_bytes: data.total_received(),
            tx_bytes: data.total_transmitted(),
            rx_bytes_per_sec: round2(data.received() as f64 / elapsed),
            tx_bytes_per_sec: round2(data.transmitted() as f64 / elapsed),
            rx_errors: data.total_errors_on_received(),
            tx_errors: data.total_errors_on_transmitted(),
        })
        .collect();
    out.sort_by(|a, b| a.interface.cmp(&b.interface));
    out
}

fn process_stats(system: &System, users: &Users) -> ProcessStats {
    let all: Vec<ProcessInfo> = system
        .processes()
        .iter()
        .filter(|(_, p)| p.thread_kind().is_none())
        .map(|(pid, p)| ProcessInfo {
            pid: pid.as_u32(),
            name: p.name().to_string_lossy().into_owned(),
            user: p
                .user_id()
                .and_then(|uid| users.get_user_by_id(uid))
                .map(|u| u.name().to_string()),
            cpu_percent: round2(p.cpu_usage() as f64),
            rss_bytes: p.memory(),
        })
        .collect();
    let names = all.iter().map(|p| p.name.clone()).collect();
    let mut by_cpu = all.clone();
    by_cpu.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(a.pid.cmp(&b.pid))
    });
    by_cpu.truncate(TOP_PROCESSES);
    let count = all.len();
    let mut by_mem = all;
    by_mem.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then(a.pid.cmp(&b.pid)));
    by_mem.truncate(TOP_PROCESSES);
    ProcessStats {
        count,
        top_cpu: by_cpu,
        top_memory: by_mem,
        names,
    }
}

fn temperatures(components: &Components) -> Option<Vec<Temperature>> {
    let list: Vec<Temperature> = components
        .list()
        .iter()
        .filter_map(|c| {
            Some(Temperature {
                label: c.label().to_string(),
                celsius: round2(c.temperature()? as f64),
                critical: c.critical().map(|x| round2(x as f64)),
            })
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

fn disk_stats(measured: &[(mounts::Mount, mounts::Space)]) -> Vec<DiskStats> {
    let mut out: Vec<DiskStats> = measured
        .iter()
        .filter(|(m, space)| !m.network && space.total_bytes > 0)
        .map(|(m, space)| {
            let (total, available) = (space.total_bytes, space.available_bytes);
            let used = total.saturating_sub(available);
            let inodes =
                (space.total_inodes > 0).then_some((space.total_inodes, space.free_inodes));
            DiskStats {
                inodes_total: inodes.map(|i| i.0),
                inodes_used: inodes.map(|(t, f)| t.saturating_sub(f)),
                inodes_percent: inodes.map(|(t, f)| percent(t.saturating_sub(f), t)),
                mount: m.point.clone(),
                fs_type: m.fs_type.clone(),
                total_bytes: total,
                used_bytes: used,
                available_bytes: available,
                percent: percent(used, total),
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample stuck in the kernel (here: its lock held, as a statvfs on
    /// a dead network mount would hold it) takes one blocking thread, not
    /// one per caller; the callers get the last snapshot after their
    /// patience, and the next sample is taken once the stuck one is done.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_sample_holds_one_thread_and_callers_get_the_last_snapshot() {
        let mut sampler = HostSampler::new();
        sampler.patience = Duration::from_millis(300);
        let sampler = Arc::new(sampler);
        let first = sampler.sample().await;

        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = {
            let sampler = Arc::clone(&sampler);
            std::thread::spawn(move || {
                let _stuck = sampler.system.lock().unwrap();
                let _ = released.recv();
            })
        };
        while sampler.system.try_lock().is_ok() {
            std::thread::yield_now();
        }
        let begun_before = sampler.begun.load(Ordering::Relaxed);
        let callers: Vec<_> = (0..50)
            .map(|_| {
                let sampler = Arc::clone(&sampler);
                tokio::spawn(async move { sampler.snapshot(Duration::ZERO).await })
            })
            .collect();
        for caller in callers {
            let got = tokio::time::timeout(Duration::from_secs(20), caller)
                .await
                .expect("a caller waited past its patience")
                .unwrap();
            assert!(Arc::ptr_eq(&got, &first), "the last snapshot");
        }
        assert_eq!(
            sampler.begun.load(Ordering::Relaxed) - begun_before,
            1,
            "threads that began a sample while one was stuck"
        );

        release.send(()).unwrap();
        holder.join().unwrap();
        let next = sampler.sample().await;
        assert!(!Arc::ptr_eq(&next, &first), "sampling goes on");
    }
}
