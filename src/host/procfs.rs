//! Facts sysinfo does not give, read from Linux's own files: free space
//! (statvfs; per mount, see [`super::mounts`]), RAID arrays (`/proc/mdstat`), Debian's reboot flag
//! (`/var/run/reboot-required`), and listening sockets (`/proc/net/*` with
//! the owning process found through `/proc/<pid>/fd`). Each parser takes the
//! text so that tests can feed it fixtures.

use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Size and space available to an unprivileged writer, in bytes, of the
/// file system holding `path`.
pub fn space(path: &Path) -> Option<(u64, u64)> {
    let st = statvfs(path)?;
    let unit = st.f_frsize;
    Some((st.f_blocks * unit, st.f_bavail * unit))
}

pub(super) fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `st` a properly sized out-param.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then_some(st)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaidArray {
    pub name: String,
    pub level: String,
    /// `clean`, `degraded`, `rebuilding`, or `inactive`.
    pub state: String,
    pub devices: Vec<String>,
    pub failed_devices: Vec<String>,
    /// Recovery/resync progress, when rebuilding.
    pub progress_percent: Option<f64>,
}

/// Parses `/proc/mdstat`.
pub fn parse_mdstat(text: &str) -> Vec<RaidArray> {
    let mut arrays = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((name, rest)) = line.split_once(" : ") else {
            continue;
        };
        if !name.starts_with("md") {
            continue;
        }
        let mut words = rest.split_whitespace();
        let active = words.next() == Some("active");
        let mut level = String::new();
        let mut devices = Vec::new();
        let mut failed = Vec::new();
        for w in words {
            if w.starts_with("raid") || w == "linear" {
                level = w.to_string();
            } else if w.contains('[') {
                let dev = w.split('[').next().unwrap_or(w).to_string();
                if w.ends_with("(F)") {
                    failed.push(dev.clone());
                }
                devices.push(dev);
            } else if w.starts_with('(') {
                continue;
            }
        }
        // The status line: "... [2/1] [U_]"; then maybe a recovery line.
        let mut degraded = !failed.is_empty();
        let mut progress = None;
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.contains(" : ") {
                break;
            }
            let next = lines.next().unwrap_or_default();
            if let Some(map) = next.split_whitespace().find(|w| {
                w.starts_with('[') && w.ends_with(']') && w.chars().all(|c| "[]U_".contains(c))
            }) {
                degraded |= map.contains('_');
            }
            if next.contains("recovery") || next.contains("resync") || next.contains("reshape") {
                progress = next
                    .split_whitespace()
                    .find(|w| w.ends_with('%'))
                    .and_then(|w| w.trim_end_matches('%').parse().ok());
            }
        }
        let state = if !active {
            "inactive"
        } else if progress.is_some() {
            "rebuilding"
        } else if degraded {
            "degraded"
        } else {
            "clean"
        };
        arrays.push(RaidArray {
            name: name.trim().to_string(),
            level,
            state: state.to_string(),
            devices,
            failed_devices: failed,
            progress_percent: progress,
        });
    }
    arrays
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebootStatus {
    pub required: bool,
    /// Packages listed in `/var/run/reboot-required.pkgs`.
    pub packages: Vec<String>,
}

pub fn reboot_status(dir: &Path) -> RebootStatus {
    let required = dir.join("reboot-required").exists();
    let packages = std::fs::read_to_string(dir.join("reboot-required.pkgs"))
        .map(|t| {
            let mut p: Vec<String> = t
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            p.sort();
            p.dedup();
            p
        })
        .unwrap_or_default();
    RebootStatus { required, packages }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListeningSocket {
    pub protocol: &'static str,
    pub address: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// Listening sockets from `/proc/net/{tcp,tcp6,udp,udp6}`, each with the
/// process that owns it where `/proc` lets us see it.
pub fn listening_sockets() -> Vec<ListeningSocket> {
    let owners = socket_owners();
    let mut out = Vec::new();
    for (file, protocol) in [
        ("tcp", "tcp"),
        ("tcp6", "tcp6"),
        ("udp", "udp"),
        ("udp6", "udp6"),
    ] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{file}")) else {
            continue;
        };
        for (address, port, inode) in parse_proc_net(&text, protocol.starts_with("tcp")) {
            let owner = owners.get(&inode);
            out.push(ListeningSocket {
                protocol,
                address,
                port,
                pid: owner.map(|o| o.0),
                process: owner.map(|o| o.1.clone()),
            });
        }
    }
    out.sort_by(|a, b| (a.port, a.protocol).cmp(&(b.port, b.protocol)));
    out.dedup();
    out
}

/// (address, port, inode) of each listening entry. TCP: state 0A (LISTEN);
/// UDP: state 07 (unconnected) bound to a port.
pub fn parse_proc_net(text: &str, tcp: bool) -> Vec<(String, u16, u64)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 10 {
            continue;
        }
        let state = fields[3];
        if (tcp && state != "0A") || (!tcp && state != "07") {
            continue;
        }
        let Some((addr_hex, port_hex)) = fields[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port_hex, 16) else {
            continue;
        };
        let Ok(inode) = fields[9].parse::<u64>() else {
            continue;
        };
        out.push((decode_address(addr_hex), port, inode));
    }
    out
}

fn decode_address(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    match bytes.len() {
        // IPv4 in host (little-endian) order.
        4 => std::net::Ipv4Addr::new(bytes[3], bytes[2], bytes[1], bytes[0]).to_string(),
        // IPv6 as four little-endian 32-bit words.
        16 => {
            let mut b = [0u8; 16];
            for word in 0..4 {
                for i in 0..4 {
                    b[word * 4 + i] = bytes[word * 4 + 3 - i];
                }
            }
            std::net::Ipv6Addr::from(b).to_string()
        }
        _ => hex.to_string(),
    }
}

/// socket inode → (pid, process name), from `/proc/<pid>/fd` links.
fn socket_owners() -> HashMap<u64, (u32, String)> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut name = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            let name = name.get_or_insert_with(|| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default()
            });
            owners.insert(inode, (pid, name.clone()));
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    const MDSTAT: &str = "Personalities : [raid1] [raid6]
md0 : active raid1 sdb1[1] sda1[0]
      1048512 blocks super 1.2 [2/2] [UU]

md1 : active raid1 sdd1[2](F) sdc1[0]
      2096128 blocks super 1.2 [2/1] [U_]

md2 : active raid1 sdf1[2] sde1[0]
      2096128 blocks super 1.2 [2/1] [U_]
      [==>..................]  recovery = 12.6% (264192/2096128) finish=0.1min speed=44032K/sec

unused devices: <none>
";

    #[test]
    fn mdstat_states() {
        let arrays = parse_mdstat(MDSTAT);
        let states: Vec<(&str, &str)> = arrays
            .iter()
            .map(|a| (a.name.as_str(), a.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [("md0", "clean"), ("md1", "degraded"), ("md2", "rebuilding")]
        );
        assert_eq!(arrays[1].failed_devices, ["sdd1"]);
        assert_eq!(arrays[2].progress_percent, Some(12.6));
        assert_eq!(arrays[0].level, "raid1");
    }

    #[test]
    fn proc_net_listening_entries() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2A4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(
            parse_proc_net(tcp, true),
            [("127.0.0.1".to_string(), 8080, 12345)]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(parse_proc_net(tcp6, true), [("::1".to_string(), 22, 999)]);
    }

    #[test]
    fn reboot_flag_and_packages() {
        let dir = std::env::temp_dir().join(format!("herald-reboot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!reboot_status(&dir).required);
        std::fs::write(
            dir.join("reboot-required"),
            "*** System restart required ***\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("reboot-required.pkgs"),
            "linux-base\nlibc6\nlinux-base\n",
        )
        .unwrap();
        let status = reboot_status(&dir);
        assert!(status.required);
        assert_eq!(status.packages, ["libc6", "linux-base"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
