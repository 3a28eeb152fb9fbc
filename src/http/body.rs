//! Reading request bodies: size limits (413), a deadline (408), and JSON
//! errors that say where the problem is (400).

use super::response::ApiError;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// The whole body, at most `limit` bytes, within `timeout`.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Frames are appended to one buffer as they arrive, sized from
    // Content-Length: a 50 MB storm body is then held once, not as a list
    // of chunks plus their concatenation. Only pages written to become
    // resident, so reserving a declared size a client never sends costs
    // address space, not memory. The reservation may fail (strict
    // overcommit, many such clients at once): then the buffer just grows.
    let mut buf = Vec::new();
    let _ = buf.try_reserve_exact(declared.map_or(0, |n| n as usize).min(limit));
    let mut body = Limited::new(body, limit);
    let collect = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
            }
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the body did not arrive within {}s", timeout.as_secs()),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(ApiError::bad_request(
            "bad_body",
            "the request body could not be read",
        )),
        Ok(Ok(())) => Ok(Bytes::from(buf)),
    }
}

/// An API request's body, within `max_body_bytes` and `request_timeout`.
pub async fn read_api(app: &super::App, req: hyper::Request<Incoming>) -> Result<Bytes, ApiError> {
    let (parts, incoming) = req.into_parts();
    let config = app.config.load_full();
    let cfg = &config.server;
    read(
        &parts.headers,
        incoming,
        cfg.max_body_bytes,
        cfg.request_timeout,
    )
    .await
}

/// Parses JSON; the error names line and column.
pub fn json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(empty());
    }
    serde_json::from_slice(bytes).map_err(syntax_error)
}

/// Checks that `text` is JSON without keeping anything of it.
pub fn check_json(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(empty());
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(syntax_error)
}

fn empty() -> ApiError {
    ApiError::bad_request("invalid_json", "the body is empty; send a JSON document")
}

fn syntax_error(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    let message = text
        .rfind(" at line ")
        .map_or(text.clone(), |i| text[..i].to_string());
    ApiError::bad_request(
        "invalid_json",
        format!(
            "invalid JSON at line {} column {}: {message}",
            e.line(),
            e.column()
        ),
    )
    .with_details(serde_json::json!([{"line": e.line(), "column": e.column()}]))
}
