//! Alert ingestion: detect + normalize per driver (MB/s of payload), a
//! 1,000-alert Alertmanager group (alerts/s), and applying that group to
//! incidents in sled — every alert new, and the same group re-sent.
//!
//!     cargo bench --bench alerts

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use herald::alerts;
use herald::intake;
use herald::store::{Store, StoreOptions};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Duration;

const FIXTURES: &[(&str, &str)] = &[
    ("alertmanager", "alertmanager-0.25-webhook-firing.json"),
    ("grafana", "vendors/grafana-unified-firing.json"),
    ("grafana-legacy", "vendors/grafana-legacy-alerting.json"),
    ("prometheus", "vendors/prometheus-alerts.json"),
    ("pagerduty", "seed-pagerduty-v3.json"),
    ("datadog", "vendors/datadog-triggered.json"),
    ("newrelic", "vendors/newrelic-classic-open.json"),
    ("opsgenie", "vendors/opsgenie-create.json"),
    ("zabbix", "vendors/zabbix-problem.json"),
    ("herald", "vendors/herald-forward.json"),
    ("generic", "seed-grafana-alert.json"),
];

fn read(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The real Alertmanager body with its one alert repeated `n` times, each on
/// its own instance with its own fingerprint (`tag` keeps groups apart).
pub fn group(n: usize, tag: &str) -> String {
    let mut body: Value =
        serde_json::from_str(&read("alertmanager-0.25-webhook-firing.json")).unwrap();
    let one = body["alerts"][0].clone();
    let alerts: Vec<Value> = (0..n)
        .map(|i| {
            let mut a = one.clone();
            a["labels"]["instance"] = json!(format!("{tag}-host-{i}"));
            a["fingerprint"] = json!(format!("{tag}{i:012x}"));
            a
        })
        .collect();
    body["alerts"] = Value::Array(alerts);
    body.to_string()
}

fn detect_normalize(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect_normalize");
    for (driver, file) in FIXTURES {
        let text = read(file);
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(*driver, |b| {
            b.iter(|| {
                alerts::scan_text(black_box(&text), None, |a| {
                    black_box(a);
                })
                .unwrap()
            })
        });
    }
    let big = group(1000, "g");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("alertmanager-1000-bytes", |b| {
        b.iter(|| alerts::scan_text(black_box(&big), None, |a| drop(black_box(a))).unwrap())
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("alertmanager-1000-alerts", |b| {
        b.iter(|| alerts::scan_text(black_box(&big), None, |a| drop(black_box(a))).unwrap())
    });
    g.finish();
}

fn into_incidents(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let window = Duration::from_secs(3600);
    let mut g = c.benchmark_group("into_incidents");
    g.throughput(Throughput::Elements(1000));
    let mut round = 0u64;
    g.bench_function("new-1000", |b| {
        b.iter_batched(
            || {
                round += 1;
                group(1000, &format!("r{round}-"))
            },
            |body| {
                intake::receive(
                    &mut store.book(),
                    &body,
                    None,
                    &[],
                    &intake::new_delivery_id(),
                    window,
                )
                .unwrap()
            },
            BatchSize::PerIteration,
        )
    });
    let resend = group(1000, "same-");
    let first = intake::receive(
        &mut store.book(),
        &resend,
        None,
        &[],
        "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        window,
    )
    .unwrap();
    assert_eq!(first.alert_count, 1000);
    g.bench_function("unchanged-1000", |b| {
        b.iter(|| {
            let r = intake::receive(
                &mut store.book(),
                &resend,
                None,
                &[],
                &intake::new_delivery_id(),
                window,
            )
            .unwrap();
            assert!(!r.material());
            r
        })
    });
    g.finish();
}

criterion_group!(benches, detect_normalize, into_incidents);
criterion_main!(benches);
