//! The real `herald serve` binary on 127.0.0.1:0, in a temp workspace, with
//! its log drained into memory and its address read from the address file.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A workspace (config, data dir, definitions dir) that outlives daemons, so
/// a test can kill one and start another on the same data.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    /// `config` is appended to a config that listens on 127.0.0.1:0.
    pub fn new(config: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("definitions")).unwrap();
        let ws = Workspace { dir };
        ws.write_config(config);
        ws
    }

    pub fn write_config(&self, extra: &str) {
        std::fs::write(
            self.dir.path().join("config.toml"),
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ndefinitions_dir = \"definitions\"\nlog_level = \"info\"\n{extra}"
            ),
        )
        .unwrap();
    }

    pub fn definition(&self, name: &str, json: &serde_json::Value) {
        std::fs::write(
            self.dir
                .path()
                .join("definitions")
                .join(format!("{name}.json")),
            serde_json::to_vec_pretty(json).unwrap(),
        )
        .unwrap();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("HERALD_LOG")
            .env_remove("HERALD_AUTH_TOKENS");
        cmd
    }

    pub fn start(&self) -> Daemon {
        self.start_with(&[], &[])
    }

    /// Starts `herald serve` with extra args and env, and waits until it listens.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let _ = std::fs::remove_file(self.data_dir().join("herald.addr"));
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut cmd = self.command(&all);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.start_command(cmd)
    }

    /// Starts `cmd` (made by [`command`](Self::command) with `serve`), and
    /// waits until it listens.
    pub fn start_command(&self, mut cmd: Command) -> Daemon {
        let _ = std::fs::remove_file(self.data_dir().join("herald.addr"));
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Some(url) = read_addr(&self.data_dir()) {
                break url;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "herald serve exited with {status}:\n{}",
                    log.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "herald serve did not start:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon { child, url, log }
    }
}

fn read_addr(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("herald.addr")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["url"].as_str().map(str::to_string)
}

/// Reads a pipe to the end on a thread, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    log
}

pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub log: Arc<Mutex<String>>,
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "herald did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
