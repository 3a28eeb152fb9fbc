//! Hot reload of the definitions directory against the real daemon: create,
//! break (the previous version keeps running), fix, delete, an editor's
//! rename-over, a Kubernetes ConfigMap symlink swap, the directory deleted
//! and made again, the reload endpoint and SIGHUP, and idempotence.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::daemon::{Daemon, Workspace};

fn def(value: &str) -> Value {
    json!({"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"v": {"literal": value}}}}]})
}

async fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = reqwest::get(d.url(path)).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn execute(d: &Daemon, name: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(d.url(&format!("/orchestration/definitions/{name}/execute/")))
        .json(&json!({"payload": {}}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn listed(d: &Daemon, name: &str) -> Option<Value> {
    let (_, list) = get(d, "/orchestration/definitions/").await;
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
}

/// Polls until `f` holds (the watcher acts within ~100 ms; the bound is loose
/// for slow machines, not a timing assertion).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn value_of(d: &Daemon, name: &str) -> Option<String> {
    let (code, r) = execute(d, name).await;
    (code == 200).then(|| {
        r["node_results"]["t"]["output"]["v"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
}

#[tokio::test]
async fn create_break_fix_delete() {
    let ws = Workspace::new("");
    let d = ws.start();
    let dir = ws.dir.path().join("definitions");

    ws.definition("live", &def("one"));
    eventually("a new file is loaded", || async {
        value_of(&d, "live").await.as_deref() == Some("one")
    })
    .await;
    let first_hash = listed(&d, "live").await.unwrap()["version_hash"].clone();

    std::fs::write(dir.join("live.json"), "{\"version\": \"1\", \"nodes\": [ ").unwrap();
    eventually("the broken file is reported", || async {
        listed(&d, "live")
            .await
            .is_some_and(|i| i["state"] == "invalid")
    })
    .await;
    let item = listed(&d, "live").await.unwrap();
    assert_eq!(item["running_version"], first_hash, "{item:#}");
    assert!(
        item["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{item:#}"
    );
    assert_eq!(
        value_of(&d, "live").await.as_deref(),
        Some("one"),
        "the previous good version keeps running"
    );
    assert!(
        d.log().contains("the previous version keeps running"),
        "{}",
        d.log()
    );

    ws.definition("live", &def("two"));
    eventually("the fixed file is loaded", || async {
        value_of(&d, "live").await.as_deref() == Some("two")
    })
    .await;
    let item = listed(&d, "live").await.unwrap();
    assert_eq!(item["state"], "ok");
    assert_ne!(item["version_hash"], first_hash);

    std::fs::remove_file(dir.join("live.json")).unwrap();
    eventually("a deleted file is gone", || async {
        execute(&d, "live").await.0 == 404
    })
    .await;
    assert!(listed(&d, "live").await.is_none());
}

/// A file beside the definitions directory and the config that never
/// stops changing (a log written next to config.toml) must not hold
/// reloads back: the watcher waits for changes to settle, but not for ever.
#[tokio::test]
async fn a_busy_neighbour_file_does_not_hold_reloads_back() {
    let ws = Workspace::new("");
    let d = ws.start();
    let _writer = BusyFile::start(ws.dir.path().join("herald.log"));
    ws.definition("late", &def("seen"));
    eventually(
        "a definition written while a neighbour keeps changing",
        || async { value_of(&d, "late").await.as_deref() == Some("seen") },
    )
    .await;
}

/// A file appended to every 10 ms (faster than the watcher's quiet
/// period) until dropped, even when the test fails.
struct BusyFile {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BusyFile {
    fn start(path: std::path::PathBuf) -> BusyFile {
        use std::io::Write;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::File::create(&path).unwrap();
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                writeln!(f, "a line").unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        BusyFile {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BusyFile {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[tokio::test]
async fn editor_saves_and_moves_into_the_directory() {
    let ws = Workspace::new("");
    let d = ws.start();
    let dir = ws.dir.path().join("definitions");
    // Write a temp file, then rename it over the target (vim, VS Code…).
    std::fs::write(dir.join(".saved.json.swp"), def("tmp").to_string()).unwrap();
    std::fs::rename(dir.join(".saved.json.swp"), dir.join("saved.json")).unwrap();
    eventually("a renamed-over file is loaded", || async {
        value_of(&d, "saved").await.as_deref() == Some("tmp")
    })
    .await;
    // `mv` of a whole file from elsewhere.
    let outside = ws.dir.path().join("moved.json");
    std::fs::write(&outside, def("moved").to_string()).unwrap();
    std::fs::rename(&outside, dir.join("moved.json")).unwrap();
    eventually("a moved-in file is loaded", || async {
        value_of(&d, "moved").await.as_deref() == Some("moved")
    })
    .await;
}

/// A deploy script that deletes the definitions directory and makes it
/// again: its files are loaded, the old ones' definitions removed, and
/// later edits in the new directory followed too (a watch follows the
/// directory it was put on, not the path).
#[tokio::test]
async fn the_definitions_directory_deleted_and_made_again() {
    let ws = Workspace::new("");
    let dir = ws.dir.path().join("definitions");
    std::fs::write(dir.join("old.json"), def("old").to_string()).unwrap();
    let d = ws.start();
    assert_eq!(value_of(&d, "old").await.as_deref(), Some("old"));
    std::fs::remove_dir_all(&dir).unwrap();
    // Made again only after the deletion's rescan (which finds no directory).
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("new.json"), def("new").to_string()).unwrap();
    eventually("the new directory's file is loaded", || async {
        value_of(&d, "new").await.as_deref() == Some("new")
    })
    .await;
    eventually("the deleted file's definition is removed", || async {
        listed(&d, "old").await.is_none()
    })
    .await;
    std::fs::write(dir.join("new.json"), def("edited").to_string()).unwrap();
    eventually("an edit in the new directory is loaded", || async {
        value_of(&d, "new").await.as_deref() == Some("edited")
    })
    .await;
}

/// Once a change is picked up, the watchers go quiet: herald reading the
/// directory and the config must not count as a change. (The parent
/// directory is watched too, and inotify reports a child being opened: each
/// rescan and config read used to start the next, ten times a second.)
#[tokio::test]
async fn a_rescan_does_not_start_the_next() {
    let ws = Workspace::new("");
    let d = ws.start_with(&[], &[("HERALD_LOG", "warn,herald=debug")]);
    let dir = ws.dir.path().join("definitions");
    std::fs::write(dir.join("a.json"), def("a").to_string()).unwrap();
    eventually("the new file is loaded", || async {
        value_of(&d, "a").await.as_deref() == Some("a")
    })
    .await;
    let count = |what: &str| d.log().matches(what).count();
    let rescans = "rescanning the definitions directory";
    let config_reads = "re-reading the config";
    eventually("the change was seen", || async { count(rescans) > 1 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // its own debounce
    let (r0, c0) = (count(rescans), count(config_reads));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        count(rescans),
        r0,
        "rescans went on by themselves:\n{}",
        d.log()
    );
    assert_eq!(
        count(config_reads),
        c0,
        "config reads went on by themselves"
    );
}

#[tokio::test]
async fn configmap_style_symlink_swap() {
    let ws = Workspace::new("");
    let dir = ws.dir.path().join("definitions");
    // ..v1/app.json, ..data -> ..v1, app.json -> ..data/app.json
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/app.json"), def("v1").to_string()).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/app.json", dir.join("app.json")).unwrap();
    let d = ws.start();
    assert_eq!(value_of(&d, "app").await.as_deref(), Some("v1"));
    // Kubernetes writes ..v2, points ..data_tmp at it, renames it over ..data.
    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/app.json"), def("v2").to_string()).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    eventually("the swapped version is loaded", || async {
        value_of(&d, "app").await.as_deref() == Some("v2")
    })
    .await;
}

#[tokio::test]
async fn reload_endpoint_sighup_and_idempotence() {
    let ws = Workspace::new("");
    ws.definition("steady", &def("same"));
    let d = ws.start();
    let r: Value = reqwest::Client::new()
        .post(d.url("/orchestration/definitions/reload/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["unchanged"], json!(["steady"]), "{r:#}");
    assert_eq!(r["loaded"], json!([]));
    // Re-saving the same content changes nothing and starts nothing.
    ws.definition("steady", &def("same"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        d.log().matches("definition loaded").count(),
        1,
        "{}",
        d.log()
    );
    // A broken new file: the endpoint says so.
    std::fs::write(ws.dir.path().join("definitions/bad.json"), "[]").unwrap();
    let r: Value = reqwest::Client::new()
        .post(d.url("/orchestration/definitions/reload/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bad_reported = r["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "bad")
        || listed(&d, "bad")
            .await
            .is_some_and(|i| i["state"] == "invalid");
    assert!(bad_reported, "{r:#}");
    d.signal("HUP");
    let log = || d.log();
    eventually("SIGHUP rescans", || async {
        log().contains("SIGHUP: definitions rescanned")
    })
    .await;
    let (_, metrics) = (
        200,
        reqwest::get(d.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("herald_definitions_invalid 1"),
        "{metrics}"
    );
}

async fn status_with_token(d: &Daemon, token: &str) -> u16 {
    reqwest::Client::new()
        .get(d.url("/orchestration/pipelines/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn config_reload_applies_live_settings_and_refuses_bad_files() {
    let ws = Workspace::new("auth_tokens = [\"first\"]\n");
    ws.definition(
        "page",
        &json!({"version": "1", "nodes": [
        {"id": "n", "type": "notify", "config": {"driver": "webhook", "channel": "ops"}}]}),
    );
    let d = ws.start();
    assert_eq!(status_with_token(&d, "first").await, 200);
    assert_eq!(status_with_token(&d, "second").await, 401);
    assert_eq!(
        listed_with(&d, "first", "page").await["state"],
        "invalid",
        "no channel `ops` yet"
    );

    // A token and a notify channel added live.
    let receiver = support::Receiver::start().await;
    ws.write_config(&format!(
        "auth_tokens = [\"first\", \"second\"]\n[notify.webhook.ops]\nurl = \"{}\"\n",
        receiver.url("/")
    ));
    eventually("the new token works", || async {
        status_with_token(&d, "second").await == 200
    })
    .await;
    eventually("the definition using the new channel loads", || async {
        listed_with(&d, "second", "page").await["state"] == "ok"
    })
    .await;

    // A broken config is refused; the running one stays.
    std::fs::write(
        ws.dir.path().join("config.toml"),
        "auth_tokens = [\"first\"\n",
    )
    .unwrap();
    eventually("the refusal is logged", || async {
        d.log().contains("config reload refused")
    })
    .await;
    assert_eq!(
        status_with_token(&d, "second").await,
        200,
        "the old config stays in force"
    );

    // What cannot change live is named.
    ws.write_config("auth_tokens = [\"first\", \"second\"]\n[store]\ncache_mb = 64\n");
    eventually("needs-restart is logged", || async {
        d.log().contains("need a restart")
    })
    .await;
    assert!(d.log().contains("store.cache_mb"), "{}", d.log());
    assert_eq!(
        status_with_token(&d, "first").await,
        200,
        "the rest applied"
    );
}

async fn listed_with(d: &Daemon, token: &str, name: &str) -> Value {
    let v: Value = reqwest::Client::new()
        .get(d.url("/orchestration/definitions/"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A channel's CA file replaced while config.toml stays the same (a CA
/// rotated, or the wrong one fixed): the next notify trusts the new one.
#[tokio::test]
async fn a_replaced_ca_file_is_trusted_without_a_restart() {
    let receiver = support::Receiver::start_tls().await;
    let ws = Workspace::new("");
    let ca_file = ws.dir.path().join("internal-ca.pem");
    // The receiver's own certificate is not the CA that signed it.
    std::fs::copy(support::fixture("tls/receiver.pem"), &ca_file).unwrap();
    ws.write_config(&format!(
        "[notify.webhook.internal]\nurl = \"{}\"\nca_file = \"internal-ca.pem\"\n",
        receiver.url("/hook")
    ));
    ws.definition(
        "page",
        &json!({"version": "1", "nodes": [{"id": "n", "type": "notify", "retries": 0,
            "config": {"driver": "webhook", "channel": "internal"}}]}),
    );
    let d = ws.start();
    let (_, first) = execute(&d, "page").await;
    assert_eq!(first["status"], "FAILED", "{first:#}");

    std::fs::copy(support::fixture("tls/ca.pem"), &ca_file).unwrap();
    eventually("the new CA is trusted", || async {
        execute(&d, "page").await.1["status"] == "NOTIFIED"
    })
    .await;
    assert!(!receiver.received().is_empty());
}
