//! `herald incidents list|show` and `herald ingest --dry-run`: the incident
//! side of the CLI, from the store, or from the daemon when it holds it.

use super::{Backend, Setup, form_encode};
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use herald::alerts::Severity;
use herald::alerts::incident::{Incident, IncidentStatus};
use herald::config::DefaultRoute;
use herald::store::IncidentQuery;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum IncidentsCommand {
    /// Incidents, newest first.
    List {
        /// Only `open` or `resolved` incidents.
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// Only incidents of this severity (critical, warning, info).
        #[arg(long, value_name = "S")]
        severity: Option<String>,
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
        /// Continue after this incident id (the `next` of the previous page).
        #[arg(long, value_name = "ID")]
        cursor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One incident: its alerts with their history, and its runs.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn incidents(setup: Setup, cmd: IncidentsCommand) -> Result<ExitCode> {
    let backend = setup.backend()?;
    match cmd {
        IncidentsCommand::List {
            status,
            severity,
            limit,
            cursor,
            json,
        } => {
            let limit = limit.clamp(1, 1000);
            let (incidents, next): (Vec<Incident>, Option<String>) = match &backend {
                Backend::Local(store) => {
                    let query = IncidentQuery {
                        status: match &status {
                            Some(s) => Some(IncidentStatus::parse(s).ok_or_else(|| {
                                anyhow!("unknown status `{s}`; one of open, resolved")
                            })?),
                            None => None,
                        },
                        severity: match &severity {
                            Some(s) => Some(Severity::parse(s).ok_or_else(|| {
                                anyhow!("unknown severity `{s}`; one of critical, warning, info")
                            })?),
                            None => None,
                        },
                        limit,
                        cursor,
                    };
                    let page = store.list_incidents(&query)?;
                    (page.incidents, page.next_cursor)
                }
                Backend::Daemon(client) => {
                    let mut query = vec![("limit", limit.to_string())];
                    for (k, v) in [
                        ("status", status),
                        ("severity", severity),
                        ("cursor", cursor),
                    ] {
                        if let Some(v) = v {
                            query.push((k, v));
                        }
                    }
                    let qs: Vec<String> = query
                        .iter()
                        .map(|(k, v)| format!("{k}={}", form_encode(v)))
                        .collect();
                    let value = client
                        .call(
                            reqwest::Method::GET,
                            &format!("/alerts/incidents/?{}", qs.join("&")),
                            None,
                        )
                        .await?;
                    let list = serde_json::from_value(value["results"].clone())
                        .context("the daemon's answer is not a list of incidents")?;
                    (list, value["next_cursor"].as_str().map(str::to_string))
                }
            };
            print_list(&incidents, next, json)?;
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Show { id, json } => {
            let detail = match &backend {
                Backend::Local(store) => herald::intake::incident_detail(store, &id)?
                    .ok_or_else(|| anyhow!("no incident with id {id}"))?,
                Backend::Daemon(client) => {
                    client
                        .call(
                            reqwest::Method::GET,
                            &format!("/alerts/incidents/{}/", form_encode(&id)),
                            None,
                        )
                        .await?
                }
            };
            print_detail(&detail, json)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_list(incidents: &[Incident], next: Option<String>, json: bool) -> Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"incidents": incidents, "next": next}))?
        );
        return Ok(());
    }
    if incidents.is_empty() {
        println!("no incidents");
        return Ok(());
    }
    println!(
        "{:<30} {:<9} {:<9} {:>7}  {:<20} TITLE",
        "ID", "STATUS", "SEVERITY", "FIRING", "OPENED (UTC)"
    );
    for i in incidents {
        println!(
            "{:<30} {:<9} {:<9} {:>7}  {:<20} {}",
            i.id,
            status_word(i.status),
            i.severity.as_str(),
            format!("{}/{}", i.firing.len(), i.alerts.len()),
            i.opened_at.format("%Y-%m-%d %H:%M:%S"),
            i.title
        );
    }
    if let Some(next) = next {
        println!("more: --cursor {next}");
    }
    Ok(())
}

fn status_word(s: IncidentStatus) -> &'static str {
    match s {
        IncidentStatus::Open => "open",
        IncidentStatus::Resolved => "resolved",
    }
}

fn print_detail(detail: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(detail)?);
        return Ok(());
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!("{}  {}", text(&detail["id"]), text(&detail["title"]));
    println!(
        "  status {}  severity {}  opened {}  resolved {}",
        text(&detail["status"]),
        text(&detail["severity"]),
        text(&detail["opened_at"]),
        text(&detail["resolved_at"])
    );
    println!("alerts:");
    for a in detail["alerts"].as_array().into_iter().flatten() {
        println!(
            "  {:<40} {:<9} {:<9} last change {} at {}",
            text(&a["key"]),
            text(&a["alert"]["status"]),
            text(&a["alert"]["severity"]),
            text(&a["last_change"]),
            text(&a["last_change_at"])
        );
    }
    println!("history:");
    for e in detail["history"].as_array().into_iter().flatten() {
        println!(
            "  {}  {:<10} {:<9} {}",
            text(&e["at"]),
            text(&e["change"]),
            text(&e["severity"]),
            text(&e["alert"])
        );
    }
    println!("runs:");
    for r in detail["runs"].as_array().into_iter().flatten() {
        println!(
            "  {}  {:<10} {}",
            text(&r["run_id"]),
            text(&r["status"]),
            text(&r["definition"])
        );
    }
    Ok(())
}

/// `herald ingest --dry-run FILE`.
pub async fn ingest(
    setup: Setup,
    file: PathBuf,
    dry_run: bool,
    driver: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    if !dry_run {
        bail!(
            "only --dry-run is supported: to ingest for real, POST the file to the daemon's /alerts/webhook/"
        );
    }
    let text = if file == std::path::Path::new("-") {
        let mut t = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
            .context("cannot read standard input")?;
        t
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let report = match setup.backend()? {
        Backend::Local(store) => {
            let handlers = setup.handlers()?;
            let set = setup.definitions(&handlers)?;
            let triggered: Vec<_> = set
                .valid()
                .filter(|d| d.trigger.is_some())
                .cloned()
                .collect();
            let builtin = (setup.config.webhooks.default_route == DefaultRoute::Builtin)
                .then_some(herald::definition::BUILTIN_NAME);
            herald::intake::dry_run(
                &store,
                &text,
                driver.as_deref(),
                &triggered,
                builtin,
                setup.config.webhooks.reopen_window,
            )
            .map_err(|e| anyhow!("{e}"))?
        }
        Backend::Daemon(client) => {
            let path = match &driver {
                Some(d) => format!("/alerts/webhook/{}/?dry_run=true", form_encode(d)),
                None => "/alerts/webhook/?dry_run=true".to_string(),
            };
            // The daemon checks the signature of a source with a secret,
            // dry run or not; the CLI has the same config, so it signs.
            let source = driver
                .as_deref()
                .or_else(|| herald::alerts::detect_text(&text).ok());
            let signature = source
                .and_then(|s| setup.config.webhooks.secrets.get(s))
                .map(|key| {
                    (
                        "x-herald-signature",
                        herald::http::sign(&key.secret, text.as_bytes()),
                    )
                });
            client.call_text(&path, text, signature.as_slice()).await?
        }
    };
    print_dry_run(&report, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_dry_run(report: &Value, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    println!(
        "driver: {}   alerts: {}   (dry run: nothing was changed)",
        text(&report["driver"]),
        text(&report["alert_count"])
    );
    println!(
        "{:<28} {:<9} {:<9} {:<18} {:<10} INCIDENT",
        "ALERT", "STATUS", "SEVERITY", "FINGERPRINT", "CHANGE"
    );
    for a in report["alerts"].as_array().into_iter().flatten() {
        let name = match a["instance"].as_str() {
            Some(i) => format!("{} on {i}", text(&a["name"])),
            None => text(&a["name"]),
        };
        println!(
            "{:<28} {:<9} {:<9} {:<18} {:<10} {}",
            name,
            text(&a["status"]),
            text(&a["severity"]),
            text(&a["fingerprint"]),
            text(&a["change"]),
            text(&a["incident_id"])
        );
    }
    if report["alerts_truncated"] == Value::Bool(true) {
        println!("(only the first alerts are listed)");
    }
    let starts: Vec<String> = report["would_start"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    if starts.is_empty() {
        println!("would start: nothing (no material change, or no route)");
    } else {
        println!("would start: {}", starts.join(", "));
    }
    Ok(())
}
