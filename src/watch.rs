//! Following the definitions directory: every change — a new file, an edit,
//! an editor's write-then-rename, a delete, a `mv` into the directory, a
//! Kubernetes ConfigMap's `..data` symlink swap — leads to one rescan.
//!
//! A rescan reads every `*.json` file (through symlinks), compares its
//! contents with what was loaded, and parses only what changed. A file that
//! no longer validates is reported and its previous good version keeps
//! running; a deleted file's definition is removed; an unchanged file
//! changes nothing. The new set replaces the old one in a single atomic swap,
//! so a run never sees half a reload and runs in flight finish on the version
//! they started with.

use crate::definition::{BUILTIN_NAME, DefinitionSet, Invalid, SharedDefinitions, load_file};
use crate::metrics::Metrics;
use crate::nodes::HandlerRegistry;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Quiet time after the last file event before rescanning: editors write a
/// file in several steps.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// The longest a rescan waits for changes to settle. A file in a watched
/// directory that never stops changing (a log written next to config.toml)
/// would otherwise postpone every reload for as long as it is written to.
pub const SETTLE_AT_MOST: Duration = Duration::from_secs(1);

/// What a rescan did, file by file.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub unchanged: Vec<String>,
    pub invalid: Vec<InvalidFile>,
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvalidFile {
    pub name: String,
    pub path: PathBuf,
    /// The earlier version that keeps running, if there is one.
    pub running_version: Option<String>,
    pub errors: Vec<crate::definition::Issue>,
}

impl ReloadReport {
    pub fn changed(&self) -> bool {
        !(self.loaded.is_empty() && self.invalid.is_empty() && self.removed.is_empty())
    }
}

/// Rescans the definitions directory into the shared set.
pub struct Reloader {
    dir: PathBuf,
    handlers: arc_swap::ArcSwap<HandlerRegistry>,
    shared: SharedDefinitions,
    metrics: Arc<Metrics>,
    /// Content hash of each file as last read, by definition name.
    seen: Mutex<HashMap<String, [u8; 32]>>,
}

impl Reloader {
    pub fn new(
        dir: PathBuf,
        handlers: HandlerRegistry,
        shared: SharedDefinitions,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloader {
            dir,
            handlers: arc_swap::ArcSwap::from_pointee(handlers),
            shared,
            metrics,
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn handlers(&self) -> Arc<HandlerRegistry> {
        self.handlers.load_full()
    }

    /// New handlers (a reloaded config's notify channels): every file is
    /// parsed again with them at the next rescan.
    pub fn set_handlers(&self, handlers: HandlerRegistry) {
        self.handlers.store(Arc::new(handlers));
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        seen.clear();
    }

    /// Reads the directory and applies what changed. Fails only when the
    /// directory cannot be read; the loaded set is then left as it was.
    pub fn rescan(&self) -> Result<ReloadReport, std::io::Error> {
        tracing::debug!(dir = %self.dir.display(), "rescanning the definitions directory");
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let files = crate::definition::set::definition_files(&self.dir)?;
        let current = self.shared.load_full();
        let mut next: DefinitionSet = (*current).clone();
        let mut report = ReloadReport::default();
        let mut present = Vec::new();
        for path in files {
            let name = crate::definition::set::definition_name(&path);
            present.push(name.clone());
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // vanished between listing and reading: the next event rescans
            };
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if seen.get(&name) == Some(&hash) {
                report.unchanged.push(name);
                continue;
            }
            seen.insert(name.clone(), hash);
            match load_file(&path, &self.handlers.load()) {
                Ok(def) => {
                    tracing::info!(definition = %name, version = %def.version_hash, "definition loaded");
                    report.loaded.push(name);
                    next.set_valid(def);
                }
                Err(error) => {
                    let running = next
                        .get(&name)
                        .filter(|_| name != BUILTIN_NAME)
                        .map(|d| d.version_hash.clone());
                    tracing::error!(
                        definition = %name,
                        running_version = running.as_deref().unwrap_or("none"),
                        "invalid definition; {}:\n{error}",
                        if running.is_some() { "the previous version keeps running" } else { "not loaded" }
                    );
                    report.invalid.push(InvalidFile {
                        name: name.clone(),
                        path: path.clone(),
                        running_version: running,
                        errors: error.issues.clone(),
                    });
                    next.set_invalid(&name, Invalid { path, error });
                }
            }
        }
        let gone: Vec<String> = seen
            .keys()
            .filter(|n| !present.contains(n))
            .cloned()
            .collect();
        for name in gone {
            seen.remove(&name);
            tracing::info!(definition = %name, "definition removed");
            next.remove(&name);
            report.removed.push(name);
        }
        if report.changed() {
            self.metrics
                .set_definitions(next.valid().count(), next.invalid_files().count());
            self.shared.store(Arc::new(next));
        }
        report.loaded.sort();
        report.unchanged.sort();
        report.removed.sort();
        Ok(report)
    }

    /// Rescans on every change under the directory (debounced), until the
    /// returned handle is dropped. The directory may itself be a symlink
    /// that gets swapped, or be deleted and made again by a deploy script,
    /// so its parent is watched too (any event there costs only a cheap
    /// rescan; a relative directory's parent is the working directory).
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, notify::Error> {
        let mut paths = vec![self.dir.clone()];
        if let Some(parent) = self.dir.parent() {
            paths.push(if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            });
        }
        let this = Arc::clone(self);
        watch_paths(&paths, move || {
            if let Err(e) = this.rescan() {
                tracing::error!(error = %e, "cannot rescan the definitions directory");
            }
        })
    }
}

/// Calls `on_change` (on a blocking thread) after changes under `paths`
/// settle for [`DEBOUNCE`] (or have gone on for [`SETTLE_AT_MOST`]), until
/// the returned handle is dropped.
///
/// A watch follows the directory it was put on, not its path: a directory
/// deleted and made again would no longer be watched. So after every
/// settled change the paths are watched again (for one still there, the
/// kernel keeps its watch), before `on_change` runs.
pub fn watch_paths(
    paths: &[PathBuf],
    on_change: impl Fn() + Send + Sync + 'static,
) -> Result<WatchHandle, notify::Error> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e.kind)) {
            let _ = tx.send(());
        }
    })?;
    for (i, path) in paths.iter().enumerate() {
        match watcher.watch(path, RecursiveMode::NonRecursive) {
            Ok(()) => {}
            Err(e) if i == 0 => return Err(e),
            Err(_) => {} // extra paths are best effort
        }
    }
    let paths = paths.to_vec();
    let on_change = Arc::new(on_change);
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for a quiet moment: drain events until none for
            // DEBOUNCE, or until SETTLE_AT_MOST has passed. Events after
            // that point are still queued, and start the next round.
            let give_up = tokio::time::Instant::now() + SETTLE_AT_MOST;
            loop {
                let quiet = tokio::time::Instant::now() + DEBOUNCE;
                match tokio::time::timeout_at(quiet.min(give_up), rx.recv()).await {
                    Ok(Some(())) if tokio::time::Instant::now() < give_up => continue,
                    Ok(Some(())) => break,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for path in &paths {
                // Fails while a path is missing; its parent's events retry.
                let _ = watcher.watch(path, RecursiveMode::NonRecursive);
            }
            let f = on_change.clone();
            if tokio::task::spawn_blocking(move || f()).await.is_err() {
                return;
            }
        }
    });
    Ok(WatchHandle { task })
}

/// Whether an event can mean new contents. A file or directory merely
/// opened or read cannot, and `on_change` itself opens what it reads: with
/// the parent directory watched (inotify reports the opening of a child),
/// counting opens made each rescan and config reload start the next, ten
/// times a second, for ever.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    !matches!(
        kind,
        EventKind::Access(
            AccessKind::Open(_)
                | AccessKind::Read
                | AccessKind::Close(AccessMode::Read | AccessMode::Execute)
        )
    )
}

/// Keeps the watcher alive (its task owns it); dropping it stops watching.
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
