//! `config.toml`: where herald keeps its data, where it reads definitions,
//! how long it keeps runs, and the notification channels (whose URLs are
//! secrets and so never appear in definitions).
//!
//! Lookup order: `--config FILE`, else `./config.toml`, else
//! `/etc/herald/config.toml`, else the built-in defaults, which are the same as
//! the shipped `config.toml`. Relative paths in a file are relative to the
//! file's directory, so `/etc/herald/config.toml` can say `data_dir = "data"`.

use crate::definition::duration::serde_human;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the system-wide config lives when there is none in the working dir.
pub const SYSTEM_CONFIG: &str = "/etc/herald/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {path}: {source}{hint}")]
    Read {
        /// Which file: `config`, or `auth_token_file`.
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
        /// Who may read it, when this process may not.
        hint: String,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    #[serde(with = "serde_listen")]
    pub listen: SocketAddr,
    /// sled database and the daemon's address file.
    pub data_dir: PathBuf,
    /// Directory of `*.json` pipeline definitions.
    pub definitions_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    pub log_level: String,
    /// Bearer tokens accepted by the API (also: `auth_token_file`, and the
    /// `HERALD_AUTH_TOKENS` environment variable, comma-separated).
    pub auth_tokens: Vec<String>,
    /// A file with one token per line (`#` comments allowed).
    pub auth_token_file: Option<PathBuf>,
    pub server: ServerConfig,
    pub queue: QueueConfig,
    pub webhooks: WebhooksConfig,
    pub rate_limit: Option<RateLimitConfig>,
    pub host: HostConfig,
    pub store: StoreConfig,
    pub notify: NotifyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Longest time to receive a request's headers and body.
    #[serde(with = "serde_human")]
    pub request_timeout: Duration,
    /// Largest API request body.
    pub max_body_bytes: usize,
    /// Largest webhook body (`/alerts/webhook/…`): Alertmanager sends a whole
    /// alert group in one body, tens of MB in an alert storm.
    pub max_webhook_body_bytes: usize,
    /// On SIGTERM, how long running stages may take to finish.
    #[serde(with = "serde_human")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 1024,
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            max_webhook_body_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Runs executed at once; 0 means [`WORKERS_PER_CORE`] per CPU core,
    /// at most [`MAX_DEFAULT_WORKERS`].
    pub workers: usize,
    /// Jobs accepted and not finished; beyond this, 429.
    pub capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            workers: 0,
            capacity: 10_000,
        }
    }
}

/// Workers per CPU core when `[queue] workers` is 0 (the default).
///
/// A run spends most of its time waiting, not computing: on the flush that
/// makes a notify durable before the run goes on, on a notification
/// target, a check plugin, an AI provider. Workers are async tasks, so a
/// waiting one costs no thread. With one per core, two on this 2-core
/// machine, a backlog of ~35,000 built-in runs (notify `log`, so no
/// network) drained at 2,900 runs/s and the CPU sat partly idle; with 8
/// per core, 5,800/s, where more (32, 64) stopped helping: the CPU is
/// then the bound. A remote target's latency makes the gap far wider.
pub const WORKERS_PER_CORE: usize = 8;

/// The most workers the default gives a big host: each can hold a check
/// plugin's process or a call to an AI provider at once, and 64 at a time
/// is already more than a provider's rate limit or a host's process table
/// wants from a monitoring daemon. A set `[queue] workers` is not capped.
pub const MAX_DEFAULT_WORKERS: usize = 64;

/// The worker count `[queue] workers = 0` means on a host with `cores` cores.
pub fn default_workers(cores: usize) -> usize {
    (WORKERS_PER_CORE * cores.max(1)).min(MAX_DEFAULT_WORKERS)
}

impl QueueConfig {
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            default_workers(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// What runs for an alert no definition's trigger claims: `builtin` (the
    /// `default` pipeline) or `none`.
    pub default_route: DefaultRoute,
    /// HMAC-SHA256 secrets by webhook source: a source with a secret must
    /// sign its bodies, in herald's way or its sender's own
    /// (`src/http/signature.rs`).
    #[serde(deserialize_with = "webhook_secrets")]
    pub secrets: BTreeMap<String, WebhookSecret>,
    /// A resolved incident whose alert fires again within this long is
    /// re-opened; later, a new incident is opened.
    #[serde(with = "serde_human")]
    pub reopen_window: Duration,
}

/// A webhook source's signing secret, and where its sender puts the
/// signature. Written as the secret alone (`grafana = "…"`) or as a table
/// (`grafana = { secret = "…", timestamp_header = "X-Grafana-Alerting-Timestamp" }`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecret {
    pub secret: String,
    /// The header that holds the signature, for a sender that lets you name
    /// it (Grafana's `hmac_config.header`); else the sender's usual one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The header that holds the Unix time the sender signed at, for a
    /// sender that then signs `<time>:<body>` (Grafana's
    /// `hmac_config.timestamp_header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
}

impl WebhookSecret {
    pub fn new(secret: &str) -> Self {
        WebhookSecret {
            secret: secret.to_string(),
            header: None,
            timestamp_header: None,
        }
    }
}

/// The secret alone, or the table; a table's unknown key is named.
fn webhook_secrets<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, WebhookSecret>, D::Error> {
    enum Written {
        Secret(String),
        Table(toml::Table),
    }
    impl<'de> Deserialize<'de> for Written {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Either;
            impl<'de> serde::de::Visitor<'de> for Either {
                type Value = Written;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str(
                        "a secret (a string), or a table { secret, header, timestamp_header }",
                    )
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Written, E> {
                    Ok(Written::Secret(v.to_string()))
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    m: M,
                ) -> Result<Written, M::Error> {
                    let table =
                        toml::Table::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                    Ok(Written::Table(table))
                }
            }
            d.deserialize_any(Either)
        }
    }
    let written = BTreeMap::<String, Written>::deserialize(d)?;
    written
        .into_iter()
        .map(|(source, w)| {
            let secret = match w {
                Written::Secret(secret) => WebhookSecret::new(&secret),
                Written::Table(table) => table.try_into().map_err(|e: toml::de::Error| {
                    serde::de::Error::custom(format!("webhooks.secrets.{source}: {}", e.message()))
                })?,
            };
            Ok((source, secret))
        })
        .collect()
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            default_route: DefaultRoute::Builtin,
            secrets: BTreeMap::new(),
            reopen_window: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DefaultRoute {
    Builtin,
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// How often the daemon samples the host in the background.
    #[serde(with = "serde_human")]
    pub sample_interval: Duration,
    /// Directories whose programs `check` nodes may run as plugins.
    pub plugin_dirs: Vec<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            sample_interval: Duration::from_secs(5),
            plugin_dirs: vec![
                PathBuf::from("/usr/lib/nagios/plugins"),
                PathBuf::from("/usr/lib/monitoring-plugins"),
            ],
        }
    }
}

/// Requests per second per client (token, or IP without one), with a burst.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            definitions_dir: PathBuf::from("./definitions"),
            log_level: "info".to_string(),
            auth_tokens: Vec::new(),
            auth_token_file: None,
            server: ServerConfig::default(),
            queue: QueueConfig::default(),
            webhooks: WebhooksConfig::default(),
            rate_limit: None,
            host: HostConfig::default(),
            store: StoreConfig::default(),
            notify: NotifyConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
    /// Runs older than this are pruned.
    #[serde(with = "serde_human")]
    pub retention: Duration,
    /// At most this many runs are kept; the oldest go first.
    pub max_runs: u64,
    /// Compact the database, at start and online after each pruning pass,
    /// when its file has reached this many MiB (and twice what the last
    /// compaction left); 0 never does.
    pub compact_above_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_mb: 16,
            retention: Duration::from_secs(30 * 24 * 3600),
            max_runs: 100_000,
            compact_above_mb: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Generic webhook channels by name: `[notify.webhook.ops]`.
    pub webhook: BTreeMap<String, WebhookChannel>,
}

/// Each notify channel's extra CA certificates, PEM, by channel name.
pub type ChannelCas = BTreeMap<String, Vec<u8>>;

/// Where a `webhook` notify node posts. Give `url`, or `url_env` naming an
/// environment variable that holds it (keeps the secret out of the file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookChannel {
    pub url: Option<String>,
    pub url_env: Option<String>,
    /// Extra headers, e.g. an Authorization header for the receiver.
    pub headers: BTreeMap<String, String>,
    /// PEM certificates of CAs to trust for this channel's https URL,
    /// besides the public roots herald ships: a receiver inside the
    /// network, behind a private CA.
    pub ca_file: Option<PathBuf>,
}

impl WebhookChannel {
    /// The channel's URL, from the file or the environment.
    pub fn resolve_url(&self) -> Result<String, String> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
        match &self.url_env {
            Some(var) => {
                let url = std::env::var(var)
                    .map_err(|_| format!("environment variable {var} (url_env) is not set"))?;
                // The value is a secret: say what is wrong, not what it is.
                if url.starts_with("http://") || url.starts_with("https://") {
                    match reqwest::Url::parse(&url) {
                        Ok(_) => Ok(url),
                        Err(e) => Err(format!(
                            "environment variable {var} (url_env) does not hold a valid URL: {e}"
                        )),
                    }
                } else {
                    Err(format!(
                        "environment variable {var} (url_env) does not hold an http:// or https:// URL"
                    ))
                }
            }
            None => Err("has neither `url` nor `url_env`".to_string()),
        }
    }
}

impl Config {
    /// Finds and reads the config: `explicit`, else `./config.toml`, else the
    /// system file, else defaults. Returns the path it read, if any.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let candidates: Vec<PathBuf> = match explicit {
            Some(p) => vec![p.to_path_buf()],
            None => vec![PathBuf::from("config.toml"), PathBuf::from(SYSTEM_CONFIG)],
        };
        for path in candidates {
            if explicit.is_none() && !path.exists() {
                continue;
            }
            let config = Self::from_file(&path)?;
            return Ok((config, Some(path)));
        }
        Ok((Config::default(), None))
    }

    /// Reads one file; relative paths in it become relative to its directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| read_failed("config", path, source))?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(base) = base {
            config.data_dir = join_relative(base, &config.data_dir);
            config.definitions_dir = join_relative(base, &config.definitions_dir);
            config.auth_token_file = config.auth_token_file.map(|f| join_relative(base, &f));
            for channel in config.notify.webhook.values_mut() {
                channel.ca_file = channel.ca_file.take().map(|f| join_relative(base, &f));
            }
        }
        Ok(config)
    }

    /// Parses config text; the message carries toml's line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The PEM text of each notify channel's `ca_file`, checked to hold at
    /// least one certificate; read at start and at each reload, like the
    /// token file.
    pub fn channel_cas(&self) -> Result<ChannelCas, ConfigError> {
        let mut cas = ChannelCas::new();
        for (name, channel) in &self.notify.webhook {
            let Some(path) = &channel.ca_file else {
                continue;
            };
            let invalid = |what: String| ConfigError::Invalid {
                path: path.clone(),
                message: format!("notify.webhook.{name}.ca_file: {what}"),
            };
            let pem = std::fs::read(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => {}
                Ok(_) => {
                    return Err(invalid(
                        "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
                    ));
                }
                Err(e) => return Err(invalid(format!("not a PEM certificate bundle: {e}"))),
            }
            cas.insert(name.clone(), pem);
        }
        Ok(cas)
    }

    /// Every API token from the file, the token file and the environment.
    pub fn tokens(&self) -> Result<Vec<String>, ConfigError> {
        let mut tokens: Vec<String> = self.auth_tokens.clone();
        if let Some(path) = &self.auth_token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| read_failed("auth_token_file", path, source))?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        if let Ok(env) = std::env::var("HERALD_AUTH_TOKENS") {
            tokens.extend(
                env.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            );
        }
        tokens.retain(|t| !t.trim().is_empty());
        Ok(tokens)
    }

    /// Whether this config holds secrets: tokens, webhook secrets, notify
    /// URLs (a Slack webhook URL is its own credential) or headers.
    fn holds_secrets(&self) -> bool {
        !self.auth_tokens.is_empty()
            || !self.webhooks.secrets.is_empty()
            || self
                .notify
                .webhook
                .values()
                .any(|c| c.url.is_some() || !c.headers.is_empty())
    }

    /// Files of this config that hold secrets and that every user can read:
    /// `file` (the config file it came from) and the token file.
    pub fn secrets_readable_by_everyone(&self, file: Option<&Path>) -> Vec<String> {
        let mut found = Vec::new();
        let mut check = |path: &Path| {
            if let Some(mode) = readable_by_everyone(path) {
                found.push(format!(
                    "{} holds secrets and every user can read it (mode {mode:04o}): \
                     chmod o-r it (the packaged one is root:herald 0640)",
                    path.display()
                ));
            }
        };
        if let Some(file) = file
            && self.holds_secrets()
        {
            check(file);
        }
        if let Some(tokens) = &self.auth_token_file {
            check(tokens);
        }
        found
    }

    /// Everything about this config that does not stop herald but will
    /// bite later: a log level that is not one, what the environment
    /// lacks, a webhook secret its sender cannot sign with, and files
    /// holding secrets that every user can read. Said at start, at each
    /// config change, and by `herald validate`.
    pub fn problems(&self, file: Option<&Path>) -> Vec<String> {
        let mut problems = self.environment_problems();
        // Not an invalid config: a daemon that does not start after an
        // upgrade over such a line would page nobody at all.
        if let Err(e) = crate::logging::check_filter(&self.log_level) {
            problems.push(format!("log_level: {e}; logging at info instead"));
        }
        problems.extend(self.signature_problems());
        problems.extend(self.secrets_readable_by_everyone(file));
        problems
    }

    /// Webhook secrets given to a source whose sender cannot sign: every
    /// body it sends would be refused unless something on the way signs it.
    pub fn signature_problems(&self) -> Vec<String> {
        self.webhooks
            .secrets
            .iter()
            .filter(|(source, key)| {
                source.as_str() == "alertmanager" && key.header.is_none()
            })
            .map(|(source, _)| {
                format!(
                    "webhooks.secrets.{source}: Alertmanager does not sign its webhooks, so                      herald refuses every body on this source that does not carry                      X-Herald-Signature (added by a proxy or script); to authenticate                      Alertmanager itself, give it a token (http_config.basic_auth or                      authorization)"
                )
            })
            .collect()
    }

    /// What the environment lacks for this config, which does not stop
    /// herald but will fail something later: each notify channel whose
    /// `url_env` is unset or holds no http(s) URL.
    pub fn environment_problems(&self) -> Vec<String> {
        self.notify
            .webhook
            .iter()
            .filter_map(|(name, channel)| {
                channel
                    .resolve_url()
                    .err()
                    .map(|e| format!("notify.webhook.{name}: {e}; its notifications will fail"))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        if self.host.sample_interval < Duration::from_secs(1) {
            return Err("host.sample_interval must be at least 1s".to_string());
        }
        if self.queue.capacity == 0 {
            return Err("queue.capacity must be at least 1".to_string());
        }
        if self.server.max_connections == 0 {
            return Err("server.max_connections must be at least 1".to_string());
        }
        if let Some(r) = &self.rate_limit
            && (r.per_second <= 0.0 || r.burst == 0)
        {
            return Err("rate_limit needs per_second > 0 and burst >= 1".to_string());
        }
        if self.store.max_runs == 0 {
            return Err("store.max_runs must be at least 1".to_string());
        }
        // `0s` would prune each run as it finishes: a typo, not a policy.
        if self.store.retention < Duration::from_secs(60) {
            return Err("store.retention must be at least 1min".to_string());
        }
        if self.store.cache_mb == 0 {
            return Err("store.cache_mb must be at least 1".to_string());
        }
        for (source, key) in &self.webhooks.secrets {
            // A misspelt source would leave the real one unsigned, silently.
            if !crate::alerts::detect::DRIVERS.contains(&source.as_str()) {
                let hint = crate::definition::did_you_mean(source, crate::alerts::detect::DRIVERS)
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                return Err(format!(
                    "webhooks.secrets: `{source}` is not a webhook source; {hint}known: {}",
                    crate::alerts::detect::DRIVERS.join(", ")
                ));
            }
            if key.secret.is_empty() {
                return Err(format!("webhooks.secrets.{source}: the secret is empty"));
            }
            for name in key.header.iter().chain(&key.timestamp_header) {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!(
                        "webhooks.secrets.{source}: `{name}` is not a valid HTTP header name"
                    ));
                }
            }
        }
        for (name, channel) in &self.notify.webhook {
            if channel.url.is_none() && channel.url_env.is_none() {
                return Err(format!("notify.webhook.{name} needs `url` or `url_env`"));
            }
            if let Some(url) = &channel.url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "notify.webhook.{name}.url must start with http:// or https://"
                    ));
                }
                // Not echoed: a webhook URL often holds its token.
                if let Err(e) = reqwest::Url::parse(url) {
                    return Err(format!("notify.webhook.{name}.url is not a valid URL: {e}"));
                }
            }
            // Caught here, not at the first notification at 3 a.m.
            for (header, value) in &channel.headers {
                if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(format!(
                        "notify.webhook.{name}.headers: `{header}` is not a valid HTTP header name"
                    ));
                }
                if reqwest::header::HeaderValue::from_str(value).is_err() {
                    return Err(format!(
                        "notify.webhook.{name}.headers.{header}: the value is not a valid HTTP \
                         header value (a line break or a control character?)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An address to listen on: an IP address and port, or `localhost:PORT`
/// (127.0.0.1). Anything else is an error that says what to write — a
/// host name is not resolved, and `:8080` is not guessed to mean every
/// address.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:")
        && let Ok(port) = port.parse::<u16>()
    {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Err(format!(
        "`{text}` is not an IP address and port: write 127.0.0.1:8080 (this host only), \
         0.0.0.0:8080 (every IPv4 address) or [::]:8080 (every address)"
    ))
}

mod serde_listen {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::net::SocketAddr;

    pub fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_listen(&text).map_err(serde::de::Error::custom)
    }
}

/// A config or token file that could not be read; when for want of
/// permission, who may read it (the packaged config.toml is root:herald
/// 0640, so a login user's `herald runs list` lands here).
fn read_failed(what: &'static str, path: &Path, source: std::io::Error) -> ConfigError {
    use std::os::unix::fs::MetadataExt;
    let hint = match std::fs::metadata(path) {
        Ok(meta) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            let owner = crate::accounts::user_name(meta.uid());
            let group = crate::accounts::group_name(meta.gid());
            // root:herald: the service's user, named like its group, is
            // the one to suggest.
            let suggest = if meta.uid() == 0 && meta.gid() != 0 {
                &group
            } else {
                &owner
            };
            format!(
                "; it is readable by user `{owner}` and group `{group}` (mode {:04o}): run as one \
                 of them (sudo -u {suggest} herald …) or join the group",
                meta.mode() & 0o7777,
            )
        }
        _ => String::new(),
    };
    ConfigError::Read {
        what,
        path: path.to_path_buf(),
        source,
        hint,
    }
}

/// Whether a file holds secrets that every user of the host can read.
fn readable_by_everyone(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let mode = std::fs::metadata(path).ok()?.mode() & 0o7777;
    (mode & 0o004 != 0).then_some(mode)
}

fn join_relative(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_workers_are_eight_per_core_up_to_64() {
        assert_eq!(default_workers(0), 8, "an unknown count is one core");
        assert_eq!(default_workers(1), 8);
        assert_eq!(default_workers(2), 16);
        assert_eq!(default_workers(8), 64);
        assert_eq!(default_workers(96), 64);
        let set = QueueConfig {
            workers: 200,
            ..QueueConfig::default()
        };
        assert_eq!(set.worker_count(), 200, "a set count is not capped");
    }

    #[test]
    fn shipped_config_equals_builtin_defaults() {
        let shipped = Config::parse(include_str!("../config.toml")).unwrap();
        assert_eq!(shipped, Config::default());
    }

    #[test]
    fn packaged_config_is_valid() {
        let etc = Config::parse(include_str!("../packaging/config.toml")).unwrap();
        assert_eq!(etc.data_dir, PathBuf::from("/var/lib/herald"));
    }

    #[test]
    fn a_notify_channel_that_cannot_send_is_refused_at_load() {
        let channel = |body: &str| Config::parse(&format!("[notify.webhook.ops]\n{body}"));
        assert!(channel("url = \"https://hooks.example.com/T0/secret\"\nheaders = { Authorization = \"Bearer x\" }\n").is_ok());

        let err = channel("url = \"https://exa mple.com/secret\"\n").unwrap_err();
        assert!(
            err.contains("notify.webhook.ops.url is not a valid URL"),
            "{err}"
        );
        assert!(!err.contains("secret"), "the URL is not echoed: {err}");

        let err = channel("url = \"https://a.example\"\nheaders = { \"X Token\" = \"1\" }\n")
            .unwrap_err();
        assert!(
            err.contains("`X Token` is not a valid HTTP header name"),
            "{err}"
        );

        let err = channel(
            "url = \"https://a.example\"\nheaders = { Authorization = \"Bearer x\\ny\" }\n",
        )
        .unwrap_err();
        assert!(err.contains("headers.Authorization"), "{err}");
        assert!(!err.contains("Bearer"), "the value is not echoed: {err}");
    }

    #[test]
    fn a_webhook_secret_is_the_secret_or_a_table() {
        let c = Config::parse(
            "[webhooks.secrets]\npagerduty = \"pd\"\n\
             grafana = { secret = \"g\", timestamp_header = \"X-Grafana-Alerting-Timestamp\" }\n",
        )
        .unwrap();
        assert_eq!(c.webhooks.secrets["pagerduty"], WebhookSecret::new("pd"));
        let grafana = &c.webhooks.secrets["grafana"];
        assert_eq!(grafana.secret, "g");
        assert_eq!(grafana.header, None);
        assert_eq!(
            grafana.timestamp_header.as_deref(),
            Some("X-Grafana-Alerting-Timestamp")
        );
        assert!(c.signature_problems().is_empty());

        let secrets = |body: &str| Config::parse(&format!("[webhooks.secrets]\n{body}\n"));
        let err = secrets("grafana = { secret = \"g\", headr = \"X\" }").unwrap_err();
        assert!(
            err.contains("webhooks.secrets.grafana") && err.contains("headr"),
            "{err}"
        );
        assert!(err.contains("line "), "{err}");
        // A misspelt source would leave the real one unchecked.
        let err = secrets("pagerduy = \"pd\"").unwrap_err();
        assert!(err.contains("did you mean `pagerduty`?"), "{err}");
        let err = secrets("grafana = \"\"").unwrap_err();
        assert!(err.contains("the secret is empty"), "{err}");
        let err = secrets("zabbix = { secret = \"z\", header = \"X Sig\" }").unwrap_err();
        assert!(
            err.contains("`X Sig` is not a valid HTTP header name"),
            "{err}"
        );
        let err = secrets("grafana = 3").unwrap_err();
        assert!(
            err.contains("expected a secret (a string), or a table"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");

        // Alertmanager cannot sign: said, not refused (a proxy may sign).
        let am = secrets("alertmanager = \"a\"").unwrap();
        let problems = am.signature_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("does not sign"), "{problems:?}");
    }

    #[test]
    fn retention_is_at_least_a_minute() {
        let err = Config::parse("[store]\nretention = \"0s\"\n").unwrap_err();
        assert!(
            err.contains("store.retention must be at least 1min"),
            "{err}"
        );
        assert!(Config::parse("[store]\nretention = \"1min\"\n").is_ok());
    }

    #[test]
    fn unknown_key_is_an_error_with_a_line() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\ndata_dri = \"x\"\n").unwrap_err();
        assert!(err.contains("data_dri"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn listen_is_an_ip_and_port_or_localhost() {
        let c = Config::parse("listen = \"localhost:9000\"\n").unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        let c = Config::parse("listen = \"[::1]:9000\"\n").unwrap();
        assert!(c.listen.ip().is_loopback());
        for bad in [":8080", "example.com:80", "localhost", "127.0.0.1"] {
            let err = Config::parse(&format!("listen = \"{bad}\"\n")).unwrap_err();
            assert!(
                err.contains("0.0.0.0:8080") && err.contains("line 1"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn webhook_channel_needs_a_url() {
        let err = Config::parse("[notify.webhook.ops]\nheaders = {}\n").unwrap_err();
        assert!(err.contains("notify.webhook.ops"), "{err}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = std::env::temp_dir().join(format!("herald-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.toml");
        std::fs::write(
            &file,
            "data_dir = \"data\"\ndefinitions_dir = \"/abs/defs\"\n",
        )
        .unwrap();
        let config = Config::from_file(&file).unwrap();
        assert_eq!(config.data_dir, dir.join("data"));
        assert_eq!(config.definitions_dir, PathBuf::from("/abs/defs"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
