//! herald's Prometheus metrics, in one registry, served as text at
//! `GET /metrics`. Recording sites call the small methods here so that metric
//! names and labels are written in one place.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn duration_histogram() -> Histogram {
    // 1 ms … ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    run_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    stages: Family<Labels, Counter>,
    stage_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    queue_depth: Gauge,
    queue_capacity: Gauge,
    webhooks: Family<Labels, Counter>,
    alerts_left_out: Family<Labels, Counter>,
    alert_changes: Family<Labels, Counter>,
    http: Family<Labels, Counter>,
    definitions_loaded: Gauge,
    definitions_invalid: Gauge,
    schedule_skipped: Family<Labels, Counter>,
    schedules_held: Gauge,
    schedule_lateness: Histogram,
    store_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let runs = Family::<Labels, Counter>::default();
        registry.register(
            "runs",
            "Finished runs by definition and status",
            runs.clone(),
        );
        let run_seconds: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "run_duration_seconds",
            "Run durations by definition",
            run_seconds.clone(),
        );
        let stages = Family::<Labels, Counter>::default();
        registry.register(
            "stages",
            "Stage attempts by definition, node and status",
            stages.clone(),
        );
        let stage_seconds: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "stage_duration_seconds",
            "Stage attempt durations by definition and node",
            stage_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Jobs accepted and not yet finished",
            queue_depth.clone(),
        );
        let queue_capacity = Gauge::default();
        registry.register(
            "queue_capacity",
            "Most jobs the queue accepts",
            queue_capacity.clone(),
        );
        let webhooks = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook requests by driver and outcome",
            webhooks.clone(),
        );
        let alerts_left_out = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_alerts_left_out",
            "Alerts a sender left out of its webhook bodies (truncatedAlerts: Alertmanager's max_alerts), by driver; herald never saw them",
            alerts_left_out.clone(),
        );
        let alert_changes = Family::<Labels, Counter>::default();
        registry.register(
            "alert_changes",
            "Alerts received, by what they did to incidents (opened, joined, escalated, updated, resolved, closed, reopened, unchanged)",
            alert_changes.clone(),
        );
        let http = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status code",
            http.clone(),
        );
        let definitions_loaded = Gauge::default();
        registry.register(
            "definitions_loaded",
            "Definitions loaded and valid",
            definitions_loaded.clone(),
        );
        let definitions_invalid = Gauge::default();
        registry.register(
            "definitions_invalid",
            "Definition files that did not load",
            definitions_invalid.clone(),
        );
        let schedule_skipped = Family::<Labels, Counter>::default();
        registry.register(
            "schedule_ticks_skipped",
            "Scheduled ticks skipped: the previous run was still going, or the schedule is held",
            schedule_skipped.clone(),
        );
        let schedules_held = Gauge::default();
        registry.register(
            "schedules_held",
            "Schedules held because their last run was abandoned (herald died during it at every start)",
            schedules_held.clone(),
        );
        let schedule_lateness = Histogram::new(exponential_buckets(0.001, 2.0, 12));
        registry.register(
            "schedule_lateness_seconds",
            "How late scheduled runs start after their tick",
            schedule_lateness.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_database_bytes",
            "Size of the sled database file; far above the live data, it is due a compaction (herald store compact)",
            store_bytes.clone(),
        );
        Metrics {
            registry,
            store_bytes,
            schedule_lateness,
            runs,
            run_seconds,
            stages,
            stage_seconds,
            queue_depth,
            queue_capacity,
            webhooks,
            alerts_left_out,
            alert_changes,
            http,
            definitions_loaded,
            definitions_invalid,
            schedule_skipped,
            schedules_held,
        }
    }

    pub fn run_finished(&self, definition: &str, status: &str, seconds: f64) {
        self.runs
            .get_or_create(&vec![
                ("definition", definition.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.run_seconds
            .get_or_create(&vec![("definition", definition.to_string())])
            .observe(seconds);
    }

    /// A run recorded FAILED without running (the queue gave up on it, or
    /// its definition was gone): counted with the failed runs, no duration.
    pub fn run_failed_unrun(&self, definition: &str) {
        self.runs
            .get_or_create(&vec![
                ("definition", definition.to_string()),
                (
                    "status",
                    crate::store::RunStatus::Failed.as_str().to_string(),
                ),
            ])
            .inc();
    }

    pub fn stage_attempt(&self, definition: &str, node: &str, status: &str, seconds: f64) {
        self.stages
            .get_or_create(&vec![
                ("definition", definition.to_string()),
                ("node", node.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.stage_seconds
            .get_or_create(&vec![
                ("definition", definition.to_string()),
                ("node", node.to_string()),
            ])
            .observe(seconds);
    }

    pub fn set_queue(&self, depth: usize, capacity: usize) {
        self.queue_depth.set(depth as i64);
        self.queue_capacity.set(capacity as i64);
    }

    pub fn webhook(&self, driver: &str, outcome: &str) {
        self.webhooks
            .get_or_create(&vec![
                ("driver", driver.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// `n` alerts of a group the sender did not put in the body.
    pub fn alerts_left_out(&self, driver: &str, n: u64) {
        self.alerts_left_out
            .get_or_create(&vec![("driver", driver.to_string())])
            .inc_by(n);
    }

    pub fn incident_changes(
        &self,
        counts: &std::collections::HashMap<crate::alerts::incident::Change, usize>,
    ) {
        for (change, n) in counts {
            self.alert_changes
                .get_or_create(&vec![("change", change.as_str().to_string())])
                .inc_by(*n as u64);
        }
    }

    pub fn http_request(&self, route: &str, code: u16) {
        self.http
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }

    pub fn set_definitions(&self, loaded: usize, invalid: usize) {
        self.definitions_loaded.set(loaded as i64);
        self.definitions_invalid.set(invalid as i64);
    }

    pub fn schedule_tick_skipped(&self, definition: &str) {
        self.schedule_skipped
            .get_or_create(&vec![("definition", definition.to_string())])
            .inc();
    }

    pub fn set_schedules_held(&self, held: usize) {
        self.schedules_held.set(held.min(i64::MAX as usize) as i64);
    }

    pub fn schedule_lateness(&self, seconds: f64) {
        self.schedule_lateness.observe(seconds);
    }

    pub fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes.set(bytes.min(i64::MAX as u64) as i64);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
