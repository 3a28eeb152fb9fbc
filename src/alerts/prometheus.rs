//! Prometheus's own alert list: the JSON array a Prometheus server (or any
//! client) POSTs to Alertmanager's `/api/v2/alerts`. Entries have `labels`
//! (with `alertname`), `annotations`, `startsAt`, `endsAt`, `generatorURL`
//! and no status: an `endsAt` in the past means resolved. There is no id, so
//! the fingerprint is the hash of name and labels.

use super::{Alert, PayloadError, alertmanager};

pub fn scan_text(text: &str, f: &mut dyn FnMut(Alert)) -> Result<usize, PayloadError> {
    alertmanager::scan_list(text, "prometheus", f)
}
