//! Plugin checks in the Nagios / Monitoring Plugins convention: exit 0, 1,
//! 2, 3 = OK, WARNING, CRITICAL, UNKNOWN; the first line of output is the
//! message; perfdata after `|` is `label=value[unit];warn;crit;min;max`.
//!
//! A plugin runs only from a directory allowed in config.toml
//! (`[host] plugin_dirs`), as argv (no shell), with a clean environment, a
//! timeout that kills it, and a cap on the output it may produce.
//!
//! Each plugin runs in a process group of its own, and the whole group is
//! killed when the plugin is done, times out or is abandoned: a shell
//! script plugin runs its work as children (`curl`, `ssh`, `sleep`), and
//! killing only the script would leave them running — one more for every
//! tick of a check whose target hangs — and holding the output pipe open,
//! so that a plugin that had answered would be reported as timed out.

use super::thresholds::CheckStatus;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Most output read from a plugin; the rest is dropped.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// How long output is still read after the plugin has exited, before what
/// it left running is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);

/// A validated plugin command.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginResult {
    pub status: CheckStatus,
    pub message: String,
    pub perfdata: Vec<PerfValue>,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfValue {
    pub label: String,
    pub value: f64,
    pub unit: String,
    pub warning: Option<String>,
    pub critical: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Plugin {
    /// Checks that `argv[0]` is an absolute path inside one of `allowed`
    /// (after resolving `..` and links).
    pub fn new(
        argv: Vec<String>,
        timeout: Duration,
        allowed: &[PathBuf],
    ) -> Result<Plugin, String> {
        let Some(program) = argv.first() else {
            return Err("`command` is empty; give the plugin's path and its arguments".to_string());
        };
        let path = Path::new(program);
        if !path.is_absolute() {
            return Err(format!("`{program}` must be an absolute path"));
        }
        let resolved = path
            .canonicalize()
            .map_err(|e| format!("`{program}` cannot be used: {e}"))?;
        let inside = allowed
            .iter()
            .any(|dir| dir.canonicalize().is_ok_and(|d| resolved.starts_with(&d)));
        if !inside {
            let dirs: Vec<String> = allowed.iter().map(|d| d.display().to_string()).collect();
            return Err(format!(
                "`{program}` is not in a directory allowed by `[host] plugin_dirs` in config.toml ({})",
                if dirs.is_empty() {
                    "none set".to_string()
                } else {
                    dirs.join(", ")
                }
            ));
        }
        Ok(Plugin { argv, timeout })
    }

    /// Runs the plugin; never fails: a plugin that cannot run is UNKNOWN.
    pub async fn run(&self) -> PluginResult {
        let unknown = |message: String| PluginResult {
            status: CheckStatus::Unknown,
            message,
            perfdata: Vec::new(),
            exit_code: None,
        };
        let mut command = tokio::process::Command::new(&self.argv[0]);
        command
            .args(&self.argv[1..])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // The daemon ignores SIGXFSZ and raises its open-files limit
        // (process_limits), and both survive exec: a plugin gets the
        // defaults herald started with back.
        // SAFETY: restore_in_child makes only async-signal-safe system
        // calls, and is the only thing done between fork and exec.
        unsafe {
            command.pre_exec(|| {
                crate::process_limits::restore_in_child();
                Ok(())
            });
        }
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => return unknown(format!("cannot run {}: {e}", self.argv[0])),
        };
        let _group = child.id().map(ProcessGroup);
        let Some(stdout) = child.stdout.take() else {
            return unknown("no output pipe".to_string());
        };
        let work = async {
            let mut out = Vec::new();
            let mut capped = stdout.take(MAX_OUTPUT as u64);
            let exited = {
                let reading = capped.read_to_end(&mut out);
                tokio::pin!(reading);
                tokio::select! {
                    _ = &mut reading => None,
                    status = child.wait() => {
                        // Exited: a child it left behind may hold the pipe open.
                        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut reading).await;
                        Some(status)
                    }
                }
            };
            // Closed, a plugin still writing past the cap gets EPIPE and ends.
            drop(capped);
            let status = match exited {
                Some(status) => status,
                None => child.wait().await,
            };
            (out, status)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Err(_) => unknown(format!(
                "timed out after {} and was killed",
                crate::definition::duration::format_duration(self.timeout)
            )),
            Ok((_, Err(e))) => unknown(format!("cannot wait for the plugin: {e}")),
            Ok((out, Ok(status))) => {
                let (message, perfdata) = parse_output(&String::from_utf8_lossy(&out));
                let code = status.code();
                let status = match code {
                    Some(0) => CheckStatus::Ok,
                    Some(1) => CheckStatus::Warning,
                    Some(2) => CheckStatus::Critical,
                    _ => CheckStatus::Unknown,
                };
                PluginResult {
                    status,
                    message,
                    perfdata,
                    exit_code: code,
                }
            }
        }
    }
}

/// A plugin's process group (its id is the plugin's pid), killed whole
/// when dropped: after the plugin exited, timed out, or its run was
/// abandoned.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Ok(pgid) = libc::pid_t::try_from(self.0) else {
            return;
        };
        // SAFETY: kill() only sends a signal. A negative pid names the
        // group, which lives while any member does; an empty one is ESRCH.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// First line before `|` is the message; perfdata after it.
pub fn parse_output(output: &str) -> (String, Vec<PerfValue>) {
    let first = output.lines().next().unwrap_or_default();
    let (message, perf) = match first.split_once('|') {
        Some((m, p)) => (m.trim(), p),
        None => (first.trim(), ""),
    };
    // Long output may carry more perfdata after a `|` on a later line.
    let more = output
        .lines()
        .skip(1)
        .find_map(|l| l.split_once('|').map(|(_, p)| p));
    let perfdata = perf
        .split_whitespace()
        .chain(more.unwrap_or_default().split_whitespace())
        .filter_map(parse_perf)
        .collect();
    (message.to_string(), perfdata)
}

fn parse_perf(item: &str) -> Option<PerfValue> {
    let (label, rest) = item.split_once('=')?;
    let mut parts = rest.split(';');
    let raw = parts.next()?;
    let number_end = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(raw.len());
    let value = raw[..number_end].parse().ok()?;
    let opt = |s: Option<&str>| s.filter(|x| !x.is_empty()).map(str::to_string);
    let warning = opt(parts.next());
    let critical = opt(parts.next());
    let min = parts.next().and_then(|x| x.parse().ok());
    let max = parts.next().and_then(|x| x.parse().ok());
    Some(PerfValue {
        label: label.trim_matches('\'').to_string(),
        value,
        unit: raw[number_end..].to_string(),
        warning,
        critical,
        min,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_message_and_perfdata() {
        let (m, p) = parse_output(
            "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968 'inodes'=12%;80;90\nmore\n",
        );
        assert_eq!(m, "DISK OK - free space: / 3326 MB (56%);");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].label, "/");
        assert_eq!(p[0].value, 2643.0);
        assert_eq!(p[0].unit, "MB");
        assert_eq!(p[0].warning.as_deref(), Some("5948"));
        assert_eq!(p[0].max, Some(5968.0));
        assert_eq!(p[1].label, "inodes");
        assert_eq!(p[1].unit, "%");
    }

    #[test]
    fn refuses_commands_outside_the_allowed_dirs() {
        let allowed = vec![PathBuf::from("/usr/lib/nagios/plugins")];
        let err =
            Plugin::new(vec!["/bin/sh".into()], Duration::from_secs(1), &allowed).unwrap_err();
        assert!(err.contains("plugin_dirs"), "{err}");
        let err = Plugin::new(vec!["sh".into()], Duration::from_secs(1), &allowed).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        let err = Plugin::new(vec![], Duration::from_secs(1), &allowed).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        // `..` cannot climb out of an allowed dir.
        let err = Plugin::new(
            vec!["/usr/lib/../../bin/sh".into()],
            Duration::from_secs(1),
            &[PathBuf::from("/usr/lib")],
        )
        .unwrap_err();
        assert!(err.contains("plugin_dirs"), "{err}");
    }

    /// Whether signal `sig` is in the `SigIgn` mask of a `/proc/<pid>/status`.
    fn ignores(status: &str, sig: i32) -> bool {
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
            .unwrap();
        mask & (1 << (sig - 1)) != 0
    }

    #[tokio::test]
    async fn a_plugin_does_not_inherit_the_ignored_sigxfsz() {
        // As daemon::run does.
        // SAFETY: SIG_IGN installs no handler code.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(ignores(&own, libc::SIGXFSZ));
        let plugin = Plugin::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "grep SigIgn /proc/self/status".into(),
            ],
            Duration::from_secs(10),
            &[PathBuf::from("/bin"), PathBuf::from("/usr/bin")],
        )
        .unwrap();
        let out = plugin.run().await;
        assert!(out.message.starts_with("SigIgn:"), "{}", out.message);
        assert!(!ignores(&out.message, libc::SIGXFSZ), "{}", out.message);
    }

    fn shell(script: &str, timeout: Duration) -> Plugin {
        Plugin::new(
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout,
            &[PathBuf::from("/bin"), PathBuf::from("/usr/bin")],
        )
        .unwrap()
    }

    /// Whether `pid` is still running (a zombie waiting for its reaper is not).
    fn running(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, after_name) = stat.rsplit_once(')')?;
                after_name
                    .split_whitespace()
                    .next()
                    .map(|state| state != "Z")
            })
            .unwrap_or(false)
    }

    async fn gone(pid: &str) -> bool {
        for _ in 0..100 {
            if !running(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_plugin_that_times_out_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let plugin = shell(
            &format!("sleep 300 & echo $! > {}; wait", pidfile.display()),
            Duration::from_millis(500),
        );
        let out = plugin.run().await;
        assert_eq!(out.status, CheckStatus::Unknown);
        assert!(out.message.contains("timed out"), "{}", out.message);
        let child = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            gone(child.trim()).await,
            "the plugin's child {child} still runs"
        );
    }

    #[tokio::test]
    async fn a_plugin_that_leaves_a_child_holding_its_output_is_read_and_the_child_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let plugin = shell(
            &format!(
                "echo 'OK - answered'; sleep 300 & echo $! > {}; exit 0",
                pidfile.display()
            ),
            Duration::from_secs(10),
        );
        let out = plugin.run().await;
        assert_eq!(out.status, CheckStatus::Ok, "{}", out.message);
        assert_eq!(out.message, "OK - answered");
        let child = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            gone(child.trim()).await,
            "the plugin's child {child} still runs"
        );
    }
}
