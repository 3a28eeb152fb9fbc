//! Shared test helpers: temp dirs, the handler registry, and a real HTTP
//! receiver on loopback that stands in for a webhook target.
#![allow(dead_code)]

pub mod client;
pub mod daemon;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Path of a fixture file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A queued answer: a status and its headers.
type Answer = (u16, Vec<(String, String)>);

/// An HTTP server on 127.0.0.1:0 that records requests and answers with the
/// queued statuses (then 200), optionally after a delay.
pub struct Receiver {
    pub addr: SocketAddr,
    scheme: &'static str,
    received: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<VecDeque<Answer>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_with_delay(Duration::ZERO).await
    }

    pub async fn start_with_delay(delay: Duration) -> Receiver {
        Self::start_inner(delay, None).await
    }

    /// A receiver on https, with the certificate in `tests/fixtures/tls`
    /// (for 127.0.0.1, signed by the private CA `ca.pem` there).
    pub async fn start_tls() -> Receiver {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = fixture("tls");
        let certs = CertificateDer::pem_file_iter(dir.join("receiver.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("receiver.key")).unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_inner(Duration::ZERO, Some(acceptor)).await
    }

    async fn start_inner(delay: Duration, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::<Answer>::new()));
        let (rec, sts) = (received.clone(), statuses.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rec, sts) = (rec.clone(), sts.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (rec, sts) = (rec.clone(), sts.clone());
                        async move {
                            let at = std::time::Instant::now();
                            let path = req.uri().path().to_string();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect();
                            let bytes = req.into_body().collect().await?.to_bytes();
                            let body =
                                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            rec.lock().unwrap().push(Received {
                                path,
                                headers,
                                body,
                                at,
                            });
                            let (status, answer_headers) =
                                sts.lock().unwrap().pop_front().unwrap_or((200, Vec::new()));
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"{}")));
                            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                            for (k, v) in answer_headers {
                                resp.headers_mut().insert(
                                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                                    v.parse().unwrap(),
                                );
                            }
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let http = http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        // A client that refuses the certificate ends here.
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            addr,
            scheme,
            received,
            statuses,
            task,
        }
    }

    /// Answer the next requests with these statuses, in order.
    pub fn respond_with(&self, statuses: &[u16]) {
        self.statuses
            .lock()
            .unwrap()
            .extend(statuses.iter().map(|s| (*s, Vec::new())));
    }

    /// Answer the next request with this status and these headers.
    pub fn respond_with_headers(&self, status: u16, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.statuses.lock().unwrap().push_back((status, headers));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Overwrites the snapshot files of the sled database in `db` (as a crash
/// on a disk that lies about fsync could leave them) and answers how many
/// there were; the test fails when there are none to damage.
pub fn damage_sled_snapshots(db: &std::path::Path) -> usize {
    let snapshots: Vec<PathBuf> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .collect();
    assert!(
        !snapshots.is_empty(),
        "no snapshot to damage in {}",
        db.display()
    );
    for snap in &snapshots {
        let len = std::fs::metadata(snap).unwrap().len() as usize;
        std::fs::write(snap, vec![0xA5; len.max(64)]).unwrap();
    }
    snapshots.len()
}
