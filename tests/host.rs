//! Host context and checks: values cross-checked against /proc, every
//! context section, thresholds and per-mount overrides on synthetic
//! snapshots, `for`, plugin checks (scripts for each exit code, a hung one,
//! one outside the allowed dirs, Debian's monitoring-plugins when present),
//! and `herald check`'s exit codes.

mod support;

use herald::config::Config;
use herald::definition::{Definition, parse_definition};
use herald::engine::{Engine, RunRequest};
use herald::host::procfs::{RaidArray, RebootStatus};
use herald::host::thresholds::{CheckStatus, Threshold};
use herald::host::*;
use herald::nodes::check::{Spec, judge};
use herald::nodes::{HandlerRegistry, Services};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins")
}

fn handlers() -> HandlerRegistry {
    let mut config = Config::default();
    config.host.plugin_dirs = vec![plugin_dir(), PathBuf::from("/usr/lib/nagios/plugins")];
    HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(config))))
}

fn definition(handlers: &HandlerRegistry, nodes: Value) -> Result<Definition, String> {
    parse_definition(
        "t",
        "t.json",
        &json!({"version": "1", "nodes": nodes}).to_string(),
        handlers,
    )
    .map_err(|e| e.to_string())
}

async fn run_output(handlers: &HandlerRegistry, nodes: Value) -> Value {
    let def = definition(handlers, nodes).unwrap_or_else(|e| panic!("{e}"));
    let r = Engine::new(None)
        .run(&def, RunRequest::default())
        .await
        .unwrap();
    assert!(r.error.is_none(), "{:?}", r.error);
    (*r.node_results.values().last().unwrap().output).clone()
}

fn proc_value(file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} not in {file}"))
}

#[tokio::test]
async fn snapshot_matches_proc() {
    let sampler = Arc::new(HostSampler::new());
    let snap = sampler.sample().await;
    let mem_total = proc_value("/proc/meminfo", "MemTotal:") * 1024;
    let diff = (snap.memory.total_bytes as f64 - mem_total as f64).abs() / mem_total as f64;
    assert!(
        diff < 0.01,
        "memory total {} vs /proc/meminfo {mem_total}",
        snap.memory.total_bytes
    );
    let swap_total = proc_value("/proc/meminfo", "SwapTotal:") * 1024;
    assert!((snap.memory.swap_total_bytes as i64 - swap_total as i64).abs() <= 4096 * 1024);

    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap();
    let load1: f64 = loadavg.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        (snap.cpu.load_1 - load1).abs() < 1.0,
        "load {} vs /proc/loadavg {load1}",
        snap.cpu.load_1
    );
    assert_eq!(
        snap.cpu.logical_cores,
        std::thread::available_parallelism().unwrap().get()
    );
    assert!((0.0..=100.0).contains(&snap.cpu.usage_percent));

    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!snap.disks.is_empty());
    for d in &snap.disks {
        assert!(
            mounts
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(d.mount.as_str())),
            "{} not in /proc/mounts",
            d.mount
        );
        assert!(
            !["tmpfs", "proc", "sysfs"].contains(&d.fs_type.as_str()),
            "pseudo fs {} listed",
            d.fs_type
        );
        assert!(d.used_bytes <= d.total_bytes);
    }
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
                .is_ok()
        })
        .count();
    assert!(
        snap.processes.count > 0 && snap.processes.count <= pids + 50,
        "{} processes vs {pids} in /proc",
        snap.processes.count
    );
    assert!(
        snap.processes.names.iter().any(|n| n.starts_with("host-")),
        "this test's own process is listed"
    );
    assert!(snap.system.uptime_seconds > 0);
    let ifaces: Vec<&str> = snap.network.iter().map(|n| n.interface.as_str()).collect();
    assert!(ifaces.contains(&"lo"), "{ifaces:?}");
}

#[tokio::test]
async fn context_sections_and_their_options() {
    let h = handlers();
    let all = herald::nodes::context::SECTIONS;
    let out = run_output(
        &h,
        json!([{"id": "c", "type": "context", "config": {"include": all, "top_n": 3}}]),
    )
    .await;
    for s in all {
        assert!(out.get(*s).is_some(), "section {s} missing");
    }
    assert!(out["processes"]["top_cpu"].as_array().unwrap().len() <= 3);
    assert!(out["processes"]["count"].as_u64().unwrap() > 0);
    assert!(out["reboot"]["required"].is_boolean());
    assert!(out["system"]["kernel"].is_string());
    for optional in ["temperatures", "raid"] {
        if out[optional].is_null() {
            assert!(
                out["unavailable"][optional].is_string(),
                "{optional} is null without a reason"
            );
        }
    }
    let fresh = run_output(
        &h,
        json!([{"id": "c", "type": "context", "config": {"include": ["cpu"], "fresh": true}}]),
    )
    .await;
    assert!(fresh["cpu"]["usage_percent"].is_number());

    for (config, needle) in [
        (json!({"include": ["gpu"]}), "unknown section `gpu`"),
        (json!({"include": ["cpus"]}), "did you mean `cpu`"),
        (json!({"top_n": 0}), "from 1 to 50"),
        (json!({"fresh": "yes"}), "true or false"),
    ] {
        let err = definition(
            &h,
            json!([{"id": "c", "type": "context", "config": config}]),
        )
        .unwrap_err();
        assert!(err.contains(needle), "{err}");
    }
}

fn synthetic() -> HostSnapshot {
    let disk = |mount: &str, percent: f64, inodes: f64| DiskStats {
        mount: mount.into(),
        fs_type: "ext4".into(),
        total_bytes: 100,
        used_bytes: percent as u64,
        available_bytes: 100 - percent as u64,
        percent,
        inodes_total: Some(100),
        inodes_used: Some(inodes as u64),
        inodes_percent: Some(inodes),
    };
    HostSnapshot {
        taken_at: chrono::Utc::now(),
        cpu: CpuStats {
            usage_percent: 75.0,
            per_core_percent: vec![],
            load_1: 1.0,
            load_5: 1.0,
            load_15: 1.0,
            logical_cores: 2,
            physical_cores: Some(1),
        },
        memory: MemoryStats {
            total_bytes: 100,
            used_bytes: 95,
            available_bytes: 5,
            percent: 95.0,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            swap_percent: 0.0,
        },
        disks: vec![
            disk("/", 50.0, 10.0),
            disk("/var", 90.0, 96.0),
            disk("/boot", 97.0, 5.0),
        ],
        mounts_not_responding: vec![],
        network: vec![],
        processes: ProcessStats {
            count: 1,
            top_cpu: vec![],
            top_memory: vec![],
            names: ["sshd".to_string()].into(),
        },
        system: SystemInfo {
            hostname: None,
            os: None,
            kernel: None,
            uptime_seconds: 1,
            boot_time: None,
        },
        temperatures: Some(vec![Temperature {
            label: "cpu".into(),
            celsius: 85.0,
            critical: None,
        }]),
        ports: vec![
            herald::host::procfs::ListeningSocket {
                protocol: "tcp",
                address: "0.0.0.0".into(),
                port: 22,
                pid: None,
                process: None,
            },
            herald::host::procfs::ListeningSocket {
                protocol: "tcp",
                address: "0.0.0.0".into(),
                port: 6379,
                pid: None,
                process: None,
            },
        ],
        reboot: RebootStatus {
            required: true,
            packages: vec!["linux-image-amd64".into()],
        },
        raid: Some(vec![RaidArray {
            name: "md0".into(),
            level: "raid1".into(),
            state: "rebuilding".into(),
            devices: vec![],
            failed_devices: vec![],
            progress_percent: Some(40.0),
        }]),
        rendered: Default::default(),
        outputs: Default::default(),
    }
}

/// A mount whose statvfs never returned (its server gone) makes the disk
/// check CRITICAL, however full the others are, and is named.
#[test]
fn a_mount_not_responding_is_critical() {
    let mut snap = synthetic();
    snap.disks.retain(|d| d.mount == "/"); // 50 %: OK by itself
    let calm = judge(&Spec::Disk(Threshold::DISK, BTreeMap::new()), &snap, None).unwrap();
    assert_eq!(calm.status, CheckStatus::Ok);
    snap.mounts_not_responding = vec!["/mnt/share".into()];
    let disk = judge(&Spec::Disk(Threshold::DISK, BTreeMap::new()), &snap, None).unwrap();
    assert_eq!(disk.status, CheckStatus::Critical);
    assert!(
        disk.message.contains("/mnt/share not responding"),
        "{}",
        disk.message
    );
    let details = disk.details.as_array().unwrap();
    assert!(
        details
            .iter()
            .any(|d| d["mount"] == "/mnt/share" && d["responding"] == false),
        "{details:?}"
    );
}

#[test]
fn thresholds_and_per_mount_overrides() {
    let snap = synthetic();
    let status = |spec: Spec| judge(&spec, &snap, None).unwrap();
    assert_eq!(
        status(Spec::Cpu(Threshold::CPU)).status,
        CheckStatus::Warning
    );
    assert_eq!(
        status(Spec::Memory(Threshold::MEMORY)).status,
        CheckStatus::Critical
    );
    // /boot at 97 % is the worst mount by default…
    let disk = status(Spec::Disk(Threshold::DISK, BTreeMap::new()));
    assert_eq!(disk.status, CheckStatus::Critical);
    assert!(disk.message.contains("/boot"), "{}", disk.message);
    // …until /boot gets its own levels; then /var (90 %, WARNING) is the worst.
    let overrides = BTreeMap::from([(
        "/boot".to_string(),
        Threshold {
            warning: 98.0,
            critical: 99.0,
        },
    )]);
    let disk = status(Spec::Disk(Threshold::DISK, overrides));
    assert_eq!(disk.status, CheckStatus::Warning);
    assert!(disk.message.contains("/var"), "{}", disk.message);
    assert_eq!(disk.details.as_array().unwrap().len(), 3);
    assert_eq!(
        status(Spec::Inodes(Threshold::INODES, BTreeMap::new())).status,
        CheckStatus::Critical
    );
    assert_eq!(
        status(Spec::Temperature(Threshold::TEMPERATURE)).status,
        CheckStatus::Warning
    );
    assert_eq!(status(Spec::Process("sshd".into())).status, CheckStatus::Ok);
    assert_eq!(
        status(Spec::Process("nginx".into())).status,
        CheckStatus::Critical
    );
    let ports = status(Spec::Ports(vec![22]));
    assert_eq!(ports.status, CheckStatus::Warning);
    assert!(ports.message.contains("6379"), "{}", ports.message);
    assert_eq!(status(Spec::Ports(vec![22, 6379])).status, CheckStatus::Ok);
    assert_eq!(status(Spec::Reboot).status, CheckStatus::Warning);
    assert_eq!(
        status(Spec::Raid).status,
        CheckStatus::Warning,
        "rebuilding"
    );
    let mut degraded = synthetic();
    degraded.raid.as_mut().unwrap()[0].state = "degraded".into();
    assert_eq!(
        judge(&Spec::Raid, &degraded, None).unwrap().status,
        CheckStatus::Critical
    );
    let mut bare = synthetic();
    bare.raid = None;
    bare.temperatures = None;
    assert_eq!(
        judge(&Spec::Raid, &bare, None).unwrap().status,
        CheckStatus::Ok
    );
    assert_eq!(
        judge(&Spec::Temperature(Threshold::TEMPERATURE), &bare, None)
            .unwrap()
            .status,
        CheckStatus::Ok
    );
}

#[tokio::test]
async fn for_holds_a_status_back_until_it_has_lasted() {
    let h = handlers();
    let def = definition(
        &h,
        json!([{"id": "k", "type": "check", "config": {
        "checks": [{"name": "process", "process": "no-such-process-herald"}], "for": "1s"}}]),
    )
    .unwrap();
    let engine = Engine::new(None);
    let first = engine.run(&def, RunRequest::default()).await.unwrap();
    let check = &first.node_results["k"].output["checks"][0];
    assert_eq!(check["status"], "OK", "{check:#}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("pending: CRITICAL"),
        "{check:#}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let later = engine.run(&def, RunRequest::default()).await.unwrap();
    assert_eq!(
        later.node_results["k"].output["checks"][0]["status"],
        "CRITICAL"
    );
}

#[test]
fn check_config_errors() {
    let h = handlers();
    for (config, needle) in [
        (json!({"checks": ["cpu", "gpu"]}), "unknown check `gpu`"),
        (
            json!({"checks": [{"name": "disk", "warning": 90, "critical": 80}]}),
            "warning (90) is above critical (80)",
        ),
        (
            json!({"checks": [{"name": "disk", "mounts": {"/var": {"warning": "high"}}}]}),
            "checks[0].mounts./var.warning",
        ),
        (json!({"checks": [{"name": "process"}]}), "name the process"),
        (
            json!({"checks": [{"name": "ports", "allow": [22, 70000]}]}),
            "TCP ports",
        ),
        (
            json!({"checks": [{"name": "plugin", "command": ["/bin/sh", "-c", "true"]}]}),
            "plugin_dirs",
        ),
        (
            json!({"checks": [{"name": "plugin", "command": ["ok.sh"]}]}),
            "absolute path",
        ),
        (json!({"checks": ["cpu"], "for": "soon"}), "not a duration"),
        (json!({"thresholds": {"gpu": {}}}), "unknown check `gpu`"),
    ] {
        let err =
            definition(&h, json!([{"id": "k", "type": "check", "config": config}])).unwrap_err();
        assert!(err.contains(needle), "{config}: {err}");
    }
}

fn plugin(name: &str) -> Value {
    json!({"name": "plugin", "label": name, "command": [plugin_dir().join(name).to_str().unwrap()], "timeout": "500ms"})
}

#[tokio::test]
async fn plugin_checks_follow_the_nagios_convention() {
    let h = handlers();
    // SAFETY: set before any plugin runs; the test checks it does not leak.
    unsafe { std::env::set_var("HERALD_TEST_SECRET", "s3cret") };
    let out = run_output(
        &h,
        json!([{"id": "k", "type": "check", "config": {"checks": [
        plugin("ok.sh"), plugin("warning.sh"), plugin("critical.sh"), plugin("unknown.sh"),
        plugin("weird.sh"), plugin("hang.sh"), plugin("env.sh"), plugin("loud.sh")]}}]),
    )
    .await;
    let checks = out["checks"].as_array().unwrap();
    let by = |label: &str| {
        checks
            .iter()
            .find(|c| c["name"] == format!("plugin:{label}"))
            .unwrap()
            .clone()
    };
    assert_eq!(by("ok.sh")["status"], "OK");
    assert_eq!(by("ok.sh")["message"], "TEST OK - all good");
    assert_eq!(by("ok.sh")["details"]["perfdata"][1]["label"], "used");
    assert_eq!(by("ok.sh")["details"]["perfdata"][1]["unit"], "%");
    assert_eq!(by("ok.sh")["value"], 0.5);
    assert_eq!(by("warning.sh")["status"], "WARNING");
    assert_eq!(by("critical.sh")["status"], "CRITICAL");
    assert_eq!(by("unknown.sh")["status"], "UNKNOWN");
    assert_eq!(
        by("weird.sh")["status"],
        "UNKNOWN",
        "exit 7 is not a plugin status"
    );
    let hung = by("hang.sh");
    assert_eq!(hung["status"], "UNKNOWN");
    assert!(
        hung["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 500ms"),
        "{hung:#}"
    );
    let env = by("env.sh")["message"].as_str().unwrap().to_string();
    assert!(
        env.contains("secret=none"),
        "the plugin saw herald's environment: {env}"
    );
    assert_eq!(by("loud.sh")["message"], "LOUD first line");
    assert_eq!(out["status"], "CRITICAL", "the worst status wins");
}

#[tokio::test]
async fn debian_monitoring_plugins() {
    let dir = Path::new("/usr/lib/nagios/plugins");
    if !dir.join("check_load").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install monitoring-plugins-basic"
        );
        eprintln!(
            "SKIPPED: monitoring-plugins-basic is not installed (apt-get install monitoring-plugins-basic)"
        );
        return;
    }
    let h = handlers();
    let out = run_output(&h, json!([{"id": "k", "type": "check", "config": {"checks": [
        {"name": "plugin", "label": "load", "command": ["/usr/lib/nagios/plugins/check_load", "-w", "1000,1000,1000", "-c", "2000,2000,2000"]},
        {"name": "plugin", "label": "disk", "command": ["/usr/lib/nagios/plugins/check_disk", "-w", "0%", "-c", "0%", "-p", "/"]},
        {"name": "plugin", "label": "disk-full", "command": ["/usr/lib/nagios/plugins/check_disk", "-w", "100%", "-c", "100%", "-p", "/"]}]}}])).await;
    let checks = out["checks"].as_array().unwrap();
    assert_eq!(checks[0]["status"], "OK", "{:#}", checks[0]);
    assert!(
        checks[0]["message"].as_str().unwrap().contains("LOAD"),
        "{:#}",
        checks[0]
    );
    assert!(
        !checks[0]["details"]["perfdata"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(checks[1]["status"], "OK", "{:#}", checks[1]);
    assert_eq!(checks[2]["status"], "CRITICAL", "{:#}", checks[2]);
}

#[test]
fn herald_check_exits_like_a_plugin() {
    let ws = support::daemon::Workspace::new(&format!(
        "[host]\nplugin_dirs = [\"{}\"]\n",
        plugin_dir().display()
    ));
    for (name, code) in [("warning.sh", 1), ("critical.sh", 2), ("ok.sh", 0)] {
        ws.definition("probe", &json!({"version": "1", "nodes": [{"id": "k", "type": "check", "config": {"checks": [plugin(name)]}}]}));
        let out = ws
            .command(&["check", "--definition", "probe"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("overall:") && text.contains(&format!("plugin:{name}")),
            "{text}"
        );
        assert!(!text.contains("\x1b["), "no colour when piped");
    }
    let out = ws.command(&["check", "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["host"]["cpu"]["usage_percent"].is_number());
    assert!(v["checks"].as_array().unwrap().len() >= 5);
    assert!((0..=3).contains(&out.status.code().unwrap()));
}
