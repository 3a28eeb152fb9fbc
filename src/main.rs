//! The `herald` command: a thin clap front end over the library.
//!
//! Every subcommand takes `--config`, `--data-dir` and `--definitions`;
//! flags override config.toml. Errors are one line on stderr and a non-zero
//! exit: 1 for a failed run or invalid definitions, 2 for bad usage.

mod allocator;
mod incidents_cli;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use herald::config::Config;
use herald::definition::{Definition, DefinitionSet, load_file};
use herald::engine::{Engine, RunRequest, RunResult};
use herald::nodes::{HandlerRegistry, Services};
use herald::store::{PipelineRun, RunQuery, RunStatus, StageStatus, Store, StoreOptions};
use serde_json::{Value, json};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

const ABOUT: &str = "herald — a host-level alert pipeline daemon";
const LONG_ABOUT: &str = "\
herald receives monitoring alerts, runs pipelines over them — ingest, host \
context, threshold checks, analysis, notification — and records every run.

Pipelines are JSON files in the definitions directory; the name of a pipeline \
is its file stem. The built-in pipeline `default` (INGEST → CHECK → ANALYZE → \
NOTIFY) ships inside the binary.

Configuration is read from --config FILE, else ./config.toml, else \
/etc/herald/config.toml, else built-in defaults. --data-dir and --definitions \
override the file.";

#[derive(Parser)]
#[command(name = "herald", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// Config file (default: ./config.toml, then /etc/herald/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where runs are stored (overrides `data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Directory of pipeline definitions (overrides `definitions_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    definitions: Option<PathBuf>,
    /// Log level or tracing filter (overrides `log_level`; HERALD_LOG also works).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM or SIGINT.
    ///
    /// Opens the store (holding the data dir; compacting it first when its
    /// file has passed `[store] compact_above_mb`), loads and watches the
    /// definitions and the config, and serves the HTTP API, the queue's
    /// workers, the schedules, host sampling and retention pruning.
    Serve {
        /// Address for the HTTP API (overrides `listen`).
        #[arg(long, value_name = "ADDR", value_parser = herald::config::parse_listen)]
        listen: Option<SocketAddr>,
    },
    /// Run a definition once, record the run, and print what each node did.
    ///
    /// Exits 1 when the run FAILED.
    Run(RunArgs),
    /// Check definition files and print every problem with file:line:col.
    ///
    /// PATHs may be files or directories (every *.json in it); without one,
    /// the definitions directory. Exits 1 if any file is invalid.
    Validate {
        #[arg(value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// List or show recorded runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Sample this host now, run its checks, and print the host state and
    /// the results.
    ///
    /// Exits as a monitoring plugin would: 0 OK, 1 WARNING, 2 CRITICAL,
    /// 3 UNKNOWN — so herald itself can be used from cron or another monitor.
    /// Without --definition: cpu, memory, disk, inodes, temperature, reboot
    /// and raid with their default thresholds.
    Check {
        /// Use the checks of this definition's first `check` node.
        #[arg(long, value_name = "NAME")]
        definition: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// List or show incidents: alerts grouped by name and instance.
    #[command(subcommand)]
    Incidents(incidents_cli::IncidentsCommand),
    /// Read an alert payload as a webhook would and print the driver, the
    /// alerts, their fingerprints, the change each makes and the incident
    /// each would join, and the definitions it would start.
    Ingest {
        /// The payload file, or `-` for standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Change nothing (required: real ingestion is the webhook's job).
        #[arg(long)]
        dry_run: bool,
        /// Read the payload as this driver instead of detecting it.
        #[arg(long, value_name = "NAME")]
        driver: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Maintain the store in the data dir.
    #[command(subcommand)]
    Store(StoreCommand),
    /// List the loaded definitions and any invalid files.
    Definitions {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Definition name (file stem), or `default` for the built-in pipeline.
    name: String,
    /// JSON payload file, or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    payload: Option<PathBuf>,
    /// Where the payload came from (recorded with the run).
    #[arg(long, value_name = "S", default_value = "cli")]
    source: String,
    /// Environment label recorded with the run (e.g. production).
    #[arg(long, value_name = "E")]
    environment: Option<String>,
    /// Print the run result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy the live records into a fresh database and swap it in, giving
    /// back the space sled's log has kept. `herald serve` must be stopped.
    Compact {
        /// Print JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Open a store that a damaged file keeps closed: keep a copy of the
    /// damaged database beside it, set its snapshot aside, and read it
    /// back from its log (what was written after damage in the log is
    /// lost). `herald serve` must be stopped.
    Recover {
        /// Print JSON instead of sentences.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Recorded runs, newest first.
    List {
        /// Only runs with this status (PENDING, INGESTED, CHECKED, ANALYZED,
        /// NOTIFIED, COMPLETED, FAILED).
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// Only runs of this definition.
        #[arg(long, value_name = "N")]
        definition: Option<String>,
        /// How many runs to show.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Continue after this run id (the `next` cursor of the previous page).
        #[arg(long, value_name = "RUN_ID")]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One run with all its stage executions.
    Show {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Resume a FAILED run (or one a crash left unfinished) from its first
    /// node that did not succeed; nodes that succeeded are not run again.
    Resume {
        run_id: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. }) {
        // Rust starts programs with SIGPIPE ignored, so printing to a pipe
        // whose reader has gone (`herald runs list | head -1`, a pager
        // quit early) is an error, and println! panics on it. A command's
        // output ends there quietly, as any Unix tool's does. The daemon
        // keeps it ignored; its sockets are written with MSG_NOSIGNAL
        // anyway.
        // SAFETY: restoring a signal's default action installs no handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, each said once: most of herald's
/// errors already name their cause in their own message ("cannot listen on
/// …: Address already in use"), which `{:#}` would repeat.
fn describe(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    said
}

/// Settings after config file and flags are merged.
struct Setup {
    config: Arc<Config>,
    /// The file the config came from, if any.
    config_file: Option<PathBuf>,
    overrides: Overrides,
}

/// Command-line flags that override the config file, kept so that a
/// reloaded config gets them too.
#[derive(Clone, Default)]
struct Overrides {
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    definitions: Option<PathBuf>,
    log_level: Option<String>,
}

impl Overrides {
    fn load(&self) -> Result<(Config, Option<PathBuf>), herald::config::ConfigError> {
        let (mut config, path) = Config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(dir) = &self.definitions {
            config.definitions_dir = dir.clone();
        }
        if let Some(level) = &self.log_level {
            config.log_level = level.clone();
        }
        Ok((config, path))
    }
}

impl Setup {
    fn new(cli: &Cli) -> Result<Setup> {
        if let Some(level) = &cli.log_level {
            herald::logging::check_filter(level)
                .map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
        }
        let overrides = Overrides {
            config: cli.config.clone(),
            data_dir: cli.data_dir.clone(),
            definitions: cli.definitions.clone(),
            log_level: cli.log_level.clone(),
        };
        let (config, config_file) = overrides.load()?;
        Ok(Setup {
            config: Arc::new(config),
            config_file,
            overrides,
        })
    }

    fn handlers(&self) -> Result<HandlerRegistry> {
        Ok(HandlerRegistry::builtin(Arc::new(Services::checked(
            self.config.clone(),
        )?)))
    }

    fn definitions(&self, handlers: &HandlerRegistry) -> Result<DefinitionSet> {
        Ok(DefinitionSet::load_dir(
            &self.config.definitions_dir,
            handlers,
        )?)
    }
}

type LogLevelHandle = herald::logging::LevelHandle;

fn real_main(cli: Cli) -> Result<ExitCode> {
    let setup = Setup::new(&cli)?;
    // `herald check` is for cron and other monitors: only problems on stderr.
    let quiet = matches!(cli.command, Command::Check { .. }) && cli.log_level.is_none();
    let log_handle = herald::logging::init(if quiet {
        "warn"
    } else {
        &setup.config.log_level
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve { listen } => runtime.block_on(serve(setup, listen, log_handle)),
        Command::Run(args) => runtime.block_on(run(setup, args)),
        Command::Validate { paths } => validate(setup, paths),
        Command::Runs(cmd) => runtime.block_on(runs(setup, cmd)),
        Command::Definitions { json } => runtime.block_on(definitions(setup, json)),
        Command::Store(StoreCommand::Compact { json }) => compact(setup, json),
        Command::Store(StoreCommand::Recover { json }) => recover(setup, json),
        Command::Incidents(cmd) => runtime.block_on(incidents_cli::incidents(setup, cmd)),
        Command::Ingest {
            file,
            dry_run,
            driver,
            json,
        } => runtime.block_on(incidents_cli::ingest(setup, file, dry_run, driver, json)),
        Command::Check { definition, json } => runtime.block_on(check(setup, definition, json)),
    }
}

async fn serve(setup: Setup, listen: Option<SocketAddr>, log: LogLevelHandle) -> Result<ExitCode> {
    let listen = listen.unwrap_or(setup.config.listen);
    let overrides = setup.overrides.clone();
    let reconfigure = herald::daemon::Reconfigure {
        file: setup.config_file.clone(),
        load: Box::new(move || overrides.load().map(|(c, _)| c).map_err(|e| e.to_string())),
        set_log_level: Box::new(move |level| {
            herald::logging::check_filter(level)?;
            let filter =
                tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            log.reload(filter).map_err(|e| e.to_string())
        }),
    };
    herald::daemon::run(setup.config.clone(), listen, reconfigure, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or SIGINT. The handlers are installed by this call,
/// not when the future is first polled: the daemon announces its address
/// before it awaits the signal, and a SIGTERM sent as soon as the address
/// file exists must stop it gracefully, not kill it.
///
/// A second SIGTERM or SIGINT during the graceful shutdown (a second
/// Ctrl-C) stops the process at once, exit 1, as a crash would: running
/// stages are cut short and resume at the next start; every job answered
/// 2xx is already on disk.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let streams = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match streams {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tokio::spawn(async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                    tracing::warn!(
                        "second signal: stopping now, without waiting for running stages; \
                         they resume at the next start"
                    );
                    std::process::exit(1);
                });
            }
            _ => {
                tracing::warn!("cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// `herald store compact`.
fn compact(setup: Setup, json: bool) -> Result<ExitCode> {
    let dir = &setup.config.data_dir;
    let done = herald::store::compact(dir, &StoreOptions::from(&setup.config.store))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else if let Some(copy_bytes) = done.discarded_copy_bytes {
        println!(
            "kept {} as it was ({}, {} records): a fresh copy took {}, no smaller, and was removed",
            dir.display(),
            mib(done.before_bytes),
            done.records,
            mib(copy_bytes)
        );
    } else {
        println!(
            "compacted {}: {} -> {} ({} records) in {:.1} s",
            dir.display(),
            mib(done.before_bytes),
            mib(done.after_bytes),
            done.records,
            done.took.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `herald store recover`.
fn recover(setup: Setup, json: bool) -> Result<ExitCode> {
    let dir = &setup.config.data_dir;
    let done = herald::store::recover(dir, &StoreOptions::from(&setup.config.store))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "recovered {}: {} runs ({} queued, of which {} unfinished runs whose job was lost), \
             {} incidents",
            std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .display(),
            done.runs,
            done.queued_jobs,
            done.requeued,
            done.incidents
        );
        println!(
            "the damaged database, as it was, is kept at {}; delete it once satisfied",
            done.damaged_copy.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Where runs are read and written: the store itself, or the daemon that
/// holds it.
enum Backend {
    Local(Store),
    Daemon(Client),
}

impl Setup {
    fn backend(&self) -> Result<Backend> {
        match Store::open(
            &self.config.data_dir,
            StoreOptions::from(&self.config.store),
        ) {
            Ok(store) => Ok(Backend::Local(store)),
            Err(e @ herald::store::StoreError::InUse(_)) => {
                match herald::daemon::DaemonAddress::read(&self.config.data_dir) {
                    Some(addr) => Ok(Backend::Daemon(Client::new(
                        addr.url,
                        self.config.tokens()?.into_iter().next(),
                    )?)),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A small client of the daemon's HTTP API, for when `herald serve` holds
/// the data dir.
struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn new(base: String, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(600))
            // The daemon is on this host: an http_proxy in the operator's
            // shell (common behind a corporate proxy) must not send the
            // CLI's requests to the proxy, which cannot reach it.
            .no_proxy()
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Client { base, token, http })
    }

    /// POSTs a raw JSON body (a webhook payload as it is).
    /// POSTs `body` as JSON text, with `headers` (a webhook signature).
    async fn call_text(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, String)],
    ) -> Result<Value> {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send(request.body(body)).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(&b);
        }
        self.send(request).await
    }

    /// Sends with the token; the JSON answer, or the daemon's error as ours.
    async fn send(&self, mut request: reqwest::RequestBuilder) -> Result<Value> {
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the running daemon at {}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        // A 401 for a token (not, say, a webhook signature: `bad_signature`).
        let code = value.pointer("/error/code").and_then(Value::as_str);
        if status == reqwest::StatusCode::UNAUTHORIZED && code == Some("unauthorized") {
            // The daemon's words are for HTTP clients; say how the CLI gets
            // its token.
            let had = if self.token.is_some() {
                "the token this command sent (the first of its configured tokens) is not one of the daemon's"
            } else {
                "this command found no token"
            };
            bail!(
                "the daemon requires a token and {had}. The CLI reads auth_tokens and \
                 auth_token_file from the config file and HERALD_AUTH_TOKENS from its \
                 environment; a service given its tokens in /etc/herald/env has them where \
                 this shell does not: run as the service's user with that variable set, or \
                 use an auth_token_file readable by that user"
            );
        }
        if status.is_success() {
            Ok(value)
        } else {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("request failed");
            let details = value
                .pointer("/error/details")
                .filter(|d| d.as_array().is_some_and(|a| !a.is_empty()));
            match details {
                Some(d) => bail!("{message} (daemon answered {status}): {d}"),
                None => bail!("{message} (daemon answered {status})"),
            }
        }
    }
}

/// The named definition, or an error that lists what exists.
fn find_definition(set: &DefinitionSet, name: &str) -> Result<Arc<Definition>> {
    if let Some(def) = set.get(name) {
        return Ok(def);
    }
    if let Some(invalid) = set.invalid(name) {
        bail!("definition `{name}` is invalid:\n{}", invalid.error);
    }
    let names = set.names().join(", ");
    Err(anyhow!("no definition named `{name}`; known: {names}"))
}

fn read_payload(path: Option<&Path>) -> Result<Value> {
    let Some(path) = path else {
        return Ok(Value::Null);
    };
    let (label, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the payload from standard input")?;
        ("<stdin>".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read payload {}", path.display()))?;
        (path.display().to_string(), text)
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "payload {label}:{}:{} is not valid JSON: {}",
            e.line(),
            e.column(),
            strip_position(&e)
        )
    })
}

fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.rfind(" at line ")
        .map_or(text.clone(), |i| text[..i].to_string())
}

async fn run(setup: Setup, args: RunArgs) -> Result<ExitCode> {
    let payload = read_payload(args.payload.as_deref())?;
    let store = match setup.backend()? {
        Backend::Local(store) => store,
        Backend::Daemon(client) => {
            let body =
                json!({"payload": payload, "source": args.source, "environment": args.environment});
            let path = format!("/orchestration/definitions/{}/execute/", args.name);
            let value = client
                .call(reqwest::Method::POST, &path, Some(body))
                .await?;
            let result: RunResult =
                serde_json::from_value(value).context("the daemon's answer is not a run result")?;
            print_result(&result, args.json)?;
            return Ok(exit_for(&result));
        }
    };
    let handlers = setup.handlers()?;
    let set = setup.definitions(&handlers)?;
    let definition = find_definition(&set, &args.name)?;
    let ctrl_c = stop_on_ctrl_c()?;
    let engine = Engine::new(Some(store.clone())).with_interrupt(ctrl_c.clone());
    let request = RunRequest {
        payload: herald::payload::Payload::from_value(payload),
        source: Some(args.source),
        environment: args.environment,
        ..RunRequest::default()
    };
    let result = engine.run(&definition, request).await?;
    store.flush_async().await?;
    print_result(&result, args.json)?;
    Ok(exit_unless_interrupted(&result, &ctrl_c))
}

/// For a run this command runs itself (no daemon): Ctrl-C stops the run,
/// which is recorded FAILED with an `interrupted` error and can be resumed,
/// instead of killing the process mid-stage and leaving the run unfinished
/// for the next `herald serve` to continue, as it continues what a crash
/// cut short. A second Ctrl-C exits at once. The handler is installed by
/// this call, not when a task first polls it.
fn stop_on_ctrl_c() -> Result<tokio::sync::watch::Receiver<bool>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupts =
        signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C (SIGINT)")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if interrupts.recv().await.is_none() {
            return;
        }
        eprintln!("interrupted: stopping the run (Ctrl-C again exits at once)");
        let _ = stop.send(true);
        if interrupts.recv().await.is_some() {
            std::process::exit(130);
        }
    });
    Ok(stopped)
}

/// The exit code of a run this command ran itself: 130 (as for SIGINT)
/// when Ctrl-C stopped it, with the way to go on.
fn exit_unless_interrupted(
    result: &RunResult,
    ctrl_c: &tokio::sync::watch::Receiver<bool>,
) -> ExitCode {
    if *ctrl_c.borrow() && result.status == RunStatus::Failed {
        eprintln!(
            "run {} stopped and recorded as FAILED; `herald runs resume {}` continues it",
            result.run_id, result.run_id
        );
        return ExitCode::from(130);
    }
    exit_for(result)
}

fn exit_for(result: &RunResult) -> ExitCode {
    if result.status == RunStatus::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_result(result: &RunResult, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
        return Ok(());
    }
    println!(
        "run {}  definition {} ({})  status {}  {} ms",
        result.run_id,
        result.definition,
        result.definition_version,
        result.status,
        result.duration_ms
    );
    if let Some(incident) = &result.incident_id {
        println!("incident {incident}");
    }
    for (id, node) in &result.node_results {
        let mark = match node.status {
            StageStatus::Succeeded => "ok  ",
            StageStatus::Skipped => "skip",
            _ => "FAIL",
        };
        let attempts = match node.attempts {
            0 => String::new(),
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        println!(
            "  {mark} {id:<16} {:<13} {:<10} {attempts:<11} {:>6} ms  {}",
            node.node_type,
            node.status.as_str(),
            node.duration_ms,
            node_note(node)
        );
    }
    if let Some(error) = &result.error {
        println!("error: {error}");
    }
    Ok(())
}

/// One short line about what a node produced or why it did not.
fn node_note(node: &herald::engine::NodeResult) -> String {
    if let Some(reason) = &node.skip_reason {
        return reason.clone();
    }
    if let Some(last) = node.errors.last()
        && node.status == StageStatus::Failed
    {
        return last.clone();
    }
    let out = &node.output;
    let text = |p: &str| out.pointer(p).and_then(Value::as_str).map(str::to_string);
    match node.node_type.as_str() {
        "ingest" => format!(
            "{} alert(s) via {}",
            out["alert_count"],
            text("/driver").unwrap_or_default()
        ),
        "check" => {
            let checks: Vec<String> = out["checks"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            format!(
                                "{} {} ({})",
                                c["name"].as_str().unwrap_or("?"),
                                c["status"].as_str().unwrap_or("?"),
                                c["value"]
                                    .as_f64()
                                    .map_or("n/a".into(), |v| format!("{v:.1}%"))
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            checks.join(", ")
        }
        "context" => {
            let mut parts = Vec::new();
            if let Some(cpu) = out.pointer("/cpu/usage_percent").and_then(Value::as_f64) {
                parts.push(format!("cpu {cpu:.1}%"));
            }
            if let Some(mem) = out.pointer("/memory/percent").and_then(Value::as_f64) {
                parts.push(format!("memory {mem:.1}%"));
            }
            if let Some(mounts) = out.pointer("/disk/mounts").and_then(Value::as_array) {
                parts.push(format!("{} mount(s)", mounts.len()));
            }
            parts.join(", ")
        }
        "intelligence" => format!(
            "{}: {}",
            text("/severity").unwrap_or_default(),
            text("/summary").unwrap_or_default()
        ),
        "notify" => format!(
            "delivered via {}",
            text("/channel")
                .or_else(|| text("/driver"))
                .unwrap_or_default()
        ),
        _ => {
            let s = out.to_string();
            if s.len() > 80 {
                format!("{}…", &s[..s.floor_char_boundary(80)])
            } else {
                s
            }
        }
    }
}

/// The checks `herald check` runs without --definition.
const DEFAULT_HOST_CHECKS: &str = r#"{"version": "1", "nodes": [{"id": "check", "type": "check",
  "config": {"checks": ["cpu", "memory", "disk", "inodes", "temperature", "reboot", "raid"]}}]}"#;

async fn check(setup: Setup, definition: Option<String>, json: bool) -> Result<ExitCode> {
    let services = Arc::new(Services::checked(setup.config.clone())?);
    let host = services.host.clone();
    let handlers = HandlerRegistry::builtin(services);
    let checks = match &definition {
        None => herald::definition::parse_definition(
            "host-checks",
            "<builtin>",
            DEFAULT_HOST_CHECKS,
            &handlers,
        )
        .map_err(|e| anyhow!("{e}"))?,
        Some(name) => {
            let set = setup.definitions(&handlers)?;
            let def = find_definition(&set, name)?;
            let node = def
                .nodes
                .iter()
                .find(|n| n.node_type == "check")
                .ok_or_else(|| anyhow!("definition `{name}` has no check node"))?;
            let text = json!({"version": "1", "nodes": [{"id": "check", "type": "check", "config": node.config}]});
            herald::definition::parse_definition(name, "<definition>", &text.to_string(), &handlers)
                .map_err(|e| anyhow!("{e}"))?
        }
    };
    let snapshot = host.sample().await;
    let result = Engine::new(None)
        .run(&checks, RunRequest::default())
        .await?;
    let output = &result.node_results["check"].output;
    let status: herald::host::thresholds::CheckStatus =
        serde_json::from_value(output["status"].clone())
            .unwrap_or(herald::host::thresholds::CheckStatus::Unknown);
    if json {
        let host_state = herald::nodes::context::sections(
            &snapshot,
            &["cpu", "memory", "disk", "system"].map(String::from),
            10,
        );
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"host": host_state, "status": status, "checks": output["checks"]})
            )?
        );
        return Ok(ExitCode::from(status.exit_code()));
    }
    use std::io::IsTerminal;
    let colour = std::io::stdout().is_terminal();
    let paint = |status: &str| -> String {
        if !colour {
            return status.to_string();
        }
        let code = match status {
            "OK" => "32",
            "WARNING" => "33",
            "CRITICAL" => "31",
            _ => "35",
        };
        format!("\x1b[{code}m{status}\x1b[0m")
    };
    let s = &snapshot;
    println!(
        "host     {} ({})",
        s.system.hostname.as_deref().unwrap_or("?"),
        s.system.os.as_deref().unwrap_or("?")
    );
    println!(
        "cpu      {:.1}%  load {:.2} {:.2} {:.2}  {} cores",
        s.cpu.usage_percent, s.cpu.load_1, s.cpu.load_5, s.cpu.load_15, s.cpu.logical_cores
    );
    println!(
        "memory   {:.1}% of {:.1} GiB  swap {:.1}%",
        s.memory.percent,
        s.memory.total_bytes as f64 / 1073741824.0,
        s.memory.swap_percent
    );
    for d in &s.disks {
        println!(
            "disk     {:<20} {:>5.1}% of {:.1} GiB  inodes {}",
            d.mount,
            d.percent,
            d.total_bytes as f64 / 1073741824.0,
            d.inodes_percent
                .map_or("-".to_string(), |p| format!("{p:.1}%"))
        );
    }
    println!();
    println!("{:<22} {:<10} MESSAGE", "CHECK", "STATUS");
    for c in output["checks"].as_array().into_iter().flatten() {
        let st = c["status"].as_str().unwrap_or("UNKNOWN");
        let padded = format!("{st:<10}");
        println!(
            "{:<22} {} {}",
            c["name"].as_str().unwrap_or("?"),
            paint(&padded),
            c["message"].as_str().unwrap_or("")
        );
    }
    println!("\noverall: {}", paint(status.as_str()));
    Ok(ExitCode::from(status.exit_code()))
}

fn validate(setup: Setup, paths: Vec<PathBuf>) -> Result<ExitCode> {
    // The config was loaded and checked to get here (an invalid one is an
    // error before this); what would only bite later is said as well.
    let handlers = setup.handlers()?;
    // The daemon reads the token file at start; one it cannot read stops it.
    setup.config.tokens()?;
    match &setup.config_file {
        Some(file) => println!("ok      {} (config)", file.display()),
        None => println!("ok      built-in defaults (no config file)"),
    }
    for problem in setup.config.problems(setup.config_file.as_deref()) {
        println!("  warning: {problem}");
    }
    let paths = if paths.is_empty() {
        vec![setup.config.definitions_dir.clone()]
    } else {
        paths
    };
    let mut files = Vec::new();
    for path in &paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("{}: no such file or directory", path.display());
        }
    }
    let mut invalid = 0;
    for file in &files {
        match load_file(file, &handlers) {
            Ok(def) => println!("ok      {} ({} nodes)", file.display(), def.nodes.len()),
            Err(e) => {
                invalid += 1;
                println!("invalid {}", file.display());
                for line in e.to_string().lines() {
                    println!("  {line}");
                }
            }
        }
    }
    println!("{} file(s), {} invalid", files.len(), invalid);
    Ok(if invalid > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn definitions(setup: Setup, json: bool) -> Result<ExitCode> {
    // A running daemon knows what it loaded and when each schedule fires.
    let from_daemon = match herald::daemon::DaemonAddress::read(&setup.config.data_dir) {
        Some(addr) => {
            let client = Client::new(addr.url, setup.config.tokens()?.into_iter().next())?;
            client
                .call(reqwest::Method::GET, "/orchestration/definitions/", None)
                .await
                .ok()
                .and_then(|v| v["results"].as_array().cloned())
        }
        None => None,
    };
    let items = match from_daemon {
        Some(items) => items,
        None => {
            let handlers = setup.handlers()?;
            setup.definitions(&handlers)?.summaries()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<8} {:>5}  {:<16}  {:<16}  {:<20}  DESCRIPTION",
        "NAME", "STATE", "NODES", "VERSION", "SCHEDULE", "NEXT RUN"
    );
    for d in &items {
        let text = |k: &str| d[k].as_str().unwrap_or("").to_string();
        let schedule = match (&d["schedule"]["every"], &d["schedule"]["cron"]) {
            (Value::String(e), _) => format!("every {e}"),
            (_, Value::String(c)) => format!("cron {c}"),
            _ => "-".to_string(),
        };
        let next = match d["next_run"].as_str() {
            Some(n) => n.get(..19).unwrap_or(n).replace('T', " "),
            None if schedule != "-" => "(daemon not running)".to_string(),
            None => "-".to_string(),
        };
        println!(
            "{:<24} {:<8} {:>5}  {:<16}  {:<16}  {:<20}  {}",
            text("name"),
            text("state"),
            d["nodes"]
                .as_u64()
                .map_or("-".to_string(), |n| n.to_string()),
            text("version_hash"),
            schedule,
            next,
            text("description")
        );
        if let Some(run_id) = d["schedule_held_by"].as_str() {
            println!(
                "    schedule held: its last run {run_id} was abandoned (herald died during it at \
                 every start); change the definition or `herald runs resume {run_id}`"
            );
        }
        if text("state") == "invalid" {
            for issue in d["errors"].as_array().into_iter().flatten() {
                let at = match (issue["line"].as_u64(), issue["column"].as_u64()) {
                    (Some(l), Some(c)) => format!("{l}:{c}: "),
                    _ => String::new(),
                };
                println!(
                    "    {at}{}: {}",
                    issue["path"].as_str().unwrap_or(""),
                    issue["message"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn runs(setup: Setup, cmd: RunsCommand) -> Result<ExitCode> {
    let store = match setup.backend()? {
        Backend::Local(store) => store,
        Backend::Daemon(client) => return runs_via_daemon(&client, cmd).await,
    };
    match cmd {
        RunsCommand::List {
            status,
            definition,
            limit,
            cursor,
            json,
        } => {
            let status = match status {
                Some(s) => Some(RunStatus::parse(&s).ok_or_else(|| {
                    let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                    anyhow!("unknown status `{s}`; one of {}", all.join(", "))
                })?),
                None => None,
            };
            let page = store.list_runs(&RunQuery {
                status,
                definition: definition.clone(),
                limit: limit.clamp(1, 1000),
                cursor,
                ..RunQuery::default()
            })?;
            print_run_list(&page.runs, page.next_cursor, json)?;
            // As the daemon does: an empty list for a misspelt name says so.
            // A definitions dir that does not load only loses the hint.
            if page.runs.is_empty()
                && let Some(name) = definition
                && let Ok(handlers) = setup.handlers()
                && let Ok(set) = setup.definitions(&handlers)
                && let Some(hint) = herald::definition::unknown_definition_hint(&name, &set.names())
            {
                eprintln!("{hint}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { run_id, json } => {
            let run = store
                .get_run(&run_id)?
                .ok_or_else(|| anyhow!("no run with id {run_id}"))?;
            let stages = store.stages(&run_id)?;
            print_run(&run, &stages, json)?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Resume { run_id, json } => {
            let run = store
                .get_run(&run_id)?
                .ok_or_else(|| anyhow!("no run with id {run_id}"))?;
            let handlers = setup.handlers()?;
            let set = setup.definitions(&handlers)?;
            let definition = find_definition(&set, &run.definition)?;
            let ctrl_c = stop_on_ctrl_c()?;
            let engine = Engine::new(Some(store.clone())).with_interrupt(ctrl_c.clone());
            let result = engine.resume(&definition, &run_id).await?;
            store.flush_async().await?;
            print_result(&result, json)?;
            Ok(exit_unless_interrupted(&result, &ctrl_c))
        }
    }
}

async fn runs_via_daemon(client: &Client, cmd: RunsCommand) -> Result<ExitCode> {
    match cmd {
        RunsCommand::List {
            status,
            definition,
            limit,
            cursor,
            json,
        } => {
            let mut query: Vec<(&str, String)> = vec![("limit", limit.clamp(1, 1000).to_string())];
            if let Some(s) = status {
                query.push(("status", s));
            }
            if let Some(d) = definition {
                query.push(("definition", d));
            }
            if let Some(c) = cursor {
                query.push(("cursor", c));
            }
            let qs: String = query
                .iter()
                .map(|(k, v)| format!("{k}={}", form_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let value = client
                .call(
                    reqwest::Method::GET,
                    &format!("/orchestration/pipelines/?{qs}"),
                    None,
                )
                .await?;
            let runs: Vec<PipelineRun> = serde_json::from_value(value["results"].clone())
                .context("the daemon's answer is not a list of runs")?;
            let next = value["next_cursor"].as_str().map(str::to_string);
            print_run_list(&runs, next, json)?;
            if let Some(hint) = value["hint"].as_str() {
                eprintln!("{hint}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { run_id, json } => {
            let value = client
                .call(
                    reqwest::Method::GET,
                    &format!("/orchestration/pipeline/{run_id}/"),
                    None,
                )
                .await?;
            let stages: Vec<herald::store::StageExecution> =
                serde_json::from_value(value["stages"].clone())
                    .context("the daemon's answer has no stages")?;
            let payload = serde_json::from_value(value["payload"].clone()).unwrap_or_default();
            let mut run: PipelineRun =
                serde_json::from_value(value).context("the daemon's answer is not a run")?;
            run.payload = payload;
            print_run(&run, &stages, json)?;
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Resume { run_id, json } => {
            let value = client
                .call(
                    reqwest::Method::POST,
                    &format!("/orchestration/pipeline/{run_id}/resume/"),
                    None,
                )
                .await?;
            let result: RunResult =
                serde_json::from_value(value).context("the daemon's answer is not a run result")?;
            print_result(&result, json)?;
            Ok(exit_for(&result))
        }
    }
}

fn print_run_list(runs: &[PipelineRun], next: Option<String>, json: bool) -> Result<()> {
    if json {
        let out = json!({"runs": runs.iter().map(run_summary).collect::<Vec<_>>(), "next": next});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<26}  {:<20}  {:<9}  {:<20}  {:>8}  SOURCE",
            "RUN_ID", "DEFINITION", "STATUS", "CREATED (UTC)", "MS"
        );
        for r in runs {
            println!(
                "{:<26}  {:<20}  {:<9}  {:<20}  {:>8}  {}",
                r.run_id,
                r.definition,
                r.status.as_str(),
                r.created_at.format("%Y-%m-%d %H:%M:%S"),
                r.duration_ms.map_or("-".to_string(), |d| d.to_string()),
                r.source.as_deref().unwrap_or("-")
            );
        }
        if let Some(next) = next {
            println!("more: herald runs list --cursor {next}");
        }
    }
    Ok(())
}

fn print_run(
    run: &PipelineRun,
    stages: &[herald::store::StageExecution],
    json: bool,
) -> Result<()> {
    if json {
        let mut out = serde_json::to_value(run)?;
        out["payload"] = serde_json::to_value(&run.payload)?;
        out["stages"] = serde_json::to_value(stages)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("run         {}", run.run_id);
    println!("trace       {}", run.trace_id);
    println!(
        "definition  {} ({})",
        run.definition, run.definition_version
    );
    println!("status      {}", run.status);
    println!("source      {}", run.source.as_deref().unwrap_or("-"));
    println!("incident    {}", run.incident_id.as_deref().unwrap_or("-"));
    println!("created     {}", run.created_at.to_rfc3339());
    println!(
        "duration    {}",
        run.duration_ms.map_or("-".into(), |d| format!("{d} ms"))
    );
    println!("attempts    {}", run.attempts);
    if let Some(e) = &run.last_error {
        println!(
            "error       {} in `{}`: {}",
            e.error_type, e.node_id, e.message
        );
    }
    println!("stages:");
    for s in stages {
        println!(
            "  {:<16} {:<13} attempt {:<2} {:<10} {:>6}  {}",
            s.node_id,
            s.stage,
            s.attempt,
            s.status.as_str(),
            s.duration_ms.map_or("-".into(), |d| format!("{d} ms")),
            s.error.as_ref().map(|e| e.message.as_str()).unwrap_or("")
        );
    }
    Ok(())
}

fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn run_summary(r: &PipelineRun) -> Value {
    json!({
        "run_id": r.run_id,
        "trace_id": r.trace_id,
        "definition": r.definition,
        "definition_version": r.definition_version,
        "status": r.status,
        "source": r.source,
        "incident_id": r.incident_id,
        "created_at": r.created_at,
        "completed_at": r.completed_at,
        "duration_ms": r.duration_ms,
        "error": r.last_error,
    })
}
