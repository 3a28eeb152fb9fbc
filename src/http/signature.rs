//! Webhook signatures, checked the way each sender makes them.
//!
//! A source given a secret in `[webhooks.secrets]` must sign its bodies
//! with HMAC-SHA256, and herald checks the signature before anything
//! changes. Senders that sign do it their own way, and cannot be taught
//! another, so each is read as it is sent:
//!
//! - herald's own, for scripts and proxies: `X-Herald-Signature:
//!   sha256=<hex>`, accepted from every source;
//! - PagerDuty (v3 webhooks): `X-PagerDuty-Signature: v1=<hex>`, several
//!   comma-separated while a secret is being rotated (one must match);
//! - Grafana (a webhook contact point's `hmac_config`): the bare hex in the
//!   header it is configured with (`X-Grafana-Alerting-Signature` as its
//!   docs write it, `X-Grafana-Alert-Signature` when left empty); with a
//!   timestamp header it signs `<unix time>:<body>`, and herald refuses a
//!   time more than [`MAX_AGE`] away from its own clock: a replay;
//! - any other sender that can compute an HMAC (a Zabbix media type
//!   script): the `header` configured for its source, `sha256=<hex>` or
//!   bare hex, with the same optional timestamp.

use super::response::ApiError;
use crate::config::WebhookSecret;
use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use hyper::StatusCode;
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// How far a signed timestamp may be from this host's clock.
pub const MAX_AGE: Duration = Duration::from_secs(300);

const HERALD: &str = "x-herald-signature";
const PAGERDUTY: &str = "x-pagerduty-signature";
const GRAFANA: [&str; 2] = ["x-grafana-alerting-signature", "x-grafana-alert-signature"];

/// Checks that `body`, sent for `source`, is signed with `key`'s secret.
pub fn verify(
    source: &str,
    key: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), ApiError> {
    if let Some(value) = header(headers, HERALD)? {
        let hex = value
            .strip_prefix("sha256=")
            .ok_or_else(|| refused("X-Herald-Signature must look like `sha256=<hex>`"))?;
        return check(key, None, body, &[hex], "X-Herald-Signature");
    }
    let (name, value) = match sender_header(source, key, headers)? {
        Some(found) => found,
        None => return Err(refused(&missing(source, key))),
    };
    let signatures: Vec<&str> = if source == "pagerduty" && key.header.is_none() {
        // `v1=<hex>,v1=<hex>`: other versions are for other verifiers.
        value
            .split(',')
            .filter_map(|s| s.trim().strip_prefix("v1="))
            .collect()
    } else {
        vec![value.strip_prefix("sha256=").unwrap_or(value)]
    };
    let signed_at = match &key.timestamp_header {
        Some(ts) => Some(timestamp(headers, ts, now)?),
        None => None,
    };
    check(key, signed_at.as_deref(), body, &signatures, &name).map_err(|e| {
        // Grafana signs `<time>:<body>` when given a timestamp header: a
        // sender that sends one herald was not told of never matches.
        match timestamp_not_configured(key, headers) {
            Some(sent) => refused(&format!(
                "{}; the request carries `{sent}`: if the sender signs with it, set \
                 timestamp_header = \"{sent}\" for this source",
                e.message()
            )),
            None => e,
        }
    })
}

/// A header that looks like a signing time, when none is configured.
fn timestamp_not_configured<'h>(key: &WebhookSecret, headers: &'h HeaderMap) -> Option<&'h str> {
    if key.timestamp_header.is_some() {
        return None;
    }
    headers
        .keys()
        .map(|k| k.as_str())
        .find(|k| k.contains("timestamp"))
}

/// The header value for `body` signed herald's way (for clients and tests).
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, None, body)))
}

/// Where the source's sender puts its signature, and what it holds.
fn sender_header<'h>(
    source: &str,
    key: &WebhookSecret,
    headers: &'h HeaderMap,
) -> Result<Option<(String, &'h str)>, ApiError> {
    let names: Vec<&str> = match (&key.header, source) {
        (Some(name), _) => vec![name.as_str()],
        (None, "pagerduty") => vec![PAGERDUTY],
        (None, "grafana") => GRAFANA.to_vec(),
        (None, _) => vec![],
    };
    for name in names {
        if let Some(value) = header(headers, name)? {
            return Ok(Some((name.to_string(), value)));
        }
    }
    Ok(None)
}

/// What a source with a secret must send, said when it sent none.
fn missing(source: &str, key: &WebhookSecret) -> String {
    let own = match (&key.header, source) {
        (Some(name), _) => format!("`{name}: <hex HMAC-SHA256>`, or "),
        (None, "pagerduty") => "PagerDuty's `X-PagerDuty-Signature: v1=<hex>`, or ".to_string(),
        (None, "grafana") => "Grafana's `X-Grafana-Alerting-Signature: <hex>` (set the contact \
                              point's HMAC header to it), or "
            .to_string(),
        (None, _) => String::new(),
    };
    format!(
        "source `{source}` has a secret, so its bodies must be signed: send {own}\
         `X-Herald-Signature: sha256=<hex HMAC-SHA256 of the body>`"
    )
}

/// The signed time, if it is within [`MAX_AGE`] of `now`.
fn timestamp(headers: &HeaderMap, name: &str, now: SystemTime) -> Result<String, ApiError> {
    let value = header(headers, name)?.ok_or_else(|| {
        refused(&format!(
            "this source signs with a timestamp, and `{name}` is missing"
        ))
    })?;
    let seconds: i64 = value.trim().parse().map_err(|_| {
        refused(&format!(
            "`{name}` must be a Unix time in seconds, not `{}`",
            clip(value)
        ))
    })?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let off = now.abs_diff(seconds);
    if off > MAX_AGE.as_secs() {
        return Err(refused(&format!(
            "the signed time in `{name}` is {off} s from this host's clock (at most {} s): \
             a replayed request, or a clock that is off on one of the two hosts",
            MAX_AGE.as_secs()
        )));
    }
    Ok(value.trim().to_string())
}

/// Whether one of `signatures` (hex) is the HMAC of the body.
fn check(
    key: &WebhookSecret,
    signed_at: Option<&str>,
    body: &[u8],
    signatures: &[&str],
    header: &str,
) -> Result<(), ApiError> {
    if signatures.is_empty() {
        return Err(refused(&format!(
            "{header} holds no signature herald reads"
        )));
    }
    // Computed once, however many signatures the header lists (a body
    // can be tens of MB); each compared in constant time.
    let expected = mac(&key.secret, signed_at, body);
    let mut readable = false;
    for hex_sig in signatures {
        let Ok(sig) = hex::decode(hex_sig.trim()) else {
            continue;
        };
        readable = true;
        if bool::from(expected.as_slice().ct_eq(&sig)) {
            return Ok(());
        }
    }
    Err(refused(&if readable {
        format!("{header} does not match the body (signed with another secret?)")
    } else {
        format!("{header} is not hex")
    }))
}

/// The HMAC of what the sender signed: `<time>:<body>`, or the body.
fn mac(secret: &str, signed_at: Option<&str>, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    if let Some(at) = signed_at {
        mac.update(at.as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// A header's value as text; one that is not text is refused.
fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| refused(&format!("{name} is not text"))),
    }
}

fn clip(value: &str) -> String {
    value.chars().take(32).collect()
}

fn refused(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn hex_mac(secret: &str, at: Option<&str>, body: &[u8]) -> String {
        hex::encode(mac(secret, at, body))
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    const BODY: &[u8] = br#"{"alerts":[]}"#;

    fn verify_as(source: &str, key: &WebhookSecret, pairs: &[(&str, &str)]) -> Result<(), String> {
        verify(source, key, &headers(pairs), BODY, at(1_800_000_000))
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn herald_signatures_round_trip_and_reject_tampering() {
        let key = WebhookSecret::new("key");
        let sig = sign("key", BODY);
        assert!(verify_as("generic", &key, &[("x-herald-signature", &sig)]).is_ok());
        let tampered = verify(
            "generic",
            &key,
            &headers(&[("x-herald-signature", &sig)]),
            b"{}",
            at(1_800_000_000),
        );
        assert!(tampered.is_err());
        let other = WebhookSecret::new("other");
        let wrong = verify_as("generic", &other, &[("x-herald-signature", &sig)]).unwrap_err();
        assert!(wrong.contains("does not match"), "{wrong}");
        let bare = verify_as("generic", &key, &[("x-herald-signature", "abc")]).unwrap_err();
        assert!(bare.contains("sha256="), "{bare}");
        let none = verify_as("generic", &key, &[]).unwrap_err();
        assert!(none.contains("X-Herald-Signature: sha256="), "{none}");
        assert!(!none.contains("PagerDuty"), "{none}");
    }

    #[test]
    fn pagerduty_signs_v1_and_sends_both_while_rotating() {
        let key = WebhookSecret::new("new-secret");
        let good = hex_mac("new-secret", None, BODY);
        let old = hex_mac("old-secret", None, BODY);
        let one = format!("v1={good}");
        assert!(verify_as("pagerduty", &key, &[("x-pagerduty-signature", &one)]).is_ok());
        let rotating = format!("v1={old},v1={good}");
        assert!(verify_as("pagerduty", &key, &[("x-pagerduty-signature", &rotating)]).is_ok());
        let only_old = format!("v1={old}");
        let e = verify_as("pagerduty", &key, &[("x-pagerduty-signature", &only_old)]).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        // A version herald does not know is not taken for v1.
        let v2 = format!("v2={good}");
        let e = verify_as("pagerduty", &key, &[("x-pagerduty-signature", &v2)]).unwrap_err();
        assert!(e.contains("no signature"), "{e}");
        let none = verify_as("pagerduty", &key, &[]).unwrap_err();
        assert!(none.contains("X-PagerDuty-Signature: v1="), "{none}");
    }

    #[test]
    fn grafana_signs_the_body_or_time_and_body() {
        let key = WebhookSecret::new("g");
        let sig = hex_mac("g", None, BODY);
        for name in GRAFANA {
            assert!(
                verify_as("grafana", &key, &[(name, &sig)]).is_ok(),
                "{name}"
            );
        }
        // With a timestamp header: `<time>:<body>`, within five minutes.
        let timed = WebhookSecret {
            timestamp_header: Some("X-Grafana-Alerting-Timestamp".into()),
            ..WebhookSecret::new("g")
        };
        let now = "1800000000";
        let signed = hex_mac("g", Some(now), BODY);
        let ok = [
            ("x-grafana-alerting-signature", signed.as_str()),
            ("x-grafana-alerting-timestamp", now),
        ];
        assert!(verify_as("grafana", &timed, &ok).is_ok());
        // The body alone does not pass for a timed signature.
        let untimed = [
            ("x-grafana-alerting-signature", sig.as_str()),
            ("x-grafana-alerting-timestamp", now),
        ];
        assert!(verify_as("grafana", &timed, &untimed).is_err());
        let stale = "1799999000";
        let replay = [
            (
                "x-grafana-alerting-signature",
                &hex_mac("g", Some(stale), BODY) as &str,
            ),
            ("x-grafana-alerting-timestamp", stale),
        ];
        let e = verify_as("grafana", &timed, &replay).unwrap_err();
        assert!(e.contains("1000 s from this host's clock"), "{e}");
        // Signed with a time herald was not told of: the header is named.
        let e = verify_as(
            "grafana",
            &key,
            &[
                ("x-grafana-alerting-signature", &signed),
                ("x-grafana-alerting-timestamp", now),
            ],
        )
        .unwrap_err();
        assert!(
            e.contains("timestamp_header = \"x-grafana-alerting-timestamp\""),
            "{e}"
        );
        let e = verify_as(
            "grafana",
            &timed,
            &[("x-grafana-alerting-signature", &signed)],
        )
        .unwrap_err();
        assert!(
            e.contains("X-Grafana-Alerting-Timestamp` is missing"),
            "{e}"
        );
    }

    #[test]
    fn a_configured_header_is_read_for_any_source() {
        let key = WebhookSecret {
            header: Some("X-Zabbix-Signature".into()),
            ..WebhookSecret::new("z")
        };
        let sig = hex_mac("z", None, BODY);
        assert!(verify_as("zabbix", &key, &[("x-zabbix-signature", &sig)]).is_ok());
        let prefixed = format!("sha256={sig}");
        assert!(verify_as("zabbix", &key, &[("x-zabbix-signature", &prefixed)]).is_ok());
        // herald's own header still works for that source.
        assert!(verify_as("zabbix", &key, &[("x-herald-signature", &sign("z", BODY))]).is_ok());
        let none = verify_as("zabbix", &key, &[]).unwrap_err();
        assert!(none.contains("X-Zabbix-Signature"), "{none}");
        // A Grafana source named another header reads that one only.
        let grafana = WebhookSecret {
            header: Some("X-Signed".into()),
            ..WebhookSecret::new("z")
        };
        assert!(
            verify_as(
                "grafana",
                &grafana,
                &[("x-grafana-alerting-signature", &sig)]
            )
            .is_err()
        );
        assert!(verify_as("grafana", &grafana, &[("x-signed", &sig)]).is_ok());
    }
}
