//! The HTTP API: a hyper server whose paths match the Django app it
//! replaces, so existing webhooks and scripts only change host and port.
//!
//! [`serve`] is the accept loop: connections are bounded by a semaphore, each
//! is served by hyper with a header-read timeout, and on shutdown every
//! connection finishes its in-flight request and closes (mini-redis' shape).
//! [`handle`] routes, authenticates and dispatches to one module per
//! resource; every error is JSON.

mod auth;
mod body;
mod definitions;
mod incidents;
mod ops;
mod pipelines;
mod refusals;
mod response;
pub mod router;
mod signature;
mod webhooks;

pub use response::ApiError;
pub use signature::sign;

use crate::config::Config;
use crate::definition::SharedDefinitions;
use crate::engine::Engine;
use crate::engine::queue::Queue;
use crate::metrics::Metrics;
use crate::nodes::HandlerRegistry;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::watch::Reloader;
use arc_swap::{ArcSwap, ArcSwapOption};
use auth::{RateLimiter, Tokens};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use response::Resp;
use router::{Miss, Route};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Everything a request handler may use.
pub struct App {
    /// The config in force; swapped whole on reload.
    pub config: ArcSwap<Config>,
    pub store: Store,
    pub engine: Engine,
    pub queue: Arc<Queue>,
    pub definitions: SharedDefinitions,
    pub reloader: Arc<Reloader>,
    pub scheduler: Arc<Scheduler>,
    pub metrics: Arc<Metrics>,
    /// Where deliveries change incidents and write their runs, one at a time.
    pub intake: crate::intake_writer::IntakeWriter,
    tokens: ArcSwap<Tokens>,
    limiter: ArcSwapOption<RateLimiter>,
    /// Webhooks refused, or sent with alerts left out: logged once a
    /// minute of each kind.
    refusals: refusals::Refusals,
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        tokens: &[String],
        store: Store,
        engine: Engine,
        queue: Arc<Queue>,
        definitions: SharedDefinitions,
        reloader: Arc<Reloader>,
        scheduler: Arc<Scheduler>,
        metrics: Arc<Metrics>,
        intake: crate::intake_writer::IntakeWriter,
    ) -> Self {
        App {
            limiter: ArcSwapOption::from(
                config
                    .rate_limit
                    .clone()
                    .map(|r| Arc::new(RateLimiter::new(r))),
            ),
            tokens: ArcSwap::from_pointee(Tokens::new(tokens)),
            config: ArcSwap::new(config),
            store,
            engine,
            queue,
            definitions,
            reloader,
            scheduler,
            metrics,
            intake,
            refusals: refusals::Refusals::default(),
        }
    }
}

impl App {
    /// Takes a reloaded config's live parts: tokens, rate limit, body
    /// limits, webhook routing and secrets.
    pub fn apply(&self, config: Arc<Config>, tokens: &[String]) {
        self.tokens.store(Arc::new(Tokens::new(tokens)));
        // Buckets start full: renewed only when the limit itself changed,
        // not at every config change, or each one hands every client a
        // fresh burst.
        if self.config.load().rate_limit != config.rate_limit {
            self.limiter.store(
                config
                    .rate_limit
                    .clone()
                    .map(|r| Arc::new(RateLimiter::new(r))),
            );
        }
        self.config.store(config);
    }

    /// The node handlers in force (they change with the notify channels).
    pub fn handlers(&self) -> Arc<HandlerRegistry> {
        self.reloader.handlers()
    }
}

/// Serves until `shutdown` turns true, then lets open connections finish
/// their current request (at most `grace`) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let max = app.config.load().server.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let header_timeout = app.config.load().server.request_timeout;
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, peer, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    // Every connection holds a permit: all permits back = all connections done.
    let drained = slots.acquire_many(max as u32);
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!("shutdown: some connections were still open after the grace period");
    }
}

/// Routes, authenticates, dispatches, and counts one request.
pub async fn handle(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (pattern, resp) = match router::route(&method, &path) {
        Ok((route, pattern)) => (pattern, dispatch_checked(app, peer, route, req).await),
        Err(Miss::NotFound) => (
            "unmatched",
            ApiError::not_found(
                "not_found",
                format!("no such endpoint: {path}; GET /openapi.json lists every route"),
            )
            .into_response(),
        ),
        Err(Miss::MethodNotAllowed(allow)) => (
            "unmatched",
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed on {path}; allowed: {allow}"),
            )
            .with_header("allow", allow)
            .into_response(),
        ),
    };
    let code = resp.status().as_u16();
    app.metrics.http_request(pattern, code);
    tracing::debug!(%method, path, code, ms = started.elapsed().as_millis() as u64, "request");
    resp
}

async fn dispatch_checked(
    app: &App,
    peer: SocketAddr,
    route: Route,
    mut req: Request<Incoming>,
) -> Resp {
    // For handlers that log who sent a request.
    req.extensions_mut().insert(peer);
    // A webhook refused is said in herald's log too: its sender's log is
    // elsewhere.
    let webhook = match &route {
        Route::Webhook(driver) => Some((
            webhooks::driver_label(driver.as_deref()),
            req.uri().path().to_string(),
        )),
        _ => None,
    };
    match authorize_then_dispatch(app, peer, route, req).await {
        Ok(resp) => resp,
        Err(mut e) => {
            if let Some((driver, path)) = webhook {
                // Alertmanager (and Grafana, on the same code) retries a
                // webhook only on a 5xx: a 429 would drop the notification
                // until its repeat_interval, hours later. Too busy is
                // therefore a 503 here, with the same Retry-After and code.
                let overloaded = e.status() == StatusCode::TOO_MANY_REQUESTS;
                if overloaded {
                    e = e.with_status(StatusCode::SERVICE_UNAVAILABLE);
                }
                if overloaded || e.status().is_client_error() {
                    app.refusals.note(driver, peer.ip(), &path, &e);
                }
            }
            e.into_response()
        }
    }
}

async fn authorize_then_dispatch(
    app: &App,
    peer: SocketAddr,
    route: Route,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let token = if route.is_open() {
        None
    } else {
        app.tokens.load().check(req.headers())?
    };
    if let Some(limiter) = app.limiter.load_full()
        && !route.is_open()
    {
        limiter.check(token.as_deref(), peer.ip())?;
    }
    dispatch(app, route, req).await
}

async fn dispatch(app: &App, route: Route, req: Request<Incoming>) -> Result<Resp, ApiError> {
    match route {
        Route::Healthz => Ok(ops::healthz()),
        Route::Readyz => Ok(ops::readyz(app).await),
        Route::Metrics => Ok(ops::metrics(app)),
        Route::OpenApi => Ok(ops::openapi()),
        Route::PipelineAccept => pipelines::accept(app, req).await,
        Route::PipelineSync => pipelines::sync(app, req).await,
        Route::RunList => pipelines::list(app, &req),
        Route::RunDetail(id) => pipelines::detail(app, &id),
        Route::RunResume(id) => pipelines::resume(app, &id, req).await,
        Route::DefinitionList => Ok(definitions::list(app)),
        Route::DefinitionReload => definitions::reload(app).await,
        Route::DefinitionDetail(name) => definitions::detail(app, &name),
        Route::DefinitionValidate(name) => definitions::validate(app, &name, req).await,
        Route::DefinitionExecute(name) => definitions::execute(app, &name, req).await,
        Route::WebhookProbe => Ok(webhooks::probe(app)),
        Route::IncidentList => incidents::list(app, &req),
        Route::IncidentDetail(id) => incidents::detail(app, &id),
        Route::Webhook(driver) => webhooks::accept(app, driver.as_deref(), req).await,
    }
}

/// `?key=value` pairs of a request.
/// A listing's `limit`: 1 to 1000, else a 400 saying so.
pub(crate) fn parse_limit(value: &str) -> Result<usize, response::ApiError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(response::ApiError::bad_request(
            "invalid_parameter",
            format!("limit must be a number from 1 to 1000, not `{value}`"),
        )),
    }
}

pub(crate) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `?mode=async` or `?mode=sync` (the default is given).
pub(crate) fn is_async(req: &Request<Incoming>, default_async: bool) -> Result<bool, ApiError> {
    match query_pairs(req).into_iter().find(|(k, _)| k == "mode") {
        None => Ok(default_async),
        Some((_, m)) if m == "async" => Ok(true),
        Some((_, m)) if m == "sync" => Ok(false),
        Some((_, m)) => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("mode must be `sync` or `async`, not `{m}`"),
        )),
    }
}
