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

/// Logs to stderr at `level` (or `HERALD_LOG`), shaped for where stderr goes.
pub fn init(level: &str) -> LevelHandle {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_env("HERALD_LOG")
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
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
