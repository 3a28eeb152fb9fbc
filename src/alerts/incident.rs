//! What an alert does to incidents — the rules, apart from where incidents
//! are kept (the store implements [`Book`]).
//!
//! Alerts are one per `(source, fingerprint)`; an unchanged re-send (same
//! status, same severity) changes nothing. Incidents group alerts by
//! `(name, instance)`: firing opens the group's incident or joins the open
//! one, raising its severity to the worst alert's; a resolved alert leaves
//! it, and the last one out closes it; a re-fire within `reopen_window` of
//! the close re-opens it, later opens a new one.
//!
//! Each change is tagged with the delivery (the webhook call) that made it.
//! A change whose delivery never finished — the process died, or the queue
//! refused the runs — is reported again by the next identical alert instead
//! of being taken for an unchanged re-send, so a retried webhook still
//! notifies.

use super::{Alert, AlertStatus, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Transitions kept per alert, newest last.
pub const ALERT_HISTORY: usize = 50;
/// Events kept per incident, newest last.
pub const INCIDENT_HISTORY: usize = 200;
/// Runs listed with an incident, newest first.
pub const INCIDENT_RUNS: usize = 100;

/// What one alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// A new incident, opened by this alert.
    Opened,
    /// The alert joined an open incident without raising its severity.
    Joined,
    /// The alert raised its incident's severity.
    Escalated,
    /// A firing alert changed severity without raising the incident's.
    Updated,
    /// The alert resolved; its incident stays open for other alerts.
    Resolved,
    /// The alert resolved and its incident with it.
    Closed,
    /// The alert re-fired and re-opened its recently closed incident.
    Reopened,
    /// Nothing changed (a re-send, or a resolve for an alert never seen firing).
    Unchanged,
}

impl Change {
    pub const ALL: [Change; 8] = [
        Change::Opened,
        Change::Joined,
        Change::Escalated,
        Change::Updated,
        Change::Resolved,
        Change::Closed,
        Change::Reopened,
        Change::Unchanged,
    ];

    /// Whether it is worth starting a pipeline (and a notification) for.
    pub fn is_material(self) -> bool {
        !matches!(self, Change::Unchanged | Change::Updated)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Opened => "opened",
            Change::Joined => "joined",
            Change::Escalated => "escalated",
            Change::Updated => "updated",
            Change::Resolved => "resolved",
            Change::Closed => "closed",
            Change::Reopened => "reopened",
            Change::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Resolved,
}

impl IncidentStatus {
    pub fn parse(text: &str) -> Option<IncidentStatus> {
        match text.trim().to_ascii_lowercase().as_str() {
            "open" | "firing" => Some(IncidentStatus::Open),
            "resolved" | "closed" => Some(IncidentStatus::Resolved),
            _ => None,
        }
    }
}

/// An alert as herald last saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertState {
    /// `source/fingerprint`.
    pub key: String,
    pub alert: Alert,
    /// The incident it belongs to; none for a resolve of an alert never seen firing.
    pub incident_id: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_change_at: DateTime<Utc>,
    pub last_change: Change,
    /// The delivery that made the last change.
    pub delivery: String,
    /// Its transitions, newest last: in a stored record only the latest
    /// few; the store keeps the older ones apart (see `history_chunks`).
    pub history: Vec<Transition>,
    /// How many chunks of older history the store has moved out of the
    /// record ([`crate::store`] module `history`), so that a change does not
    /// rewrite the whole history. Zero for a state never stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_chunks: u32,
}

/// One change of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub status: AlertStatus,
    pub severity: Severity,
    pub change: Change,
}

/// Alerts grouped by `(name, instance)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    /// `inc-` and a ULID: listing by id is listing by age.
    pub id: String,
    pub name: String,
    pub instance: Option<String>,
    pub title: String,
    pub status: IncidentStatus,
    /// The worst severity of its alerts while open.
    pub severity: Severity,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// Keys of its alerts that are firing now.
    pub firing: BTreeSet<String>,
    /// Keys of every alert that joined it.
    pub alerts: BTreeSet<String>,
    /// Its events, newest last: in a stored record only the latest few;
    /// the store keeps the older ones apart (see `history_chunks`). Empty
    /// in a listing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<IncidentEvent>,
    /// How many chunks of older history the store has moved out of the
    /// record (see [`AlertState::history_chunks`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history_chunks: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub at: DateTime<Utc>,
    pub change: Change,
    /// The alert's key.
    pub alert: String,
    pub severity: Severity,
}

impl Incident {
    fn new(id: String, alert: &Alert, now: DateTime<Utc>) -> Incident {
        let instance = alert.instance().map(str::to_string);
        Incident {
            title: match &instance {
                Some(i) => format!("{} on {i}", alert.name),
                None => alert.name.clone(),
            },
            id,
            name: alert.name.clone(),
            instance,
            status: IncidentStatus::Open,
            severity: alert.severity,
            opened_at: now,
            updated_at: now,
            resolved_at: None,
            firing: BTreeSet::new(),
            alerts: BTreeSet::new(),
            history: Vec::new(),
            history_chunks: 0,
        }
    }

    fn record(&mut self, now: DateTime<Utc>, change: Change, key: &str, severity: Severity) {
        self.updated_at = now;
        push_capped(
            &mut self.history,
            IncidentEvent {
                at: now,
                change,
                alert: key.to_string(),
                severity,
            },
            INCIDENT_HISTORY,
        );
    }
}

fn push_capped<T>(list: &mut Vec<T>, item: T, cap: usize) {
    list.push(item);
    if list.len() > cap {
        let excess = list.len() - cap;
        list.drain(..excess);
    }
}

/// The key an alert is deduplicated by.
pub fn alert_key(alert: &Alert) -> String {
    format!("{}/{}", alert.source, alert.fingerprint)
}

/// Where incidents and alert states live; the store implements it, tests
/// use a map.
pub trait Book {
    type Error;
    fn alert(&mut self, key: &str) -> Result<Option<AlertState>, Self::Error>;
    /// The latest incident of the `(name, instance)` group.
    fn group(
        &mut self,
        name: &str,
        instance: Option<&str>,
    ) -> Result<Option<Incident>, Self::Error>;
    fn incident(&mut self, id: &str) -> Result<Option<Incident>, Self::Error>;
    /// Whether the delivery finished (its runs are durable).
    fn delivered(&mut self, delivery: &str) -> Result<bool, Self::Error>;
    fn save_alert(&mut self, state: &AlertState) -> Result<(), Self::Error>;
    /// Saves the incident and makes it its group's latest.
    fn save_incident(&mut self, incident: &Incident) -> Result<(), Self::Error>;
    fn new_incident_id(&mut self) -> String;
}

/// What one alert did, and to which incident.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub key: String,
    pub name: String,
    pub status: AlertStatus,
    pub severity: Severity,
    pub incident_id: Option<String>,
    pub change: Change,
    /// Whether anything was written (a re-send of a delivered state writes
    /// nothing, and needs no delivery record).
    #[serde(skip)]
    pub wrote: bool,
}

/// Applies one alert arriving with `delivery` at `now`.
pub fn apply<B: Book>(
    book: &mut B,
    alert: Alert,
    delivery: &str,
    now: DateTime<Utc>,
    reopen_window: chrono::Duration,
) -> Result<Applied, B::Error> {
    let key = alert_key(&alert);
    let prev = book.alert(&key)?;
    let applied = |alert: &Alert, incident_id: Option<String>, change| Applied {
        key: key.clone(),
        name: alert.name.clone(),
        status: alert.status,
        severity: alert.severity,
        incident_id,
        change,
        wrote: true,
    };
    // Same status and severity: a re-send, unless the delivery that made
    // the change never finished.
    if let Some(mut p) = prev.clone()
        && p.alert.status == alert.status
        && p.alert.severity == alert.severity
    {
        if book.delivered(&p.delivery)? {
            return Ok(Applied {
                wrote: false,
                ..applied(&alert, p.incident_id, Change::Unchanged)
            });
        }
        p.delivery = delivery.to_string();
        p.alert = alert;
        book.save_alert(&p)?;
        return Ok(applied(&p.alert, p.incident_id.clone(), p.last_change));
    }
    let (incident, change) = match (alert.status, &prev) {
        (AlertStatus::Resolved, None) => (None, Change::Unchanged),
        (AlertStatus::Resolved, Some(p)) if p.alert.status == AlertStatus::Resolved => {
            (None, Change::Unchanged)
        }
        (AlertStatus::Resolved, Some(p)) => match lookup(book, p.incident_id.as_deref())? {
            None => (None, Change::Unchanged),
            Some(mut inc) => {
                inc.firing.remove(&key);
                let change = if inc.firing.is_empty() && inc.status == IncidentStatus::Open {
                    inc.status = IncidentStatus::Resolved;
                    inc.resolved_at = Some(now);
                    Change::Closed
                } else {
                    Change::Resolved
                };
                (Some(inc), change)
            }
        },
        (AlertStatus::Firing, Some(p)) if p.alert.status == AlertStatus::Firing => {
            // Still firing, at another severity: its open incident takes the
            // change, or (incident gone or closed) it is treated as new.
            match lookup(book, p.incident_id.as_deref())?
                .filter(|i| i.status == IncidentStatus::Open)
            {
                Some(mut inc) => {
                    let change = if alert.severity > inc.severity {
                        inc.severity = alert.severity;
                        Change::Escalated
                    } else {
                        Change::Updated
                    };
                    (Some(inc), change)
                }
                None => fire(book, &alert, &key, now, reopen_window)?,
            }
        }
        (AlertStatus::Firing, _) => fire(book, &alert, &key, now, reopen_window)?,
    };
    let incident_id = match incident {
        Some(mut inc) => {
            inc.record(now, change, &key, alert.severity);
            book.save_incident(&inc)?;
            Some(inc.id)
        }
        None => prev.as_ref().and_then(|p| p.incident_id.clone()),
    };
    let mut history = prev.as_ref().map(|p| p.history.clone()).unwrap_or_default();
    push_capped(
        &mut history,
        Transition {
            at: now,
            status: alert.status,
            severity: alert.severity,
            change,
        },
        ALERT_HISTORY,
    );
    let state = AlertState {
        key: key.clone(),
        incident_id: incident_id.clone(),
        first_seen: prev.as_ref().map(|p| p.first_seen).unwrap_or(now),
        last_change_at: now,
        last_change: change,
        delivery: delivery.to_string(),
        history,
        history_chunks: prev.as_ref().map_or(0, |p| p.history_chunks),
        alert,
    };
    book.save_alert(&state)?;
    Ok(applied(&state.alert, incident_id, change))
}

/// A firing alert that is new, or fires again: opens, joins, escalates or
/// re-opens its group's incident.
fn fire<B: Book>(
    book: &mut B,
    alert: &Alert,
    key: &str,
    now: DateTime<Utc>,
    reopen_window: chrono::Duration,
) -> Result<(Option<Incident>, Change), B::Error> {
    let group = book.group(&alert.name, alert.instance())?;
    let (mut inc, change) = match group {
        Some(mut inc) if inc.status == IncidentStatus::Open => {
            if alert.severity > inc.severity {
                inc.severity = alert.severity;
                (inc, Change::Escalated)
            } else {
                (inc, Change::Joined)
            }
        }
        Some(mut inc)
            if inc
                .resolved_at
                .is_some_and(|closed| now - closed <= reopen_window) =>
        {
            inc.status = IncidentStatus::Open;
            inc.resolved_at = None;
            inc.severity = alert.severity;
            (inc, Change::Reopened)
        }
        _ => (
            Incident::new(book.new_incident_id(), alert, now),
            Change::Opened,
        ),
    };
    inc.firing.insert(key.to_string());
    inc.alerts.insert(key.to_string());
    Ok((Some(inc), change))
}

fn lookup<B: Book>(book: &mut B, id: Option<&str>) -> Result<Option<Incident>, B::Error> {
    match id {
        Some(id) => book.incident(id),
        None => Ok(None),
    }
}
