//! Reading request bodies: size limits (413), a deadline (408), a
//! `Content-Encoding` of gzip or deflate undone (415 for any other), and
//! JSON errors that say where the problem is (400).

use super::response::ApiError;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// The whole body, decompressed if it came compressed, at most `limit`
/// bytes both as sent and as decompressed, within `timeout`.
pub async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    // Refused before a byte of the body is read.
    let encoding = Encoding::of(headers)?;
    let sent = read_as_sent(headers, body, limit, timeout).await?;
    match encoding {
        Encoding::Identity => Ok(sent),
        // A storm's body decompresses at a few hundred MB/s: off the
        // runtime's threads, so other requests are not held up by it.
        _ => tokio::task::spawn_blocking(move || encoding.decode(&sent, limit))
            .await
            .map_err(|_| {
                ApiError::bad_request("bad_encoding", "the body could not be decompressed")
            })?,
    }
}

/// How a body was compressed for the trip: RFC 9110's `Content-Encoding`.
/// gzip is what a proxy or a script would send (`curl --data-binary
/// @alerts.json.gz -H 'Content-Encoding: gzip'`); a storm's body shrinks
/// tenfold or more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    /// HTTP's `deflate`: zlib-wrapped (RFC 1950).
    Deflate,
}

impl Encoding {
    /// The body's encoding; 415 for one herald cannot undo, or for more
    /// than one applied in turn.
    fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let mut found = Encoding::Identity;
        for value in headers.get_all("content-encoding") {
            let text = value.to_str().unwrap_or("?");
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let this = match name.to_ascii_lowercase().as_str() {
                    "identity" => continue,
                    "gzip" | "x-gzip" => Encoding::Gzip,
                    "deflate" => Encoding::Deflate,
                    _ => {
                        return Err(unsupported(&format!(
                            "Content-Encoding `{name}` is not supported"
                        )));
                    }
                };
                if found != Encoding::Identity {
                    return Err(unsupported(&format!(
                        "Content-Encoding `{text}` applies more than one encoding"
                    )));
                }
                found = this;
            }
        }
        Ok(found)
    }

    /// `sent`, decompressed; at most `limit` bytes of it.
    fn decode(self, sent: &[u8], limit: usize) -> Result<Bytes, ApiError> {
        use std::io::Read;
        let (name, decoder): (&str, Box<dyn Read + '_>) = match self {
            Encoding::Identity => return Ok(Bytes::copy_from_slice(sent)),
            Encoding::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(sent))),
            Encoding::Deflate => ("deflate", Box::new(flate2::read::ZlibDecoder::new(sent))),
        };
        // gzip ends with the size it decompresses to (modulo 4 GiB): room
        // for it up front, so a 50 MB body is not copied as its buffer
        // doubles. A wrong figure only costs the reservation.
        let hint = match self {
            Encoding::Gzip if sent.len() >= 4 => {
                let tail: [u8; 4] = sent[sent.len() - 4..].try_into().unwrap_or_default();
                u32::from_le_bytes(tail) as usize
            }
            _ => sent.len().saturating_mul(4),
        };
        let mut out = Vec::new();
        let _ = out.try_reserve_exact(hint.min(limit.saturating_add(1)));
        // One byte past the limit tells "exactly the limit" from "more".
        decoder
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                ApiError::bad_request(
                    "bad_encoding",
                    format!("the body is not valid {name} data: {e}"),
                )
            })?;
        if out.len() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body decompresses to more than the limit of {limit} bytes"),
            ));
        }
        Ok(Bytes::from(out))
    }
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_encoding",
        format!("{what}; send the body uncompressed, or compressed with gzip or deflate"),
    )
}

/// The body as it came over the wire, at most `limit` bytes.
async fn read_as_sent(
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

/// Parses JSON; the error names line and column. A leading UTF-8
/// byte-order mark is skipped (RFC 8259 lets a reader ignore it).
pub fn json(bytes: &[u8]) -> Result<Value, ApiError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
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

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use std::io::Write;

    fn headers(encoding: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for e in encoding {
            h.append("content-encoding", e.parse().unwrap());
        }
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn encodings_are_named_as_http_names_them() {
        assert_eq!(Encoding::of(&headers(&[])).unwrap(), Encoding::Identity);
        assert_eq!(
            Encoding::of(&headers(&["identity"])).unwrap(),
            Encoding::Identity
        );
        assert_eq!(Encoding::of(&headers(&["GZIP"])).unwrap(), Encoding::Gzip);
        assert_eq!(Encoding::of(&headers(&["x-gzip"])).unwrap(), Encoding::Gzip);
        assert_eq!(
            Encoding::of(&headers(&["identity, deflate"])).unwrap(),
            Encoding::Deflate
        );
        let br = Encoding::of(&headers(&["br"])).unwrap_err();
        assert_eq!(br.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(br.message().contains("`br`"), "{}", br.message());
        // Two layers, in one header or two.
        for twice in [headers(&["gzip, gzip"]), headers(&["gzip", "deflate"])] {
            let e = Encoding::of(&twice).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }

    #[test]
    fn gzip_and_deflate_decode_within_the_limit() {
        let text = br#"{"alerts": [{"labels": {"alertname": "HighCPU"}}]}"#.repeat(50);
        assert_eq!(
            &Encoding::Gzip.decode(&gzip(&text), 10_000).unwrap()[..],
            &text[..]
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&text).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(
            &Encoding::Deflate.decode(&z, 10_000).unwrap()[..],
            &text[..]
        );
        // Exactly the limit fits; one byte more does not.
        assert!(Encoding::Gzip.decode(&gzip(&text), text.len()).is_ok());
        let over = Encoding::Gzip
            .decode(&gzip(&text), text.len() - 1)
            .unwrap_err();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_small_body_that_inflates_past_the_limit_is_refused() {
        // 64 MiB of spaces is 65 KB of gzip.
        let bomb = gzip(&vec![b' '; 64 << 20]);
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        let e = Encoding::Gzip.decode(&bomb, 1 << 20).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(e.message().contains("decompresses"), "{}", e.message());
    }

    #[test]
    fn damaged_or_truncated_data_is_a_400() {
        let sent = gzip(br#"{"name": "HighCPU"}"#);
        for broken in [&sent[..sent.len() / 2], b"not gzip at all".as_slice()] {
            let e = Encoding::Gzip.decode(broken, 10_000).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            assert!(e.message().contains("gzip"), "{}", e.message());
        }
    }
}
