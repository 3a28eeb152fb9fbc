//! herald: a host-level alert pipeline daemon.
//!
//! An alert (or a timer, or an operator at the command line) starts a *run* of a
//! *definition*: a chain of nodes that ingest the alert, gather host context,
//! check thresholds, analyze and notify. The modules follow that flow:
//!
//! - [`definition`] reads the JSON definition files, validates them with errors
//!   that name the file, the JSON path and the line, and holds the loaded set,
//!   including the built-in `default` pipeline (INGEST → CHECK → ANALYZE → NOTIFY).
//! - [`nodes`] holds the [`nodes::NodeHandler`] trait and one module per node
//!   type. A handler checks its `config` once at load time and builds an
//!   executor; executors only see a read-only [`nodes::NodeContext`].
//! - [`engine`] runs one definition: it follows `next`, applies the skip rules,
//!   timeouts and retries, and records every stage through the store.
//! - [`store`] is the only module that knows sled: runs, stage executions,
//!   indexes, retention.
//! - [`alerts`] turns webhook payloads into normalized alerts and incidents.
//! - [`host`] samples this host's metrics with sysinfo and judges them against
//!   thresholds.
//! - [`config`] is the `config.toml` model with its defaults.
//! - [`http`] is the hyper server: the Django app's paths, auth, limits, and
//!   one module per resource; [`metrics`] is its Prometheus registry.
//! - [`daemon`] is `herald serve`'s life cycle: it wires the store, the
//!   durable queue ([`engine::queue`]) and its workers, and the server, and
//!   drains them on shutdown.
//! - [`watch`] follows the definitions directory and the config file;
//!   [`scheduler`] runs scheduled definitions on their timers.
//! - [`payload`] keeps a run's inbound payload as shared JSON text; [`ids`]
//!   makes the ids that key runs, incidents and deliveries, in time order;
//!   [`process_limits`] sets the open-files limit and SIGXFSZ for the
//!   daemon, and puts them back for the plugins it runs; [`logging`]
//!   shapes the log for a terminal or for systemd's journal.
//!
//! The binary (`src/main.rs`) is a thin clap front end over these modules.

pub mod accounts;
pub mod alerts;
pub mod config;
pub mod daemon;
pub mod definition;
pub mod engine;
pub mod host;
pub mod http;
pub mod ids;
pub mod intake;
pub mod intake_writer;
pub mod logging;
pub mod metrics;
pub mod nodes;
pub mod payload;
pub mod process_limits;
pub mod scheduler;
pub mod store;
pub mod systemd;
pub mod watch;
