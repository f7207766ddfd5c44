//! A small blocking S3 client for `cairn put/get/ls/rm/mb` and the devnet self-check: requests
//! are signed with SigV4 in headers by `aws-sigv4` and sent by `ureq`.
//!
//! Limits: plain HTTP to one endpoint, single-request PUT (objects up to the gateway's
//! single-PUT limit), responses other than object bodies capped at 16 MiB, no redirects
//! followed. A response must start within [`RESPONSE_TIMEOUT_MS`]; a stalled body is cut off
//! by the gateway's own stall limit.

use aws_sigv4::{
    http_request::{
        sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
        SigningSettings, UriPathNormalizationMode,
    },
    sign::v4,
};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::{
    io::{Read, Write},
    time::{Duration, SystemTime},
};
use ureq::http;

/// Largest non-object response body read into memory.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How long to wait for a connection.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// How long to wait for a response head once the request is sent (a PUT waits for finality).
pub const RESPONSE_TIMEOUT_MS: u64 = 60_000;
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

/// What SigV4 leaves unescaped in a query component: the RFC 3986 unreserved set.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The same for a path, where `/` separates segments.
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// Percent-encodes `s` as SigV4 canonicalises it (`/` kept when `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    utf8_percent_encode(s, if keep_slash { PATH } else { QUERY }).to_string()
}

/// A reader that reports how many bytes it has handed out, and refuses to end early.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    sent: u64,
    len: u64,
    progress: &'a dyn Fn(u64),
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len - self.sent;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the input ended after {} of {} bytes", self.sent, self.len),
            ));
        }
        self.sent += n as u64;
        (self.progress)(self.sent);
        Ok(n)
    }
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

    /// Signs a request for `method` on `path` and `query`; returns the URL and every header to
    /// send (the signature included).
    fn signed(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra_headers: &[(&str, &str)],
        body: &Body<'_>,
        time: SystemTime,
    ) -> Result<(String, Vec<(String, String)>), String> {
        let mut q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let mut url = format!("http://{}{}", self.host, uri_encode(path, true));
        if !q.is_empty() {
            url = format!("{url}?{}", q.join("&"));
        }
        let headers: Vec<(String, String)> = extra_headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "cairn",
        )
        .into();
        let mut settings = SigningSettings::default();
        // S3 signs the path as sent: encoded once, never normalised.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| format!("cannot sign the request: {e}"))?
            .into();
        let payload = match body {
            Body::Empty => SignableBody::Bytes(&[]),
            Body::Bytes(b) => SignableBody::Bytes(b),
            Body::Reader(..) => SignableBody::UnsignedPayload,
        };
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            payload,
        )
        .map_err(|e| format!("cannot sign the request: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("cannot sign the request: {e}"))?
            .into_parts();
        let (signature_headers, _) = instructions.into_parts();
        let mut all = headers;
        all.extend(
            signature_headers
                .into_iter()
                .map(|h| (h.name().to_string(), h.value().to_string())),
        );
        Ok((url, all))
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
        let (url, headers) =
            self.signed(method, path, query, extra_headers, &body, SystemTime::now())?;
        let mut builder = http::Request::builder().method(method).uri(&url);
        for (k, v) in &headers {
            builder = builder.header(k, v);
        }
        let len = match &body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Reader(_, len, _) => *len,
        };
        builder = builder.header(http::header::CONTENT_LENGTH, len);
        let io = |e: ureq::Error| format!("request to {} failed: {e}", self.host);
        let agent = agent();
        let response = match body {
            Body::Empty => agent.run(builder.body(()).map_err(|e| e.to_string())?),
            Body::Bytes(b) => agent.run(builder.body(b).map_err(|e| e.to_string())?),
            Body::Reader(r, len, progress) => {
                let mut counted = Counted {
                    inner: r,
                    sent: 0,
                    len,
                    progress,
                };
                let body = ureq::SendBody::from_reader(&mut counted);
                agent.run(builder.body(body).map_err(|e| e.to_string())?)
            }
        }
        .map_err(io)?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
                )
            })
            .collect();
        let mut out = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if method == "HEAD" || status == 204 || status == 304 {
            return Ok(out);
        }
        let mut body = response.into_body();
        match sink {
            Some((sink, progress)) if status < 300 => {
                let mut reader = body.with_config().limit(u64::MAX).reader();
                let mut buf = vec![0u8; COPY_CHUNK_BYTES];
                let mut got = 0u64;
                loop {
                    let n = reader.read(&mut buf).map_err(|e| {
                        format!("reading the response from {} failed: {e}", self.host)
                    })?;
                    if n == 0 {
                        break;
                    }
                    sink.write_all(&buf[..n])
                        .map_err(|e| format!("writing the output failed: {e}"))?;
                    got += n as u64;
                    progress(got);
                }
            }
            _ => {
                out.body = body
                    .with_config()
                    .limit(MAX_RESPONSE_BYTES as u64)
                    .read_to_vec()
                    .map_err(io)?;
            }
        }
        Ok(out)
    }
}

/// One agent per request, as before: the CLI makes few requests, and a fresh connection keeps
/// a failed request from poisoning the next.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_millis(CONNECT_TIMEOUT_MS)))
        .timeout_recv_response(Some(Duration::from_millis(RESPONSE_TIMEOUT_MS)))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encoding_keeps_only_unreserved() {
        assert_eq!(uri_encode("a b/c~d", true), "a%20b/c~d");
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(uri_encode("ü", true), "%C3%BC");
    }

    /// The signature the AWS documentation's SigV4 example gives for this request.
    #[test]
    fn signs_as_aws_documents() {
        let c = S3Client {
            host: "examplebucket.s3.amazonaws.com".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            region: "us-east-1".into(),
        };
        let (url, headers) = c
            .signed(
                "GET",
                "/test.txt",
                &[],
                &[("Range", "bytes=0-9")],
                &Body::Empty,
                // 2013-05-24T00:00:00Z, the example's date.
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600),
            )
            .expect("signs");
        assert_eq!(url, "http://examplebucket.s3.amazonaws.com/test.txt");
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .expect("an authorization header")
            .1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert!(headers.iter().any(|(k, v)| k == "x-amz-content-sha256"
            && v == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    }
}
