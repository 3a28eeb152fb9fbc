//! Where herald's log goes, and in what shape.
//!
//! Always to stderr. On a terminal, with colour and a timestamp. Under
//! systemd, stderr is a stream to the journal, which stamps each line
//! itself and files every line at one priority unless the line starts with
//! a `<N>` syslog prefix: without it `journalctl -u herald -p warning`
//! shows nothing, errors included. So when stderr is that stream (systemd
//! says so in `JOURNAL_STREAM`, the stream's device and inode), each line
//! gets its level's prefix and no timestamp of its own.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Sets the log filter of the running process.
pub type LevelHandle = reload::Handle<EnvFilter, Registry>;

/// The levels a filter may name.
const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];

/// Checks a log level or tracing filter (`warn`, `info,herald::engine=debug`).
/// A bare word that is not a level is refused: tracing would read
/// `warning` or `verbose` as the name of a module to log everything of,
/// and log nothing else — errors included — without a word.
pub fn check_filter(text: &str) -> Result<(), String> {
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level.trim(),
            // A target alone (`herald::engine`) means all of it: legal.
            None if directive.contains("::") || directive.contains('[') => continue,
            None => directive,
        };
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            let hint = crate::definition::did_you_mean(&level.to_ascii_lowercase(), LEVELS)
                .map(|l| format!("did you mean `{l}`? "))
                .unwrap_or_default();
            return Err(format!(
                "`{level}` is not a log level; {hint}use error, warn, info, debug, trace or \
                 off, or a filter such as `info,herald::engine=debug`"
            ));
        }
    }
    EnvFilter::try_new(text)
        .map(|_| ())
        .map_err(|e| format!("`{text}` is not a log filter: {e}"))
}

/// Logs to stderr at `level` (or `HERALD_LOG`), shaped for where stderr goes.
/// A `HERALD_LOG` that is not a filter is said, and `level` used instead.
pub fn init(level: &str) -> LevelHandle {
    use std::io::IsTerminal;
    let from_env = std::env::var("HERALD_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let env_problem = from_env.as_deref().and_then(|v| {
        check_filter(v)
            .err()
            .map(|e| format!("HERALD_LOG ignored: {e}"))
    });
    // A config's level that is not one is said by the config's checks
    // (Config::problems); logging goes on at info meanwhile.
    let chosen = match (&from_env, &env_problem) {
        (Some(v), None) => v.as_str(),
        _ if check_filter(level).is_ok() => level,
        _ => "info",
    };
    let filter = EnvFilter::try_new(chosen).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if stderr_is_the_journal() {
        let format = tracing_subscriber::fmt::format()
            .with_target(false)
            .without_time();
        tracing_subscriber::registry()
            .with(filter)
            .with(layer.event_format(SyslogPriority(format)))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .init();
    }
    if let Some(problem) = env_problem {
        tracing::warn!("{problem}");
    }
    handle
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM`
/// (a child whose stderr was redirected inherits the variable too, so the
/// device and inode are compared, as sd_journal_stream_fd(3) advises).
fn stderr_is_the_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(expected) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    expected == format!("{}:{}", meta.dev(), meta.ino())
}

/// Puts the journal's `<N>` priority before each event that `F` formats.
pub struct SyslogPriority<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3) priorities: err, warning, info, debug.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::check_filter;

    #[test]
    fn a_bare_word_must_be_a_level() {
        for ok in [
            "warn",
            "INFO",
            "off",
            "info,herald::engine=debug",
            "herald::engine",
            "warn,hyper=off",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}: {:?}", check_filter(ok));
        }
        let e = check_filter("warning").unwrap_err();
        assert!(e.contains("did you mean `warn`?"), "{e}");
        let e = check_filter("verbose").unwrap_err();
        assert!(e.contains("`verbose` is not a log level"), "{e}");
        let e = check_filter("info,herald=loud").unwrap_err();
        assert!(e.contains("`loud` is not a log level"), "{e}");
    }
}
