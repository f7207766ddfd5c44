//! An in-process gateway: a real ledger `State` applying one block per commit (signed with test
//! keys, so ledger rules apply), in-memory fragment storage, the s3s service the node builds,
//! and a small SigV4 client (header, presigned and aws-chunked signing).

use bytes::Bytes;
pub use cairn_gateway::s3::Ledger;
use cairn_gateway::{
    keys::{Access, Auth, KeyStore},
    s3::{CommitError, Gateway, GatewayConfig, VirtualHosts},
    FragmentTransport, TransportError,
};
use cairn_ledger::{
    AccountId, Genesis, Hash, NodeId, NodeRecordInit, Roles, State, Tx, TxError, TxKind,
};
use ed25519_dalek::SigningKey;
use hmac::{KeyInit, Mac};
use s3s::service::{S3Service, S3ServiceBuilder};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

/// The gateway operator's key (it owns the storage nodes and signs every transaction).
pub const GATEWAY_SEED: u8 = 1;
/// An account that never authorized the gateway.
pub const STRANGER_SEED: u8 = 2;
/// Access key and secret of the gateway operator's own account.
pub const AK: &str = "AKIAGATEWAYTEST00001";
/// Secret of [`AK`].
pub const SK: &str = "gateway-secret-gateway-secret-gateway-0001";
/// Access key of [`STRANGER_SEED`]'s account.
pub const STRANGER_AK: &str = "AKIASTRANGERTEST0002";
const STRANGER_SK: &str = "stranger-secret-stranger-secret-stranger-02";
/// Segment size of the test gateway (small, so objects span several segments).
pub const SEGMENT_BYTES: usize = 256 * 1024;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The account of test key `seed`.
pub fn account(seed: u8) -> AccountId {
    key(seed).verifying_key().to_bytes()
}

/// A ledger applying each committed transaction as its own finalized block.
pub struct MemLedger {
    state: Mutex<State>,
    key: SigningKey,
    nonce: AtomicU64,
    replay_next: AtomicBool,
    down: AtomicBool,
}

impl MemLedger {
    fn new() -> Self {
        let roles = Roles {
            validator: false,
            storage: true,
            gateway: false,
            cache: false,
        };
        let nodes = (0..12u8)
            .map(|i| {
                (
                    [100 + i; 32],
                    NodeRecordInit {
                        operator: account(GATEWAY_SEED),
                        zone: format!("z{}", i % 3),
                        roles: roles.clone(),
                        addresses: vec![format!("127.0.0.1:{}", 2000 + u16::from(i))],
                        capacity_bytes: 1 << 40,
                        stake: 1,
                    },
                )
            })
            .collect();
        let g = Genesis {
            audit: Default::default(),
            chain_id: "handlers".into(),
            accounts: vec![
                (account(GATEWAY_SEED), "gateway".into()),
                (account(STRANGER_SEED), "stranger".into()),
            ],
            nodes,
        };
        Self {
            state: Mutex::new(State::genesis(&g).expect("valid genesis")),
            key: key(GATEWAY_SEED),
            nonce: AtomicU64::new(0),
            replay_next: AtomicBool::new(false),
            down: AtomicBool::new(false),
        }
    }

    /// The next commit reuses the previous nonce (as a concurrent writer would).
    pub fn replay_next_nonce(&self) {
        self.replay_next.store(true, Ordering::SeqCst);
    }

    /// While down, commits fail as a chain without quorum does.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Finalized height.
    pub fn height(&self) -> u64 {
        self.read(State::height)
    }
}

impl Ledger for MemLedger {
    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.lock().expect("state lock"))
    }

    fn gateway(&self) -> AccountId {
        self.key.verifying_key().to_bytes()
    }

    async fn commit(&self, kind: TxKind) -> Result<(), CommitError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CommitError::Unavailable("test chain is down".into()));
        }
        let nonce = if self.replay_next.swap(false, Ordering::SeqCst) {
            self.nonce.load(Ordering::SeqCst)
        } else {
            self.nonce.fetch_add(1, Ordering::SeqCst) + 1
        };
        let mut s = self.state.lock().expect("state lock");
        let height = s.height() + 1;
        let tx = Tx {
            signer: self.gateway(),
            nonce,
            valid_until: height + 100,
            kind,
        }
        .sign(&self.key);
        let out = s
            // Block time held still: the in-memory storage nodes never heartbeat, so they stay
            // healthy and placement is never what a handler test measures.
            .apply_block(height, 1_000, &[tx.encode()])
            .map_err(|e| CommitError::Unavailable(e.to_string()))?;
        out.receipts
            .into_iter()
            .next()
            .unwrap_or(Err(TxError::Malformed {
                reason: "no receipt",
            }))
            .map_err(CommitError::Rejected)
    }

    async fn block_time_ms(&self, height: u64) -> Option<u64> {
        Some(1_700_000_000_000 + height * 500)
    }
}

/// Fragments in memory, counting every put.
#[derive(Default)]
pub struct MemTransport {
    fragments: Mutex<HashMap<(NodeId, Hash), Bytes>>,
    puts: AtomicUsize,
}

impl MemTransport {
    /// Fragment puts so far.
    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

impl FragmentTransport for MemTransport {
    async fn put(&self, node: NodeId, root: Hash, data: Bytes) -> Result<(), TransportError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.fragments
            .lock()
            .expect("fragments lock")
            .insert((node, root), data);
        Ok(())
    }

    async fn get(&self, node: NodeId, root: Hash) -> Result<Bytes, TransportError> {
        self.fragments
            .lock()
            .expect("fragments lock")
            .get(&(node, root))
            .cloned()
            .ok_or_else(|| TransportError("no such fragment".into()))
    }
}

/// One gateway with its ledger, fragments and s3s service.
pub struct Env {
    /// The ledger.
    pub ledger: Arc<MemLedger>,
    /// The fragment store.
    pub transport: Arc<MemTransport>,
    service: S3Service,
}

impl Env {
    /// A fresh gateway over 12 storage nodes in 3 zones.
    pub fn new() -> Self {
        let ledger = Arc::new(MemLedger::new());
        let transport = Arc::new(MemTransport::default());
        let mut keys = KeyStore::new();
        keys.insert(AK, SK, account(GATEWAY_SEED)).expect("key");
        keys.insert(STRANGER_AK, STRANGER_SK, account(STRANGER_SEED))
            .expect("key");
        let keys = Arc::new(keys);
        let cfg = GatewayConfig {
            segment_size_bytes: SEGMENT_BYTES,
            ..GatewayConfig::default()
        };
        let gateway = Gateway::new(ledger.clone(), transport.clone(), keys.clone(), cfg);
        let mut builder = S3ServiceBuilder::new(gateway);
        builder.set_auth(Auth(keys));
        builder.set_access(Access(ledger.clone()));
        builder.set_host(VirtualHosts::new("s3.cairn.test"));
        Self {
            ledger,
            transport,
            service: builder.build(),
        }
    }

    /// A request signed with [`AK`] in the Authorization header.
    pub fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            env: self,
            method: method.into(),
            path: path.into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
            signing: Signing::Header,
            creds: (AK, SK),
            sha_override: None,
        }
    }

    /// Creates `bucket` (optionally with extra headers), asserting success.
    pub async fn bucket(&self, bucket: &str, headers: &[(&str, &str)]) {
        let mut r = self.req("PUT", &format!("/{bucket}"));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        let resp = r.send().await;
        assert_eq!(resp.status, 200, "create {bucket}: {}", resp.text());
    }

    /// PUTs `data` at `bucket/key`, asserting success; returns the ETag.
    pub async fn put(&self, bucket: &str, key: &str, data: &[u8]) -> String {
        let resp = self
            .req("PUT", &format!("/{bucket}/{key}"))
            .body(data)
            .send()
            .await;
        assert_eq!(resp.status, 200, "put {key}: {}", resp.text());
        resp.header("etag").expect("etag")
    }

    /// GETs `bucket/key`.
    pub async fn get(&self, bucket: &str, key: &str) -> Resp {
        self.req("GET", &format!("/{bucket}/{key}")).send().await
    }

    /// True if the ledger holds `bucket/key`.
    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        self.ledger.read(|s| s.object(bucket, key).is_some())
    }
}

/// How a request is authenticated.
#[derive(Clone, Copy)]
enum Signing {
    Anonymous,
    Header,
    UnsignedPayload,
    Presigned {
        expires_secs: u32,
    },
    Chunked {
        chunk_bytes: usize,
        bad_chunk: Option<usize>,
    },
}

/// A request being built.
pub struct Req<'a> {
    env: &'a Env,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    signing: Signing,
    creds: (&'static str, &'static str),
    sha_override: Option<String>,
}

/// A response, read whole.
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Resp {
    /// The S3 error code of an error body.
    pub fn code(&self) -> Option<String> {
        let text = self.text();
        let start = text.find("<Code>")? + "<Code>".len();
        let end = text[start..].find("</Code>")? + start;
        Some(text[start..end].to_string())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Values of every `<tag>` in the body, in order.
    pub fn all(&self, tag: &str) -> Vec<String> {
        let text = self.text();
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut out = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(&open) {
            let after = &rest[i + open.len()..];
            let Some(j) = after.find(&close) else { break };
            out.push(after[..j].to_string());
            rest = &after[j + close.len()..];
        }
        out
    }
}

impl<'a> Req<'a> {
    /// Adds a query parameter (`""` for a bare subresource such as `uploads`).
    pub fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }

    /// Adds a header.
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_ascii_lowercase(), v.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, b: &[u8]) -> Self {
        self.body = b.to_vec();
        self
    }

    /// Declares (and signs) the SHA-256 of `other` instead of the body's.
    pub fn declared_sha256_of(mut self, other: &[u8]) -> Self {
        self.sha_override = Some(hex(&Sha256::digest(other)));
        self
    }

    /// Sends no credentials.
    pub fn anonymous(mut self) -> Self {
        self.signing = Signing::Anonymous;
        self
    }

    /// Signs as the stranger account.
    pub fn signed_by_stranger(mut self) -> Self {
        self.creds = (STRANGER_AK, STRANGER_SK);
        self
    }

    /// Signs with a wrong secret.
    pub fn wrong_secret(mut self) -> Self {
        self.creds = (AK, "not-the-secret-not-the-secret-not-the-se");
        self
    }

    /// Signs headers but sends `UNSIGNED-PAYLOAD`.
    pub fn unsigned_payload(mut self) -> Self {
        self.signing = Signing::UnsignedPayload;
        self
    }

    /// Signs as a presigned URL valid for `expires_secs`.
    pub fn presigned(mut self, expires_secs: u32) -> Self {
        self.signing = Signing::Presigned { expires_secs };
        self
    }

    /// Sends the body aws-chunked, signing each chunk; `bad_chunk` gets a wrong signature.
    pub fn chunked(mut self, chunk_bytes: usize, bad_chunk: Option<usize>) -> Self {
        self.signing = Signing::Chunked {
            chunk_bytes,
            bad_chunk,
        };
        self
    }

    /// Signs and sends the request through the s3s service.
    pub async fn send(self) -> Resp {
        self_call(self.build()).await
    }

    fn build(self) -> (http::Request<s3s::Body>, &'a Env) {
        let (ak, sk) = self.creds;
        let now = time::OffsetDateTime::now_utc();
        let date = format!(
            "{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let amz_date = format!(
            "{date}T{:02}{:02}{:02}Z",
            now.hour(),
            now.minute(),
            now.second()
        );
        let scope = format!("{date}/us-east-1/s3/aws4_request");
        let mut headers = self.headers.clone();
        headers.push(("host".into(), "127.0.0.1:9000".into()));
        let mut query = self.query.clone();
        let mut body = self.body.clone();
        let payload_hash = match self.signing {
            Signing::Anonymous | Signing::Presigned { .. } => None,
            Signing::Header => Some(
                self.sha_override
                    .clone()
                    .unwrap_or_else(|| hex(&Sha256::digest(&self.body))),
            ),
            Signing::UnsignedPayload => Some("UNSIGNED-PAYLOAD".to_string()),
            Signing::Chunked { .. } => Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".to_string()),
        };
        if let Signing::Chunked { .. } = self.signing {
            headers.push(("content-encoding".into(), "aws-chunked".into()));
            headers.push((
                "x-amz-decoded-content-length".into(),
                self.body.len().to_string(),
            ));
        }
        if let Signing::Presigned { expires_secs } = self.signing {
            query.extend([
                ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
                ("X-Amz-Credential".into(), format!("{ak}/{scope}")),
                ("X-Amz-Date".into(), amz_date.clone()),
                ("X-Amz-Expires".into(), expires_secs.to_string()),
                ("X-Amz-SignedHeaders".into(), "host".into()),
            ]);
        }
        if let Some(h) = &payload_hash {
            headers.push(("x-amz-content-sha256".into(), h.clone()));
            headers.push(("x-amz-date".into(), amz_date.clone()));
        }
        headers.sort();
        let canonical_query = canonical_query(&query);
        let path = uri_encode(&self.path, false);
        let key = signing_key(sk, &date);
        let sign = |signed: &[(String, String)], payload: &str| {
            let names: Vec<&str> = signed.iter().map(|(k, _)| k.as_str()).collect();
            let canonical = format!(
                "{}\n{path}\n{canonical_query}\n{}\n{}\n{payload}",
                self.method,
                signed
                    .iter()
                    .map(|(k, v)| format!("{k}:{}\n", v.trim()))
                    .collect::<String>(),
                names.join(";"),
            );
            let to_sign = format!(
                "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
                hex(&Sha256::digest(canonical.as_bytes()))
            );
            (names.join(";"), hmac_hex(&key, &to_sign))
        };
        let mut uri_query = canonical_query.clone();
        match self.signing {
            Signing::Anonymous => {}
            Signing::Presigned { .. } => {
                let host: Vec<(String, String)> = headers
                    .iter()
                    .filter(|(k, _)| k == "host")
                    .cloned()
                    .collect();
                let (_, sig) = sign(&host, "UNSIGNED-PAYLOAD");
                uri_query.push_str(&format!("&X-Amz-Signature={sig}"));
            }
            _ => {
                // Content-Length is added after signing (it is not a signed header here).
                let (names, seed) = sign(&headers, payload_hash.as_deref().unwrap_or(""));
                headers.push((
                    "authorization".into(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={names}, Signature={seed}"
                    ),
                ));
                if let Signing::Chunked {
                    chunk_bytes,
                    bad_chunk,
                } = self.signing
                {
                    body = aws_chunked(
                        &self.body,
                        chunk_bytes,
                        bad_chunk,
                        &key,
                        &amz_date,
                        &scope,
                        seed,
                    );
                }
            }
        }
        let uri = if uri_query.is_empty() {
            path.clone()
        } else {
            format!("{path}?{uri_query}")
        };
        let mut b = http::Request::builder()
            .method(self.method.as_str())
            .uri(uri);
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        if !body.is_empty() || matches!(self.method.as_str(), "PUT" | "POST") {
            b = b.header("content-length", body.len().to_string());
        }
        let req = b
            .body(s3s::Body::from(Bytes::from(body)))
            .expect("valid request");
        (req, self.env)
    }
}

async fn self_call((req, env): (http::Request<s3s::Body>, &Env)) -> Resp {
    let resp = env.service.call(req).await.expect("s3s answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let body = body
        .store_all_limited(64 << 20)
        .await
        .expect("response body");
    Resp {
        status,
        headers,
        body,
    }
}

/// Encodes an aws-chunked body, each chunk signed after the previous signature.
fn aws_chunked(
    data: &[u8],
    chunk_bytes: usize,
    bad_chunk: Option<usize>,
    key: &[u8],
    amz_date: &str,
    scope: &str,
    seed: String,
) -> Vec<u8> {
    let empty = hex(&Sha256::digest(b""));
    let mut chunks: Vec<&[u8]> = data.chunks(chunk_bytes.max(1)).collect();
    chunks.push(&[]);
    let mut prev = seed;
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{prev}\n{empty}\n{}",
            hex(&Sha256::digest(c))
        );
        let mut sig = hmac_hex(key, &to_sign);
        if bad_chunk == Some(i) {
            sig = hmac_hex(key, "tampered");
        }
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
        prev = sig;
    }
    out
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hmac_hex(key: &[u8], msg: &str) -> String {
    hex(&hmac(key, msg.as_bytes()))
}

fn signing_key(secret: &str, date: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, b"us-east-1");
    let k = hmac(&k, b"s3");
    hmac(&k, b"aws4_request")
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn canonical_query(q: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = q
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Deterministic test bytes.
pub fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Base64 of an MD5 digest, for Content-MD5.
pub fn md5_b64(data: &[u8]) -> String {
    use md5::Digest as _;
    base64(&md5::Md5::digest(data))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
