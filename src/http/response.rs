//! JSON responses and the one error shape every endpoint uses:
//! `{"error": {"code", "message", "details"}}`.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

pub type Body = Full<Bytes>;
pub type Resp = Response<Body>;

/// A JSON response.
pub fn json(status: StatusCode, value: &Value) -> Resp {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn text(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An error answered to the client. Internal errors are logged in full and
/// answered without their details. Boxed: it travels in every `Result`.
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError(Box::new(Inner {
            status,
            code,
            message: message.into(),
            details: Value::Array(Vec::new()),
            headers: Vec::new(),
        }))
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The error's code, as the client gets it.
    pub fn code(&self) -> &'static str {
        self.0.code
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The same error, answered with another status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.0.status = status;
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = details;
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.0.headers.push((name, value.into()));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// A store error: 503 with `Retry-After` when the disk failed a write
    /// (the daemon is stopping, to restart on what reached the disk; see
    /// `store::health`), else a bare 500.
    pub fn store(e: crate::store::StoreError) -> Self {
        match e.disk_failure() {
            Some(cause) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "herald cannot write to its data dir; retry later",
            )
            .with_details(json!([cause]))
            .with_header("retry-after", "10"),
            None => Self::internal(e),
        }
    }

    /// Logs `cause` and answers a bare 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error answering a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the details are in herald's log",
        )
    }

    pub fn into_response(self) -> Resp {
        let e = *self.0;
        let mut resp = json(
            e.status,
            &json!({"error": {"code": e.code, "message": e.message, "details": e.details}}),
        );
        for (name, value) in e.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
        resp
    }
}
