//! `herald serve`: the daemon's life cycle in one place — open the store,
//! load the definitions, start the queue's workers, the retention pruner and
//! the HTTP server; on shutdown stop accepting, let running work finish within
//! the grace period, flush, and leave the rest queued for the next start.
//!
//! While it runs, the daemon writes its address to `<data_dir>/herald.addr`
//! so that the other subcommands can reach it over HTTP instead of opening
//! the store (sled allows one process per data dir).

use crate::config::{ChannelCas, Config, ConfigError};
use crate::definition::{DefinitionSet, SharedDefinitions};
use crate::engine::Engine;
use crate::engine::queue::Queue;
use crate::http::{self, App};
use crate::metrics::Metrics;
use crate::nodes::{HandlerRegistry, Services};
use crate::scheduler::Scheduler;
use crate::store::{Store, StoreError, StoreOptions};
use crate::watch::Reloader;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "refusing to listen on {0} without an auth token: anyone who can reach it could run pipelines. \
         Set `auth_tokens = [\"…\"]` or `auth_token_file` in config.toml, or HERALD_AUTH_TOKENS, \
         or listen on a loopback address (127.0.0.1)"
    )]
    OpenListener(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Definitions(std::io::Error),
    #[error("cannot start the intake thread: {0}")]
    Thread(std::io::Error),
    #[error(
        "stopped because the store cannot write to disk ({0}). Everything answered 2xx had reached the disk. \
         Free space or fix the disk, and start herald again: it reopens the store from what is on disk and \
         resumes the queued runs (the packaged systemd unit restarts it by itself)"
    )]
    StoreFailed(String),
}

/// The file that tells other herald processes where the daemon listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonAddress {
    pub url: String,
    pub pid: u32,
}

impl DaemonAddress {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("herald.addr")
    }

    pub fn read(data_dir: &Path) -> Option<DaemonAddress> {
        let text = std::fs::read_to_string(Self::path(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Reads the config again, with the command line's overrides applied.
pub type LoadConfig = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;
/// Changes the log level or filter of the running process.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// How the daemon re-reads its configuration.
pub struct Reconfigure {
    /// The config file to watch, if one was read.
    pub file: Option<PathBuf>,
    pub load: LoadConfig,
    pub set_log_level: SetLogLevel,
}

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    config: Arc<Config>,
    listen: SocketAddr,
    reconfigure: Reconfigure,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let tokens = config.tokens()?;
    let cas = config.channel_cas()?;
    if tokens.is_empty() && !listen.ip().is_loopback() {
        return Err(DaemonError::OpenListener(listen));
    }
    warn_of_config_problems(&config, reconfigure.file.as_deref());
    let open_files_limit = crate::process_limits::prepare_daemon();
    crate::process_limits::check_room_for_connections(
        open_files_limit,
        config.server.max_connections,
    );
    let store_options = StoreOptions::from(&config.store);
    compact_if_due(&config, &store_options).await;
    let store = Store::open(&config.data_dir, store_options)?;
    let metrics = Arc::new(Metrics::new());
    let services = Arc::new(Services::with_host(
        Arc::new(crate::host::HostSampler::new()),
        config.clone(),
        &cas,
    ));
    let host = services.host.clone();
    let sampler = services.host.spawn_background(config.host.sample_interval);
    let handlers = HandlerRegistry::builtin(services);
    let definitions: SharedDefinitions = Arc::new(arc_swap::ArcSwap::from_pointee(
        DefinitionSet::with_builtin(&handlers),
    ));
    let reloader = Arc::new(Reloader::new(
        config.definitions_dir.clone(),
        handlers.clone(),
        definitions.clone(),
        metrics.clone(),
    ));
    reloader.rescan().map_err(DaemonError::Definitions)?;
    metrics.set_definitions(
        definitions.load().valid().count(),
        definitions.load().invalid_files().count(),
    );
    let watcher = match reloader.watch() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, dir = %config.definitions_dir.display(), "cannot watch the definitions directory; use SIGHUP or POST /orchestration/definitions/reload/");
            None
        }
    };

    let engine = Engine::new(Some(store.clone())).with_metrics(metrics.clone());
    let queue = Queue::open(store.clone(), config.queue.capacity, metrics.clone())?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| DaemonError::Bind {
        addr: listen,
        source,
    })?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = queue.spawn_workers(
        config.queue.worker_count(),
        engine.clone(),
        definitions.clone(),
        stop_rx.clone(),
    );
    let (worker_count_tx, mut worker_count_rx) = watch::channel(config.queue.worker_count());
    let grace = config.server.shutdown_grace;
    let supervisor = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    changed = worker_count_rx.changed() => {
                        if changed.is_err() { break; }
                        let n = *worker_count_rx.borrow();
                        workers.resize(n);
                        tracing::info!(workers = workers.count(), "worker pool resized");
                    }
                }
            }
            workers.finish(grace).await;
        })
    };
    let pruner = crate::store::spawn_pruner(store.clone(), stop_rx.clone());
    let probe = crate::store::spawn_health_probe(store.clone(), stop_rx.clone());
    let scheduler = Arc::new(Scheduler::new(
        definitions.clone(),
        engine.clone(),
        store.clone(),
        metrics.clone(),
    ));
    let timers = scheduler.spawn(stop_rx.clone());
    let intake = herald_intake_writer()?;
    let app = Arc::new(App::new(
        config.clone(),
        &tokens,
        store.clone(),
        engine,
        queue.clone(),
        definitions.clone(),
        reloader.clone(),
        scheduler,
        metrics,
        intake,
    ));
    let watched_intake = app.intake.clone();
    let watchdog_stop = stop_rx.clone();
    let server = tokio::spawn(http::serve(listener, app.clone(), stop_rx, grace));
    // SIGHUP's handler goes in before the address is announced: its
    // default action would kill a daemon reloaded as soon as it is up.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());

    let address = DaemonAddress {
        url: format!("http://{local}"),
        pid: std::process::id(),
    };
    let address_file = DaemonAddress::path(&config.data_dir);
    if let Err(e) = std::fs::write(
        &address_file,
        serde_json::to_vec(&address).unwrap_or_default(),
    ) {
        tracing::warn!(error = %e, file = %address_file.display(), "cannot write the address file");
    }
    tracing::info!(
        listen = %local,
        data_dir = %config.data_dir.display(),
        definitions = definitions.load().valid().count(),
        workers = config.queue.worker_count(),
        auth = if tokens.is_empty() { "off" } else { "on" },
        queued = queue.depth(),
        "herald started"
    );
    let systemd = crate::systemd::Notifier::from_env().map(Arc::new);
    if let Some(systemd) = &systemd {
        systemd.notify(&format!("READY=1\nSTATUS=listening on {local}"));
        if let Some(every) = systemd.watchdog_interval() {
            tokio::spawn(ping_watchdog(
                systemd.clone(),
                every,
                watched_intake,
                watchdog_stop,
            ));
        }
    }

    let live = Arc::new(Live {
        app: app.clone(),
        store: store.clone(),
        reloader: reloader.clone(),
        host,
        worker_count: worker_count_tx,
        reconfigure,
        cas: std::sync::Mutex::new(cas),
    });
    let config_watch = live.reconfigure.file.as_ref().and_then(|file| {
        let dir = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let live = live.clone();
        // Any change in the config file's directory re-reads it; an
        // unchanged config is a no-op.
        match crate::watch::watch_paths(&[dir.to_path_buf()], move || {
            live.reload_config("config file changed");
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; SIGHUP reloads it");
                None
            }
        }
    });
    // SIGHUP reloads the config and forces a full rescan of the definitions.
    let hangups = {
        let live = live.clone();
        tokio::spawn(async move {
            let Ok(mut hup) = hup else {
                return;
            };
            while hup.recv().await.is_some() {
                let live = live.clone();
                let done = tokio::task::spawn_blocking(move || {
                    live.reload_config("SIGHUP");
                    live.reloader.rescan()
                })
                .await;
                match done {
                    Ok(Ok(report)) => tracing::info!(
                        loaded = ?report.loaded,
                        unchanged = report.unchanged.len(),
                        invalid = ?report.invalid.iter().map(|i| &i.name).collect::<Vec<_>>(),
                        removed = ?report.removed,
                        "SIGHUP: definitions rescanned"
                    ),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "SIGHUP: cannot rescan the definitions")
                    }
                    Err(_) => return,
                }
            }
        })
    };

    let store_failure = tokio::select! {
        _ = shutdown => None,
        cause = store.failed() => Some(cause),
    };
    hangups.abort();
    drop(watcher);
    drop(config_watch);
    if store_failure.is_some() {
        tracing::error!(
            "shutting down: the store cannot write to disk; a restart reopens it from what reached the disk"
        );
    } else {
        tracing::info!("shutting down: no new requests; finishing what is running");
    }
    if let Some(systemd) = &systemd {
        systemd.notify("STOPPING=1");
    }
    let _ = stop_tx.send(true);
    let _ = tokio::join!(server, supervisor, timers, pruner, probe);
    sampler.abort();
    let _ = std::fs::remove_file(&address_file);
    if let Some(cause) = store_failure {
        return Err(DaemonError::StoreFailed(cause));
    }
    store.flush_async().await?;
    tracing::info!(
        queued = queue.depth(),
        "stopped; queued jobs resume at the next start"
    );
    Ok(())
}

/// Pings systemd's watchdog every `every` while the async runtime runs and
/// the intake, the path of every webhook, gets on: idle, or finished
/// something since the last ping. A storm's bodies keep it busy for
/// seconds each but finishing; a hung intake finishes nothing, the pings
/// stop, and systemd restarts herald (the queue carries its jobs across).
async fn ping_watchdog(
    systemd: Arc<crate::systemd::Notifier>,
    every: std::time::Duration,
    intake: crate::intake_writer::IntakeWriter,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = intake.progress();
    loop {
        let now = intake.progress();
        if now.moved_on_since(last) {
            systemd.notify("WATCHDOG=1");
        } else {
            tracing::error!(
                waiting = now.queued - now.done,
                for_ms = every.as_millis() as u64,
                "the intake has finished nothing while deliveries wait; not pinging systemd's watchdog"
            );
        }
        last = now;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Says, at start and at each config change, what the environment lacks
/// (a notify channel's `url_env` unset): found now, not at the first
/// alert that needs it; a webhook secret its sender cannot sign with; and
/// which files holding secrets every user of the host can read.
fn warn_of_config_problems(config: &Config, file: Option<&std::path::Path>) {
    for problem in config.problems(file) {
        tracing::warn!("{problem}");
    }
}

/// What a config reload can change while the daemon runs.
struct Live {
    app: Arc<App>,
    store: Store,
    reloader: Arc<Reloader>,
    host: Arc<crate::host::HostSampler>,
    worker_count: watch::Sender<usize>,
    reconfigure: Reconfigure,
    /// The notify channels' CA files as last read: one can change while
    /// config.toml does not.
    cas: std::sync::Mutex<ChannelCas>,
}

impl Live {
    /// Re-reads the config. An invalid one is reported and the old one
    /// stays; otherwise what can change live changes, and what cannot is
    /// logged as needing a restart.
    fn reload_config(&self, why: &str) {
        tracing::debug!(reason = why, "re-reading the config");
        // The file, then what it points at (token file, CA files): any
        // failure keeps the running config.
        let loaded = (self.reconfigure.load)()
            .map_err(|e| e.to_string())
            .and_then(|new| {
                let tokens = new.tokens().map_err(|e| e.to_string())?;
                let cas = new.channel_cas().map_err(|e| e.to_string())?;
                Ok((new, tokens, cas))
            });
        let (new, tokens, cas) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(
                    reason = why,
                    "config reload refused, the running config stays: {e}"
                );
                return;
            }
        };
        let cas_changed = *self.cas.lock().unwrap_or_else(|p| p.into_inner()) != cas;
        let old = self.app.config.load_full();
        if *old == new && !cas_changed {
            return;
        }
        warn_of_config_problems(&new, self.reconfigure.file.as_deref());
        let mut restart = Vec::new();
        if old.listen != new.listen {
            restart.push("listen");
        }
        if old.data_dir != new.data_dir {
            restart.push("data_dir");
        }
        if old.definitions_dir != new.definitions_dir {
            restart.push("definitions_dir");
        }
        if old.store.cache_mb != new.store.cache_mb {
            restart.push("store.cache_mb");
        }
        if old.queue.capacity != new.queue.capacity {
            restart.push("queue.capacity");
        }
        if old.server.max_connections != new.server.max_connections {
            restart.push("server.max_connections");
        }
        if old.host.sample_interval != new.host.sample_interval {
            restart.push("host.sample_interval");
        }
        if !restart.is_empty() {
            tracing::warn!(settings = ?restart, "config changes that need a restart; the rest applies now");
        }
        if old.log_level != new.log_level
            && let Err(e) = (self.reconfigure.set_log_level)(&new.log_level)
        {
            tracing::error!("log_level `{}` not applied: {e}", new.log_level);
        }
        self.store.set_limits(
            new.store.retention,
            new.store.max_runs,
            StoreOptions::from(&new.store).compact_above_bytes,
        );
        let _ = self.worker_count.send(new.queue.worker_count());
        let new = Arc::new(new);
        if old.notify != new.notify || old.host.plugin_dirs != new.host.plugin_dirs || cas_changed {
            // Notify channels (and their CAs) and plugin dirs are part of
            // how nodes are built: rebuild the handlers and parse every
            // definition again.
            let services = Arc::new(Services::with_host(self.host.clone(), new.clone(), &cas));
            *self.cas.lock().unwrap_or_else(|p| p.into_inner()) = cas;
            self.reloader
                .set_handlers(HandlerRegistry::builtin(services));
            if let Err(e) = self.reloader.rescan() {
                tracing::error!(error = %e, "cannot rescan the definitions after a config change");
            }
        }
        self.app.apply(new, &tokens);
        tracing::info!(reason = why, "config reloaded");
    }
}

fn herald_intake_writer() -> Result<crate::intake_writer::IntakeWriter, DaemonError> {
    crate::intake_writer::IntakeWriter::start().map_err(DaemonError::Thread)
}

/// Compacts the store before opening it when its file has outgrown
/// `[store] compact_above_mb` (see [`crate::store::compact`]). A failed
/// compaction leaves the original in place, and herald starts on it.
async fn compact_if_due(config: &Config, options: &StoreOptions) {
    let dir = config.data_dir.clone();
    if !crate::store::due(&dir, options.compact_above_bytes) {
        return;
    }
    tracing::info!(
        bytes = crate::store::database_bytes(&dir),
        "compacting the store before starting (its file passed [store] compact_above_mb)"
    );
    let options = options.clone();
    match tokio::task::spawn_blocking(move || crate::store::compact(&dir, &options)).await {
        Ok(Ok(done)) => done.log(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "compaction failed; starting on the store as it is")
        }
        Err(e) => tracing::error!(error = %e, "compaction failed; starting on the store as it is"),
    }
}
