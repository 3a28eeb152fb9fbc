//! Alerts arriving: a payload read by its driver, each alert applied to the
//! incidents, and the definitions whose trigger claims an alert that
//! changed. The webhook endpoint, the pipeline endpoints and
//! `herald ingest --dry-run` all come through here, so an alert means the
//! same thing whichever door it used.
//!
//! Only a material change (opened, joined, escalated, resolved, closed,
//! re-opened) starts a definition: an unchanged re-send changes nothing and
//! notifies nobody. What changed travels with each run as its `intake`, which
//! the ingest node puts in its output for later nodes.

use crate::alerts::incident::{self, Applied, Book, Change};
use crate::alerts::{self, PayloadError};
use crate::definition::Definition;
use crate::store::{Store, StoreError, change_counts};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Per-alert changes kept in a run's `intake` (the counts cover them all).
pub const MAX_CHANGES_RECORDED: usize = 100;
/// Incident ids kept in a run's `intake`.
pub const MAX_INCIDENTS_RECORDED: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a payload did.
#[derive(Debug)]
pub struct Received {
    pub delivery_id: String,
    pub driver: String,
    pub alert_count: usize,
    pub counts: HashMap<Change, usize>,
    /// The first [`MAX_CHANGES_RECORDED`] alerts' changes.
    pub changes: Vec<Applied>,
    /// Incidents with a material change, in the order first touched.
    pub incident_ids: Vec<String>,
    /// For each definition handed in, whether its trigger claimed a changed alert.
    pub matched: Vec<bool>,
    /// Whether any alert state was written under this delivery (else it
    /// needs no delivery record).
    pub wrote: bool,
    /// Alerts the sender left out of the body (`truncatedAlerts`).
    pub truncated: u64,
}

impl Received {
    /// Whether anything happened worth running a pipeline for.
    pub fn material(&self) -> bool {
        self.counts
            .iter()
            .any(|(change, n)| change.is_material() && *n > 0)
    }

    /// The incident a run is about: the first that changed.
    pub fn primary_incident(&self) -> Option<&str> {
        self.incident_ids.first().map(String::as_str)
    }

    /// The `intake` a run carries and the ingest node reports.
    pub fn summary(&self) -> Value {
        json!({
            "delivery_id": self.delivery_id,
            "driver": self.driver,
            "alert_count": self.alert_count,
            "material": self.material(),
            "changes": change_counts(&self.counts),
            "incident_ids": self.incident_ids,
            "alert_changes": self.changes,
            "alert_changes_truncated": self.alert_count > self.changes.len(),
            "truncated_alerts": self.truncated,
        })
    }
}

/// Reads `text` (as `driver`, or detected) and applies each alert to the
/// incidents in `book`, one at a time; `triggers` are checked against the
/// alerts that changed.
pub fn receive<B: Book<Error = StoreError>>(
    book: &mut B,
    text: &str,
    driver: Option<&str>,
    triggers: &[Arc<Definition>],
    delivery_id: &str,
    reopen_window: Duration,
) -> Result<Received, IntakeError> {
    let window = chrono::Duration::from_std(reopen_window).unwrap_or(chrono::Duration::MAX);
    let now = chrono::Utc::now();
    let mut counts: HashMap<Change, usize> = HashMap::new();
    let mut changes = Vec::new();
    let mut incident_ids = Vec::new();
    let mut seen = BTreeSet::new();
    let mut matched = vec![false; triggers.len()];
    let mut wrote = false;
    let mut failure = None;
    let scanned = alerts::scan(text, driver, |alert| {
        if failure.is_some() {
            return;
        }
        let claims = claims(triggers, &alert, &matched);
        match incident::apply(book, alert, delivery_id, now, window) {
            Ok(applied) => {
                *counts.entry(applied.change).or_default() += 1;
                wrote |= applied.wrote;
                if applied.change.is_material() {
                    for (m, claim) in matched.iter_mut().zip(claims) {
                        *m |= claim;
                    }
                    if let Some(id) = &applied.incident_id
                        && incident_ids.len() < MAX_INCIDENTS_RECORDED
                        && seen.insert(id.clone())
                    {
                        incident_ids.push(id.clone());
                    }
                }
                if changes.len() < MAX_CHANGES_RECORDED {
                    changes.push(applied);
                }
            }
            Err(e) => failure = Some(e),
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok(Received {
        delivery_id: delivery_id.to_string(),
        driver: scanned.driver,
        alert_count: scanned.count,
        counts,
        changes,
        incident_ids,
        matched,
        wrote,
        truncated: scanned.truncated,
    })
}

/// For each definition, whether its trigger claims `alert` (skipping those
/// already claimed: `done`).
fn claims(triggers: &[Arc<Definition>], alert: &alerts::Alert, done: &[bool]) -> Vec<bool> {
    triggers
        .iter()
        .zip(done)
        .map(|(d, done)| {
            !done
                && d.trigger
                    .as_ref()
                    .is_some_and(|t| t.matches(&alert.source, alert))
        })
        .collect()
}

/// A new delivery id (a ULID: its age is in it).
pub fn new_delivery_id() -> String {
    crate::ids::next().to_string()
}

/// Alerts listed in a dry run's answer.
pub const MAX_DRY_RUN_ALERTS: usize = 1000;

/// What `text` would do — driver, each alert with its fingerprint, the
/// change and the incident it would join, and the definitions it would
/// start — changing nothing. `herald ingest --dry-run` and
/// `POST /alerts/webhook/?dry_run=true`.
pub fn dry_run(
    store: &Store,
    text: &str,
    driver: Option<&str>,
    triggers: &[Arc<Definition>],
    builtin: Option<&str>,
    reopen_window: Duration,
) -> Result<Value, IntakeError> {
    let window = chrono::Duration::from_std(reopen_window).unwrap_or(chrono::Duration::MAX);
    let now = chrono::Utc::now();
    let mut book = store.dry_book();
    let mut listed = Vec::new();
    let mut counts: HashMap<Change, usize> = HashMap::new();
    let mut would_start = vec![false; triggers.len()];
    let mut failure = None;
    let (driver, alert_count) = alerts::scan_text(text, driver, |alert| {
        if failure.is_some() {
            return;
        }
        let claims = claims(triggers, &alert, &would_start);
        let shown = json!({
            "name": alert.name, "fingerprint": alert.fingerprint, "status": alert.status,
            "severity": alert.severity, "severity_raw": alert.severity_raw,
            "status_raw": alert.status_raw, "instance": alert.instance(),
            "labels": alert.labels, "description": alert.description,
        });
        match incident::apply(&mut book, alert, crate::store::DRY_DELIVERY, now, window) {
            Ok(applied) => {
                *counts.entry(applied.change).or_default() += 1;
                if applied.change.is_material() {
                    for (w, c) in would_start.iter_mut().zip(claims) {
                        *w |= c;
                    }
                }
                if listed.len() < MAX_DRY_RUN_ALERTS {
                    let mut shown = shown;
                    shown["key"] = json!(applied.key);
                    shown["change"] = json!(applied.change);
                    shown["incident_id"] = json!(applied.incident_id);
                    listed.push(shown);
                }
            }
            Err(e) => failure = Some(e),
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let material = counts.iter().any(|(c, n)| c.is_material() && *n > 0);
    let mut definitions: Vec<&str> = triggers
        .iter()
        .zip(&would_start)
        .filter(|(_, w)| **w)
        .map(|(d, _)| d.name.as_str())
        .collect();
    if definitions.is_empty()
        && material
        && let Some(b) = builtin
    {
        definitions.push(b);
    }
    Ok(json!({
        "dry_run": true,
        "driver": driver,
        "alert_count": alert_count,
        "changes": change_counts(&counts),
        "material": material,
        "would_start": definitions,
        "alerts": listed,
        "alerts_truncated": alert_count > listed.len(),
    }))
}

/// One incident with its alerts (their current state and history) and the
/// runs started for it: `GET /alerts/incidents/<id>/` and
/// `herald incidents show`.
pub fn incident_detail(store: &Store, id: &str) -> Result<Option<Value>, StoreError> {
    let Some(incident) = store.get_incident(id)? else {
        return Ok(None);
    };
    let mut alerts = Vec::new();
    for key in &incident.alerts {
        if let Some(state) = store.get_alert_state(key)? {
            let history = store.alert_history(&state)?;
            let mut shown = json!(state);
            shown["history"] = json!(history);
            forget_chunks(&mut shown);
            alerts.push(shown);
        }
    }
    let mut runs = Vec::new();
    let run_ids = store.incident_runs(id, incident::INCIDENT_RUNS)?;
    for run_id in &run_ids {
        if let Some(run) = store.get_run(run_id)? {
            runs.push(json!({"run_id": run.run_id, "definition": run.definition,
                             "status": run.status, "created_at": run.created_at}));
        }
    }
    let history = store.incident_history(&incident)?;
    let mut out = json!(incident);
    out["history"] = json!(history);
    forget_chunks(&mut out);
    out["alerts"] = json!(alerts);
    out["runs"] = json!(runs);
    Ok(Some(out))
}

/// Where the store keeps older history is its own business.
fn forget_chunks(shown: &mut Value) {
    if let Some(fields) = shown.as_object_mut() {
        fields.remove("history_chunks");
    }
}
