//! A small HTTP client for tests: JSON in, JSON (or text) out.

use super::daemon::Daemon;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub async fn call(method: Method, url: &str, body: Option<Value>, token: Option<&str>) -> Reply {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn raw(url: &str, content: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
    let mut req = reqwest::Client::new().post(url).body(content);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

pub async fn get(d: &Daemon, path: &str) -> Reply {
    call(Method::GET, &d.url(path), None, None).await
}

pub async fn post(d: &Daemon, path: &str, body: Value) -> Reply {
    call(Method::POST, &d.url(path), Some(body), None).await
}

pub fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{:#}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{:#}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}
