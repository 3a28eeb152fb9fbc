//! `notify`: tells someone. Drivers: `log` (the message goes through
//! tracing, target `herald::notify`) and `webhook` (POSTs the message as JSON
//! to a channel from config.toml; a non-2xx answer is an error).
//!
//! The webhook request carries an `Idempotency-Key` header, `run_id:node_id`,
//! the same across retries and resumes, so a receiver can drop a repeat.
//!
//! config: `driver`, `channel` (webhook), `include_recommendations` (true).

use super::config_reader as cfg;
use super::{BoxFuture, ConfigIssue, NodeContext, NodeError, NodeExecutor, NodeHandler, Services};
use crate::config::WebhookChannel;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const DRIVERS: &[&str] = &["log", "webhook"];
/// Drivers people will write that this version does not have yet.
const PLANNED: &[&str] = &["slack", "email", "pagerduty", "teams", "discord"];

pub struct NotifyHandler {
    services: Arc<Services>,
}

impl NotifyHandler {
    pub fn new(services: Arc<Services>) -> Self {
        NotifyHandler { services }
    }
}

impl NodeHandler for NotifyHandler {
    fn summary(&self) -> &'static str {
        "send the run's findings (drivers: log, webhook)"
    }

    fn build(&self, config: &Value) -> Result<Arc<dyn NodeExecutor>, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let map = config.as_object().cloned().unwrap_or_default();
        cfg::unknown_keys(
            &map,
            &["driver", "channel", "include_recommendations"],
            &mut issues,
        );
        let include_recommendations =
            cfg::bool(&map, "include_recommendations", &mut issues).unwrap_or(true);
        let channel = cfg::string(&map, "channel", &mut issues);
        let driver = match cfg::string(&map, "driver", &mut issues) {
            None => {
                issues.push(ConfigIssue::new(
                    "",
                    format!("needs a `driver`: one of {}", DRIVERS.join(", ")),
                ));
                None
            }
            Some(d) if d == "log" => {
                if channel.is_some() {
                    issues.push(ConfigIssue::new(
                        "channel",
                        "the log driver takes no channel",
                    ));
                }
                Some(Driver::Log)
            }
            Some(d) if d == "webhook" => match channel {
                None => {
                    issues.push(ConfigIssue::new(
                        "",
                        "the webhook driver needs a `channel` naming a [notify.webhook.<name>] table in config.toml",
                    ));
                    None
                }
                Some(name) => match self.services.config.notify.webhook.get(&name) {
                    Some(ch) => Some(Driver::Webhook {
                        name,
                        channel: ch.clone(),
                    }),
                    None => {
                        let known: Vec<&str> = self
                            .services
                            .config
                            .notify
                            .webhook
                            .keys()
                            .map(String::as_str)
                            .collect();
                        issues.push(ConfigIssue::new(
                            "channel",
                            format!(
                                "no webhook channel `{name}` in config.toml (add [notify.webhook.{name}] with a url); configured: {}",
                                if known.is_empty() { "none".to_string() } else { known.join(", ") }
                            ),
                        ));
                        None
                    }
                },
            },
            Some(d) if d == "generic" => {
                issues.push(ConfigIssue::new(
                    "driver",
                    "the seed app's `generic` driver is `webhook` in herald: write \"driver\": \"webhook\", \"channel\": \"<name>\" and add [notify.webhook.<name>] with its url to config.toml",
                ));
                None
            }
            Some(d) if PLANNED.contains(&d.as_str()) => {
                issues.push(ConfigIssue::new(
                    "driver",
                    format!(
                        "driver `{d}` is not available in this version of herald; use \"log\", or \"webhook\" with a channel"
                    ),
                ));
                None
            }
            Some(d) => {
                issues.push(ConfigIssue::new(
                    "driver",
                    format!("unknown driver `{d}`; known: {}", DRIVERS.join(", ")),
                ));
                None
            }
        };
        match driver {
            Some(driver) if issues.is_empty() => {
                let http = match &driver {
                    Driver::Webhook { name, .. } => self.services.channel_http(name).clone(),
                    Driver::Log => self.services.http.clone(),
                };
                Ok(Arc::new(Notify {
                    driver,
                    include_recommendations,
                    http,
                }))
            }
            _ => Err(issues),
        }
    }
}

enum Driver {
    Log,
    Webhook {
        name: String,
        channel: WebhookChannel,
    },
}

struct Notify {
    driver: Driver,
    include_recommendations: bool,
    http: reqwest::Client,
}

impl NodeExecutor for Notify {
    fn has_side_effects(&self) -> bool {
        true
    }

    fn execute<'a>(&'a self, ctx: &'a NodeContext<'a>) -> BoxFuture<'a, Result<Value, NodeError>> {
        Box::pin(async move {
            let message = compose(ctx, self.include_recommendations);
            match &self.driver {
                Driver::Log => {
                    log_notification(ctx, &message);
                    Ok(json!({"driver": "log", "delivered": true, "title": message["title"]}))
                }
                Driver::Webhook { name, channel } => {
                    let url = channel.resolve_url().map_err(|e| {
                        NodeError::rejected(format!("webhook channel `{name}` {e}"))
                    })?;
                    let mut request = self
                        .http
                        .post(&url)
                        .header("Idempotency-Key", ctx.delivery_key())
                        .json(&message);
                    for (k, v) in &channel.headers {
                        request = request.header(k, v);
                    }
                    let response = request.send().await.map_err(|e| {
                        // Never echo the URL: it may hold a token.
                        NodeError::unavailable(format!(
                            "webhook channel `{name}`: request failed: {}",
                            describe_reqwest(&e, &url)
                        ))
                    })?;
                    let status = response.status();
                    if status.is_success() {
                        Ok(
                            json!({"driver": "webhook", "channel": name, "delivered": true,
                                  "status_code": status.as_u16(), "title": message["title"]}),
                        )
                    } else if status.is_server_error() || status.as_u16() == 429 {
                        let retry_after = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
                        let asked = retry_after
                            .map(|d| {
                                format!(
                                    " (Retry-After: {})",
                                    crate::definition::duration::format_duration(d)
                                )
                            })
                            .unwrap_or_default();
                        Err(NodeError::unavailable(format!(
                            "webhook channel `{name}` answered {status}{asked}"
                        ))
                        .with_retry_after(retry_after))
                    } else if status.is_redirection() {
                        let to = response
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .map(|location| format!(" to {}", origin_of(location, &url)))
                            .unwrap_or_default();
                        Err(NodeError::rejected(format!(
                            "webhook channel `{name}` answered {status}, a redirect{to}; herald \
                             does not follow redirects for a notification (a POST would be sent \
                             again as a GET, without the message): set the channel's url to \
                             the address it redirects to"
                        )))
                    } else {
                        Err(NodeError::rejected(format!(
                            "webhook channel `{name}` answered {status}"
                        )))
                    }
                }
            }
        })
    }
}

/// The scheme, host and port a redirect's `location` points to, resolved
/// against the channel's `url`: enough to see "http → https" or a new host,
/// without a path or query that may hold a token.
fn origin_of(location: &str, url: &str) -> String {
    match reqwest::Url::parse(url).and_then(|base| base.join(location)) {
        Ok(target) => target.origin().ascii_serialization(),
        Err(_) => "an address that is not a URL".to_string(),
    }
}

/// An HTTP `Retry-After`: delay-seconds, or an HTTP-date (IMF-fixdate,
/// which RFC 2822 parsing reads) measured from `now`. A date already past
/// is no wait; anything else unreadable is ignored.
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// What went wrong with a request, for the stage's error: the kind of
/// failure, then its innermost cause — "invalid peer certificate:
/// UnknownIssuer", "Connection refused (os error 111)" — with advice for a
/// certificate herald does not trust. Never reqwest's own message: it
/// holds the URL, and a channel's URL may hold a token; `url` is also
/// blanked out of the cause, should one ever quote it.
fn describe_reqwest(e: &reqwest::Error, url: &str) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_builder() {
        "the request could not be made"
    } else if e.is_request() {
        "could not send the request"
    } else {
        "no valid response"
    };
    let mut innermost = None;
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    let Some(cause) = innermost.filter(|c| !c.is_empty()) else {
        return kind.to_string();
    };
    let cause = cause.replace(url, "<the channel's URL>");
    let advice = if cause.contains("UnknownIssuer") {
        " (the receiver's certificate is not signed by a CA herald trusts: give the channel \
         a `ca_file` with its CA)"
    } else {
        ""
    };
    format!("{kind}: {cause}{advice}")
}

/// The `log` driver: the message at the level of its severity — critical
/// an error, warning a warning, anything else info — so the journal files
/// it under that priority (`journalctl -p warning` lists what paged), and
/// `log_level = "warn"`, which keeps a storm's per-run lines out of the
/// journal, still lets the warnings and criticals through.
fn log_notification(ctx: &NodeContext<'_>, message: &Value) {
    let severity = message["severity"].as_str().unwrap_or("info");
    let title = message["title"].as_str().unwrap_or_default();
    let summary = message["summary"].as_str().unwrap_or_default();
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(
                target: "herald::notify",
                $level,
                run_id = ctx.run_id,
                definition = ctx.definition,
                severity = %severity,
                "{title}: {summary}"
            )
        };
    }
    match severity {
        "critical" => at!(tracing::Level::ERROR),
        "warning" => at!(tracing::Level::WARN),
        _ => at!(tracing::Level::INFO),
    }
}

/// The message every driver sends: what happened, how bad, what to do.
pub fn compose(ctx: &NodeContext<'_>, include_recommendations: bool) -> Value {
    let ingest = ctx.latest_of_type("ingest");
    let check = ctx.latest_of_type("check");
    let analysis = ctx.latest_of_type("intelligence");
    let incident = ingest.and_then(|i| i.get("incident"));
    let title = incident
        .and_then(|i| i.get("title"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("herald: {}", ctx.definition));
    let severity = analysis
        .and_then(|a| a.get("severity"))
        .or_else(|| incident.and_then(|i| i.get("severity")))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(
            || match check.and_then(|c| c.get("status")).and_then(Value::as_str) {
                Some("CRITICAL") => "critical".to_string(),
                Some("WARNING") => "warning".to_string(),
                _ => "info".to_string(),
            },
        );
    let summary = analysis
        .and_then(|a| a.get("summary"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            check
                .and_then(|c| c.get("status"))
                .and_then(Value::as_str)
                .map(|s| format!("host checks: {s}"))
        })
        .unwrap_or_else(|| format!("run of {} finished", ctx.definition));
    let mut message = json!({
        "title": title,
        "severity": severity,
        "summary": summary,
        "run_id": ctx.run_id,
        "trace_id": ctx.trace_id,
        "definition": ctx.definition,
        "incident_id": ctx.incident_id,
        "source": ctx.source,
        "environment": ctx.environment,
        "probable_cause": analysis.and_then(|a| a.get("probable_cause")),
        "alerts": ingest.and_then(|i| i.get("alerts")),
        "checks": check.and_then(|c| c.get("checks")),
    });
    if include_recommendations {
        message["recommendations"] = analysis
            .and_then(|a| a.get("recommendations"))
            .cloned()
            .unwrap_or(Value::Null);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_is_shown_by_its_origin_only() {
        let url = "http://hooks.example.com/services/T0/B0/secret";
        assert_eq!(
            origin_of("https://hooks.example.com/services/T0/B0/secret", url),
            "https://hooks.example.com"
        );
        assert_eq!(
            origin_of("https://new.example.com:8443/x?token=1", url),
            "https://new.example.com:8443"
        );
        // Relative to the channel's URL.
        assert_eq!(origin_of("/elsewhere", url), "http://hooks.example.com");
        assert_eq!(
            origin_of("http://[not a url", url),
            "an address that is not a URL"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun, 29 Nov 2026 11:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past is no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
