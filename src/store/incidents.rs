//! Incidents and alert states in sled, behind the rules of
//! [`crate::alerts::incident`].
//!
//! Trees:
//! - `alerts`: `source/fingerprint` → [`AlertState`].
//! - `incidents`: incident id (`inc-` + ULID, so key order is age) → [`Incident`].
//! - `incident_groups`: `name \0 instance` → the group's latest incident id.
//! - `incident_runs`: `incident id \0 run id` → (): the runs started for an
//!   incident; one small insert per run, never a rewrite of the incident.
//! - `deliveries`: delivery id (ULID) → [`Delivery`]: written after the runs
//!   a webhook started, so its presence says they are durable.
//! - `history`: the older part of incidents' and alerts' histories, in
//!   chunks (module `history`).

use super::history::{self, Owner};
use super::{Store, StoreError, decode, encode};
use crate::alerts::Severity;
use crate::alerts::incident::{
    AlertState, Book, Change, Incident, IncidentEvent, IncidentStatus, Transition,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A delivery that has not finished within this long never will: its
/// changes count as delivered (and a record pruned by retention too).
const PENDING_WINDOW_MS: u64 = 60 * 60 * 1000;

/// One webhook call (or pipeline request) and what it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub at: DateTime<Utc>,
    pub driver: String,
    pub alert_count: usize,
    pub run_ids: Vec<String>,
}

/// A filter and a page position for listing incidents, newest first.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    pub limit: usize,
    /// The last incident id of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IncidentPage {
    pub incidents: Vec<Incident>,
    pub next_cursor: Option<String>,
}

pub(super) struct Trees {
    pub alerts: sled::Tree,
    pub incidents: sled::Tree,
    pub groups: sled::Tree,
    pub runs: sled::Tree,
    pub deliveries: sled::Tree,
    pub history: sled::Tree,
}

impl Trees {
    pub fn open(db: &sled::Db) -> Result<Trees, sled::Error> {
        Ok(Trees {
            alerts: db.open_tree("alerts")?,
            incidents: db.open_tree("incidents")?,
            groups: db.open_tree("incident_groups")?,
            runs: db.open_tree("incident_runs")?,
            deliveries: db.open_tree("deliveries")?,
            history: db.open_tree("history")?,
        })
    }
}

fn group_key(name: &str, instance: Option<&str>) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(instance.unwrap_or("").as_bytes());
    key
}

impl Store {
    /// The incident book over this store: what [`crate::alerts::incident::apply`] reads and writes.
    pub fn book(&self) -> StoreBook<'_> {
        StoreBook { store: self }
    }

    /// Like [`book`](Self::book), but writes stay in memory: `herald ingest --dry-run`.
    pub fn dry_book(&self) -> DryBook<'_> {
        DryBook {
            store: self,
            alerts: HashMap::new(),
            incidents: HashMap::new(),
            groups: HashMap::new(),
        }
    }

    pub fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        match self.trees().book.incidents.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    pub fn get_alert_state(&self, key: &str) -> Result<Option<AlertState>, StoreError> {
        match self.trees().book.alerts.get(key.as_bytes())? {
            Some(bytes) => Ok(Some(decode(key, &bytes)?)),
            None => Ok(None),
        }
    }

    /// An incident's whole history (its last
    /// [`INCIDENT_HISTORY`](crate::alerts::incident::INCIDENT_HISTORY)
    /// events, oldest first): what is kept apart, then what is in the record.
    pub fn incident_history(&self, incident: &Incident) -> Result<Vec<IncidentEvent>, StoreError> {
        history::read(
            &self.trees().book.history,
            Owner::Incident(&incident.id),
            &incident.history,
            incident.history_chunks,
        )
    }

    /// An alert's whole history (its last
    /// [`ALERT_HISTORY`](crate::alerts::incident::ALERT_HISTORY) transitions,
    /// oldest first).
    pub fn alert_history(&self, state: &AlertState) -> Result<Vec<Transition>, StoreError> {
        history::read(
            &self.trees().book.history,
            Owner::Alert(&state.key),
            &state.history,
            state.history_chunks,
        )
    }

    pub fn put_delivery(&self, delivery: &Delivery) -> Result<(), StoreError> {
        self.writing()
            .book
            .deliveries
            .insert(delivery.id.as_bytes(), encode(delivery)?)?;
        Ok(())
    }

    pub fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        match self.trees().book.deliveries.get(id.as_bytes())? {
            Some(bytes) => Ok(Some(decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Remembers that `run_ids` were started for each incident in `incident_ids`.
    pub fn add_incident_runs(
        &self,
        incident_ids: &[String],
        run_ids: &[String],
    ) -> Result<(), StoreError> {
        let t = self.writing();
        for id in incident_ids {
            for run in run_ids {
                t.book.runs.insert(super::index_key(id, run), &[])?;
            }
        }
        Ok(())
    }

    /// The newest `limit` runs started for an incident, newest first.
    pub fn incident_runs(&self, id: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for key in self
            .trees()
            .book
            .runs
            .scan_prefix(super::index_prefix(id))
            .keys()
            .rev()
            .take(limit)
        {
            let key = key?;
            out.push(String::from_utf8_lossy(&key[id.len() + 1..]).into_owned());
        }
        Ok(out)
    }

    /// Incidents newest first, filtered; entries that fail the filter are
    /// skipped while scanning.
    pub fn list_incidents(&self, query: &IncidentQuery) -> Result<IncidentPage, StoreError> {
        let trees = self.trees();
        let tree = &trees.book.incidents;
        let iter = match &query.cursor {
            Some(c) => tree.range(..c.as_bytes().to_vec()),
            None => tree.range::<Vec<u8>, _>(..),
        };
        let limit = query.limit.max(1);
        let mut incidents = Vec::new();
        let mut more = false;
        for item in iter.rev() {
            let (key, bytes) = item?;
            let inc: Incident = decode(&String::from_utf8_lossy(&key), &bytes)?;
            if query.status.is_some_and(|s| s != inc.status)
                || query.severity.is_some_and(|s| s != inc.severity)
            {
                continue;
            }
            if incidents.len() == limit {
                more = true;
                break;
            }
            // A listing carries no history (the detail does).
            incidents.push(Incident {
                history: Vec::new(),
                history_chunks: 0,
                ..inc
            });
        }
        let next_cursor = if more {
            incidents.last().map(|i| i.id.clone())
        } else {
            None
        };
        Ok(IncidentPage {
            incidents,
            next_cursor,
        })
    }

    pub fn incident_count(&self) -> usize {
        self.trees().book.incidents.len()
    }

    /// Deletes deliveries older than `cutoff`, up to `batch`.
    pub(super) fn prune_deliveries(
        &self,
        cutoff_ms: u64,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let t = self.writing();
        let tree = &t.book.deliveries;
        let mut victims = Vec::new();
        for key in tree.iter().keys() {
            let key = key?;
            let old = ulid::Ulid::from_string(&String::from_utf8_lossy(&key))
                .map(|u| u.timestamp_ms() < cutoff_ms)
                .unwrap_or(true);
            if !old || victims.len() >= batch {
                break;
            }
            victims.push(key);
        }
        let n = victims.len();
        for key in victims {
            tree.remove(key)?;
        }
        Ok(n)
    }
}

impl Store {
    /// Deletes up to `batch` incidents resolved before `cutoff`, oldest
    /// first, with what only they use: their alerts' states (when still
    /// resolved and theirs), their group entry (when it points at them), and
    /// their run index. Open incidents are kept however old.
    pub(super) fn prune_incidents(
        &self,
        cutoff: DateTime<Utc>,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let trees = self.trees();
        let book = &trees.book;
        let cutoff_ms = cutoff.timestamp_millis().max(0) as u64;
        let mut victims = Vec::new();
        // Old open incidents are read past, a bounded number per call.
        for item in book.incidents.iter().take(MAX_SCANNED) {
            let (key, bytes) = item?;
            let id = String::from_utf8_lossy(&key).into_owned();
            // Ids are in opening order: one opened after the cutoff cannot
            // have been resolved before it, nor can any later one.
            let opened_ms = id
                .strip_prefix("inc-")
                .and_then(|u| ulid::Ulid::from_string(&u.to_ascii_uppercase()).ok())
                .map(|u| u.timestamp_ms());
            if opened_ms.is_some_and(|ms| ms >= cutoff_ms) || victims.len() >= batch {
                break;
            }
            let inc: Incident = decode(&id, &bytes)?;
            if inc.status == IncidentStatus::Resolved && inc.resolved_at.is_some_and(|t| t < cutoff)
            {
                victims.push(inc);
            }
        }
        let n = victims.len();
        let t = self.writing();
        let book = &t.book;
        for inc in victims {
            for key in &inc.alerts {
                if let Some(state) = self.get_alert_state(key)?
                    && state.incident_id.as_deref() == Some(inc.id.as_str())
                    && state.alert.status == crate::alerts::AlertStatus::Resolved
                {
                    book.alerts.remove(key.as_bytes())?;
                    history::delete_all(&book.history, Owner::Alert(key), state.history_chunks)?;
                }
            }
            let group = group_key(&inc.name, inc.instance.as_deref());
            if book.groups.get(&group)?.as_deref() == Some(inc.id.as_bytes()) {
                book.groups.remove(group)?;
            }
            for run in book.runs.scan_prefix(super::index_prefix(&inc.id)).keys() {
                book.runs.remove(run?)?;
            }
            book.incidents.remove(inc.id.as_bytes())?;
            history::delete_all(&book.history, Owner::Incident(&inc.id), inc.history_chunks)?;
        }
        Ok(n)
    }
}

/// Incidents read per pruning call, at most.
const MAX_SCANNED: usize = 10_000;

/// The incident book in sled.
pub struct StoreBook<'a> {
    store: &'a Store,
}

impl Book for StoreBook<'_> {
    type Error = StoreError;

    fn alert(&mut self, key: &str) -> Result<Option<AlertState>, StoreError> {
        self.store.get_alert_state(key)
    }

    fn group(
        &mut self,
        name: &str,
        instance: Option<&str>,
    ) -> Result<Option<Incident>, StoreError> {
        match self
            .store
            .trees()
            .book
            .groups
            .get(group_key(name, instance))?
        {
            Some(id) => self.store.get_incident(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    fn incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.store.get_incident(id)
    }

    fn delivered(&mut self, delivery: &str) -> Result<bool, StoreError> {
        // Still being written by the intake's write thread: wait for it.
        self.store.wait_landed(delivery);
        delivered(self.store, delivery)
    }

    fn save_alert(&mut self, state: &AlertState) -> Result<(), StoreError> {
        let t = self.store.writing();
        let book = &t.book;
        let owner = Owner::Alert(&state.key);
        let (state, stale) =
            history::prepare(&book.history, owner, state, state.history.len(), |s| {
                (&mut s.history, &mut s.history_chunks)
            })?;
        book.alerts.insert(state.key.as_bytes(), encode(&state)?)?;
        history::delete(&book.history, stale)
    }

    fn save_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        let t = self.store.writing();
        let book = &t.book;
        let owner = Owner::Incident(&incident.id);
        let (incident, stale) = history::prepare(
            &book.history,
            owner,
            incident,
            incident.history.len(),
            |i| (&mut i.history, &mut i.history_chunks),
        )?;
        book.incidents
            .insert(incident.id.as_bytes(), encode(&incident)?)?;
        book.groups.insert(
            group_key(&incident.name, incident.instance.as_deref()),
            incident.id.as_bytes(),
        )?;
        history::delete(&book.history, stale)
    }

    fn new_incident_id(&mut self) -> String {
        new_incident_id()
    }
}

fn delivered(store: &Store, delivery: &str) -> Result<bool, StoreError> {
    let stale = ulid::Ulid::from_string(delivery)
        .map(|u| {
            (Utc::now().timestamp_millis().max(0) as u64).saturating_sub(u.timestamp_ms())
                > PENDING_WINDOW_MS
        })
        .unwrap_or(true);
    Ok(stale
        || store
            .trees()
            .book
            .deliveries
            .contains_key(delivery.as_bytes())?)
}

pub fn new_incident_id() -> String {
    format!(
        "inc-{}",
        crate::ids::next().to_string().to_ascii_lowercase()
    )
}

/// Reads the store, keeps its own writes: the answer to "what would this
/// payload do", changing nothing.
pub struct DryBook<'a> {
    store: &'a Store,
    alerts: HashMap<String, AlertState>,
    incidents: HashMap<String, Incident>,
    groups: HashMap<Vec<u8>, String>,
}

impl Book for DryBook<'_> {
    type Error = StoreError;

    fn alert(&mut self, key: &str) -> Result<Option<AlertState>, StoreError> {
        match self.alerts.get(key) {
            Some(a) => Ok(Some(a.clone())),
            None => self.store.get_alert_state(key),
        }
    }

    fn group(
        &mut self,
        name: &str,
        instance: Option<&str>,
    ) -> Result<Option<Incident>, StoreError> {
        match self.groups.get(&group_key(name, instance)) {
            Some(id) => self.incident(&id.clone()),
            None => self.store.book().group(name, instance),
        }
    }

    fn incident(&mut self, id: &str) -> Result<Option<Incident>, StoreError> {
        match self.incidents.get(id) {
            Some(i) => Ok(Some(i.clone())),
            None => self.store.get_incident(id),
        }
    }

    fn delivered(&mut self, delivery: &str) -> Result<bool, StoreError> {
        // A change made by this dry run itself counts as delivered.
        Ok(delivery == DRY_DELIVERY || delivered(self.store, delivery)?)
    }

    fn save_alert(&mut self, state: &AlertState) -> Result<(), StoreError> {
        self.alerts.insert(state.key.clone(), state.clone());
        Ok(())
    }

    fn save_incident(&mut self, incident: &Incident) -> Result<(), StoreError> {
        self.groups.insert(
            group_key(&incident.name, incident.instance.as_deref()),
            incident.id.clone(),
        );
        self.incidents.insert(incident.id.clone(), incident.clone());
        Ok(())
    }

    fn new_incident_id(&mut self) -> String {
        format!("{} (new)", new_incident_id())
    }
}

/// The delivery id a dry run uses.
pub const DRY_DELIVERY: &str = "dry-run";

/// Counts of each change, in [`Change::ALL`] order, as a JSON object.
pub fn change_counts(counts: &HashMap<Change, usize>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for c in Change::ALL {
        map.insert(
            c.as_str().to_string(),
            serde_json::Value::from(counts.get(&c).copied().unwrap_or(0)),
        );
    }
    serde_json::Value::Object(map)
}

/// Forgets that `run_id` was started for each of `incident_ids` (the run
/// is being deleted, under `t`'s write gate).
pub(super) fn remove_incident_runs(
    t: &super::Trees,
    incident_ids: &[String],
    run_id: &str,
) -> Result<(), StoreError> {
    for id in incident_ids {
        t.book.runs.remove(super::index_key(id, run_id))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::incident::{ALERT_HISTORY, INCIDENT_HISTORY};
    use crate::intake;
    use crate::store::StoreOptions;
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, store)
    }

    /// Sends the alert `Flap` on `h1` with `status`; returns its incident id.
    fn send(store: &Store, status: &str) -> String {
        let body = serde_json::json!({"version": "4", "status": status, "alerts": [{
            "status": status, "labels": {"alertname": "Flap", "instance": "h1"},
            "startsAt": "2026-11-29T01:00:00Z"}]})
        .to_string();
        let received = intake::receive(
            &mut store.book(),
            &body,
            Some("alertmanager"),
            &[],
            &intake::new_delivery_id(),
            Duration::from_secs(3600),
        )
        .unwrap();
        received.changes[0].incident_id.clone().unwrap()
    }

    /// Fires and resolves the alert `times` times each.
    fn flap(store: &Store, times: usize) -> String {
        let mut id = String::new();
        for _ in 0..times {
            id = send(store, "firing");
            assert_eq!(send(store, "resolved"), id, "re-opened, not a new incident");
        }
        id
    }

    fn changes<T: Serialize>(list: &[T]) -> Vec<String> {
        list.iter()
            .map(|e| serde_json::json!(e)["change"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_flapping_alert_keeps_its_whole_history_out_of_its_records() {
        let (_dir, store) = store();
        let id = flap(&store, 150); // 300 changes
        let incident = store.get_incident(&id).unwrap().unwrap();
        let key = incident.alerts.first().unwrap().clone();
        let state = store.get_alert_state(&key).unwrap().unwrap();
        // The records hold a few recent entries, not the history.
        assert!(incident.history.len() <= history::CHUNK);
        assert!(state.history.len() <= history::CHUNK);
        // Read back whole: the newest 200 events and 50 transitions.
        let events = store.incident_history(&incident).unwrap();
        let transitions = store.alert_history(&state).unwrap();
        assert_eq!(events.len(), INCIDENT_HISTORY);
        assert_eq!(transitions.len(), ALERT_HISTORY);
        for (list, n) in [
            (changes(&events), INCIDENT_HISTORY),
            (changes(&transitions), ALERT_HISTORY),
        ] {
            let expected: Vec<&str> = ["reopened", "closed"].repeat(n / 2);
            assert_eq!(list, expected);
        }
        assert!(
            events.windows(2).all(|w| w[0].at <= w[1].at),
            "oldest first"
        );
        // Only the chunks the caps need are stored.
        let kept = Owner::Incident(&id).kept_chunks() + Owner::Alert(&key).kept_chunks();
        assert_eq!(store.trees().book.history.len(), kept as usize);
    }

    #[test]
    fn pruning_an_incident_deletes_its_history() {
        let (_dir, store) = store();
        let id = flap(&store, 40);
        assert!(!store.trees().book.history.is_empty());
        let later = Utc::now() + chrono::Duration::days(400);
        store.prune(later, 100).unwrap();
        assert!(store.get_incident(&id).unwrap().is_none());
        assert_eq!(store.trees().book.history.len(), 0);
    }

    #[test]
    fn an_incident_stored_with_its_whole_history_inline_keeps_it() {
        let (_dir, store) = store();
        let id = flap(&store, 1);
        // As a record was written before history moved out: 200 events inline.
        let mut old = store.get_incident(&id).unwrap().unwrap();
        let event = old.history[0].clone();
        old.history = vec![event; INCIDENT_HISTORY];
        store
            .trees()
            .book
            .incidents
            .insert(id.as_bytes(), encode(&old).unwrap())
            .unwrap();
        assert_eq!(
            store.incident_history(&old).unwrap().len(),
            INCIDENT_HISTORY
        );
        // The next change moves it out, and nothing is lost.
        send(&store, "firing");
        let now = store.get_incident(&id).unwrap().unwrap();
        assert!(now.history.len() <= history::CHUNK);
        let events = store.incident_history(&now).unwrap();
        assert_eq!(events.len(), INCIDENT_HISTORY);
        assert_eq!(changes(&events[..1]), ["opened"]);
        assert_eq!(changes(&events[events.len() - 1..]), ["reopened"]);
    }
}
