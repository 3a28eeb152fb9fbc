//! Who may call the API: bearer tokens compared in constant time, and an
//! optional per-client rate limit. (Webhook signatures: `signature.rs`.)

use super::response::ApiError;
use crate::config::RateLimitConfig;
use hyper::HeaderMap;
use hyper::StatusCode;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;
use subtle::ConstantTimeEq;

/// The accepted tokens, kept only as SHA-256 digests: comparing digests of
/// equal length in constant time leaks neither content nor length.
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl Tokens {
    pub fn new(tokens: &[String]) -> Self {
        Tokens {
            digests: tokens.iter().map(|t| digest(t.as_bytes())).collect(),
        }
    }

    /// The presented token (`Authorization: Bearer …`, `Authorization:
    /// Basic …` with the token as the password, or `X-API-Key`), if it is
    /// one of ours. `Ok(None)` when auth is off.
    pub fn check(&self, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        if self.digests.is_empty() {
            return Ok(None);
        }
        let presented = match headers.get("authorization") {
            Some(value) => from_authorization(value.to_str().unwrap_or(""))?,
            None => headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .ok_or_else(|| unauthorized(&format!("missing token: {HOW}")))?,
        };
        let d = digest(presented.as_bytes());
        let mut ok = subtle::Choice::from(0);
        for known in &self.digests {
            ok |= known.ct_eq(&d);
        }
        if bool::from(ok) {
            Ok(Some(hex::encode(&d[..8])))
        } else {
            Err(unauthorized("invalid token"))
        }
    }
}

/// How to send a token, for every 401 that lacks one.
const HOW: &str = "send `Authorization: Bearer <token>`, `X-API-Key: <token>`, or HTTP basic \
                   auth with the token as the password";

/// The token in an `Authorization` header. Basic is there for senders that
/// offer nothing else (Grafana's and Alertmanager's `basic_auth`, Zabbix
/// media types): the password is the token, the user name is not checked
/// (a token given as the user name with no password is taken too).
fn from_authorization(value: &str) -> Result<String, ApiError> {
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if credentials.is_empty() {
            return Err(unauthorized(&format!("missing token: {HOW}")));
        }
        return Ok(credentials.to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| unauthorized(&format!("malformed basic credentials: {HOW}")))?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let token = if password.is_empty() { user } else { password };
        return Ok(token.to_string());
    }
    // Never echo the credentials; the scheme alone says what went wrong.
    let shown: String = scheme.chars().take(20).collect();
    Err(unauthorized(&format!(
        "unsupported Authorization `{shown}`: {HOW}"
    )))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        .with_header("www-authenticate", "Bearer")
}

/// A token bucket per client key (token id, or IP address without a token).
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, token: Option<&str>, ip: IpAddr) -> Result<(), ApiError> {
        let key = token.map_or_else(|| ip.to_string(), |t| format!("token:{t}"));
        let now = Instant::now();
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() > 100_000 {
            buckets.clear(); // bound memory under a flood of distinct clients
        }
        let burst = self.config.burst as f64;
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.config.per_second;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.config.per_second)
                .ceil()
                .max(1.0);
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            )
            .with_header("retry-after", format!("{wait}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_by_bearer_or_api_key() {
        let t = Tokens::new(&["s3cret".to_string()]);
        assert!(
            t.check(&headers(&[("authorization", "Bearer s3cret")]))
                .is_ok()
        );
        assert!(t.check(&headers(&[("x-api-key", "s3cret")])).is_ok());
        assert!(
            t.check(&headers(&[("authorization", "Bearer nope")]))
                .is_err()
        );
        assert!(t.check(&headers(&[])).is_err());
        assert!(Tokens::new(&[]).check(&headers(&[])).unwrap().is_none());
    }

    #[test]
    fn tokens_by_basic_auth_for_senders_that_have_nothing_else() {
        use base64::Engine;
        let basic = |credentials: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        };
        let t = Tokens::new(&["s3cret".to_string()]);
        let ok = |value: &str| t.check(&headers(&[("authorization", value)])).is_ok();
        assert!(
            ok(&basic("alertmanager:s3cret")),
            "the password is the token"
        );
        assert!(ok(&basic("s3cret:")), "or the user name, with no password");
        assert!(ok(&basic("s3cret")));
        assert!(ok("BEARER s3cret"), "schemes are case-insensitive");
        assert!(!ok(&basic("s3cret:wrong")), "a wrong password fails");
        assert!(!ok(&basic("alertmanager:nope")));
        assert!(!ok("Basic !!not-base64!!"));

        let other = t
            .check(&headers(&[("authorization", "Token s3cret")]))
            .unwrap_err();
        assert!(
            other
                .message()
                .contains("unsupported Authorization `Token`")
        );
        assert!(!other.message().contains("s3cret"), "{}", other.message());
        assert!(
            t.check(&headers(&[("authorization", "Bearer ")])).is_err(),
            "an empty bearer token"
        );
    }

    #[test]
    fn rate_limit_allows_the_burst_then_refuses() {
        let limiter = RateLimiter::new(RateLimitConfig {
            per_second: 0.001,
            burst: 2,
        });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(limiter.check(None, ip).is_ok());
        assert!(limiter.check(None, ip).is_ok());
        let err = limiter.check(None, ip).unwrap_err();
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            limiter.check(Some("other"), ip).is_ok(),
            "buckets are per client"
        );
    }
}
