//! Webhooks herald refused, said in herald's own log.
//!
//! When a sender gets a 4xx, the reason shows in the sender's log
//! (Alertmanager's, Grafana's), on another host, often read by nobody: a
//! wrong token or secret, a body over the limit, a driver misspelt in the
//! URL, a full queue. On herald's side it was only a `/metrics` counter, so
//! "why did herald not page?" had no answer on the host it runs on. Each
//! refusal is now logged at warn, at most once a minute for the same driver
//! and reason, saying how many more there were in between: a sender
//! retrying in a loop cannot flood the journal.
//!
//! A body the sender cut short (Alertmanager's `max_alerts`, said in its
//! `truncatedAlerts`) is accepted, and said here the same way: the alerts
//! left out never reach herald.

use super::response::ApiError;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of refusal is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// The refusals of one kind since its last line.
struct Kind {
    logged_at: Instant,
    not_logged: u64,
}

/// Which refusals to log. The keys are a driver label and an error code,
/// both from fixed sets, so the map stays small.
#[derive(Default)]
pub struct Refusals {
    kinds: Mutex<HashMap<(&'static str, &'static str), Kind>>,
}

impl Refusals {
    /// Logs `error`, answered to `peer` on a webhook for `driver`, unless
    /// one like it was logged in the last [`LOG_EVERY`].
    pub fn note(&self, driver: &'static str, peer: IpAddr, path: &str, error: &ApiError) {
        let Some(not_logged) = self.due((driver, error.code()), Instant::now()) else {
            return;
        };
        let status = error.status().as_u16();
        let code = error.code();
        // Both may carry what the sender wrote (a made-up driver's name).
        let path = clip(path, 200);
        let message = clip(error.message(), 500);
        if not_logged == 0 {
            tracing::warn!(%peer, driver, status, code, "webhook refused on {path}: {message}");
        } else {
            tracing::warn!(
                %peer,
                driver,
                status,
                code,
                "webhook refused on {path}: {message} ({not_logged} more like it since the last \
                 such line)"
            );
        }
    }

    /// Logs that a webhook from `peer` came with `left_out` alerts of its
    /// group left out by the sender (`truncatedAlerts`: Alertmanager's
    /// `max_alerts`), once a minute per driver. herald never sees those
    /// alerts: not their incidents, not their resolutions.
    pub fn note_truncated(&self, driver: &'static str, peer: IpAddr, left_out: u64) {
        let Some(not_logged) = self.due((driver, "truncated_alerts"), Instant::now()) else {
            return;
        };
        let since = if not_logged == 0 {
            String::new()
        } else {
            format!(" ({not_logged} more such bodies since the last such line)")
        };
        tracing::warn!(
            %peer,
            driver,
            left_out,
            "webhook body with {left_out} alerts of its group left out by the sender \
             (truncatedAlerts): herald will not see them, nor their resolutions. Remove \
             max_alerts from the sender's webhook config: herald takes bodies up to \
             server.max_webhook_body_bytes{since}"
        );
    }

    /// Whether a refusal of `kind` at `now` gets a line; if so, how many of
    /// its kind went unlogged since the last.
    fn due(&self, kind: (&'static str, &'static str), now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        match kinds.get_mut(&kind) {
            Some(k) if now.duration_since(k.logged_at) < LOG_EVERY => {
                k.not_logged += 1;
                None
            }
            Some(k) => {
                let skipped = std::mem::take(&mut k.not_logged);
                k.logged_at = now;
                Some(skipped)
            }
            None => {
                kinds.insert(
                    kind,
                    Kind {
                        logged_at: now,
                        not_logged: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_minute_for_each_driver_and_reason() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let sig = ("alertmanager", "bad_signature");
        assert_eq!(r.due(sig, t0), Some(0), "the first is logged");
        assert_eq!(r.due(sig, t0 + Duration::from_secs(1)), None);
        assert_eq!(r.due(sig, t0 + Duration::from_secs(59)), None);
        // Another reason, or another driver, is its own kind.
        assert_eq!(r.due(("alertmanager", "body_too_large"), t0), Some(0));
        assert_eq!(r.due(("grafana", "bad_signature"), t0), Some(0));
        // A minute on: logged, with the two in between counted.
        assert_eq!(r.due(sig, t0 + LOG_EVERY), Some(2));
        assert_eq!(r.due(sig, t0 + LOG_EVERY + Duration::from_secs(1)), None);
        assert_eq!(r.due(sig, t0 + LOG_EVERY * 2), Some(1));
    }

    #[test]
    fn what_the_sender_wrote_is_clipped() {
        assert_eq!(clip("short", 200), "short");
        assert_eq!(clip(&"x".repeat(1000), 200).len(), 200);
        // Not through the middle of a character.
        assert_eq!(clip("ééé", 3), "é");
    }
}
