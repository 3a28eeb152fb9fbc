//! The HTTP API against the real daemon on 127.0.0.1:0: every endpoint and
//! error code, auth, signatures, limits, the queue, resume, shutdown.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::client::{assert_error, call, get, post, raw};
use support::daemon::{Daemon, Workspace};
use support::{Receiver, fixture_json};

/// Polls a run until it is finished; its record.
async fn finished(d: &Daemon, run_id: &str) -> Value {
    run_until(d, run_id, "did not finish", |run| {
        !run["completed_at"].is_null()
    })
    .await
}

/// Polls a run (its record with its stages) until `done` holds of it;
/// `what` says what never happened if it does not within 30 s.
async fn run_until(d: &Daemon, run_id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = get(d, &format!("/orchestration/pipeline/{run_id}/")).await;
        if r.status == StatusCode::OK && done(&r.body) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id}: {what}: {:#}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether a run has a stage for which `matches` holds.
fn has_stage(run: &Value, matches: impl Fn(&Value) -> bool) -> bool {
    run["stages"]
        .as_array()
        .is_some_and(|stages| stages.iter().any(matches))
}

/// POSTs the resume `path`, which must be refused (409) for `reason`.
async fn refused_resume(d: &Daemon, path: &str, reason: &str) {
    let refused = post(d, path, json!({})).await;
    assert_error(&refused, StatusCode::CONFLICT, "not_resumable");
    let message = refused.body["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(reason), "{:#}", refused.body);
}

/// Queues a run of `definition` (`?mode=async`), which must be accepted;
/// the run's id.
async fn queued_run(d: &Daemon, definition: &str) -> String {
    let accepted = post(
        d,
        &format!("/orchestration/definitions/{definition}/execute/?mode=async"),
        json!({"payload": {}}),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:#}", accepted.body);
    accepted.body["run_id"].as_str().unwrap().to_string()
}

/// Queues a resume of `run_id` (`?mode=async`), which must be accepted.
async fn queued_resume(d: &Daemon, run_id: &str) {
    let queued = post(
        d,
        &format!("/orchestration/pipeline/{run_id}/resume/?mode=async"),
        json!({}),
    )
    .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{:#}", queued.body);
}

/// Executes `definition` now (sync), which must fail; the run's id.
async fn failed_run(d: &Daemon, definition: &str) -> String {
    let failed = post(
        d,
        &format!("/orchestration/definitions/{definition}/execute/"),
        json!({"payload": {}}),
    )
    .await;
    assert_eq!(failed.body["status"], "FAILED", "{:#}", failed.body);
    failed.body["run_id"].as_str().unwrap().to_string()
}

fn alert() -> Value {
    fixture_json("seed-generic.json")
}

#[tokio::test]
async fn health_readiness_openapi_and_json_errors() {
    let ws = Workspace::new("");
    let d = ws.start();
    assert_eq!(get(&d, "/healthz").await.body["status"], "ok");
    let ready = get(&d, "/readyz/").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["status"], "ready");
    let api = get(&d, "/openapi.json").await;
    assert_eq!(api.body["openapi"], "3.0.3");

    let unknown = get(&d, "/nope").await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GET /openapi.json lists every route"),
        "{:#}",
        unknown.body
    );
    let wrong = call(
        Method::DELETE,
        &d.url("/orchestration/pipelines/"),
        None,
        None,
    )
    .await;
    assert_error(&wrong, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(wrong.headers["allow"], "GET");
    let wrong = get(&d, "/orchestration/pipeline/").await;
    assert_eq!(wrong.headers["allow"], "POST");
}

/// Every route the router knows is in the OpenAPI document, with its methods.
#[tokio::test]
async fn openapi_documents_every_route() {
    let doc: Value = serde_json::from_str(include_str!("../src/http/openapi.json")).unwrap();
    for (pattern, methods) in herald::http::router::ROUTES {
        let path = doc["paths"]
            .get(*pattern)
            .unwrap_or_else(|| panic!("{pattern} missing from openapi.json"));
        for m in *methods {
            assert!(
                path.get(*m).is_some(),
                "{m} {pattern} missing from openapi.json"
            );
        }
    }
    let documented = doc["paths"].as_object().unwrap().len();
    assert_eq!(
        documented,
        herald::http::router::ROUTES.len(),
        "openapi.json documents a route the router lacks"
    );
}

#[tokio::test]
async fn async_pipeline_is_accepted_then_runs() {
    let ws = Workspace::new("");
    let d = ws.start();
    let r = post(
        &d,
        "/orchestration/pipeline/",
        json!({"payload": alert(), "source": "script", "trace_id": "t-1"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["trace_id"], "t-1");
    let run = finished(&d, r.body["run_id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "NOTIFIED");
    assert_eq!(run["source"], "script");
    assert_eq!(run["definition"], "default");
    assert_eq!(run["stages"].as_array().unwrap().len(), 4);
    // No trailing slash works too.
    let r = post(&d, "/orchestration/pipeline", json!({"payload": alert()})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn sync_pipeline_returns_the_result_whatever_the_status() {
    let ws = Workspace::new("");
    let d = ws.start();
    let ok = post(
        &d,
        "/orchestration/pipeline/sync/",
        json!({"payload": alert()}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["status"], "NOTIFIED");
    for key in [
        "trace_id",
        "run_id",
        "definition",
        "definition_version",
        "incident_id",
        "executed_nodes",
        "skipped_nodes",
        "node_results",
        "duration_ms",
        "error",
    ] {
        assert!(ok.body.get(key).is_some(), "missing {key}");
    }
    // An unreadable payload fails the run, and that is still a 200 with the status.
    let failed = post(
        &d,
        "/orchestration/pipeline/sync/",
        json!({"payload": [1, 2]}),
    )
    .await;
    assert_eq!(failed.status, StatusCode::OK);
    assert_eq!(failed.body["status"], "FAILED");
}

#[tokio::test]
async fn bad_bodies_are_4xx_with_reasons() {
    let ws = Workspace::new("[server]\nmax_body_bytes = 2000\n");
    let d = ws.start();
    let url = d.url("/orchestration/pipeline/");
    let r = raw(
        &url,
        b"{\"payload\": ".to_vec(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{:#}",
        r.body
    );
    assert_error(
        &raw(&url, b"".to_vec(), &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert_error(
        &raw(&url, vec![0xff, 0xfe, 0x00], &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert_error(
        &post(&d, "/orchestration/pipeline/", json!({"source": "x"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_error(
        &post(&d, "/orchestration/pipeline/", json!([1])).await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    assert_error(
        &post(
            &d,
            "/orchestration/pipeline/",
            json!({"payload": {}, "source": 5}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_body",
    );
    // Labels that every listing would repeat.
    for key in ["source", "trace_id", "environment", "incident_id"] {
        let mut body = json!({"payload": {}});
        body[key] = json!("s".repeat(300));
        let r = post(&d, "/orchestration/pipeline/", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_body");
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(key),
            "{:#}",
            r.body
        );
    }
    let big = json!({"payload": {"x": "y".repeat(5000)}});
    assert_error(
        &post(&d, "/orchestration/pipeline/", big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
}

#[tokio::test]
async fn listing_runs_filters_pages_and_refuses_bad_parameters() {
    let ws = Workspace::new("");
    ws.definition("quick", &json!({"version": "1", "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"x": "payload.x"}}}]}));
    let d = ws.start();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = post(
            &d,
            "/orchestration/definitions/quick/execute/",
            json!({"payload": {"x": i}, "source": if i < 2 { "a" } else { "b" }}),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
        ids.push(r.body["run_id"].as_str().unwrap().to_string());
    }
    let all = get(&d, "/orchestration/pipelines/?definition=quick").await;
    assert_eq!(all.body["count"], 5);
    assert_eq!(
        all.body["results"][0]["run_id"],
        ids[4].as_str(),
        "newest first"
    );
    let page1 = get(&d, "/orchestration/pipelines/?definition=quick&limit=3").await;
    assert_eq!(page1.body["count"], 3);
    let cursor = page1.body["next_cursor"].as_str().unwrap().to_string();
    let page2 = get(
        &d,
        &format!("/orchestration/pipelines?definition=quick&limit=3&cursor={cursor}"),
    )
    .await;
    assert_eq!(page2.body["count"], 2);
    assert!(page2.body["next_cursor"].is_null());
    assert_eq!(
        get(&d, "/orchestration/pipelines/?source=a").await.body["count"],
        2
    );
    assert_eq!(
        get(&d, "/orchestration/pipelines/?status=COMPLETED")
            .await
            .body["count"],
        5
    );
    assert_eq!(
        get(&d, "/orchestration/pipelines/?since=2999-01-01T00:00:00Z")
            .await
            .body["count"],
        0
    );
    assert_eq!(
        get(&d, "/orchestration/pipelines/?since=1h").await.body["count"],
        5,
        "a span back from now"
    );
    assert_eq!(
        get(&d, "/orchestration/pipelines/?since=2999-01-01")
            .await
            .body["count"],
        0,
        "a date"
    );
    // A misspelt definition lists nothing, with a hint; a loaded one with
    // no runs lists nothing, without one.
    let typo = get(&d, "/orchestration/pipelines/?definition=quik").await;
    assert_eq!(typo.status, StatusCode::OK);
    assert_eq!(typo.body["count"], 0);
    let hint = typo.body["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("did you mean `quick`?"), "{:#}", typo.body);
    let none_yet = get(&d, "/orchestration/pipelines/?definition=default").await;
    assert_eq!(none_yet.body["count"], 0);
    assert!(none_yet.body.get("hint").is_none(), "{:#}", none_yet.body);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "status=weird",
        "since=yesterday",
        "cursor=nope",
        "colour=red",
    ] {
        let r = get(&d, &format!("/orchestration/pipelines/?{bad}")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_parameter");
    }
    assert_error(
        &get(&d, "/orchestration/pipeline/01NOTARUN/").await,
        StatusCode::NOT_FOUND,
        "run_not_found",
    );
}

#[tokio::test]
async fn definitions_list_detail_validate_execute() {
    let ws = Workspace::new("");
    ws.definition(
        "quick",
        &json!({"version": "1", "description": "d", "schedule": {"every": "1h"},
        "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"x": "payload.x"}}}]}),
    );
    ws.definition(
        "broken",
        &json!({"version": "1", "nodes": [{"id": "t", "type": "nope"}]}),
    );
    let d = ws.start();
    let list = get(&d, "/orchestration/definitions/").await;
    let items = list.body["results"].as_array().unwrap();
    let quick = items.iter().find(|i| i["name"] == "quick").unwrap();
    assert_eq!(quick["state"], "ok");
    assert_eq!(quick["nodes"], 1);
    assert_eq!(quick["schedule"]["every"], "1h");
    let broken = items.iter().find(|i| i["name"] == "broken").unwrap();
    assert_eq!(broken["state"], "invalid");
    assert_eq!(broken["errors"][0]["path"], "nodes[0].type");

    let run = post(
        &d,
        "/orchestration/definitions/quick/execute/",
        json!({"payload": {"x": 7}}),
    )
    .await;
    assert_eq!(run.body["node_results"]["t"]["output"]["x"], 7);
    let detail = get(&d, "/orchestration/definitions/quick").await;
    assert_eq!(detail.body["definition"]["description"], "d");
    assert_eq!(detail.body["recent_runs"][0]["run_id"], run.body["run_id"]);

    let queued = post(
        &d,
        "/orchestration/definitions/quick/execute/?mode=async",
        json!({"payload": {"x": 8}, "incident_id": "inc-9"}),
    )
    .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED);
    let done = finished(&d, queued.body["run_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["incident_id"], "inc-9");

    assert_error(
        &post(
            &d,
            "/orchestration/definitions/nope/execute/",
            json!({"payload": {}}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "definition_not_found",
    );
    let invalid = post(
        &d,
        "/orchestration/definitions/broken/execute/",
        json!({"payload": {}}),
    )
    .await;
    assert_error(&invalid, StatusCode::CONFLICT, "definition_invalid");
    assert_eq!(invalid.body["error"]["details"][0]["path"], "nodes[0].type");
    assert_error(
        &post(
            &d,
            "/orchestration/definitions/quick/execute/?mode=later",
            json!({"payload": {}}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );

    let v = call(
        Method::POST,
        &d.url("/orchestration/definitions/quick/validate/"),
        None,
        None,
    )
    .await;
    assert_eq!(
        v.body,
        json!({"name": "quick", "valid": true, "errors": []})
    );
    let v = call(
        Method::POST,
        &d.url("/orchestration/definitions/broken/validate/"),
        None,
        None,
    )
    .await;
    assert_eq!(v.body["valid"], false);
    let candidate = json!({"version": "1", "nodes": [{"id": "a", "type": "notify", "config": {"driver": "fax"}}]});
    let v = post(
        &d,
        "/orchestration/definitions/new-one/validate/",
        candidate,
    )
    .await;
    assert_eq!(v.status, StatusCode::OK);
    assert_eq!(v.body["valid"], false);
    assert_eq!(v.body["errors"][0]["path"], "nodes[0].config.driver");
    assert!(v.body["errors"][0]["line"].is_number());
    assert_error(
        &call(
            Method::POST,
            &d.url("/orchestration/definitions/ghost/validate/"),
            None,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "definition_not_found",
    );
}

#[tokio::test]
async fn webhooks_route_by_trigger_or_fall_back_to_the_builtin() {
    let ws = Workspace::new("");
    ws.definition("am-only", &json!({"version": "1", "trigger": {"sources": ["alertmanager"], "match": {"severity": "warning"}},
        "nodes": [{"id": "in", "type": "ingest", "next": "n"}, {"id": "n", "type": "notify", "config": {"driver": "log"}}]}));
    let d = ws.start();
    // GET is an open readiness probe.
    assert_eq!(get(&d, "/alerts/webhook/").await.status, StatusCode::OK);
    assert_eq!(
        get(&d, "/alerts/webhook/alertmanager").await.status,
        StatusCode::OK
    );

    let am = post(
        &d,
        "/alerts/webhook/",
        fixture_json("alertmanager-0.25-webhook-firing.json"),
    )
    .await;
    assert_eq!(am.status, StatusCode::ACCEPTED, "{:#}", am.body);
    assert_eq!(am.body["driver"], "alertmanager");
    assert_eq!(am.body["definitions"], json!(["am-only"]));
    let run = finished(&d, am.body["run_ids"][0].as_str().unwrap()).await;
    assert_eq!(run["status"], "NOTIFIED");
    assert_eq!(run["source"], "alertmanager");

    let generic = post(&d, "/alerts/webhook/generic/", alert()).await;
    assert_eq!(generic.status, StatusCode::ACCEPTED);
    assert_eq!(
        generic.body["definitions"],
        json!(["default"]),
        "no trigger matched: built-in"
    );

    assert_error(
        &post(&d, "/alerts/webhook/nagios/", alert()).await,
        StatusCode::NOT_FOUND,
        "unknown_driver",
    );
    assert_error(
        &post(&d, "/alerts/webhook/alertmanager/", json!({"alerts": "no"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_payload",
    );
    assert_error(
        &post(&d, "/alerts/webhook/", json!({"nothing": true})).await,
        StatusCode::BAD_REQUEST,
        "invalid_payload",
    );
    let url = d.url("/alerts/webhook/");
    assert_error(
        &raw(&url, b"{\"alerts\": [".to_vec(), &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = raw(&url, deep.into_bytes(), &[]).await;
    assert_eq!(deep.status, StatusCode::BAD_REQUEST, "{:#}", deep.body);
    let message = deep.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not a list of alerts"), "{message}");
    assert_error(
        &raw(&url, vec![b'"', 0xff, b'"'], &[]).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
}

#[tokio::test]
async fn webhook_body_limit_is_separate_and_larger() {
    let ws = Workspace::new("[server]\nmax_body_bytes = 1000\nmax_webhook_body_bytes = 100000\n");
    let d = ws.start();
    let mut body = alert();
    body["description"] = json!("x".repeat(5000));
    let r = post(&d, "/alerts/webhook/generic/", body.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "a 5 kB webhook fits its own limit"
    );
    body["description"] = json!("x".repeat(200_000));
    assert_error(
        &post(&d, "/alerts/webhook/generic/", body).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    );
}

/// A body sent with `Content-Encoding: gzip` or `deflate` is the same
/// document as sent plain; any other encoding, a damaged stream, or one
/// that inflates past the limit is refused and changes nothing.
#[tokio::test]
async fn compressed_bodies_are_read_and_other_encodings_refused() {
    use std::io::Write;
    let ws = Workspace::new("[server]\nmax_webhook_body_bytes = 100000\n");
    let d = ws.start();
    let url = d.url("/alerts/webhook/alertmanager/");
    let plain = std::fs::read(support::fixture("alertmanager-0.25-webhook-firing.json")).unwrap();
    let gzip = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };

    let zipped = raw(&url, gzip(&plain), &[("content-encoding", "gzip")]).await;
    assert_eq!(zipped.status, StatusCode::ACCEPTED, "{:#}", zipped.body);
    assert_eq!(zipped.body["changes"]["opened"], 1);
    // The same alert sent plain is a re-send of the one just read.
    let again = raw(&url, plain.clone(), &[]).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:#}", again.body);
    assert_eq!(again.body["changes"]["unchanged"], 1, "{:#}", again.body);

    // deflate, on the API's pipeline endpoint.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(json!({"payload": alert()}).to_string().as_bytes())
        .unwrap();
    let deflated = raw(
        &d.url("/orchestration/pipeline/"),
        z.finish().unwrap(),
        &[("content-encoding", "deflate")],
    )
    .await;
    assert_eq!(deflated.status, StatusCode::ACCEPTED, "{:#}", deflated.body);

    let run_count =
        async || get(&d, "/orchestration/pipelines/?limit=1000").await.body["count"].clone();
    let runs_before = run_count().await;
    assert_eq!(runs_before, 2, "one run for each accepted body");
    let br = raw(&url, plain.clone(), &[("content-encoding", "br")]).await;
    assert_error(
        &br,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_encoding",
    );
    assert!(
        br.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gzip"),
        "{:#}",
        br.body
    );
    // 10 MB of spaces: 10 kB of gzip, a hundred times the limit inflated.
    let bomb = raw(
        &url,
        gzip(&vec![b' '; 10 << 20]),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_error(&bomb, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let zipped = gzip(&plain);
    let cut = raw(
        &url,
        zipped[..zipped.len() / 2].to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_error(&cut, StatusCode::BAD_REQUEST, "bad_encoding");
    assert_eq!(
        run_count().await,
        runs_before,
        "a refused body started nothing"
    );
}

/// A notify channel on https behind a private CA: refused without its
/// `ca_file` (the error says why), delivered with it; a `ca_file` that
/// holds no certificate stops herald from starting, naming it.
#[tokio::test]
async fn a_channel_behind_a_private_ca_is_trusted_through_its_ca_file() {
    let receiver = Receiver::start_tls().await;
    let ca = support::fixture("tls/ca.pem");
    let ws = Workspace::new(&format!(
        "[notify.webhook.internal]\nurl = \"{url}\"\nca_file = \"{ca}\"\n\
         [notify.webhook.public]\nurl = \"{url}\"\n",
        url = receiver.url("/hook"),
        ca = ca.display()
    ));
    for channel in ["internal", "public"] {
        ws.definition(
            channel,
            &json!({"version": "1", "nodes": [
                {"id": "notify", "type": "notify", "retries": 0,
                 "config": {"driver": "webhook", "channel": channel}}]}),
        );
    }
    let d = ws.start();
    let execute = async |name: &str| {
        post(
            &d,
            &format!("/orchestration/definitions/{name}/execute/"),
            json!({"payload": alert()}),
        )
        .await
    };

    let public = execute("public").await;
    assert_eq!(public.status, StatusCode::OK, "{:#}", public.body);
    assert_eq!(public.body["status"], "FAILED", "{:#}", public.body);
    let error = public.body["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("UnknownIssuer") && error.contains("ca_file"),
        "says why, and what to do: {error}"
    );
    assert!(
        !error.contains(&receiver.url("/hook")),
        "never the URL: {error}"
    );
    assert!(receiver.received().is_empty(), "nothing got through");

    let internal = execute("internal").await;
    assert_eq!(internal.body["status"], "NOTIFIED", "{:#}", internal.body);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook");
    assert!(
        got[0]
            .header("user-agent")
            .unwrap_or("")
            .starts_with("herald/"),
        "{:?}",
        got[0].headers
    );
    drop(d);

    // Not a certificate: herald does not start, and says which file.
    let wrong = ws.dir.path().join("not-a-ca.pem");
    std::fs::write(&wrong, "just text\n").unwrap();
    ws.write_config(&format!(
        "[notify.webhook.internal]\nurl = \"{}\"\nca_file = \"{}\"\n",
        receiver.url("/hook"),
        wrong.display()
    ));
    let out = ws.command(&["serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notify.webhook.internal.ca_file") && err.contains("not-a-ca.pem"),
        "{err}"
    );
    assert!(err.contains("no PEM certificate"), "{err}");
}

/// Behind an egress proxy: notify requests go through `HTTP_PROXY` from
/// herald's environment (here a loopback receiver standing in for the
/// proxy; the channel's host does not resolve).
#[tokio::test]
async fn notify_goes_through_the_proxy_in_the_environment() {
    let proxy = Receiver::start().await;
    let ws = Workspace::new("[notify.webhook.ops]\nurl = \"http://alerts.example.invalid/hook\"\n");
    ws.definition(
        "page",
        &json!({"version": "1", "nodes": [{"id": "n", "type": "notify", "retries": 0,
            "config": {"driver": "webhook", "channel": "ops"}}]}),
    );
    let d = ws.start_with(&[], &[("HTTP_PROXY", &proxy.url(""))]);
    let r = post(
        &d,
        "/orchestration/definitions/page/execute/",
        json!({"payload": alert()}),
    )
    .await;
    assert_eq!(r.body["status"], "NOTIFIED", "{:#}", r.body);
    let got = proxy.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("host"), Some("alerts.example.invalid"));
    assert_eq!(got[0].path, "/hook");
}

/// A receiver that redirects (an http:// URL answered 301 to https://):
/// following it would turn the POST into a GET without the message, and
/// a 200 for that would count as delivered. herald does not follow; the
/// stage fails, saying where the redirect points and what to change.
#[tokio::test]
async fn a_redirect_is_not_followed_and_not_taken_for_delivery() {
    let receiver = Receiver::start().await;
    let ws = Workspace::new(&format!(
        "[notify.webhook.ops]\nurl = \"{}\"\n",
        receiver.url("/hook?token=s3cret")
    ));
    ws.definition(
        "page",
        &json!({"version": "1", "defaults": {"backoff": "10ms"},
            "nodes": [{"id": "n", "type": "notify", "retries": 2,
            "config": {"driver": "webhook", "channel": "ops"}}]}),
    );
    let d = ws.start();
    receiver.respond_with_headers(301, &[("location", &receiver.url("/moved/s3cret"))]);
    let r = post(
        &d,
        "/orchestration/definitions/page/execute/",
        json!({"payload": alert()}),
    )
    .await;
    assert_eq!(r.body["status"], "FAILED", "{:#}", r.body);
    let got = receiver.received();
    assert_eq!(got.len(), 1, "not followed, not retried: {got:?}");
    assert_eq!(got[0].path, "/hook");
    let error = r.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("301") && error.contains("redirect") && error.contains("url"),
        "says what to change: {error}"
    );
    assert!(
        error.contains(&format!("http://{}", receiver.addr)),
        "where it points: {error}"
    );
    assert!(!error.contains("s3cret"), "no path, no query: {error}");
}

/// An Alertmanager body cut short by the receiver's `max_alerts`
/// (`truncatedAlerts`) is accepted, says how many alerts herald did not
/// get, and is warned about once a minute.
#[tokio::test]
async fn a_body_with_alerts_left_out_is_accepted_and_said() {
    let ws = Workspace::new("");
    let d = ws.start();
    let url = d.url("/alerts/webhook/alertmanager/");
    let text =
        std::fs::read_to_string(support::fixture("alertmanager-0.25-webhook-firing.json")).unwrap();
    for (i, instance) in ["db-cut-1", "db-cut-2"].iter().enumerate() {
        let body = text
            .replace("\"truncatedAlerts\":0", "\"truncatedAlerts\":12")
            .replace("db-server-01", instance)
            .replace("4e70aa3763bd0be1", &format!("cut{i}"));
        let r = raw(&url, body.into_bytes(), &[]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
        assert_eq!(r.body["truncated_alerts"], 12, "{:#}", r.body);
        let run = finished(&d, r.body["run_ids"][0].as_str().unwrap()).await;
        assert_eq!(
            run["intake"]["truncated_alerts"], 12,
            "kept with the run: {run:#}"
        );
    }
    wait_for_log(&d, "left out by the sender").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("left out by the sender"))
        .collect();
    assert_eq!(lines.len(), 1, "two bodies, one line a minute:\n{log}");
    assert!(
        lines[0].contains("12 alerts") && lines[0].contains("max_alerts"),
        "{}",
        lines[0]
    );
    let plain = raw(&url, text.into_bytes(), &[]).await;
    assert_eq!(plain.body["truncated_alerts"], 0);
    // Counted exactly in /metrics, where a rule can alert on it.
    let metrics = get(&d, "/metrics").await.body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("herald_webhook_alerts_left_out_total{driver=\"alertmanager\"} 24"),
        "{metrics}"
    );
}

/// A webhook's `X-Trace-Id` labels its runs; one too long to label runs
/// with is left out, and the alert still accepted (a 400 is not retried:
/// the alert would be lost).
#[tokio::test]
async fn a_webhooks_trace_id_is_kept_or_left_out_never_refused() {
    let ws = Workspace::new("");
    let d = ws.start();
    let url = d.url("/alerts/webhook/generic/");
    let body = |name: &str| {
        let mut a = alert();
        a["name"] = json!(name);
        a.to_string().into_bytes()
    };
    let kept = raw(
        &url,
        body("Traced"),
        &[("x-trace-id", "trace-from-the-sender")],
    )
    .await;
    assert_eq!(kept.status, StatusCode::ACCEPTED, "{:#}", kept.body);
    let run = finished(&d, kept.body["run_ids"][0].as_str().unwrap()).await;
    assert_eq!(run["trace_id"], "trace-from-the-sender");

    let long = "t".repeat(300);
    let left = raw(&url, body("Untraced"), &[("x-trace-id", &long)]).await;
    assert_eq!(left.status, StatusCode::ACCEPTED, "{:#}", left.body);
    let run = finished(&d, left.body["run_ids"][0].as_str().unwrap()).await;
    let trace = run["trace_id"].as_str().unwrap();
    assert!(!trace.is_empty() && trace != long, "{run:#}");
}

/// A storm-sized body (over 1 MiB) is kept as a file beside sled, written
/// before the 202; its run reads it back, and so does a restarted daemon.
#[tokio::test]
async fn a_storm_sized_webhook_payload_is_kept_as_a_file() {
    let ws = Workspace::new("");
    let mut d = ws.start();
    let mut group = fixture_json("alertmanager-0.25-webhook-firing.json");
    let one = group["alerts"][0].clone();
    let alerts: Vec<Value> = (0..4000)
        .map(|i| {
            let mut a = one.clone();
            a["labels"]["instance"] = json!(format!("host-{i:05}"));
            a["fingerprint"] = json!(format!("{i:016x}"));
            a
        })
        .collect();
    group["alerts"] = json!(alerts);
    let body = serde_json::to_vec(&group).unwrap();
    assert!(body.len() > 1024 * 1024, "{} bytes", body.len());

    let url = d.url("/alerts/webhook/alertmanager/");
    let r = raw(&url, body.clone(), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    let run_id = r.body["run_ids"][0].as_str().unwrap().to_string();
    let file = ws
        .data_dir()
        .join("payloads")
        .join(format!("{run_id}.json"));
    assert_eq!(std::fs::read(&file).unwrap(), body, "the body, verbatim");

    let run = finished(&d, &run_id).await;
    assert_eq!(run["status"], "NOTIFIED", "{:#}", run["error"]);
    assert_eq!(run["payload"]["alerts"].as_array().unwrap().len(), 4000);

    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(15)), Some(0));
    let d = ws.start();
    let run = get(&d, &format!("/orchestration/pipeline/{run_id}/")).await;
    assert_eq!(run.body["payload"], group, "read back after a restart");
    assert!(file.exists(), "a file with a run is not swept");
}

#[tokio::test]
async fn auth_tokens_guard_everything_but_probes() {
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), "# ops\nfile-token\n").unwrap();
    let ws = Workspace::new(&format!(
        "auth_tokens = [\"s3cret\"]\nauth_token_file = \"{}\"\n",
        token_file.path().display()
    ));
    let d = ws.start_with(&[], &[("HERALD_AUTH_TOKENS", "env-token, other")]);
    let url = d.url("/orchestration/pipelines/");
    assert_error(
        &call(Method::GET, &url, None, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &call(Method::GET, &url, None, Some("wrong")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    for token in ["s3cret", "file-token", "env-token"] {
        assert_eq!(
            call(Method::GET, &url, None, Some(token)).await.status,
            StatusCode::OK,
            "{token}"
        );
    }
    let by_key = reqwest::Client::new()
        .get(&url)
        .header("X-API-Key", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(by_key.status(), StatusCode::OK);
    assert_error(
        &post(&d, "/alerts/webhook/", alert()).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &get(&d, "/metrics").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    for open in [
        "/healthz",
        "/readyz",
        "/alerts/webhook/",
        "/alerts/webhook/generic/",
    ] {
        assert_eq!(get(&d, open).await.status, StatusCode::OK, "{open} is open");
    }
}

#[test]
fn refuses_a_public_address_without_a_token() {
    let ws = Workspace::new("");
    let out = ws
        .command(&["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without an auth token"),
        "{err}"
    );
    assert!(err.contains("auth_tokens"), "{err}");
    // With a token it starts (bound on all interfaces, but only used via loopback).
    let mut d = ws.start_with(&["--listen", "0.0.0.0:0"], &[("HERALD_AUTH_TOKENS", "t")]);
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));
}

/// An init system may reload or stop the daemon the moment it is up: the
/// handlers must be in place when the address is announced, or SIGHUP's
/// and SIGTERM's default action kills it.
#[test]
fn signals_the_moment_the_address_appears_are_handled_not_fatal() {
    for _ in 0..5 {
        let ws = Workspace::new("");
        let addr = ws.data_dir().join("herald.addr");
        let mut child = ws
            .command(&["serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !addr.exists() {
            assert!(Instant::now() < deadline, "herald serve did not start");
            std::thread::sleep(Duration::from_micros(200));
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own child process by its pid.
        unsafe {
            libc::kill(pid, libc::SIGHUP);
            libc::kill(pid, libc::SIGTERM);
        }
        let status = wait_child(&mut child, Duration::from_secs(20));
        assert_eq!(
            status.code(),
            Some(0),
            "{status}: killed by a signal, not stopped"
        );
    }
}

fn wait_child(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herald did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the daemon's log holds `needle` (at most 10 s).
async fn wait_for_log(d: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if d.log().contains(needle) || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// HMAC-SHA256 of `<time>:<body>` (or of the body), hex: how PagerDuty
/// and Grafana sign.
fn sender_hmac(secret: &str, signed_at: Option<&str>, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    if let Some(at) = signed_at {
        mac.update(format!("{at}:").as_bytes());
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// PagerDuty and Grafana sign their webhooks but cannot be taught herald's
/// header: each is checked the way it signs, and a body refused changes
/// nothing.
#[tokio::test]
async fn pagerduty_and_grafana_are_checked_as_they_sign() {
    let ws = Workspace::new(
        "[webhooks.secrets]\npagerduty = \"pd-secret\"\n\
         grafana = { secret = \"g-secret\", timestamp_header = \"X-Grafana-Alerting-Timestamp\" }\n",
    );
    let d = ws.start();
    let pd = std::fs::read(support::fixture("vendors/pagerduty-v3-resolved.json")).unwrap();
    let pd_url = d.url("/alerts/webhook/pagerduty/");
    let gf = std::fs::read(support::fixture("vendors/grafana-unified-firing.json")).unwrap();
    let gf_url = d.url("/alerts/webhook/grafana/");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let hour_ago = (now.parse::<u64>().unwrap() - 3600).to_string();

    // Grafana signs `<time>:<body>` and sends both headers.
    let grafana = async |signed_at: &str, signature: &str| {
        let headers = [
            ("x-grafana-alerting-signature", signature),
            ("x-grafana-alerting-timestamp", signed_at),
        ];
        raw(&gf_url, gf.clone(), &headers).await
    };
    let message = |r: &support::client::Reply| r.body["error"]["message"].to_string();

    // Refused, each with what was wrong.
    let old_only = format!("v1={}", sender_hmac("old-secret", None, &pd));
    let r = raw(&pd_url, pd.clone(), &[("x-pagerduty-signature", &old_only)]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "bad_signature");
    let r = raw(&pd_url, pd.clone(), &[]).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "bad_signature");
    assert!(
        message(&r).contains("X-PagerDuty-Signature: v1="),
        "{}",
        message(&r)
    );
    let r = grafana(&hour_ago, &sender_hmac("g-secret", Some(&hour_ago), &gf)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "bad_signature");
    assert!(
        message(&r).contains("3600 s from this host's clock"),
        "{}",
        message(&r)
    );
    let r = grafana(&now, &sender_hmac("g-secret", None, &gf)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "bad_signature");
    let incidents = get(&d, "/alerts/incidents/").await;
    assert_eq!(
        incidents.body["count"], 0,
        "refused, yet: {:#}",
        incidents.body
    );

    // Accepted: PagerDuty rotating its secret sends both signatures.
    let rotating = format!("{old_only},v1={}", sender_hmac("pd-secret", None, &pd));
    let r = raw(&pd_url, pd.clone(), &[("x-pagerduty-signature", &rotating)]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    let r = grafana(&now, &sender_hmac("g-secret", Some(&now), &gf)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    assert!(r.body["alerts"].as_u64().unwrap() >= 1, "{:#}", r.body);
}

/// A body that starts with a UTF-8 byte-order mark (a file a Windows tool
/// saved, sent with curl) is JSON all the same: a 400 on a webhook is not
/// retried, and the alert would be lost. A signature is of the body as sent.
#[tokio::test]
async fn a_byte_order_mark_before_the_json_is_skipped() {
    let ws = Workspace::new("[webhooks.secrets]\ngeneric = \"k\"\n");
    let d = ws.start();
    let mut body = b"\xef\xbb\xbf".to_vec();
    body.extend_from_slice(br#"{"name": "BomAlert", "severity": "warning", "status": "firing"}"#);
    let sig = herald::http::sign("k", &body);
    let r = raw(
        &d.url("/alerts/webhook/generic/"),
        body.clone(),
        &[("x-herald-signature", &sig)],
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
    // What was stored is the JSON: the run reads it.
    let run = finished(&d, r.body["run_ids"][0].as_str().unwrap()).await;
    assert_eq!(run["status"], "NOTIFIED", "{run:#}");
    let detected = raw(
        &d.url("/alerts/webhook/"),
        body,
        &[("x-herald-signature", &sig)],
    )
    .await;
    assert_eq!(detected.status, StatusCode::ACCEPTED, "{:#}", detected.body);

    let mut api = b"\xef\xbb\xbf".to_vec();
    api.extend_from_slice(br#"{"payload": {"name": "x"}}"#);
    let r = raw(&d.url("/orchestration/pipeline/"), api, &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:#}", r.body);
}

#[tokio::test]
async fn webhook_signatures_when_a_source_has_a_secret() {
    let ws = Workspace::new("[webhooks.secrets]\nalertmanager = \"hush\"\n");
    let d = ws.start();
    let body = std::fs::read(support::fixture("alertmanager-0.25-webhook-firing.json")).unwrap();
    let url = d.url("/alerts/webhook/alertmanager/");
    assert_error(
        &raw(&url, body.clone(), &[]).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let wrong = herald::http::sign("other", &body);
    assert_error(
        &raw(&url, body.clone(), &[("x-herald-signature", &wrong)]).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    let sig = herald::http::sign("hush", &body);
    let ok = raw(&url, body.clone(), &[("x-herald-signature", &sig)]).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{:#}", ok.body);
    // Compressed for the trip, the body signed is the document itself.
    let mut zipped = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut zipped, &body).unwrap();
    let zipped = raw(
        &url,
        zipped.finish().unwrap(),
        &[("x-herald-signature", &sig), ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(zipped.status, StatusCode::ACCEPTED, "{:#}", zipped.body);

    // The sender's log is on another host: herald says it refused, once a
    // minute for the same reason.
    wait_for_log(&d, "webhook refused").await;
    // Time for a second line, if there were one, to come through the pipe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = d.log();
    let lines: Vec<&str> = refused
        .lines()
        .filter(|l| l.contains("webhook refused"))
        .collect();
    assert_eq!(lines.len(), 1, "two refusals, one line:\n{refused}");
    for part in [
        "127.0.0.1",
        "401",
        "bad_signature",
        "/alerts/webhook/alertmanager/",
        "signature",
    ] {
        assert!(lines[0].contains(part), "no {part}: {}", lines[0]);
    }
    // Sources without a secret need no signature.
    assert_eq!(
        post(&d, "/alerts/webhook/generic/", alert()).await.status,
        StatusCode::ACCEPTED
    );
    // Alertmanager itself cannot sign: said at start, with what to do.
    assert!(
        d.log().contains("Alertmanager does not sign its webhooks"),
        "{}",
        d.log()
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let ws = Workspace::new("[rate_limit]\nper_second = 0.01\nburst = 3\n");
    let d = ws.start();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = get(&d, "/orchestration/pipelines/").await;
        codes.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers.contains_key("retry-after"));
            assert_eq!(r.body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    assert_eq!(
        get(&d, "/healthz").await.status,
        StatusCode::OK,
        "probes are not limited"
    );
    // A webhook sender is told 503, which Alertmanager retries.
    let webhook = post(&d, "/alerts/webhook/generic/", alert()).await;
    assert_error(&webhook, StatusCode::SERVICE_UNAVAILABLE, "rate_limited");
    assert!(webhook.headers.contains_key("retry-after"));

    // A config change elsewhere does not hand every client a fresh burst.
    ws.write_config("[rate_limit]\nper_second = 0.01\nburst = 3\n[store]\nmax_runs = 99999\n");
    wait_for_log(&d, "config reloaded").await;
    assert!(d.log().contains("config reloaded"), "{}", d.log());
    assert_eq!(
        get(&d, "/orchestration/pipelines/").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the bucket outlived the reload"
    );
    // A new limit does start afresh.
    ws.write_config("[rate_limit]\nper_second = 0.01\nburst = 5\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&d, "/orchestration/pipelines/").await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the new limit never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A receiver that answers after `delay`, and a workspace (`extra` first
/// in its config) whose definition `slow` notifies it: a notify node `n`
/// on the webhook channel `slow`.
async fn slow_target(delay: Duration, extra: &str) -> (Receiver, Workspace) {
    let receiver = Receiver::start_with_delay(delay).await;
    let ws = Workspace::new(&format!(
        "{extra}[notify.webhook.slow]\nurl = \"{}\"\n",
        receiver.url("/")
    ));
    slow_notify_definition(&ws);
    (receiver, ws)
}

fn slow_notify_definition(ws: &Workspace) {
    ws.definition("slow", &json!({"version": "1", "nodes": [
        {"id": "n", "type": "notify", "config": {"driver": "webhook", "channel": "slow"}, "retries": 0, "timeout": "30s"}]}));
}

#[tokio::test]
async fn a_full_queue_answers_429_and_keeps_memory_bounded() {
    let (_receiver, ws) = slow_target(
        Duration::from_millis(800),
        "[queue]\nworkers = 1\ncapacity = 2\n",
    )
    .await;
    let d = ws.start();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = post(
            &d,
            "/orchestration/definitions/slow/execute/?mode=async",
            json!({"payload": {}}),
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.body["error"]["code"], "queue_full");
            assert!(r.headers.contains_key("retry-after"));
        }
        codes.push(r.status.as_u16());
    }
    assert_eq!(codes, [202, 202, 429, 429]);
    let ready = get(&d, "/readyz").await;
    assert_eq!(ready.body["queue_capacity"], 2);
    // The webhook probe says a webhook would not be taken now.
    let probe = get(&d, "/alerts/webhook/").await;
    assert_eq!(
        probe.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:#}",
        probe.body
    );
    assert_eq!(probe.body["status"], "not_ready");
    assert!(
        probe.body["reason"]
            .as_str()
            .unwrap()
            .contains("queue is full (2 of 2 jobs)"),
        "{:#}",
        probe.body
    );
    assert!(probe.headers.contains_key("retry-after"));

    // On a webhook path the same is a 503: Alertmanager retries only 5xx,
    // and drops a notification answered 429 until its repeat_interval.
    let r = post(&d, "/alerts/webhook/generic/", alert()).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "queue_full");
    assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    // And said in herald's log.
    wait_for_log(&d, "webhook refused").await;
    assert!(d.log().contains("queue_full"), "{}", d.log());
}

#[tokio::test]
async fn resume_repeats_nothing_that_succeeded() {
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    let ws = Workspace::new(&format!(
        "[notify.webhook.first]\nurl = \"{}\"\n[notify.webhook.second]\nurl = \"{}\"\n",
        first.url("/"),
        second.url("/")
    ));
    ws.definition("two-hooks", &json!({"version": "1", "nodes": [
        {"id": "in", "type": "ingest", "next": "first"},
        {"id": "first", "type": "notify", "config": {"driver": "webhook", "channel": "first"}, "next": "second"},
        {"id": "second", "type": "notify", "config": {"driver": "webhook", "channel": "second"}, "retries": 0}]}));
    let d = ws.start();
    second.respond_with(&[500]);
    let failed = post(
        &d,
        "/orchestration/definitions/two-hooks/execute/",
        json!({"payload": alert()}),
    )
    .await;
    assert_eq!(failed.body["status"], "FAILED");
    let run_id = failed.body["run_id"].as_str().unwrap().to_string();

    let ok_run = post(
        &d,
        "/orchestration/definitions/two-hooks/execute/",
        json!({"payload": alert()}),
    )
    .await;
    assert_eq!(ok_run.body["status"], "NOTIFIED");
    let not_failed = post(
        &d,
        &format!(
            "/orchestration/pipeline/{}/resume/",
            ok_run.body["run_id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    assert_error(&not_failed, StatusCode::CONFLICT, "not_resumable");
    assert_error(
        &post(&d, "/orchestration/pipeline/01NOPE/resume/", json!({})).await,
        StatusCode::NOT_FOUND,
        "run_not_found",
    );

    let resumed = post(
        &d,
        &format!("/orchestration/pipeline/{run_id}/resume/"),
        json!({}),
    )
    .await;
    assert_eq!(resumed.status, StatusCode::OK, "{:#}", resumed.body);
    assert_eq!(resumed.body["status"], "NOTIFIED");
    let first_keys: Vec<String> = first
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(
        first_keys.iter().filter(|k| k.starts_with(&run_id)).count(),
        1,
        "the first hook is not sent again"
    );
    let second_keys: Vec<String> = second
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(
        second_keys
            .iter()
            .filter(|k| k.starts_with(&run_id))
            .count(),
        2,
        "the failed hook is tried again"
    );

    // Async resume of another failed run.
    second.respond_with(&[500]);
    let failed = post(
        &d,
        "/orchestration/definitions/two-hooks/execute/",
        json!({"payload": alert()}),
    )
    .await;
    let id = failed.body["run_id"].as_str().unwrap();
    queued_resume(&d, id).await;
    let run = run_until(&d, id, "the async resume did not finish", |run| {
        run["status"] == "NOTIFIED"
    })
    .await;
    assert_eq!(run["attempts"], 2);
}

#[tokio::test]
async fn metrics_count_runs_webhooks_and_requests() {
    let ws = Workspace::new("");
    let d = ws.start();
    let r = post(
        &d,
        "/orchestration/pipeline/sync/",
        json!({"payload": alert()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    post(&d, "/alerts/webhook/generic/", alert()).await;
    post(&d, "/alerts/webhook/generic/", json!({"x": 1})).await;
    for made_up in ["no-such-driver-a", "no-such-driver-b"] {
        let r = post(&d, &format!("/alerts/webhook/{made_up}/"), alert()).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let m = get(&d, "/metrics").await;
    let text = m.body.as_str().unwrap().to_string();
    assert!(
        !text.contains("no-such-driver"),
        "a made-up driver in the path became a label:\n{text}"
    );
    for needle in [
        "herald_runs_total{definition=\"default\",status=\"NOTIFIED\"}",
        "herald_run_duration_seconds_bucket",
        "herald_stages_total{definition=\"default\",node=\"notify\",status=\"succeeded\"}",
        "herald_queue_capacity 10000",
        "herald_webhook_requests_total{driver=\"generic\",outcome=\"accepted\"} 1",
        "herald_webhook_requests_total{driver=\"generic\",outcome=\"rejected\"} 1",
        "herald_webhook_requests_total{driver=\"unknown\",outcome=\"rejected\"} 2",
        "herald_http_requests_total{route=\"/orchestration/pipeline/sync/\",code=\"200\"} 1",
        "herald_definitions_loaded 1",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    // The size of sled's file, read at each scrape.
    let bytes: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("herald_store_database_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no herald_store_database_bytes in\n{text}"));
    assert!(bytes > 0);
}

#[tokio::test]
async fn sigterm_finishes_in_flight_work_and_keeps_the_queue() {
    let (_receiver, ws) = slow_target(Duration::from_millis(500), "[queue]\nworkers = 1\n").await;
    let mut d = ws.start();
    // A sync request in flight when SIGTERM arrives still gets its answer.
    let url = d.url("/orchestration/definitions/slow/execute/");
    let in_flight =
        tokio::spawn(
            async move { call(Method::POST, &url, Some(json!({"payload": {}})), None).await },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut queued = Vec::new();
    for _ in 0..6 {
        let r = post(
            &d,
            "/orchestration/definitions/slow/execute/?mode=async",
            json!({"payload": {}}),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        queued.push(r.body["run_id"].as_str().unwrap().to_string());
    }
    d.signal("TERM");
    let answered = in_flight.await.unwrap();
    assert_eq!(answered.status, StatusCode::OK);
    assert_eq!(answered.body["status"], "NOTIFIED");
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0), "{}", d.log());
    assert!(
        d.log().contains("queued jobs resume at the next start"),
        "{}",
        d.log()
    );

    // What was left runs at the next start.
    let d = ws.start();
    for id in &queued {
        assert_eq!(finished(&d, id).await["status"], "NOTIFIED");
    }
}

/// While a stage runs, the run says so: `current_node` is the node
/// running, not the one before it, and `executed_nodes` what finished.
#[tokio::test]
async fn a_running_run_names_the_node_it_is_in() {
    let receiver = Receiver::start_with_delay(Duration::from_secs(2)).await;
    let ws = Workspace::new(&format!(
        "[notify.webhook.slow]\nurl = \"{}\"\n",
        receiver.url("/")
    ));
    ws.definition("two-step", &json!({"version": "1", "nodes": [
        {"id": "shape", "type": "transform", "config": {"mapping": {"v": {"literal": "x"}}}, "next": "page"},
        {"id": "page", "type": "notify", "config": {"driver": "webhook", "channel": "slow"}, "retries": 0}]}));
    let d = ws.start();
    let id = queued_run(&d, "two-step").await;
    let during = run_until(&d, &id, "the notify never ran", |run| {
        has_stage(run, |s| s["node_id"] == "page" && s["status"] == "RUNNING")
    })
    .await;
    assert_eq!(during["current_node"], "page", "{during:#}");
    assert_eq!(during["current_stage"], "notify", "{during:#}");
    assert_eq!(during["executed_nodes"], json!(["shape"]), "{during:#}");
    assert!(during["completed_at"].is_null(), "{during:#}");
    let done = finished(&d, &id).await;
    assert_eq!(done["current_node"], "page", "{done:#}");
    assert_eq!(done["executed_nodes"], json!(["shape", "page"]), "{done:#}");
}

/// A caller that hangs up on a sync run does not cut the run short: it
/// finishes, and is recorded finished, as if the caller had waited.
#[tokio::test]
async fn a_sync_run_whose_caller_hangs_up_still_finishes() {
    let (receiver, ws) = slow_target(Duration::from_millis(2500), "").await;
    let d = ws.start();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(d.url("/orchestration/definitions/slow/execute/"))
        .json(&json!({"payload": {}}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller was meant to give up first");
    let listed = get(&d, "/orchestration/pipelines/?definition=slow").await;
    let id = listed.body["results"][0]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:#}", listed.body))
        .to_string();
    let run = finished(&d, &id).await;
    assert_eq!(run["status"], "NOTIFIED", "{run:#}");
    assert_eq!(receiver.received().len(), 1);

    // The same for a sync resume.
    receiver.respond_with(&[500]);
    let id = failed_run(&d, "slow").await;
    let gave_up = impatient
        .post(d.url(&format!("/orchestration/pipeline/{id}/resume/")))
        .json(&json!({}))
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller was meant to give up first");
    run_until(&d, &id, "the resume did not finish", |run| {
        run["status"] == "NOTIFIED" && !run["completed_at"].is_null()
    })
    .await;
    assert_eq!(receiver.received().len(), 3);
}

/// A sync run cut short by a crash has no job to continue it. It is not
/// left unfinished for good: the next start gives it one, and it continues
/// like any queued run (the notify that was in flight is sent again, with
/// its Idempotency-Key). Before the crash, a run still running, or still
/// queued, cannot be resumed by hand.
#[tokio::test]
async fn a_sync_run_cut_short_by_a_crash_continues_at_the_next_start() {
    let (receiver, ws) = slow_target(Duration::from_millis(2500), "[queue]\nworkers = 1\n").await;
    let mut d = ws.start();
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn(
        client
            .post(d.url("/orchestration/definitions/slow/execute/"))
            .json(&json!({"payload": {}}))
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let id = loop {
        let listed = get(&d, "/orchestration/pipelines/?definition=slow")
            .await
            .body;
        if let Some(id) = listed["results"][0]["run_id"].as_str() {
            let run = get(&d, &format!("/orchestration/pipeline/{id}/"))
                .await
                .body;
            if run["stages"].as_array().is_some_and(|s| !s.is_empty()) {
                break id.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the run never started: {listed:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // Running now: not resumable.
    refused_resume(
        &d,
        &format!("/orchestration/pipeline/{id}/resume/"),
        "running",
    )
    .await;
    // Queued (an async job behind another on the one worker): not resumable.
    let mut async_ids = Vec::new();
    for _ in 0..2 {
        async_ids.push(queued_run(&d, "slow").await);
    }
    let second_job = format!("/orchestration/pipeline/{}/resume/", async_ids[1]);
    refused_resume(&d, &second_job, "queued").await;
    // Past sled's periodic flush (500 ms), then killed mid-notify.
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.kill9();
    assert!(
        in_flight.await.unwrap().is_err(),
        "the caller got no answer"
    );

    let d = ws.start();
    let continued = finished(&d, &id).await;
    assert_eq!(continued["status"], "NOTIFIED", "{continued:#}");
    let keys: Vec<String> = receiver
        .received()
        .iter()
        .filter_map(|r| r.header("idempotency-key"))
        .filter(|k| k.starts_with(&id))
        .map(str::to_string)
        .collect();
    // The continued send, and the one cut short by the kill if the
    // receiver got to record it: under the same key.
    assert!(
        (1..=2).contains(&keys.len()) && keys.iter().all(|k| *k == format!("{id}:n")),
        "{keys:?}"
    );
    // The async ones ran at the restart, as any job does.
    for id in &async_ids {
        assert_eq!(finished(&d, id).await["status"], "NOTIFIED");
    }
}

/// A run going on each time herald dies may be what kills it (the OOM
/// killer, a crash in a library): under systemd's restarts it would keep
/// herald down for good. Once three restarts have begun it again and died
/// before it finished, it is not started again: FAILED (`abandoned`),
/// counted, and resumable by hand. Each kill comes as soon as the notify is
/// under way, before sled's periodic flush: only the count's own flush
/// records that the job was begun.
#[tokio::test]
async fn a_run_begun_by_three_restarts_that_died_is_abandoned() {
    let (_receiver, ws) = slow_target(Duration::from_secs(60), "[queue]\nworkers = 1\n").await;
    let mut began = chrono::Utc::now();
    let mut d = ws.start();
    let id = queued_run(&d, "slow").await;
    // Begun by the process that accepted it, then by three restarts.
    for _ in 0..4 {
        run_until(&d, &id, "the notify never started here", |run| {
            let last = run["stages"].as_array().and_then(|stages| stages.last());
            last.is_some_and(|stage| {
                let at = stage["started_at"].as_str().unwrap_or_default();
                stage["status"] == "RUNNING"
                    && at
                        .parse::<chrono::DateTime<chrono::Utc>>()
                        .is_ok_and(|at| at >= began)
            })
        })
        .await;
        d.kill9();
        began = chrono::Utc::now();
        d = ws.start();
    }
    let run = finished(&d, &id).await;
    assert_eq!(run["status"], "FAILED", "{run:#}");
    assert_eq!(run["last_error"]["error_type"], "abandoned", "{run:#}");
    let message = run["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("3 starts") && message.contains(&format!("herald runs resume {id}")),
        "{message}"
    );
    assert_eq!(get(&d, "/readyz").await.body["queue_depth"], 0);
    // Counted with the failed runs, for an alert on them.
    let metrics = get(&d, "/metrics").await.body;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains(r#"herald_runs_total{definition="slow",status="FAILED"} 1"#),
        "{metrics}"
    );
    // Resumable by hand, once the cause is known.
    queued_resume(&d, &id).await;
}

/// A FAILED run already queued for a resume is not queued again: the
/// second resume is a 409 that says so, and the run is resumed once.
#[tokio::test]
async fn a_failed_run_queued_for_resume_is_not_resumed_twice() {
    let fast = Receiver::start().await;
    let (_slow, ws) = slow_target(
        Duration::from_millis(1500),
        &format!(
            "[queue]\nworkers = 1\n[notify.webhook.fast]\nurl = \"{}\"\n",
            fast.url("/")
        ),
    )
    .await;
    ws.definition("fast", &json!({"version": "1", "nodes": [
        {"id": "n", "type": "notify", "config": {"driver": "webhook", "channel": "fast"}, "retries": 0}]}));
    let d = ws.start();
    fast.respond_with(&[500]);
    let id = failed_run(&d, "fast").await;
    // The one worker is busy with a slow job; the resume waits behind it.
    queued_run(&d, "slow").await;
    queued_resume(&d, &id).await;
    let resume = format!("/orchestration/pipeline/{id}/resume/?mode=async");
    refused_resume(&d, &resume, "queued").await;
    // Done when the queue is empty (the FAILED run already has a
    // completed_at, so waiting for one says nothing).
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(&d, "/readyz").await.body["queue_depth"] != 0 {
        assert!(Instant::now() < deadline, "the queue never emptied");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(finished(&d, &id).await["status"], "NOTIFIED");
    assert_eq!(
        fast.received().len(),
        2,
        "the failed send and one resumed send"
    );
}

/// A resume interrupted by a crash is finished at the next start, like any
/// interrupted run: its job is not dropped because the run no longer says
/// FAILED.
#[tokio::test]
async fn a_resume_cut_short_by_a_crash_finishes_after_the_restart() {
    let (receiver, ws) = slow_target(Duration::from_millis(2500), "").await;
    let mut d = ws.start();
    receiver.respond_with(&[500]);
    let id = failed_run(&d, "slow").await;
    queued_resume(&d, &id).await;
    // Killed while the resumed notify waits on the receiver.
    run_until(&d, &id, "the resume never ran", |run| {
        has_stage(run, |s| s["attempt"] == 2 && s["status"] == "RUNNING")
    })
    .await;
    // Past sled's own periodic flush (500 ms), so the resumed run's record
    // is on disk as it was when the process died.
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.kill9();
    let d = ws.start();
    let run = finished(&d, &id).await;
    assert_eq!(run["status"], "NOTIFIED", "{run:#}");
    assert!(run["last_error"].is_null(), "{run:#}");
}

/// A second SIGTERM (a second Ctrl-C) during the graceful shutdown stops
/// herald at once instead of waiting out `shutdown_grace` for a stage.
#[tokio::test]
async fn a_second_signal_stops_at_once() {
    let (_receiver, ws) = slow_target(
        Duration::from_secs(20),
        "[server]\nshutdown_grace = \"60s\"\n[queue]\nworkers = 1\n",
    )
    .await;
    let mut d = ws.start();
    queued_run(&d, "slow").await;
    // The notify stage is waiting on the receiver.
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "one SIGTERM waits for the stage: {}",
        d.log()
    );
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(10)), Some(1), "{}", d.log());
    assert!(
        d.log().contains("second signal: stopping now"),
        "{}",
        d.log()
    );
}

/// The crash test: SIGKILL with a few hundred async jobs in flight; after a
/// restart every job answered 202 reaches a terminal state and its
/// notification arrives — at least once, twice only when in flight at the kill.
#[tokio::test]
async fn sigkill_loses_nothing_that_was_accepted() {
    let (receiver, ws) = slow_target(Duration::from_millis(5), "[queue]\nworkers = 2\n").await;
    let mut d = ws.start();
    let client = reqwest::Client::new();
    let url = d.url("/orchestration/definitions/slow/execute/?mode=async");
    let mut accepted = Vec::new();
    for chunk in 0..30 {
        let sends: Vec<_> = (0..10)
            .map(|i| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    client
                        .post(&url)
                        .json(&json!({"payload": {"n": chunk * 10 + i}}))
                        .send()
                        .await
                })
            })
            .collect();
        for s in sends {
            let resp = s.await.unwrap().unwrap();
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
            let body: Value = resp.json().await.unwrap();
            accepted.push(body["run_id"].as_str().unwrap().to_string());
        }
    }
    // Kill while the workers are still draining the queue.
    let delivered_before = receiver.received().len();
    assert!(
        delivered_before < accepted.len(),
        "the kill must land mid-way ({delivered_before} already delivered)"
    );
    d.kill9();

    let d = ws.start();
    for id in &accepted {
        let run = finished(&d, id).await;
        assert_eq!(run["status"], "NOTIFIED", "{run:#}");
    }
    let received = receiver.received();
    let mut per_key: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for r in &received {
        *per_key
            .entry(r.header("idempotency-key").unwrap().to_string())
            .or_default() += 1;
    }
    let expected: std::collections::HashSet<String> =
        accepted.iter().map(|id| format!("{id}:n")).collect();
    let got: std::collections::HashSet<String> = per_key.keys().cloned().collect();
    assert_eq!(
        got, expected,
        "one distinct key per accepted job, every job delivered"
    );
    let repeats = per_key.values().filter(|n| **n > 1).count();
    assert!(
        repeats <= 2,
        "only sends in flight at the kill (≤ workers) may repeat; {repeats} did"
    );
    assert!(per_key.values().all(|n| *n <= 2));
}

/// A disk that fails a write (here a file size limit put on the running
/// daemon, which makes sled's next write past the end of its file fail as
/// on a full disk): a request that meets it is answered 503 with
/// `Retry-After`, never 500, and herald stops with exit code 1 and the
/// reason. Started again on the same data,
/// every webhook it answered 202 is there and runs.
#[tokio::test]
async fn a_disk_that_fails_a_write_stops_herald_and_loses_nothing_accepted() {
    let ws = Workspace::new("");
    let mut d = ws.start();
    let fixture =
        std::fs::read_to_string(support::fixture("alertmanager-0.25-webhook-firing.json")).unwrap();
    let client = reqwest::Client::new();
    let url = d.url("/alerts/webhook/alertmanager/");
    let send = |i: usize| {
        let body = fixture
            .replace("4e70aa3763bd0be1", &format!("disk-{i}"))
            .replace("db-server-01", &format!("host-{i}"));
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let mut accepted: Vec<String> = Vec::new();
    let mut take = |body: &Value| {
        for id in body["run_ids"].as_array().unwrap() {
            accepted.push(id.as_str().unwrap().to_string());
        }
    };
    for i in 0..20 {
        let resp = send(i).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        take(&resp.json().await.unwrap());
    }

    let db_file = ws.data_dir().join("db").join("db");
    let size = std::fs::metadata(&db_file).unwrap().len();
    let limit = libc::rlimit {
        rlim_cur: size,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit on our own child, with a valid rlimit and no old-value pointer.
    let rc = unsafe {
        libc::prlimit(
            d.child.id() as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());

    // Who meets the failure first is a race: a request's flush (answered
    // 503), or a worker's or the store probe's, after which herald stops
    // listening before the next request. Either way it is noticed.
    let mut noticed = false;
    for i in 20..5_000 {
        let Ok(resp) = send(i).await else {
            noticed = true; // it has stopped listening
            break;
        };
        let status = resp.status();
        let retry_after = resp.headers().get("retry-after").is_some();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            StatusCode::ACCEPTED => take(&body),
            StatusCode::SERVICE_UNAVAILABLE => {
                noticed = true;
                let code = body["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    code == "store_unavailable" || code == "not_durable",
                    "{body:#}"
                );
                assert!(retry_after, "a 503 says when to retry");
            }
            other => panic!("{other}: {body:#}\n{}", d.log()),
        }
        if d.child.try_wait().unwrap().is_some() {
            noticed = true;
            break;
        }
    }
    assert!(noticed, "the failing disk was noticed: {}", d.log());
    assert_eq!(d.wait(Duration::from_secs(60)), Some(1), "{}", d.log());
    let log = d.log();
    assert!(
        log.to_lowercase()
            .contains("stopped because the store cannot write to disk (file too large"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");

    let d = ws.start();
    for id in &accepted {
        let run = finished(&d, id).await;
        assert_eq!(run["status"], "NOTIFIED", "{run:#}");
    }
}

/// systemd starts a service with a soft limit of 1024 open files (the
/// hard one far higher), which the connections `server.max_connections`
/// allows would use up. herald raises its soft limit to the hard one, so
/// clients past the soft limit are served (sysinfo, on its first sample,
/// would raise it too), says when even the hard limit is too low for
/// `max_connections`, and gives a plugin the limit it started with.
#[tokio::test]
async fn the_open_files_limit_is_raised_for_clients_and_restored_for_plugins() {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    const SOFT: u64 = 64;
    const HARD: u64 = 512; // below max_connections (1024) + what herald needs besides
    let ws = Workspace::new("[host]\nplugin_dirs = [\"/bin\", \"/usr/bin\"]\n");
    ws.definition(
        "nofile",
        &json!({"version": "1", "nodes": [{"id": "k", "type": "check", "config": {"checks": [
            {"name": "plugin", "command": ["/bin/sh", "-c", "echo \"OK - nofile $(ulimit -Sn)\""]}]}}]}),
    );
    let mut cmd = ws.command(&["serve"]);
    // SAFETY: getrlimit and setrlimit are plain system calls, the only
    // thing done between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = SOFT;
            limit.rlim_max = limit.rlim_max.min(HARD);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            Ok(())
        });
    }
    let d = ws.start_command(cmd);
    let addr = d.url("").trim_start_matches("http://").to_string();
    let addr = addr.trim_end_matches('/').to_string();

    let clients = tokio::task::spawn_blocking(move || {
        let mut conns = Vec::new();
        for _ in 0..3 * SOFT {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
                .unwrap();
            conns.push(s);
        }
        // All held open at once, each answered.
        let mut answered = 0;
        for s in &mut conns {
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200") {
                answered += 1;
            }
        }
        answered
    })
    .await
    .unwrap();
    assert_eq!(
        clients,
        3 * SOFT as usize,
        "connections answered while {} were open",
        3 * SOFT
    );

    let r = post(
        &d,
        "/orchestration/definitions/nofile/execute/",
        json!({"payload": {}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:#}", r.body);
    assert!(
        r.body.to_string().contains(&format!("nofile {SOFT}")),
        "the plugin runs with the limit herald started with: {:#}",
        r.body
    );
    assert!(
        d.log()
            .contains("the open-files limit is below server.max_connections"),
        "{}",
        d.log()
    );
}

/// A notify channel whose URL is to come from the environment, and does
/// not, is said at start — not found out at the first alert it fails.
/// The value, a secret, is never echoed.
#[tokio::test]
async fn a_notify_channel_the_environment_leaves_without_a_url_is_reported_at_start() {
    let ws = Workspace::new(
        "[notify.webhook.unset]\nurl_env = \"HERALD_TEST_NEVER_SET\"\n\
         [notify.webhook.garbled]\nurl_env = \"HERALD_TEST_GARBLED_URL\"\n\
         [notify.webhook.spaced]\nurl_env = \"HERALD_TEST_SPACED_URL\"\n\
         [notify.webhook.fine]\nurl_env = \"HERALD_TEST_FINE_URL\"\n",
    );
    let d = ws.start_with(
        &[],
        &[
            ("HERALD_TEST_GARBLED_URL", "hooks.example.com/s3cret-token"),
            (
                "HERALD_TEST_SPACED_URL",
                "https://hooks.exa mple.com/s3cret-token",
            ),
            ("HERALD_TEST_FINE_URL", "http://127.0.0.1:9/"),
        ],
    );
    let log = d.log();
    assert!(
        log.contains(
            "notify.webhook.unset: environment variable HERALD_TEST_NEVER_SET (url_env) is not set"
        ),
        "{log}"
    );
    assert!(
        log.contains("notify.webhook.garbled: environment variable HERALD_TEST_GARBLED_URL (url_env) does not hold an http:// or https:// URL"),
        "{log}"
    );
    assert!(
        log.contains("notify.webhook.spaced: environment variable HERALD_TEST_SPACED_URL (url_env) does not hold a valid URL"),
        "{log}"
    );
    assert!(!log.contains("notify.webhook.fine"), "{log}");
    assert!(!log.contains("s3cret-token"), "the value was echoed: {log}");
}

/// A config holding secrets that every user of the host can read is said
/// at start (the packaged one is root:herald 0640); not once it is not.
#[tokio::test]
async fn a_config_with_secrets_readable_by_everyone_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new("auth_tokens = [\"t0ken-for-the-test\"]\n");
    let config = ws.dir.path().join("config.toml");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = ws.start();
    let warning = format!(
        "{} holds secrets and every user can read it (mode 0644)",
        config.display()
    );
    assert!(d.log().contains(&warning), "{}", d.log());
    assert!(!d.log().contains("t0ken-for-the-test"), "{}", d.log());
    d.signal("TERM");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let d = ws.start();
    assert!(!d.log().contains("holds secrets"), "{}", d.log());
}

/// Under the packaged unit's Type=notify and WatchdogSec=, herald tells
/// systemd it is ready once it listens, pings the watchdog while its
/// intake gets on, and says when it is stopping.
#[tokio::test]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let ws = Workspace::new("");
    let socket_path = ws.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = ws.start_with(
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let recv = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    let next = || recv().expect("a message from herald");
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=listening on 127.0.0.1:"),
        "{ready}"
    );
    // The address herald announces is the one it listens on by then.
    assert!(
        ready.ends_with(
            d.url("")
                .trim_start_matches("http://")
                .trim_end_matches('/')
        ),
        "{ready}"
    );
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1");
    }
    d.signal("TERM");
    let mut rest = Vec::new();
    while let Some(message) = recv() {
        let stopping = message == "STOPPING=1";
        rest.push(message);
        if stopping {
            break;
        }
    }
    assert_eq!(
        rest.last().map(String::as_str),
        Some("STOPPING=1"),
        "{rest:?}"
    );
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));
}
