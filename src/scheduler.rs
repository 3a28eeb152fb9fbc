//! Timers for definitions with a `schedule`: the seed document's standalone
//! health checks. Each scheduled definition runs on its timer with source
//! `schedule` and no payload.
//!
//! - A tick that finds the previous run of the same definition still going
//!   is skipped, counted and logged: runs never overlap. That includes a
//!   run an earlier process left unfinished, which the queue continues
//!   after a restart.
//! - The set of schedules follows reloads: a new, changed or removed
//!   definition changes only its own timer.
//! - After downtime, missed ticks are not replayed: at most one catch-up
//!   run at start (`"catch_up": false` skips it).
//! - Ticks are wall-clock times, and the wall clock can be stepped back
//!   (NTP correcting a fast clock at boot, a VM restored from a snapshot).
//!   A tick computed before such a step would then be as far away as the
//!   step was long: an `every: 30s` check silent for an hour. When the
//!   clock reads earlier than it did, each timer whose tick is later than
//!   its schedule allows from the new time starts again from it.
//! - A schedule whose last finished run was abandoned (herald died during
//!   it three starts in a row, [`crate::engine::queue::MAX_RECOVERED_STARTS`])
//!   is held: that run may be what kills herald, and a timer firing it
//!   again would kill herald at every tick. The hold lifts when the
//!   definition changes, or when a later run of the schedule finishes (a
//!   resume of the abandoned one, say).

use crate::definition::{Definition, DefinitionSet, SharedDefinitions, Timing};
use crate::engine::queue::ABANDONED;
use crate::engine::{Engine, RunRequest};
use crate::metrics::Metrics;
use crate::store::{PipelineRun, RunQuery, RunStatus, Store};
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The longest the scheduler sleeps, so reloads are picked up promptly.
const MAX_SLEEP: Duration = Duration::from_millis(250);

/// How many of a schedule's newest runs are read for the last finished
/// one (the newer ones may be queued, or going after a crash).
const RUNS_READ_FOR_HOLD: usize = 20;

/// Where the scheduler reads the time: the system's wall clock, or in a
/// test one that can be stepped.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

pub struct Scheduler {
    definitions: SharedDefinitions,
    engine: Engine,
    store: Store,
    metrics: Arc<Metrics>,
    next_runs: ArcSwap<HashMap<String, DateTime<Utc>>>,
    /// Held schedules, and the abandoned run that holds each.
    holds: ArcSwap<HashMap<String, String>>,
    clock: Clock,
}

struct Timer {
    version: String,
    /// The tick as the schedule gives it…
    base: DateTime<Utc>,
    /// …and when it fires, with jitter.
    next: DateTime<Utc>,
    running: Arc<AtomicBool>,
    /// A run of this schedule that an earlier process left unfinished,
    /// while the queue continues it: ticks wait for it as for their own.
    recovering: Option<String>,
    /// The abandoned run holding this schedule, when it is held.
    held_by: Option<String>,
    /// Whether `held_by` was worked out for this timer. A run is given up
    /// only as herald starts, before the timers are made, so a schedule
    /// found free then stays free; a held one is looked at each tick.
    hold_known: bool,
}

impl Scheduler {
    pub fn new(
        definitions: SharedDefinitions,
        engine: Engine,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Self {
        Scheduler {
            definitions,
            engine,
            store,
            metrics,
            next_runs: ArcSwap::from_pointee(HashMap::new()),
            holds: ArcSwap::from_pointee(HashMap::new()),
            clock: Arc::new(Utc::now),
        }
    }

    /// The same scheduler reading the time from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// When each scheduled definition runs next.
    pub fn next_run(&self, name: &str) -> Option<DateTime<Utc>> {
        self.next_runs.load().get(name).copied()
    }

    /// The abandoned run holding `name`'s schedule, if it is held.
    pub fn held_by(&self, name: &str) -> Option<String> {
        self.holds.load().get(name).cloned()
    }

    /// Runs the timers until `stop` turns true.
    pub fn spawn(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut timers: HashMap<String, Timer> = HashMap::new();
            let mut previous = (this.clock)();
            loop {
                let now = (this.clock)();
                this.reconcile(&mut timers, now);
                let set = this.definitions.load_full();
                if now < previous {
                    follow_clock_step(&mut timers, &set, previous, now);
                }
                previous = now;
                for (name, timer) in timers.iter_mut() {
                    if timer.next > now {
                        continue;
                    }
                    let Some(definition) = set.get(name) else {
                        continue;
                    };
                    if !timer.hold_known || timer.held_by.is_some() {
                        this.follow_hold(&definition, timer);
                        timer.hold_known = true;
                    }
                    if timer.held_by.is_some() {
                        this.metrics.schedule_tick_skipped(name);
                    } else if this.still_recovering(timer) {
                        this.metrics.schedule_tick_skipped(name);
                        tracing::warn!(definition = %name, run_id = timer.recovering.as_deref().unwrap_or_default(), "schedule: tick skipped, the previous run is still going (left by the last stop, continued by the queue)");
                    } else {
                        let late = ((this.clock)() - timer.next).to_std().unwrap_or_default();
                        this.metrics.schedule_lateness(late.as_secs_f64());
                        this.fire(&definition, timer);
                    }
                    // The tick after this one; ticks already past are not
                    // replayed, the schedule resumes from now.
                    timer.base = match after(&definition, timer.base) {
                        Some(t) if t > now => t,
                        _ => after(&definition, now).unwrap_or(now + chrono::Duration::days(365)),
                    };
                    timer.next = timer.base + jitter(&definition);
                }
                this.next_runs.store(Arc::new(
                    timers.iter().map(|(n, t)| (n.clone(), t.next)).collect(),
                ));
                let holds: HashMap<String, String> = timers
                    .iter()
                    .filter_map(|(n, t)| Some((n.clone(), t.held_by.clone()?)))
                    .collect();
                this.metrics.set_schedules_held(holds.len());
                this.holds.store(Arc::new(holds));
                let earliest = timers.values().map(|t| t.next).min();
                // Until the earliest tick (now, if it is past), and never
                // longer than MAX_SLEEP so reloads are seen; with no timers
                // at all, just MAX_SLEEP.
                let sleep = match earliest {
                    Some(e) => (e - (this.clock)()).to_std().unwrap_or(Duration::ZERO),
                    None => MAX_SLEEP,
                }
                .min(MAX_SLEEP);
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
        })
    }

    /// Adds timers for new scheduled definitions, resets changed ones, drops
    /// removed ones; the others are left alone.
    fn reconcile(&self, timers: &mut HashMap<String, Timer>, now: DateTime<Utc>) {
        let set = self.definitions.load_full();
        timers.retain(|name, _| set.get(name).is_some_and(|d| d.schedule.is_some()));
        for definition in set.valid() {
            let Some(schedule) = &definition.schedule else {
                continue;
            };
            let fresh = match timers.get(&definition.name) {
                Some(t) => t.version != definition.version_hash,
                None => true,
            };
            if !fresh {
                continue;
            }
            let known = timers.contains_key(&definition.name);
            // New to this process: its last run tells whether a tick was
            // missed, and whether an earlier process left it going.
            let last = if known {
                None
            } else {
                self.newest_runs(definition, 1).into_iter().next()
            };
            let base = if known {
                after(definition, now).unwrap_or(now + chrono::Duration::days(365))
            } else {
                first_run(definition, last.as_ref(), schedule.catch_up, now)
            };
            let running = timers
                .remove(&definition.name)
                .map(|t| t.running)
                .unwrap_or_default();
            timers.insert(
                definition.name.clone(),
                Timer {
                    version: definition.version_hash.clone(),
                    base,
                    next: base + jitter(definition),
                    running,
                    recovering: last.filter(|r| !r.is_finished()).map(|r| r.run_id),
                    held_by: None,
                    hold_known: false,
                },
            );
        }
    }

    /// Up to `limit` of `definition`'s scheduled runs, newest first (none
    /// when the store cannot say: the timers go on).
    fn newest_runs(&self, definition: &Definition, limit: usize) -> Vec<PipelineRun> {
        self.store
            .list_runs(&RunQuery {
                definition: Some(definition.name.clone()),
                source: Some("schedule".into()),
                limit,
                ..RunQuery::default()
            })
            .map(|page| page.runs)
            .unwrap_or_default()
    }

    /// Whether the run `timer` waits for is still going; forgets it once
    /// it has finished (or is gone).
    fn still_recovering(&self, timer: &mut Timer) -> bool {
        let Some(run_id) = &timer.recovering else {
            return false;
        };
        let going = matches!(self.store.get_run(run_id), Ok(Some(run)) if !run.is_finished());
        if !going {
            timer.recovering = None;
        }
        going
    }

    /// Whether `definition`'s last finished scheduled run, of this
    /// version, was abandoned: then that run's id.
    fn abandoned_run(&self, definition: &Definition) -> Option<String> {
        let last = self
            .newest_runs(definition, RUNS_READ_FOR_HOLD)
            .into_iter()
            .find(|r| r.is_finished())?;
        let abandoned = last.status == RunStatus::Failed
            && last.definition_version == definition.version_hash
            && last
                .last_error
                .as_ref()
                .is_some_and(|e| e.error_type == ABANDONED);
        abandoned.then_some(last.run_id)
    }

    /// Holds or releases `timer` by what its last run came to, saying so
    /// when that changes.
    fn follow_hold(&self, definition: &Definition, timer: &mut Timer) {
        let held_by = self.abandoned_run(definition);
        if held_by == timer.held_by {
            return;
        }
        match &held_by {
            Some(run_id) => tracing::error!(
                definition = %definition.name,
                run_id,
                "schedule: held, its ticks skipped: its last run was abandoned because herald \
                 stopped during it {MAX_STARTS} starts in a row, and may be what stops herald. \
                 Change the definition, or resume the run once the cause is known \
                 (`herald runs resume {run_id}`): either releases the schedule",
                MAX_STARTS = crate::engine::queue::MAX_RECOVERED_STARTS,
            ),
            None => tracing::info!(
                definition = %definition.name,
                "schedule: released, its ticks run again"
            ),
        }
        timer.held_by = held_by;
    }

    fn fire(&self, definition: &Arc<Definition>, timer: &Timer) {
        let Some(going) = Going::claim(&timer.running) else {
            self.metrics.schedule_tick_skipped(&definition.name);
            tracing::warn!(definition = %definition.name, "schedule: tick skipped, the previous run is still going");
            return;
        };
        let engine = self.engine.clone();
        let definition = Arc::clone(definition);
        tokio::spawn(async move {
            let _going = going;
            let request = RunRequest {
                source: Some("schedule".to_string()),
                ..RunRequest::default()
            };
            let record = Engine::new_record(&definition, request);
            // On disk before it begins: if the run kills herald at once,
            // the next start still finds it, continues it and counts that,
            // so a run that kills herald at every start is given up and
            // its schedule held (above), not fired again at every tick.
            if let Some(store) = engine.store() {
                let recorded = match store.put_run(&record) {
                    Ok(()) => store.flush_grouped().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = recorded {
                    tracing::error!(definition = %definition.name, error = %e, "schedule: run could not be recorded");
                    return;
                }
            }
            if let Err(e) = engine.run_record(&definition, record).await {
                tracing::error!(definition = %definition.name, error = %e, "schedule: run could not be recorded");
            }
        });
    }
}

/// A timer's run in progress: its `running` flag, set by [`Going::claim`]
/// and cleared when this is dropped, however the run's task ends. A flag
/// cleared only at the end of the task would stay set if the task
/// panicked, and every later tick of that definition would be skipped as
/// "still going" until a restart.
struct Going(Arc<AtomicBool>);

impl Going {
    /// Sets `running`, unless it already is (the previous run is going).
    fn claim(running: &Arc<AtomicBool>) -> Option<Going> {
        (!running.swap(true, Ordering::AcqRel)).then(|| Going(running.clone()))
    }
}

impl Drop for Going {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The first tick of a timer new to this process: one catch-up run now
/// if a tick was missed since `last` (the schedule's newest run) while
/// herald was down, else the next tick.
fn first_run(
    definition: &Definition,
    last: Option<&PipelineRun>,
    catch_up: bool,
    now: DateTime<Utc>,
) -> DateTime<Utc> {
    if let Some(last) = last.map(|r| r.created_at)
        && catch_up
        && after(definition, last).is_some_and(|missed| missed < now)
    {
        tracing::info!(definition = %definition.name, last = %last, "schedule: one catch-up run for the ticks missed while down");
        return now;
    }
    after(definition, now).unwrap_or(now + chrono::Duration::days(365))
}

/// The wall clock read `now`, earlier than the `previous` reading.
fn follow_clock_step(
    timers: &mut HashMap<String, Timer>,
    set: &DefinitionSet,
    previous: DateTime<Utc>,
    now: DateTime<Utc>,
) {
    let moved = rebase_after_clock_step(timers, set, now);
    if !moved.is_empty() {
        let step = (previous - now).to_std().unwrap_or_default();
        tracing::warn!(
            went_back = %humantime::format_duration(Duration::from_secs(step.as_secs())),
            definitions = ?moved,
            "schedule: the system clock went back; these timers start again from the new time"
        );
    }
}

/// Starts again from `now` every timer whose tick is later than its
/// schedule allows from `now`, which only a wall clock stepped back can
/// cause: after a tick fires, the next is the first one after it, never
/// further than the first one after the present. Answers the definitions
/// moved.
fn rebase_after_clock_step(
    timers: &mut HashMap<String, Timer>,
    set: &DefinitionSet,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut moved = Vec::new();
    for (name, timer) in timers.iter_mut() {
        let Some(definition) = set.get(name) else {
            continue;
        };
        let Some(base) = after(&definition, now) else {
            continue;
        };
        if base < timer.base {
            timer.base = base;
            timer.next = base + jitter(&definition);
            moved.push(name.clone());
        }
    }
    moved.sort();
    moved
}

/// The next tick strictly after `t` (without jitter).
fn after(definition: &Definition, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let schedule = definition.schedule.as_ref()?;
    match &schedule.timing {
        Timing::Every(every) => Some(t + chrono::Duration::from_std(*every).ok()?),
        Timing::Cron(expr) => croner::Cron::from_str(expr)
            .ok()?
            .find_next_occurrence(&t, false)
            .ok(),
    }
}

/// A random delay up to the schedule's `jitter`.
fn jitter(definition: &Definition) -> chrono::Duration {
    definition
        .schedule
        .as_ref()
        .and_then(|s| s.jitter)
        .map(|j| j.mul_f64(fastrand::f64()))
        .and_then(|j| chrono::Duration::from_std(j).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_panics_frees_its_timer() {
        let running = Arc::new(AtomicBool::new(false));
        let going = Going::claim(&running).expect("a free timer is claimed");
        assert!(Going::claim(&running).is_none(), "claimed twice");
        let task = std::thread::spawn(move || {
            let _going = going;
            panic!("a bug in the run");
        });
        assert!(task.join().is_err());
        assert!(
            Going::claim(&running).is_some(),
            "the next tick must be able to run"
        );
    }
}
