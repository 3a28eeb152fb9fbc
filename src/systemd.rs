//! Telling systemd how the daemon is doing: the sd_notify(3) protocol, one
//! datagram per message to the socket systemd names in `NOTIFY_SOCKET`
//! (written by hand: it is a line of text on a Unix socket).
//!
//! With the packaged unit's `Type=notify`, systemd counts herald started
//! once it listens (`READY=1`), not once the process exists — so units
//! ordered after it, and `systemctl start` itself, wait for a daemon that
//! answers — and sees it `STOPPING=1`. With `WatchdogSec=`, herald pings
//! (`WATCHDOG=1`) only while its intake, the path every webhook takes,
//! gets on (idle, or finishing what it was given): a daemon hung there is
//! killed and restarted, and the durable queue carries its jobs across.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where to send, and how often systemd wants a watchdog ping.
pub struct Notifier {
    socket: UnixDatagram,
    address: std::os::unix::net::SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// The notifier systemd asked for, if it did.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let address = socket_address(path.as_encoded_bytes())?;
        let socket = UnixDatagram::unbound().ok()?;
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|us| us.parse::<u64>().ok())
            .filter(|_| {
                // Meant for this process, when systemd says whom.
                std::env::var("WATCHDOG_PID")
                    .map(|pid| pid == std::process::id().to_string())
                    .unwrap_or(true)
            })
            .filter(|us| *us > 0)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            address,
            watchdog,
        })
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, …); systemd not listening
    /// is not herald's problem.
    pub fn notify(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            tracing::debug!(error = %e, state, "could not tell systemd");
        }
    }

    /// How often to ping the watchdog: half its timeout, as systemd advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }
}

/// A path, or `@name` for an abstract socket.
fn socket_address(raw: &[u8]) -> Option<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    match raw.strip_prefix(b"@") {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name).ok(),
        None => {
            std::os::unix::net::SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(raw)).ok()
        }
    }
}
