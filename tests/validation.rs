//! Definition validation: every class of error, with its message and JSON
//! path, all errors of a file at once, and line/column where it matters.

mod support;

use herald::config::Config;
use herald::definition::{DefinitionError, DefinitionSet, Issue, parse_definition};
use herald::nodes::{HandlerRegistry, Services};
use std::sync::Arc;

fn handlers() -> HandlerRegistry {
    let config: Config =
        Config::parse("[notify.webhook.ops]\nurl = \"http://127.0.0.1:9/\"\n").unwrap();
    HandlerRegistry::builtin(Arc::new(Services::new(Arc::new(config))))
}

fn parse(text: &str) -> Result<herald::definition::Definition, DefinitionError> {
    parse_definition("test", "test.json", text, &handlers())
}

fn issues(text: &str) -> Vec<Issue> {
    match parse(text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.issues,
    }
}

/// The single issue at `path`; fails if there is none.
fn issue_at(issues: &[Issue], path: &str) -> Issue {
    issues
        .iter()
        .find(|i| i.path == path)
        .cloned()
        .unwrap_or_else(|| panic!("no issue at `{path}` in {issues:#?}"))
}

const LOG: &str = r#"{"driver": "log"}"#;

#[test]
fn a_minimal_definition_loads() {
    let def = parse(&format!(
        r#"{{"version": "1", "nodes": [{{"id": "n", "type": "notify", "config": {LOG}}}]}}"#
    ))
    .unwrap();
    assert_eq!(def.nodes.len(), 1);
    assert_eq!(def.version, "1");
    assert_eq!(def.defaults.max_retries, 3);
    assert_eq!(def.nodes[0].retries, 3);
    assert_eq!(def.nodes[0].timeout, std::time::Duration::from_secs(30));
    assert!(def.nodes[0].required);
}

#[test]
fn syntax_error_has_line_and_column() {
    let err = parse("{\n  \"version\": \"1\",\n  \"nodes\": [\n    {\"id\": \"a\",}\n  ]\n}")
        .unwrap_err();
    assert_eq!(err.issues.len(), 1);
    let issue = &err.issues[0];
    assert_eq!(issue.line, Some(4));
    assert!(issue.column.is_some());
    assert!(
        issue.message.starts_with("invalid JSON"),
        "{}",
        issue.message
    );
    let shown = err.to_string();
    assert!(shown.starts_with("test.json:4:"), "{shown}");
}

#[test]
fn document_must_be_an_object() {
    let i = issues("[1, 2]");
    assert!(i[0].message.contains("JSON object"), "{i:?}");
}

#[test]
fn version_is_required() {
    let i = issues(&format!(
        r#"{{"nodes": [{{"id": "n", "type": "notify", "config": {LOG}}}]}}"#
    ));
    assert!(issue_at(&i, "version").message.contains("missing"));
}

#[test]
fn nodes_must_be_present_and_non_empty() {
    assert!(
        issue_at(&issues(r#"{"version": "1"}"#), "nodes")
            .message
            .contains("missing")
    );
    assert!(
        issue_at(&issues(r#"{"version": "1", "nodes": []}"#), "nodes")
            .message
            .contains("at least one node")
    );
    assert!(
        issue_at(&issues(r#"{"version": "1", "nodes": {}}"#), "nodes")
            .message
            .contains("list")
    );
}

#[test]
fn node_needs_id_and_type() {
    let i = issues(r#"{"version": "1", "nodes": [{"config": {}}]}"#);
    let at_node: Vec<&str> = i
        .iter()
        .filter(|x| x.path == "nodes[0]")
        .map(|x| x.message.as_str())
        .collect();
    assert!(at_node.contains(&"missing `id`"), "{i:#?}");
    assert!(at_node.contains(&"missing `type`"), "{i:#?}");
}

#[test]
fn ids_are_unique() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "n", "type": "notify", "config": {LOG}, "next": "n2"}},
            {{"id": "n", "type": "notify", "config": {LOG}}}]}}"#
    ));
    let issue = issue_at(&i, "nodes[1].id");
    assert!(issue.message.contains("duplicate id `n`"), "{issue:?}");
}

#[test]
fn unknown_type_lists_known_types_and_suggests() {
    let i = issues(r#"{"version": "1", "nodes": [{"id": "a", "type": "notfy"}]}"#);
    let m = issue_at(&i, "nodes[0].type").message;
    assert!(m.contains("unknown node type `notfy`"), "{m}");
    assert!(m.contains("did you mean `notify`"), "{m}");
    for t in [
        "check",
        "context",
        "ingest",
        "intelligence",
        "notify",
        "transform",
    ] {
        assert!(m.contains(t), "{m} should list {t}");
    }
}

#[test]
fn node_config_is_checked_by_its_handler() {
    let i = issues(
        r#"{"version": "1", "nodes": [
            {"id": "a", "type": "intelligence", "config": {"provider": "magic"}, "next": "b"},
            {"id": "b", "type": "context", "config": {"include": ["cpu", "gpu"]}, "next": "c"},
            {"id": "c", "type": "notify", "config": {"driver": "webhook", "channel": "nope"}}]}"#,
    );
    assert!(
        issue_at(&i, "nodes[0].config.provider")
            .message
            .contains("unknown provider `magic`")
    );
    assert!(
        issue_at(&i, "nodes[1].config.include[1]")
            .message
            .contains("unknown section `gpu`")
    );
    assert!(
        issue_at(&i, "nodes[2].config.channel")
            .message
            .contains("no webhook channel `nope`")
    );
}

#[test]
fn config_must_be_an_object() {
    let i =
        issues(r#"{"version": "1", "nodes": [{"id": "a", "type": "notify", "config": "log"}]}"#);
    assert!(
        issue_at(&i, "nodes[0].config")
            .message
            .contains("must be an object")
    );
}

#[test]
fn next_must_name_an_existing_node() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "check", "type": "notify", "config": {LOG}, "next": "chekc"}}]}}"#
    ));
    let m = issue_at(&i, "nodes[0].next").message;
    assert!(m.contains("no node has the id `chekc`"), "{m}");
    assert!(m.contains("did you mean `check`"), "{m}");
}

#[test]
fn next_cycle_is_reported() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}, "next": "b"}},
            {{"id": "b", "type": "notify", "config": {LOG}, "next": "c"}},
            {{"id": "c", "type": "notify", "config": {LOG}, "next": "a"}}]}}"#
    ));
    let m = issue_at(&i, "nodes[2].next").message;
    assert!(m.contains("cycle: a → b → c → a"), "{m}");
}

#[test]
fn self_loop_is_reported() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [{{"id": "a", "type": "notify", "config": {LOG}, "next": "a"}}]}}"#
    ));
    assert!(
        issue_at(&i, "nodes[0].next")
            .message
            .contains("names itself")
    );
}

#[test]
fn cycle_away_from_the_first_node_is_reported_too() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}}},
            {{"id": "b", "type": "notify", "config": {LOG}, "next": "c"}},
            {{"id": "c", "type": "notify", "config": {LOG}, "next": "b"}}]}}"#
    ));
    assert!(
        i.iter().any(|x| x.message.contains("cycle: b → c → b")),
        "{i:#?}"
    );
}

#[test]
fn unreachable_node_is_reported_with_a_fix() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}}},
            {{"id": "b", "type": "notify", "config": {LOG}}}]}}"#
    ));
    let m = issue_at(&i, "nodes[1]").message;
    assert!(m.contains("`b` is never reached"), "{m}");
    assert!(m.contains(r#"set "next": "b""#), "{m}");
}

#[test]
fn unknown_keys_get_a_suggestion() {
    let i = issues(&format!(
        r#"{{"version": "1", "descripton": "x", "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}, "requried": false}}]}}"#
    ));
    assert!(
        issue_at(&i, "descripton")
            .message
            .contains("did you mean `description`")
    );
    assert!(
        issue_at(&i, "nodes[0].requried")
            .message
            .contains("did you mean `required`")
    );
}

#[test]
fn underscore_keys_are_comments() {
    parse(&format!(
        r#"{{"version": "1", "_comment": "ok", "nodes": [{{"id": "a", "type": "notify", "config": {LOG}}}]}}"#
    ))
    .unwrap();
}

#[test]
fn bad_schedules() {
    let node = format!(r#"[{{"id": "a", "type": "notify", "config": {LOG}}}]"#);
    let cases = [
        (r#"{"every": "soon"}"#, "schedule.every", "not a duration"),
        (r#"{"every": "100ms"}"#, "schedule.every", "at least 1s"),
        (
            r#"{"cron": "61 * * * *"}"#,
            "schedule.cron",
            "not a cron expression",
        ),
        (
            r#"{"every": "5m", "cron": "* * * * *"}"#,
            "schedule",
            "not both",
        ),
        (r#"{}"#, "schedule", "needs `every`"),
        (
            r#"{"every": "5m", "timezone": "Europe/Paris"}"#,
            "schedule.timezone",
            "UTC",
        ),
        (r#"{"evry": "5m"}"#, "schedule.evry", "did you mean `every`"),
    ];
    for (schedule, path, message) in cases {
        let i = issues(&format!(
            r#"{{"version": "1", "schedule": {schedule}, "nodes": {node}}}"#
        ));
        let m = issue_at(&i, path).message;
        assert!(m.contains(message), "{schedule}: {m}");
    }
    let ok = parse(&format!(
        r#"{{"version": "1", "schedule": {{"cron": "*/5 * * * *", "jitter": "5s"}}, "nodes": {node}}}"#
    ));
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn bad_triggers() {
    let node = format!(r#"[{{"id": "a", "type": "notify", "config": {LOG}}}]"#);
    let i = issues(&format!(
        r#"{{"version": "1", "trigger": {{"sources": ["alertmanger"], "status": ["open"], "match": {{"severity": 3, "label.team": "db", "labels.team": "db"}}}}, "nodes": {node}}}"#
    ));
    assert!(
        issue_at(&i, "trigger.sources[0]")
            .message
            .contains("did you mean `alertmanager`")
    );
    assert!(issue_at(&i, "trigger.status[0]").message.contains("firing"));
    assert!(
        issue_at(&i, "trigger.match.severity")
            .message
            .contains("must be a string")
    );
    // A misspelt field would never match: refused, with the fields listed.
    assert!(
        issue_at(&i, "trigger.match.label.team")
            .message
            .contains("`labels.<name>`")
    );
    assert!(!i.iter().any(|x| x.path == "trigger.match.labels.team"));
}

/// `severity`, `status` and `source` are normalized: a value they never
/// take would be a trigger that silently never starts.
#[test]
fn a_trigger_value_a_normalized_field_never_takes_is_refused() {
    let node = format!(r#"[{{"id": "a", "type": "notify", "config": {LOG}}}]"#);
    let with_match =
        |m: &str| format!(r#"{{"version": "1", "trigger": {{"match": {m}}}, "nodes": {node}}}"#);
    let i = issues(&with_match(
        r#"{"severity": "crit", "status": "FIRING", "source": "grafna"}"#,
    ));
    let severity = issue_at(&i, "trigger.match.severity").message;
    assert!(severity.contains("`crit` is `critical`"), "{severity}");
    assert!(severity.contains("severity_raw"), "{severity}");
    assert!(
        issue_at(&i, "trigger.match.status")
            .message
            .contains("status_raw")
    );
    assert!(
        issue_at(&i, "trigger.match.source")
            .message
            .contains("did you mean `grafana`")
    );
    let i = issues(&with_match(r#"{"severity": "urgent"}"#));
    assert!(
        issue_at(&i, "trigger.match.severity")
            .message
            .contains("is not a severity")
    );
    // What they do take, and the raw words, are fine.
    let ok = parse(&with_match(
        r#"{"severity": "critical", "status": "resolved", "source": "zabbix", "severity_raw": "crit", "status_raw": "FIRING"}"#,
    ));
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn bad_durations_and_counts() {
    let i = issues(&format!(
        r#"{{"version": "1", "defaults": {{"timeout": 30, "max_retries": -1, "backoff": "0s"}}, "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}, "timeout": "fast", "retries": 99}}]}}"#
    ));
    assert!(
        issue_at(&i, "defaults.timeout")
            .message
            .contains("duration string")
    );
    assert!(
        issue_at(&i, "defaults.max_retries")
            .message
            .contains("whole number")
    );
    assert!(
        issue_at(&i, "defaults.backoff")
            .message
            .contains("longer than zero")
    );
    assert!(
        issue_at(&i, "nodes[0].timeout")
            .message
            .contains("not a duration")
    );
    assert!(
        issue_at(&i, "nodes[0].retries")
            .message
            .contains("from 0 to 20")
    );
}

#[test]
fn seed_timeout_seconds_is_accepted() {
    let def = parse(&format!(
        r#"{{"version": "1", "defaults": {{"max_retries": 1, "timeout_seconds": 300}}, "nodes": [{{"id": "a", "type": "notify", "config": {LOG}}}]}}"#
    ))
    .unwrap();
    assert_eq!(def.nodes[0].timeout, std::time::Duration::from_secs(300));
    assert_eq!(def.nodes[0].retries, 1);
}

#[test]
fn skip_rules_are_checked() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}, "next": "b", "skip_if_errors": ["b"]}},
            {{"id": "b", "type": "notify", "config": {LOG}, "next": "c", "skip_if_errors": ["zz"]}},
            {{"id": "c", "type": "notify", "config": {LOG}, "skip_if_condition": "a.status = 1"}}]}}"#
    ));
    assert!(
        issue_at(&i, "nodes[0].skip_if_errors[0]")
            .message
            .contains("does not run before `a`")
    );
    assert!(
        issue_at(&i, "nodes[1].skip_if_errors[0]")
            .message
            .contains("no node has the id `zz`")
    );
    assert!(
        issue_at(&i, "nodes[2].skip_if_condition")
            .message
            .contains("not a condition")
    );
}

#[test]
fn condition_must_read_an_earlier_node() {
    let i = issues(&format!(
        r#"{{"version": "1", "nodes": [
            {{"id": "a", "type": "notify", "config": {LOG}, "next": "b", "skip_if_condition": "b.has_errors"}},
            {{"id": "b", "type": "notify", "config": {LOG}}}]}}"#
    ));
    assert!(
        issue_at(&i, "nodes[0].skip_if_condition")
            .message
            .contains("does not run before")
    );
}

#[test]
fn transform_source_node_must_exist_and_run_earlier() {
    let i = issues(
        r#"{"version": "1", "nodes": [
            {"id": "t", "type": "transform", "config": {"source_node": "m", "mapping": {"x": "cpu"}}, "next": "m"},
            {"id": "m", "type": "context", "next": "u"},
            {"id": "u", "type": "transform", "config": {"mapping": {"y": "nope.cpu"}}}]}"#,
    );
    assert!(
        issue_at(&i, "nodes[0].config.source_node")
            .message
            .contains("does not run before `t`")
    );
    assert!(
        issue_at(&i, "nodes[2].config.mapping.y")
            .message
            .contains("no node has the id `nope`")
    );
}

#[test]
fn two_nodes_of_the_same_type_are_fine() {
    let def = parse(
        r#"{"version": "1", "nodes": [
            {"id": "a", "type": "context", "config": {"include": ["cpu"]}, "next": "b"},
            {"id": "b", "type": "context", "config": {"include": ["memory"]}, "next": "n1"},
            {"id": "n1", "type": "notify", "config": {"driver": "log"}, "next": "n2"},
            {"id": "n2", "type": "notify", "config": {"driver": "webhook", "channel": "ops"}}]}"#,
    )
    .unwrap();
    assert_eq!(def.nodes.len(), 4);
    let order: Vec<&str> = def.chain().iter().map(|n| n.id.as_str()).collect();
    assert_eq!(order, ["a", "b", "n1", "n2"]);
}

#[test]
fn all_errors_are_reported_at_once_with_lines() {
    let text = r#"{
  "version": "",
  "colour": "blue",
  "nodes": [
    {"id": "a", "type": "bogus", "next": "b"},
    {"id": "b", "type": "notify", "config": {"driver": "slack"}},
    {"id": "b", "type": "intelligence", "config": {"provider": "openai"}}
  ]
}"#;
    let err = parse(text).unwrap_err();
    let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
    for expected in [
        "version",
        "colour",
        "nodes[0].type",
        "nodes[1].config.driver",
        "nodes[2].config.provider",
        "nodes[2].id",
    ] {
        assert!(paths.contains(&expected), "missing {expected} in {paths:?}");
    }
    let driver = issue_at(&err.issues, "nodes[1].config.driver");
    assert_eq!(driver.line, Some(6), "{driver:?}");
    let shown = err.to_string();
    assert!(shown.contains("test.json:6:"), "{shown}");
    assert!(shown.lines().count() >= 6, "{shown}");
}

#[test]
fn default_is_reserved_and_files_load_into_a_set() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.json"), r#"{"version": "1", "nodes": [{"id": "n", "type": "notify", "config": {"driver": "log"}}]}"#).unwrap();
    std::fs::write(dir.path().join("good.json"), r#"{"version": "1", "nodes": [{"id": "n", "type": "notify", "config": {"driver": "log"}}]}"#).unwrap();
    std::fs::write(dir.path().join("bad.json"), "{").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let set = DefinitionSet::load_dir(dir.path(), &handlers()).unwrap();
    assert!(set.get("good").is_some());
    assert!(set.invalid("bad").is_some());
    let default = set.get("default").expect("builtin stays");
    assert_eq!(
        default.nodes.len(),
        4,
        "the file did not replace the built-in"
    );
    let reserved = set.invalid("default").expect("file is reported");
    assert!(
        reserved
            .error
            .to_string()
            .contains("reserved for the built-in pipeline")
    );
}

/// A byte-order mark (some Windows editors write one) is not an error; a
/// file far larger than any definition (a log saved as .json) is reported
/// without being read whole.
#[test]
fn a_byte_order_mark_loads_and_a_huge_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"version": "1", "nodes": [{"id": "n", "type": "notify", "config": {"driver": "log"}}]}"#;
    std::fs::write(dir.path().join("bom.json"), format!("\u{feff}{good}")).unwrap();
    let huge = std::fs::File::create(dir.path().join("huge.json")).unwrap();
    huge.set_len(3 << 20).unwrap();
    let set = DefinitionSet::load_dir(dir.path(), &handlers()).unwrap();
    assert!(
        set.get("bom").is_some(),
        "{:?}",
        set.invalid("bom").map(|i| i.error.to_string())
    );
    let refused = set.invalid("huge").expect("reported").error.to_string();
    assert!(refused.contains("3.0 MiB is not a definition"), "{refused}");
}

#[test]
fn builtin_pipeline_is_ingest_check_analyze_notify() {
    let set = DefinitionSet::with_builtin(&handlers());
    let def = set.get("default").unwrap();
    let types: Vec<&str> = def.chain().iter().map(|n| n.node_type.as_str()).collect();
    assert_eq!(types, ["ingest", "check", "intelligence", "notify"]);
}

#[test]
fn shipped_definitions_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("definitions");
    let set = DefinitionSet::load_dir(&dir, &handlers()).unwrap();
    let invalid: Vec<String> = set
        .invalid_files()
        .map(|(_, i)| i.error.to_string())
        .collect();
    assert!(invalid.is_empty(), "{invalid:#?}");
    for name in [
        "alert-triggered",
        "health-check",
        "metrics-alert",
        "guarded-notify",
    ] {
        assert!(set.get(name).is_some(), "{name} missing");
    }
}

/// The seed app's own definitions: each validates, or fails saying precisely
/// what herald refuses and why.
#[test]
fn seed_definitions_validate_or_say_why() {
    let dir = support::fixture("seed-definitions");
    let set = DefinitionSet::load_dir(&dir, &handlers()).unwrap();
    let expect = |name: &str, needles: &[&str]| {
        let err = set
            .invalid(name)
            .unwrap_or_else(|| panic!("{name} should be refused"))
            .error
            .to_string();
        for n in needles {
            assert!(err.contains(n), "{name}: `{n}` not in\n{err}");
        }
    };
    // The seed's `generic` notify driver is herald's `webhook` with a channel.
    expect("pipeline-manager", &["nodes[2].config.driver", "`webhook`"]);
    expect("local-monitor", &["nodes[3].config.driver"]);
    expect(
        "pipeline-manager-openai",
        &["nodes[1].config.provider: provider `openai` is not available"],
    );
    expect(
        "pagerduty-alert",
        &[
            "context_flow",
            "`_context_flow`",
            "driver `pagerduty` is not available",
        ],
    );
    // Everything else in them is understood: the seed keys `timeout_seconds`,
    // `checker_names` and `source_hint` are read, not refused.
    let all = set
        .invalid_files()
        .map(|(_, i)| i.error.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    for accepted in ["timeout_seconds", "checker_names"] {
        assert!(!all.contains(accepted), "{accepted} refused:\n{all}");
    }
}
