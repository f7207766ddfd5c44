//! A small blocking S3 client (SigV4 in headers, HTTP/1.1 over one TCP connection per
//! request) for `cairn put/get/ls/rm/mb` and the devnet self-check.
//!
//! Limits: plain HTTP to one endpoint, single-request PUT (objects up to the gateway's
//! single-PUT limit), responses other than object bodies capped at 16 MiB.

use crate::config::hex;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Largest non-object response body read into memory.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Socket timeout for each read or write.
pub const IO_TIMEOUT_MS: u64 = 60_000;
const COPY_CHUNK_BYTES: usize = 256 * 1024;

/// Credentials and endpoint, as the aws CLI reads them from the environment.
#[derive(Clone, Debug)]
pub struct S3Client {
    /// `host:port`.
    pub host: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Signing region.
    pub region: String,
}

/// A response: status, headers (lower-case names) and, unless streamed out, the body.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body (empty when it was written to a sink).
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The S3 error code and message of an error response, for messages.
    pub fn error_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let tag = |t: &str| {
            let open = format!("<{t}>");
            let start = text.find(&open)? + open.len();
            let end = text[start..].find(&format!("</{t}>"))? + start;
            Some(text[start..end].to_string())
        };
        match (tag("Code"), tag("Message")) {
            (Some(c), Some(m)) => format!("HTTP {}: {c}: {m}", self.status),
            (Some(c), None) => format!("HTTP {}: {c}", self.status),
            _ => format!("HTTP {}", self.status),
        }
    }
}

/// Where a response body goes, with a progress callback (bytes so far).
pub type Sink<'a> = (&'a mut dyn Write, &'a dyn Fn(u64));

/// Where a request body comes from.
pub enum Body<'a> {
    /// No body.
    Empty,
    /// In-memory bytes.
    Bytes(&'a [u8]),
    /// `len` bytes from a reader, sent unsigned (`UNSIGNED-PAYLOAD`), reporting progress.
    Reader(&'a mut dyn Read, u64, &'a dyn Fn(u64)),
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key size");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it (`/` kept when `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// (`yyyymmddThhmmssZ`, `yyyymmdd`) for a Unix time.
fn amz_date(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (proleptic Gregorian), valid for all dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    (time, date)
}

impl S3Client {
    /// Reads `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_DEFAULT_REGION` (default us-east-1), falling back to an env file such as a
    /// devnet's `s3.env`.
    pub fn from_env(env_file: Option<&std::path::Path>) -> Result<Self, String> {
        let mut vars: std::collections::HashMap<String, String> = std::env::vars().collect();
        if let Some(path) = env_file {
            if let Ok(text) = std::fs::read_to_string(path) {
                for line in text.lines() {
                    let line = line.trim().trim_start_matches("export ").trim();
                    if let Some((k, v)) = line.split_once('=') {
                        vars.entry(k.to_string())
                            .or_insert_with(|| v.trim_matches('"').to_string());
                    }
                }
            }
        }
        let get = |k: &str| {
            vars.get(k).cloned().ok_or_else(|| {
                format!("{k} is not set (export it, or run from a directory holding devnet/s3.env)")
            })
        };
        let endpoint = get("AWS_ENDPOINT_URL")?;
        let host = endpoint
            .strip_prefix("http://")
            .ok_or("AWS_ENDPOINT_URL must be an http:// URL")?
            .trim_end_matches('/')
            .to_string();
        Ok(Self {
            host,
            access_key: get("AWS_ACCESS_KEY_ID")?,
            secret_key: get("AWS_SECRET_ACCESS_KEY")?,
            region: vars
                .get("AWS_DEFAULT_REGION")
                .cloned()
                .unwrap_or_else(|| "us-east-1".into()),
        })
    }

    /// Sends one signed request; the response body goes to `sink` if given, else into memory.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: Body<'_>,
        sink: Option<Sink<'_>>,
    ) -> Result<Response, String> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let (amz, date) = amz_date(secs);
        let (payload_hash, len) = match &body {
            Body::Empty => (hex(&Sha256::digest(b"")), 0),
            Body::Bytes(b) => (hex(&Sha256::digest(b)), b.len() as u64),
            Body::Reader(_, len, _) => ("UNSIGNED-PAYLOAD".to_string(), *len),
        };
        let canonical_path = uri_encode(path, true);
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let canonical_query = q
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), payload_hash.clone()),
            ("x-amz-date".into(), amz.clone()),
        ];
        for (k, v) in extra_headers {
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        headers.sort();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical = format!(
            "{method}\n{canonical_path}\n{canonical_query}\n{}\n{signed}\n{payload_hash}",
            headers
                .iter()
                .map(|(k, v)| format!("{k}:{v}\n"))
                .collect::<String>()
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            self.access_key
        );
        let stream = TcpStream::connect(&self.host)
            .map_err(|e| format!("cannot connect to {}: {e}", self.host))?;
        let _ = stream.set_nodelay(true);
        let timeout = Some(Duration::from_millis(IO_TIMEOUT_MS));
        stream
            .set_read_timeout(timeout)
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(timeout)
            .map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::with_capacity(COPY_CHUNK_BYTES, &stream);
        let target = if canonical_query.is_empty() {
            canonical_path
        } else {
            format!("{canonical_path}?{canonical_query}")
        };
        let mut head = format!("{method} {target} HTTP/1.1\r\nauthorization: {auth}\r\ncontent-length: {len}\r\nconnection: close\r\n");
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let io = |e: std::io::Error| format!("request to {} failed: {e}", self.host);
        w.write_all(head.as_bytes()).map_err(io)?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => w.write_all(b).map_err(io)?,
            Body::Reader(r, len, progress) => {
                let mut buf = vec![0u8; COPY_CHUNK_BYTES];
                let mut sent = 0u64;
                while sent < len {
                    let n = r
                        .read(&mut buf)
                        .map_err(|e| format!("reading the input failed: {e}"))?;
                    if n == 0 {
                        return Err(format!("the input ended after {sent} of {len} bytes"));
                    }
                    w.write_all(&buf[..n]).map_err(io)?;
                    sent += n as u64;
                    progress(sent);
                }
            }
        }
        w.flush().map_err(io)?;
        drop(w);
        let mut r = BufReader::with_capacity(COPY_CHUNK_BYTES, &stream);
        let mut line = String::new();
        r.read_line(&mut line).map_err(io)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad HTTP status line from {}: {line:?}", self.host))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).map_err(io)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: Option<u64> = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok());
        let mut out = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok(out);
        }
        match sink {
            Some((sink, progress)) if status < 300 => {
                let mut buf = vec![0u8; COPY_CHUNK_BYTES];
                let mut got = 0u64;
                loop {
                    let n = r.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    sink.write_all(&buf[..n])
                        .map_err(|e| format!("writing the output failed: {e}"))?;
                    got += n as u64;
                    progress(got);
                }
                if let Some(want) = length {
                    if got != want {
                        return Err(format!("the response ended after {got} of {want} bytes"));
                    }
                }
            }
            _ => {
                r.take(MAX_RESPONSE_BYTES as u64 + 1)
                    .read_to_end(&mut out.body)
                    .map_err(io)?;
                if out.body.len() > MAX_RESPONSE_BYTES {
                    return Err(format!("response exceeds {MAX_RESPONSE_BYTES} bytes"));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil() {
        assert_eq!(amz_date(0).0, "19700101T000000Z");
        // 2026-11-24 16:05:09 UTC
        assert_eq!(amz_date(1_795_536_309).0, "20261124T160509Z");
        assert_eq!(amz_date(951_782_400).1, "20000229");
    }

    #[test]
    fn uri_encoding_keeps_only_unreserved() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(uri_encode("ü", true), "%C3%BC");
    }
}
