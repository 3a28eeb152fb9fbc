//! The real `herald` binary, end to end: each shipped definition runs and is
//! listed, `validate` points at file:line:col, and bad input gives one clear
//! line and a non-zero exit — never a panic.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// A definition that turns its payload into an incident and notifies it
/// through the log.
const PAGE_BY_LOG: &str = r#"{"version": "1", "nodes": [
    {"id": "ingest", "type": "ingest", "next": "notify"},
    {"id": "notify", "type": "notify", "config": {"driver": "log"}}]}"#;

/// A temp workspace with its own config.toml, data dir and definitions dir.
struct Workspace {
    dir: tempfile::TempDir,
    definitions: PathBuf,
    _own_definitions: Option<tempfile::TempDir>,
}

impl Workspace {
    /// Uses the repository's shipped definitions.
    fn shipped() -> Workspace {
        Self::with_definitions(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("definitions"),
            "",
        )
    }

    fn with_definitions(definitions: PathBuf, extra_config: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            format!(
                "data_dir = \"data\"\ndefinitions_dir = \"{}\"\nlog_level = \"warn\"\n{extra_config}",
                definitions.display()
            ),
        )
        .unwrap();
        Workspace {
            dir,
            definitions,
            _own_definitions: None,
        }
    }

    /// An empty definitions dir of its own.
    fn empty(extra_config: &str) -> Workspace {
        let defs = tempfile::tempdir().unwrap();
        let mut ws = Self::with_definitions(defs.path().to_path_buf(), extra_config);
        ws._own_definitions = Some(defs);
        ws
    }

    fn write_definition(&self, name: &str, text: &str) -> PathBuf {
        let path = self.definitions.join(format!("{name}.json"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("HERALD_LOG")
            .env_remove("RUST_BACKTRACE");
        cmd
    }

    /// `herald serve` on a loopback port, logging at info, once it has
    /// said it started; with what it logged until then.
    fn serve(&self) -> (Serving, String) {
        self.serve_with_env(&[])
    }

    /// [`serve`](Self::serve) with variables added to its environment.
    fn serve_with_env(&self, env: &[(&str, &str)]) -> (Serving, String) {
        let mut serve = self
            .command(&["--log-level", "info", "serve", "--listen", "127.0.0.1:0"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = wait_for_stderr(&mut serve, "herald started", Duration::from_secs(30));
        let serve = Serving(serve);
        assert!(seen.contains("herald started"), "{seen}");
        (serve, seen)
    }

    fn herald(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.herald(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1, a single `error: …` line containing `needle`, no panic.
fn assert_clean_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("error: ")),
        "{err}"
    );
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

#[test]
fn each_shipped_definition_runs_and_is_listed() {
    let ws = Workspace::shipped();
    let payload = support::fixture("alertmanager-0.25-webhook-firing.json");
    let payload = payload.to_str().unwrap();
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("health-check", None, "NOTIFIED"),
        ("metrics-alert", None, "NOTIFIED"),
        ("alert-triggered", Some(payload), "NOTIFIED"),
        ("default", Some(payload), "NOTIFIED"),
        // The notification is skipped while the host is healthy.
        ("guarded-notify", None, ""),
    ];
    let mut run_ids = Vec::new();
    for (name, payload, status) in cases {
        let mut args = vec!["run", name, "--json"];
        if let Some(p) = payload {
            args.extend(["--payload", p]);
        }
        let result = ws.json(&args);
        assert_eq!(result["definition"], *name);
        if !status.is_empty() {
            assert_eq!(result["status"], *status, "{name}: {result:#}");
        }
        assert_ne!(result["status"], "FAILED", "{name}: {result:#}");
        run_ids.push(result["run_id"].as_str().unwrap().to_string());
    }
    let listed = ws.json(&["runs", "list", "--json"]);
    let listed_ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = run_ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed_ids, newest_first);

    let table = stdout(&ws.herald(&["runs", "list"]));
    for (name, _, _) in cases {
        assert!(table.contains(name), "{name} not in\n{table}");
    }
    assert!(
        table.contains("CREATED (UTC)"),
        "times say their zone:\n{table}"
    );
    let by_def = ws.json(&["runs", "list", "--definition", "health-check", "--json"]);
    assert_eq!(by_def["runs"].as_array().unwrap().len(), 1);

    // A misspelt name lists nothing, and says why on stderr (stdout stays
    // the list a script reads).
    let typo = ws.herald(&["runs", "list", "--definition", "health-chek", "--json"]);
    assert!(typo.status.success());
    let listed: Value = serde_json::from_slice(&typo.stdout).unwrap();
    assert_eq!(listed["runs"], serde_json::json!([]));
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(
        said.contains("no definition named `health-chek` is loaded; did you mean `health-check`?"),
        "{said}"
    );
    // A loaded definition with no runs that match is just an empty list.
    let quiet = ws.herald(&[
        "runs",
        "list",
        "--definition",
        "health-check",
        "--status",
        "failed",
        "--json",
    ]);
    assert!(quiet.status.success());
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("no definition named"),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}

#[test]
fn run_json_has_the_result_shape() {
    let ws = Workspace::shipped();
    let p = support::fixture("seed-generic.json");
    let r = ws.json(&[
        "run",
        "alert-triggered",
        "--payload",
        p.to_str().unwrap(),
        "--json",
        "--source",
        "test",
        "--environment",
        "staging",
    ]);
    for key in [
        "trace_id",
        "run_id",
        "definition",
        "definition_version",
        "status",
        "incident_id",
        "executed_nodes",
        "skipped_nodes",
        "node_results",
        "duration_ms",
        "error",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r:#}");
    }
    let ingest = &r["node_results"]["ingest"];
    for key in [
        "node_type",
        "status",
        "output",
        "errors",
        "attempts",
        "duration_ms",
    ] {
        assert!(
            ingest.get(key).is_some(),
            "missing node_results.ingest.{key}"
        );
    }
    assert_eq!(ingest["output"]["alerts"][0]["name"], "Test Alert");
    assert_eq!(r["incident_id"], ingest["output"]["incident_id"]);

    let run_id = r["run_id"].as_str().unwrap();
    let shown = ws.json(&["runs", "show", run_id, "--json"]);
    assert_eq!(shown["source"], "test");
    assert_eq!(shown["environment"], "staging");
    assert_eq!(shown["stages"].as_array().unwrap().len(), 4);
    let human = stdout(&ws.herald(&["runs", "show", run_id]));
    assert!(
        human.contains("alert-triggered") && human.contains("SUCCEEDED"),
        "{human}"
    );
}

#[test]
fn human_summary_lists_each_node() {
    let ws = Workspace::shipped();
    let out = ws.herald(&["run", "health-check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for node in ["metrics", "check", "analyze", "notify"] {
        assert!(text.contains(node), "{node} not in\n{text}");
    }
    assert!(text.contains("status NOTIFIED"), "{text}");
}

#[test]
fn payload_from_stdin() {
    let ws = Workspace::shipped();
    let mut child = ws
        .command(&["run", "default", "--payload", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(support::fixture("seed-alertmanager-alert.json")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["node_results"]["ingest"]["output"]["alerts"][0]["name"],
        "DiskSpaceLow"
    );
}

#[test]
fn failed_run_exits_non_zero() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = Workspace::empty(&format!(
        "[notify.webhook.ops]\nurl = \"http://127.0.0.1:{port}/\"\n"
    ));
    ws.write_definition(
        "page",
        r#"{"version": "1", "nodes": [{"id": "n", "type": "notify", "config": {"driver": "webhook", "channel": "ops"}, "retries": 0}]}"#,
    );
    let out = ws.herald(&["run", "page"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("status FAILED"), "{}", stdout(&out));
    let failed = ws.json(&["runs", "list", "--status", "failed", "--json"]);
    assert_eq!(failed["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn validate_points_at_file_line_and_column() {
    let ws = Workspace::empty("");
    let broken = ws.write_definition("broken", "{\n  \"version\": \"1\",\n  \"nodes\": [\n    {\"id\": \"a\" \"type\": \"notify\"}\n  ]\n}\n");
    let out = ws.herald(&["validate", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{}:4:16", broken.display())),
        "{text}"
    );

    let many = ws.write_definition(
        "many",
        "{\n\"version\": \"1\",\n\"nodes\": [\n{\"id\": \"a\", \"type\": \"nope\", \"next\": \"z\"},\n{\"id\": \"a\", \"type\": \"notify\", \"config\": {\"driver\": \"log\", \"colour\": 1}}\n]\n}\n",
    );
    let out = ws.herald(&["validate", many.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for needle in [
        ":4:",
        "nodes[0].type",
        "nodes[0].next",
        "nodes[1].id",
        "nodes[1].config.colour",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }

    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("definitions");
    let out = ws.herald(&["validate", shipped.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
}

/// `herald validate` before `systemctl reload herald`: the config is
/// checked too, and what would only bite later is said without failing.
#[test]
fn validate_checks_the_config_and_says_what_would_bite_later() {
    let ws = Workspace::empty("[webhooks.secrets]\nalertmanager = \"a\"\n");
    let config = ws.dir.path().join("config.toml");
    let out = ws.herald(&["validate"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("ok      {} (config)", config.display())),
        "{text}"
    );
    assert!(
        text.contains("warning: webhooks.secrets.alertmanager: Alertmanager does not sign"),
        "{text}"
    );

    let ws = Workspace::empty("[webhooks.secrets]\npagerduy = \"p\"\n");
    let out = ws.herald(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `pagerduty`?"), "{err}");

    // A token file the daemon could not read would stop it at start.
    let ws = Workspace::empty("auth_token_file = \"tokens\"\n");
    let out = ws.herald(&["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read auth_token_file"), "{err}");
    assert!(err.contains("tokens"), "{err}");
}

/// The `log` notifier logs at its message's severity: with `log_level =
/// "warn"`, which keeps a storm's per-run lines out of the journal, a
/// critical alert is still said (as an error), an informational one not.
#[test]
fn the_log_notifier_logs_at_the_severity_of_its_message() {
    let ws = Workspace::empty("");
    ws.write_definition("page", PAGE_BY_LOG);
    let alert = |name: &str, severity: &str| {
        let path = ws.dir.path().join(format!("{name}.json"));
        let body = serde_json::json!({"name": name, "severity": severity, "status": "firing"});
        std::fs::write(&path, body.to_string()).unwrap();
        path
    };
    let run = |payload: &Path| {
        let out = ws.herald(&[
            "--log-level",
            "warn",
            "run",
            "page",
            "--payload",
            payload.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let critical = run(&alert("DiskFull", "critical"));
    let line = critical
        .lines()
        .find(|l| l.contains("DiskFull"))
        .unwrap_or_else(|| panic!("the critical notification is not logged:\n{critical}"));
    assert!(line.contains("ERROR"), "{line}");
    let warning = run(&alert("SlowDisk", "warning"));
    assert!(
        warning
            .lines()
            .any(|l| l.contains("SlowDisk") && l.contains("WARN")),
        "{warning}"
    );
    let info = run(&alert("Heartbeat", "info"));
    assert!(
        !info.contains("Heartbeat"),
        "an info notification at warn:\n{info}"
    );
}

/// At info a run is one line, its finish; its start and stages are debug
/// (a storm at seven lines an alert went past journald's rate limit).
#[test]
fn a_run_is_one_line_at_info_and_every_stage_at_debug() {
    let ws = Workspace::empty("");
    ws.write_definition(
        "quiet",
        r#"{"version": "1", "nodes": [
            {"id": "shape", "type": "transform", "config": {"mapping": {"name": "payload.name"}}}]}"#,
    );
    let stderr = |level: &str| {
        let out = ws.herald(&["--log-level", level, "run", "quiet"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let info = stderr("info");
    assert_eq!(info.matches("run finished").count(), 1, "{info}");
    for quiet in ["run started", "stage succeeded"] {
        assert!(!info.contains(quiet), "{quiet} at info:\n{info}");
    }
    let debug = stderr("debug");
    for said in ["run started", "stage succeeded", "run finished"] {
        assert!(debug.contains(said), "no {said} at debug:\n{debug}");
    }
}

/// tracing reads a bare word that is not a level (`warning`, `verbose`)
/// as a module to log all of, and then logs nothing else, errors
/// included: in config.toml it is said and info used, in `--log-level`
/// refused, in `HERALD_LOG` ignored (and said).
#[test]
fn a_log_level_that_is_not_one_is_said_not_silence() {
    let ws = Workspace::empty("");
    ws.write_definition(
        "quiet",
        r#"{"version": "1", "nodes": [{"id": "shape", "type": "transform", "config": {"mapping": {"name": "payload.name"}}}]}"#,
    );
    let config = ws.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("log_level = \"warn\"", "log_level = \"warning\""),
    )
    .unwrap();
    // Said, not fatal: a daemon that did not start after an upgrade over
    // such a line would page nobody.
    let out = ws.herald(&["validate"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .contains("warning: log_level: `warning` is not a log level; did you mean `warn`?"),
        "{}",
        stdout(&out)
    );
    let out = ws.herald(&["run", "quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("run finished"),
        "logging at info instead:\n{err}"
    );
    // The daemon starts, logging at info, and says why.
    let mut serve = ws
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = wait_for_stderr(&mut serve, "herald started", Duration::from_secs(30));
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(seen.contains("herald started"), "{seen}");
    assert!(seen.contains("`warning` is not a log level"), "{seen}");
    std::fs::write(&config, text).unwrap();

    let out = ws.herald(&["--log-level", "verbose", "validate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--log-level: `verbose` is not a log level"),
        "{err}"
    );

    ws.write_definition("page", PAGE_BY_LOG);
    let payload = ws.dir.path().join("alert.json");
    std::fs::write(
        &payload,
        r#"{"name": "DiskFull", "severity": "critical", "status": "firing"}"#,
    )
    .unwrap();
    let out = ws
        .command(&["run", "page", "--payload", payload.to_str().unwrap()])
        .env("HERALD_LOG", "verbose")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HERALD_LOG ignored: `verbose` is not a log level"),
        "{err}"
    );
    // The config's level is used instead: the critical notification is said.
    assert!(err.contains("DiskFull"), "{err}");
}

#[test]
fn bad_input_gives_one_clear_line() {
    let ws = Workspace::shipped();
    let bad = ws.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"name\": \"x\",,}").unwrap();
    assert_clean_error(
        &ws.herald(&["run", "default", "--payload", bad.to_str().unwrap()]),
        "bad.json:1:14 is not valid JSON",
    );
    assert_clean_error(
        &ws.herald(&["run", "default", "--payload", "/nonexistent/p.json"]),
        "cannot read payload",
    );
    assert_clean_error(
        &ws.herald(&["run", "no-such-thing"]),
        "no definition named `no-such-thing`; known: ",
    );
    assert_clean_error(
        &ws.herald(&["runs", "show", "01NOTHERE"]),
        "no run with id 01NOTHERE",
    );
    assert_clean_error(
        &ws.herald(&["runs", "list", "--status", "weird"]),
        "unknown status `weird`",
    );

    let file_as_dir = ws.dir.path().join("file");
    std::fs::write(&file_as_dir, "x").unwrap();
    assert_clean_error(
        &ws.herald(&[
            "--data-dir",
            file_as_dir.to_str().unwrap(),
            "run",
            "health-check",
        ]),
        "cannot open data dir",
    );
    assert_clean_error(
        &ws.herald(&["--definitions", "/nonexistent/defs", "definitions"]),
        "cannot read definitions directory",
    );
    assert_clean_error(
        &Command::new(BIN)
            .args(["--config", "/nonexistent/herald.toml", "definitions"])
            .output()
            .unwrap(),
        "cannot read config",
    );
}

#[test]
fn running_an_invalid_definition_shows_its_errors() {
    let ws = Workspace::empty("");
    ws.write_definition("oops", r#"{"version": "1", "nodes": [{"id": "a", "type": "notify", "config": {"driver": "fax"}}]}"#);
    let out = ws.herald(&["run", "oops"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("definition `oops` is invalid") && err.contains("unknown driver `fax`"),
        "{err}"
    );
    let listed = ws.json(&["definitions", "--json"]);
    let oops = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "oops")
        .unwrap();
    assert_eq!(oops["state"], "invalid");
    assert_eq!(oops["errors"][0]["path"], "nodes[0].config.driver");
}

/// A job queued for a definition that is gone by the time it runs (herald
/// stopped with jobs on disk, the file removed meanwhile) fails, and the
/// log says why and what to do: the run is resumable once it is back.
#[test]
fn a_queued_job_whose_definition_is_gone_fails_and_says_so() {
    use herald::engine::{Engine, RunRequest, queue::Queue};
    use std::sync::Arc;
    let ws = Workspace::empty("");
    let defs = tempfile::tempdir().unwrap();
    std::fs::write(
        defs.path().join("gone.json"),
        r#"{"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"x": "payload.x"}}}]}"#,
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run_id = runtime.block_on(async {
        let config = Arc::new(herald::config::Config::default());
        let handlers =
            herald::nodes::HandlerRegistry::builtin(Arc::new(herald::nodes::Services::new(config)));
        let set = herald::definition::DefinitionSet::load_dir(defs.path(), &handlers).unwrap();
        let store = herald::store::Store::open(
            &ws.dir.path().join("data"),
            herald::store::StoreOptions::default(),
        )
        .unwrap();
        let queue = Queue::open(store, 10, Arc::new(herald::metrics::Metrics::new())).unwrap();
        let record = Engine::new_record(&set.get("gone").unwrap(), RunRequest::default());
        queue.enqueue(std::slice::from_ref(&record)).await.unwrap();
        record.run_id
    });
    drop(runtime); // its tasks hold the store: the data dir is free again

    let (mut serve, mut log) = ws.serve();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = ws.json(&["runs", "show", &run_id, "--json"]);
        if run["status"] == "FAILED" {
            assert_eq!(
                run["last_error"]["error_type"], "definition_missing",
                "{run:#}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never failed: {run:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(send_sigterm_and_wait(&mut serve), Some(0));
    log.push_str(&wait_for_stderr(
        &mut serve,
        "never printed",
        Duration::from_secs(5),
    ));
    let line = log
        .lines()
        .find(|l| l.contains("its definition is no longer loaded"))
        .unwrap_or_else(|| panic!("not said:\n{log}"));
    assert!(line.contains(&run_id) && line.contains("gone"), "{line}");
    assert!(line.contains("resume the run"), "{line}");
}

fn wait_for_stderr(child: &mut Child, needle: &str, timeout: Duration) -> String {
    use std::io::Read;
    let stderr = child.stderr.as_mut().unwrap();
    let deadline = Instant::now() + timeout;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !seen.contains(needle) {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn serve_answers_the_cli_and_exits_0_on_sigterm() {
    let ws = Workspace::shipped();
    let (mut serve, _) = ws.serve();

    // While the daemon holds the data dir, the CLI talks to it over HTTP.
    let via_daemon = ws.json(&["run", "health-check", "--json"]);
    assert_eq!(via_daemon["status"], "NOTIFIED");
    let run_id = via_daemon["run_id"].as_str().unwrap();
    let listed = ws.json(&["runs", "list", "--json"]);
    assert_eq!(listed["runs"][0]["run_id"], run_id);
    let typo = ws.herald(&["runs", "list", "--definition", "helth-check"]);
    assert!(typo.status.success(), "{}", stderr(&typo));
    assert!(
        stderr(&typo).contains("did you mean `health-check`?"),
        "the daemon's hint is passed on: {}",
        stderr(&typo)
    );
    // An operator's shell behind a corporate proxy: the daemon is still
    // reached directly.
    let out = ws
        .command(&["runs", "list", "--json"])
        .env("http_proxy", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(out.status.success(), "through a proxy: {}", stderr(&out));
    let shown = ws.json(&["runs", "show", run_id, "--json"]);
    assert_eq!(shown["stages"].as_array().unwrap().len(), 4);
    assert_clean_error(
        &ws.herald(&["run", "no-such"]),
        "no definition named `no-such`",
    );
    // Compaction needs the store closed, and says so.
    assert_clean_error(&ws.herald(&["store", "compact"]), "is in use");
    // And a store: a mistyped data dir is not created and "compacted".
    let nowhere = ws.dir.path().join("no-such-dir");
    assert_clean_error(
        &ws.herald(&["--data-dir", nowhere.to_str().unwrap(), "store", "compact"]),
        "there is no store here to compact",
    );
    assert!(!nowhere.exists());

    assert_eq!(send_sigterm_and_wait(&mut serve), Some(0));
    // The data dir is free again.
    let out = ws.herald(&["run", "health-check"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let compacted = ws.json(&["store", "compact", "--json"]);
    assert!(compacted["records"].as_u64().unwrap() > 0, "{compacted}");
    let shown = ws.json(&["runs", "show", run_id, "--json"]);
    assert_eq!(shown["stages"].as_array().unwrap().len(), 4);
}

/// A service given its token in its environment (/etc/herald/env): the
/// operator's CLI, without it, is told where the CLI looks for one.
#[test]
fn the_cli_without_the_daemons_token_is_told_where_to_put_it() {
    let ws = Workspace::shipped();
    let (mut serve, _) = ws.serve_with_env(&[("HERALD_AUTH_TOKENS", "service-t0ken")]);

    let none = ws.herald(&["runs", "list"]);
    assert_clean_error(&none, "requires a token and this command found no token");
    assert!(
        stderr(&none).contains("HERALD_AUTH_TOKENS"),
        "{}",
        stderr(&none)
    );
    let wrong = ws
        .command(&["runs", "list"])
        .env("HERALD_AUTH_TOKENS", "not-it")
        .output()
        .unwrap();
    assert_clean_error(&wrong, "is not one of the daemon's");
    let right = ws
        .command(&["runs", "list", "--json"])
        .env("HERALD_AUTH_TOKENS", "service-t0ken")
        .output()
        .unwrap();
    assert!(right.status.success(), "{}", stderr(&right));
    // Ctrl-C in the terminal that runs `herald serve` stops it as gracefully
    // as systemd's SIGTERM does.
    assert_eq!(send_signal_and_wait(&mut serve, "INT"), Some(0));
}

/// Ctrl-C on a `herald run` that runs the definition itself (no daemon)
/// stops the run: recorded FAILED with an `interrupted` error, so that the
/// next `herald serve` does not continue it (it continues what a crash
/// cut short), and resumable by hand. Exit 130, as for SIGINT.
#[test]
fn ctrl_c_stops_a_local_run_and_records_it_failed() {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let plugins = tempfile::tempdir().unwrap();
    let script = plugins.path().join("mark.sh");
    std::fs::write(&script, "#!/bin/sh\n: > \"$1\"\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let started = plugins.path().join("started");
    let ws = Workspace::empty(&format!(
        "[host]\nplugin_dirs = [\"{}\"]\n",
        plugins.path().display()
    ));
    let check = serde_json::json!({"name": "plugin", "label": "slow", "timeout": "50s",
        "command": [script.to_str().unwrap(), started.to_str().unwrap()]});
    let definition = serde_json::json!({"version": "1", "nodes": [
        {"id": "look", "type": "check", "config": {"checks": [check]}, "timeout": "55s"}]});
    ws.write_definition("slow", &definition.to_string());

    let mut run = ws
        .command(&["run", "slow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the plugin never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(send_signal_and_wait(&mut run, "INT"), Some(130));
    let (mut stdout, mut stderr) = (String::new(), String::new());
    run.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    run.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let result: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(result["status"], "FAILED", "{result:#}");
    let id = result["run_id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("herald runs resume {id}")),
        "says how to go on: {stderr}"
    );

    let shown = ws.json(&["runs", "show", id, "--json"]);
    assert_eq!(shown["status"], "FAILED", "{shown:#}");
    assert!(!shown["completed_at"].is_null(), "{shown:#}");
    assert_eq!(
        shown["last_error"]["error_type"], "interrupted",
        "{shown:#}"
    );
    assert_eq!(shown["stages"][0]["status"], "FAILED", "{shown:#}");
    assert_eq!(
        shown["stages"][0]["error"]["kind"], "interrupted",
        "{shown:#}"
    );
}

/// A `herald serve` child that a failing test does not leave running: it
/// is killed when dropped, unless it has already exited.
struct Serving(Child);

impl std::ops::Deref for Serving {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Serving {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn send_sigterm_and_wait(child: &mut Child) -> Option<i32> {
    send_signal_and_wait(child, "TERM")
}

/// Sends `signal` (a name `kill` takes: TERM, INT…) and waits for the exit
/// code; `None` when a signal ended the process instead.
fn send_signal_and_wait(child: &mut Child, signal: &str) -> Option<i32> {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(Instant::now() < deadline, "no exit after SIG{signal}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A database file past `[store] compact_above_mb` is compacted before
/// the daemon serves, and what it held is still there.
#[test]
fn serve_compacts_an_outgrown_store_first() {
    let ws = Workspace::with_definitions(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("definitions"),
        "[store]\ncompact_above_mb = 1\n",
    );
    let db_file = ws.dir.path().join("data").join("db").join("db");
    // A 10 KB payload with each run: the file passes 1 MiB after ~27 runs.
    // Without one it took 50 here, as many as the cap allowed, and how
    // many depends on the size of the host's check results.
    let payload = ws.dir.path().join("pad.json");
    std::fs::write(
        &payload,
        serde_json::json!({"pad": "x".repeat(10_000)}).to_string(),
    )
    .unwrap();
    let payload = payload.to_str().unwrap();
    let mut run_ids = Vec::new();
    while std::fs::metadata(&db_file).map_or(0, |m| m.len()) < 1024 * 1024 {
        assert!(run_ids.len() < 100, "the store never reached 1 MiB");
        let run = ws.json(&["run", "health-check", "--payload", payload, "--json"]);
        run_ids.push(run["run_id"].as_str().unwrap().to_string());
    }
    let (mut serve, seen) = ws.serve();
    assert!(seen.contains("store compacted"), "{seen}");
    for id in &run_ids {
        let shown = ws.json(&["runs", "show", id, "--json"]);
        assert_eq!(shown["run_id"], id.as_str());
    }
    assert_eq!(send_sigterm_and_wait(&mut serve), Some(0));
    let record: Value = serde_json::from_slice(
        &std::fs::read(ws.dir.path().join("data").join("compaction.json")).unwrap(),
    )
    .unwrap();
    assert!(record["after_bytes"].as_u64().unwrap() < record["before_bytes"].as_u64().unwrap());
}

#[test]
fn definitions_lists_shipped_and_builtin() {
    let ws = Workspace::shipped();
    let list = ws.json(&["definitions", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for n in [
        "default",
        "alert-triggered",
        "health-check",
        "metrics-alert",
        "guarded-notify",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let hc = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "health-check")
        .unwrap();
    assert_eq!(hc["schedule"]["every"], "5m");
    let table = stdout(&ws.herald(&["definitions"]));
    assert!(table.contains("every 5m"), "{table}");
}

/// The packaged service runs as its own user and owns its data dir. root
/// running the CLI there while the service is stopped would leave files
/// the service then cannot open: refused, writing nothing, with the
/// command to use instead — but while the service runs (its lock held)
/// root is told the dir is in use, as anyone is, and goes through it. A
/// user whose data dir holds another user's files is told which one and
/// the `chown` that gives the dir back.
#[test]
fn the_data_dir_is_written_only_by_its_owner() {
    use std::os::unix::fs::{PermissionsExt, chown};
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root, to own files as another user");
        return;
    }
    const NOBODY: u32 = 65534;
    let ws = Workspace::shipped();
    std::fs::set_permissions(ws.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = ws.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();

    let refused = ws.herald(&["runs", "list"]);
    assert_clean_error(&refused, "and this is root");
    assert!(
        stderr(&refused).contains("sudo -u "),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "root wrote in another user's data dir"
    );

    let lock = std::fs::File::create(data.join("lock")).unwrap();
    chown(data.join("lock"), Some(NOBODY), Some(NOBODY)).unwrap();
    lock.lock().unwrap();
    assert_clean_error(&ws.herald(&["runs", "list"]), "in use");
    drop(lock);

    // Files root made, in a dir that then went to the service's user.
    std::fs::remove_dir_all(&data).unwrap();
    assert!(ws.herald(&["run", "health-check"]).status.success());
    chown(&data, Some(NOBODY), Some(NOBODY)).unwrap();
    // A copy of the binary it can run wherever the checkout is (/root?).
    let bin = ws.dir.path().join("herald");
    std::fs::copy(BIN, &bin).unwrap();
    let denied = Command::new(&bin)
        .arg("--config")
        .arg(ws.dir.path().join("config.toml"))
        .args(["runs", "list"])
        .current_dir(ws.dir.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    assert_clean_error(&denied, "belongs to `root`");
    assert!(stderr(&denied).contains("chown -R "), "{}", stderr(&denied));
}

/// Under systemd, stderr is a stream to the journal, which files a line at
/// the priority its `<N>` prefix gives (else all at one), and stamps it
/// itself. herald knows that stream by `JOURNAL_STREAM` (device:inode).
#[test]
fn log_lines_carry_their_priority_for_the_journal() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::MetadataExt;
    let ws = Workspace::empty("[notify.webhook.gone]\nurl_env = \"HERALD_TEST_NEVER_SET\"\n");
    let lines_until_started = |journal: bool| -> Vec<String> {
        let (reader, writer) = std::io::pipe().unwrap();
        let mut cmd = ws.command(&["--log-level", "info", "serve", "--listen", "127.0.0.1:0"]);
        if journal {
            let fd = writer.try_clone().unwrap();
            let meta = std::fs::File::from(std::os::fd::OwnedFd::from(fd))
                .metadata()
                .unwrap();
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            cmd.env("JOURNAL_STREAM", "0:0"); // inherited, but not this stderr
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(writer).spawn().unwrap();
        drop(cmd);
        let mut lines = Vec::new();
        for line in BufReader::new(reader).lines() {
            let line = line.unwrap();
            let done = line.contains("herald started");
            lines.push(line);
            if done {
                break;
            }
        }
        assert_eq!(send_sigterm_and_wait(&mut child), Some(0));
        lines
    };

    let journal = lines_until_started(true);
    let warning = journal
        .iter()
        .find(|l| l.contains("notify.webhook.gone"))
        .unwrap();
    assert!(warning.starts_with("<4>"), "{journal:#?}");
    let started = journal.last().unwrap();
    assert!(started.starts_with("<6>"), "{journal:#?}");
    let year = chrono::Utc::now().format("%Y-").to_string();
    assert!(
        !started.contains(&year),
        "no timestamp of its own: {started}"
    );

    let plain = lines_until_started(false);
    assert!(plain.iter().all(|l| !l.starts_with('<')), "{plain:#?}");
    assert!(
        plain.last().unwrap().starts_with(&year),
        "a timestamp first: {plain:#?}"
    );
}

/// `herald runs list | head -1`, or a pager quit early: the output stops
/// there quietly, as a Unix tool's does, instead of a panic.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let ws = Workspace::shipped();
    for args in [&["definitions"][..], &["check", "--json"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = ws
            .command(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// An error whose message already names its cause does not repeat it.
#[test]
fn an_address_in_use_is_said_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let ws = Workspace::empty("");
    let out = ws.herald(&["serve", "--listen", &addr]);
    assert_clean_error(&out, &format!("cannot listen on {addr}"));
    let err = stderr(&out);
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
}

/// A relative data dir is named by its full path when it cannot be opened:
/// `./data` says little in a service's log.
#[test]
fn a_data_dir_that_cannot_be_opened_is_named_in_full() {
    let ws = Workspace::empty("");
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(cwd.path().join("data"), "not a directory").unwrap();
    let out = ws
        .command(&["--data-dir", "data", "runs", "list"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_clean_error(
        &out,
        &format!("cannot open data dir {}", cwd.path().join("data").display()),
    );
}

/// The packaged config.toml is root:herald 0640: a login user's `herald
/// runs list` cannot read it, and is told who can.
#[test]
fn an_unreadable_config_says_who_may_read_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root, to run as another user");
        return;
    }
    let ws = Workspace::empty("");
    std::fs::set_permissions(ws.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = ws.dir.path().join("config.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let bin = ws.dir.path().join("herald");
    std::fs::copy(BIN, &bin).unwrap();
    let runs_list_as_nobody = || {
        Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .args(["runs", "list"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert_clean_error(
        &runs_list_as_nobody(),
        "it is readable by user `root` and group `root` (mode 0640): run as one of them",
    );

    // root:<group>, as the packaged root:herald: the group's namesake is
    // the user to suggest.
    std::os::unix::fs::chown(&config, Some(0), Some(1)).unwrap();
    let group = herald::accounts::group_name(1);
    let out = runs_list_as_nobody();
    assert_clean_error(&out, &format!("and group `{group}`"));
    assert!(
        stderr(&out).contains(&format!("sudo -u {group} herald")),
        "{}",
        stderr(&out)
    );
}

/// `serve` refuses a store whose snapshot is damaged, naming the command;
/// `herald store recover` brings every run back, and `serve` starts.
#[test]
fn store_recover_brings_back_a_store_with_a_damaged_snapshot() {
    let ws = Workspace::shipped();
    let run_ids: Vec<String> = (0..3)
        .map(|_| {
            ws.json(&["run", "health-check", "--json"])["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    support::damage_sled_snapshots(&ws.dir.path().join("data").join("db"));

    // sled logs its own warning first; herald's error follows.
    let refused = ws.herald(&["serve", "--listen", "127.0.0.1:0"]);
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("error: cannot open data dir")
            && err.contains("the database is damaged")
            && err.contains("herald store recover"),
        "{err}"
    );

    let recovery = ws.json(&["store", "recover", "--json"]);
    assert_eq!(recovery["runs"], 3, "{recovery:#}");
    let copy = PathBuf::from(recovery["damaged_copy"].as_str().unwrap());
    assert!(copy.join("db").is_file(), "{recovery:#}");
    for id in &run_ids {
        assert_eq!(
            ws.json(&["runs", "show", id, "--json"])["run_id"],
            id.as_str()
        );
    }
    let (mut serve, _) = ws.serve();
    assert_eq!(send_sigterm_and_wait(&mut serve), Some(0));
}
