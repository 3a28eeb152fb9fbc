//! `herald serve`: the daemon's life cycle in one place — open the store,
//! load the definitions, start the queue's workers, the retention pruner and
//! the HTTP server; on shutdown stop accepting, let running work finish within
//! the grace period, flush, and leave the rest queued for the next start.
//!
//! While it runs, the daemon writes its address to `<data_dir>/herald.addr`
//! so that the other subcommands can reach it over HTTP instead of opening
//! the store (sled allows one process per data dir).

use crate::config::{Config, ConfigError};
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

/// Runs the daemon until `shutdown` completes.
pub async fn run(
    config: Arc<Config>,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let tokens = config.tokens()?;
    if tokens.is_empty() && !listen.ip().is_loopback() {
        return Err(DaemonError::OpenListener(listen));
    }
    let store = Store::open(&config.data_dir, StoreOptions::from(&config.store))?;
    let metrics = Arc::new(Metrics::new());
    let services = Arc::new(Services::new(config.clone()));
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
    let workers = queue.spawn_workers(
        config.queue.worker_count(),
        engine.clone(),
        definitions.clone(),
        stop_rx.clone(),
    );
    let pruner = crate::store::spawn_pruner(store.clone());
    let scheduler = Arc::new(Scheduler::new(
        definitions.clone(),
        engine.clone(),
        store.clone(),
        metrics.clone(),
    ));
    let timers = scheduler.spawn(stop_rx.clone());
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
    ));
    let grace = config.server.shutdown_grace;
    let server = tokio::spawn(http::serve(listener, app, stop_rx, grace));

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

    // SIGHUP forces a full rescan of the definitions.
    let hangups = {
        let reloader = reloader.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                let r = reloader.clone();
                match tokio::task::spawn_blocking(move || r.rescan()).await {
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

    shutdown.await;
    hangups.abort();
    drop(watcher);
    tracing::info!("shutting down: no new requests; finishing what is running");
    let _ = stop_tx.send(true);
    let (_, (), _) = tokio::join!(server, workers.finish(grace), timers);
    pruner.abort();
    sampler.abort();
    let _ = std::fs::remove_file(&address_file);
    store.flush_async().await?;
    tracing::info!(
        queued = queue.depth(),
        "stopped; queued jobs resume at the next start"
    );
    Ok(())
}
