//! Real payloads, mangled: every fixture with values swapped for hostile
//! ones (nulls, huge numbers, long and odd strings, impossible dates, the
//! wrong type), fields dropped and lists repeated, posted to every webhook
//! path and to the pipeline endpoints of a real daemon. Whatever arrives,
//! herald must answer a 2xx or a JSON 4xx — never a 5xx, never a dropped
//! connection (a panic in a handler) — and stay ready.
//!
//! The mangling is seeded: a failure names the request's number, and the
//! same seed makes the same bodies again.

mod support;

use herald::alerts::DRIVERS;
use serde_json::{Map, Value, json};
use std::path::Path;
use support::daemon::Workspace;

const SEED: u64 = 20_261_130;
const REQUESTS: usize = 2000;

/// Values no sender should put where herald reads something else.
fn hostile() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(-0.5),
        json!(""),
        json!("x".repeat(5000)),
        json!("\u{0}"),
        json!("\u{1F600}\u{202E}"),
        json!("2026-13-45T99:99:99Z"),
        json!([]),
        json!({}),
        json!([null]),
        json!({"": null}),
    ]
}

/// `value` with, at random, leaves replaced by hostile values, object
/// fields dropped or added and lists shortened or repeated.
fn mangle(value: &Value, rng: &mut fastrand::Rng, hostile: &[Value]) -> Value {
    let pick = |rng: &mut fastrand::Rng| hostile[rng.usize(..hostile.len())].clone();
    if rng.f64() < 0.08 {
        return pick(rng);
    }
    match value {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, field) in fields {
                if rng.f64() >= 0.05 {
                    out.insert(key.clone(), mangle(field, rng, hostile));
                }
            }
            if rng.f64() < 0.05 {
                out.insert("extra".into(), pick(rng));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if rng.f64() >= 0.05 {
                    out.push(mangle(item, rng, hostile));
                }
            }
            if !out.is_empty() && rng.f64() < 0.05 {
                let times = rng.usize(2..20);
                out = out
                    .iter()
                    .cycle()
                    .take(out.len() * times)
                    .cloned()
                    .collect();
            }
            Value::Array(out)
        }
        leaf => leaf.clone(),
    }
}

/// Every JSON fixture herald has: the seed app's, Alertmanager's, and
/// each vendor's.
fn fixtures() -> Vec<(String, Value)> {
    let root = support::fixture("");
    let mut found = Vec::new();
    for dir in [root.clone(), root.join("vendors")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(doc) = read_json(&path)
            {
                found.push((path.display().to_string(), doc));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(found.len() >= 20, "fixtures: {}", found.len());
    found
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[tokio::test]
async fn mangled_payloads_get_a_2xx_or_a_json_4xx_never_a_5xx() {
    let ws = Workspace::new("");
    let d = ws.start();
    let client = reqwest::Client::new();
    let fixtures = fixtures();
    let hostile = hostile();
    let mut rng = fastrand::Rng::with_seed(SEED);
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..REQUESTS {
        let (name, doc) = &fixtures[rng.usize(..fixtures.len())];
        let mangled = mangle(doc, &mut rng, &hostile);
        let (path, body) = match rng.usize(..DRIVERS.len() + 3) {
            i if i < DRIVERS.len() => (format!("/alerts/webhook/{}/", DRIVERS[i]), mangled),
            i if i == DRIVERS.len() => ("/alerts/webhook/".to_string(), mangled),
            i if i == DRIVERS.len() + 1 => (
                "/orchestration/pipeline/sync/".to_string(),
                json!({"payload": mangled}),
            ),
            _ => (
                "/orchestration/pipeline/".to_string(),
                json!({"payload": mangled}),
            ),
        };
        let what = format!("request {n} (seed {SEED}): {name} mangled, to {path}");
        let response = client
            .post(d.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer ({e}):\n{}", d.log()));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{what}: {status}, not JSON: {text:.300}"));
        assert!(
            status.is_success()
                || (status.is_client_error() && answer["error"]["code"].is_string()),
            "{what}: {status} {answer:.500}"
        );
        *answered.entry(status.as_u16()).or_default() += 1;
    }
    // Some of each: the mangling neither refuses everything nor changes
    // nothing.
    let accepted = answered.get(&202).copied().unwrap_or(0);
    let refused = answered.get(&400).copied().unwrap_or(0);
    assert!(
        accepted > REQUESTS / 20 && refused > REQUESTS / 20,
        "{answered:?}"
    );
    let ready = client.get(d.url("/readyz")).send().await.unwrap();
    assert!(ready.status().is_success());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
