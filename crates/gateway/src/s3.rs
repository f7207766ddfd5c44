//! The S3 protocol layer: s3s handlers over finalized ledger state and the fragment data path.
//!
//! Every write is acknowledged only after its manifest transaction is finalized
//! ([`Ledger::commit`]), so a later read or list on any gateway that has seen that height sees
//! it. Reads use only finalized state and storage nodes, never consensus, so they keep working
//! while the committee has lost its quorum.

use crate::{
    keys::KeyStore,
    pipeline::{read_range, upload, DownloadError, FragmentTransport, UploadConfig, UploadError},
};
use bytes::Bytes;
use cairn_ledger::{
    objects::{
        self, fragment_size_bytes, Acl, Bucket, ObjectManifest, ObjectRecord, Segment,
        MAX_MANIFEST_SEGMENTS, MAX_OBJECT_KEY_SIZE_BYTES,
    },
    placement, AccountId, NodeId, State, TxError, TxKind,
};
use cairn_storage::Coding;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::{
    dto::{self, ETag, ETagCondition, StreamingBlob, Timestamp},
    s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3,
};
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// What the S3 layer needs from the node: finalized state and a way to commit transactions.
pub trait Ledger: Send + Sync + 'static {
    /// Runs `f` on the latest finalized state.
    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R;
    /// The account this gateway signs transactions with.
    fn gateway(&self) -> AccountId;
    /// Signs and submits `kind`, resolving once it is finalized (or failed, or timed out).
    fn commit(&self, kind: TxKind) -> impl Future<Output = Result<(), CommitError>> + Send;
    /// Proposer timestamp of the finalized block at `height`, if this node still has it.
    fn block_time_ms(&self, height: u64) -> impl Future<Output = Option<u64>> + Send;
}

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Finalized (or checked) and rejected by the ledger's rules.
    #[error(transparent)]
    Rejected(#[from] TxError),
    /// Not finalized in time, or the mempool refused it: the chain is unavailable.
    #[error("{0}")]
    Unavailable(String),
}

/// Header that picks a bucket's erasure coding at CreateBucket, e.g. `4+8`; HeadObject
/// reports the object's coding in it.
pub const CODING_HEADER: &str = "x-cairn-coding";
/// HeadObject: how many distinct storage nodes hold the object's fragments.
pub const NODES_HEADER: &str = "x-cairn-nodes";
/// HeadObject: how many distinct failure zones those nodes are in.
pub const ZONES_HEADER: &str = "x-cairn-zones";
/// Most keys one list request returns (S3's own cap).
pub const MAX_LIST_KEYS: usize = 1000;
/// Most keys in one DeleteObjects request (S3's own cap).
pub const MAX_DELETE_KEYS: usize = 1000;
/// Highest multipart part number (S3's own cap).
pub const MAX_PART_NUMBER: i32 = 10_000;
/// Smallest non-final multipart part (S3's own rule).
pub const MIN_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;
/// Content type stored when a PUT names none (S3's default).
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Gateway tuning.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Segment size of new objects and parts.
    pub segment_size_bytes: usize,
    /// Fragments beyond k that must be durable before a PUT is acknowledged (k + 2 default).
    pub write_quorum_extra: usize,
    /// Fragment requests beyond k sent when the first k take over `HEDGE_AFTER_MS` (hedging).
    pub extra_read_requests: usize,
    /// Uploads (PUT, UploadPart, CopyObject) running at once; more wait up to
    /// [`UPLOAD_SLOT_WAIT_MS`] in arrival order, then get 503 SlowDown. Each holds up to about
    /// 3 segments plus 2 segments of fragments (~200 MiB at 16 MiB, RS(4, 8)).
    pub max_concurrent_uploads: usize,
    /// Multipart uploads in progress at once on this gateway.
    pub max_multipart_uploads: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            segment_size_bytes: 16 * 1024 * 1024,
            write_quorum_extra: 2,
            extra_read_requests: 1,
            max_concurrent_uploads: 16,
            max_multipart_uploads: 1000,
        }
    }
}

/// Default coding for a network with `nodes` healthy storage nodes: RS(4, 8) from 12 nodes,
/// else about a third data shards and the rest parity.
pub fn default_coding(nodes: usize) -> Option<Coding> {
    if nodes >= 12 {
        return Some(Coding::DEFAULT);
    }
    if nodes < 2 {
        return None;
    }
    let data = (nodes / 3).max(1) as u8;
    Some(Coding {
        data,
        parity: nodes as u8 - data,
    })
}

struct Part {
    segments: Vec<Segment>,
    size_bytes: u64,
    md5: [u8; 16],
    modified_ms: u64,
}

struct Multipart {
    owner: AccountId,
    coding: Coding,
    placement: Vec<NodeId>,
    content_type: String,
    metadata: Vec<(String, String)>,
    initiated_ms: u64,
    parts: BTreeMap<i32, Part>,
}

/// (bucket, key, upload id), so uploads list in S3 order.
type UploadKey = (String, String, String);

/// The s3s service implementation.
pub struct Gateway<L, T> {
    ledger: Arc<L>,
    transport: Arc<T>,
    keys: Arc<KeyStore>,
    cfg: GatewayConfig,
    uploads: Mutex<BTreeMap<UploadKey, Multipart>>,
    upload_slots: tokio::sync::Semaphore,
    seed_counter: AtomicU64,
}

/// Releases an upload slot when dropped.
/// Longest an upload waits for a slot before 503 SlowDown. Longer than the time the node's
/// listener lets a too-slow body hold one (its body grace), so an honest upload queued behind
/// trickling clients gets the next free slot instead of losing every race for it.
pub const UPLOAD_SLOT_WAIT_MS: u64 = 10_000;

/// Makes a `Send` stream `Sync` (as s3s bodies must be): it is only ever polled through
/// `&mut`, so the mutex is never locked.
struct SyncStream<S>(Mutex<std::pin::Pin<Box<S>>>);

impl<S: Stream> Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(s) => s.as_mut().poll_next(cx),
            Err(poisoned) => poisoned.into_inner().as_mut().poll_next(cx),
        }
    }
}

/// The body of a request that sent none.
fn empty_body() -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::empty::<Result<Bytes, std::io::Error>>())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

fn unix_secs(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unavailable(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::ServiceUnavailable, msg.into())
}

fn upload_error(e: UploadError) -> S3Error {
    match e {
        UploadError::Unavailable { .. } => unavailable(e.to_string()),
        UploadError::TooLarge { .. } => {
            S3Error::with_message(S3ErrorCode::EntityTooLarge, e.to_string())
        }
        UploadError::Body(ref m) if m.contains("Sha256Mismatch") => {
            let mut err = S3Error::with_message(
                S3ErrorCode::from_bytes(b"XAmzContentSHA256Mismatch").expect("valid code"),
                "the body does not match x-amz-content-sha256; nothing was stored",
            );
            err.set_status_code(http::StatusCode::BAD_REQUEST);
            err
        }
        UploadError::Body(ref m) if m.contains("SignatureMismatch") => S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "a chunk signature of the aws-chunked body is wrong; nothing was stored",
        ),
        UploadError::Body(_) => S3Error::with_message(S3ErrorCode::IncompleteBody, e.to_string()),
        UploadError::Placement { .. } | UploadError::Coding(_) | UploadError::Config(_) => {
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
    }
}

fn download_error(e: DownloadError) -> S3Error {
    match e {
        DownloadError::Unavailable { .. } => unavailable(e.to_string()),
        DownloadError::Range { .. } => {
            S3Error::with_message(S3ErrorCode::InvalidRange, e.to_string())
        }
        DownloadError::Manifest { .. } | DownloadError::Coding(_) => {
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
    }
}

fn commit_error(e: CommitError) -> S3Error {
    match e {
        CommitError::Unavailable(msg) => unavailable(format!(
            "the ledger did not finalize the change ({msg}); nothing was acknowledged, retry later"
        )),
        CommitError::Rejected(e) => {
            let code = match &e {
                TxError::NoSuchBucket => S3ErrorCode::NoSuchBucket,
                TxError::BucketExists => S3ErrorCode::BucketAlreadyExists,
                TxError::BucketNotEmpty { .. } => S3ErrorCode::BucketNotEmpty,
                TxError::NoSuchObject => S3ErrorCode::NoSuchKey,
                TxError::ObjectExists => S3ErrorCode::PreconditionFailed,
                TxError::NotAuthorized => S3ErrorCode::AccessDenied,
                TxError::InvalidPlacement { .. } => S3ErrorCode::ServiceUnavailable,
                TxError::InvalidField { .. } => S3ErrorCode::InvalidArgument,
                _ => S3ErrorCode::InternalError,
            };
            S3Error::with_message(code, e.to_string())
        }
    }
}

/// What a client declared about a request body, checked once the body is stored.
#[derive(Default)]
struct Declared<'a> {
    content_length: Option<i64>,
    content_md5: Option<&'a str>,
    crc32: Option<&'a str>,
    trailers: Option<&'a s3s::TrailingHeaders>,
}

/// Checks a CRC32 the client declared, in a header or an aws-chunked trailer (other
/// checksum algorithms are not verified).
fn check_crc32(
    header: Option<&str>,
    trailers: Option<&s3s::TrailingHeaders>,
    crc: u32,
) -> S3Result<()> {
    let trailer = trailers
        .and_then(|t| {
            t.read(|h| {
                h.get("x-amz-checksum-crc32")
                    .and_then(|v| v.to_str().ok().map(str::to_string))
            })
        })
        .flatten();
    match header.map(str::to_string).or(trailer) {
        Some(declared) if declared.trim() != base64(&crc.to_be_bytes()) => Err(s3_error!(
            BadDigest,
            "the x-amz-checksum-crc32 you specified did not match the body; nothing was stored"
        )),
        _ => Ok(()),
    }
}

fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_OBJECT_KEY_SIZE_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "object keys are at most 1024 bytes"
        ));
    }
    objects::validate_object_key(key)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()))
}

/// Evaluates RFC 9110 preconditions in their specified order against an object.
fn check_conditions(
    etag: &str,
    modified_ms: u64,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(t) => t.value() == etag,
    };
    let modified_s = (modified_ms / 1000) as i64;
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Match did not match the object's ETag"
            ));
        }
    } else if let Some(t) = if_unmodified_since {
        if modified_s > unix_secs(t) {
            return Err(s3_error!(
                PreconditionFailed,
                "the object was modified after If-Unmodified-Since"
            ));
        }
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(s3_error!(NotModified));
        }
    } else if let Some(t) = if_modified_since {
        if modified_s <= unix_secs(t) {
            return Err(s3_error!(NotModified));
        }
    }
    Ok(())
}

fn sorted_metadata(m: Option<dto::Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

fn metadata_map(v: &[(String, String)]) -> Option<dto::Metadata> {
    (!v.is_empty()).then(|| v.iter().cloned().collect())
}

fn manifest_error(e: TxError) -> S3Error {
    let code = match &e {
        TxError::InvalidField { field, .. } if field.starts_with("metadata") => {
            S3ErrorCode::MetadataTooLarge
        }
        _ => S3ErrorCode::InvalidArgument,
    };
    S3Error::with_message(code, e.to_string())
}

/// One page of a listing.
struct Listing {
    objects: Vec<(String, ObjectRecord)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix returned (the next page starts after it).
    last: Option<String>,
}

/// A listing page as S3 entries.
struct Page {
    contents: Vec<dto::Object>,
    prefixes: Vec<dto::CommonPrefix>,
    truncated: bool,
    /// The last key or common prefix, unencoded (the next page starts after it).
    last: Option<String>,
    enc: fn(String) -> String,
}

fn list(
    s: &State,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> Listing {
    paginate(
        s.objects_after(bucket, prefix, after),
        prefix,
        delimiter,
        after,
        max_keys,
    )
}

/// One page from `objects` (keys under `prefix`, sorted, all after `after`): keys and common
/// prefixes, `max_keys` of them in total.
fn paginate<'a>(
    objects: impl Iterator<Item = (&'a str, &'a ObjectRecord)>,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> Listing {
    let mut out = Listing {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    // A page that ended on a common prefix resumes after every key under it.
    let skip_under = delimiter
        .filter(|d| after.len() > prefix.len() && after.starts_with(prefix) && after.ends_with(*d))
        .map(|_| after);
    for (key, rec) in objects {
        debug_assert!(key.starts_with(prefix) && key > after);
        if skip_under.is_some_and(|p| key.starts_with(p)) {
            continue;
        }
        let common = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| &key[..prefix.len() + i + d.len()])
        });
        if let Some(cp) = common {
            if out.prefixes.last().is_some_and(|l| l == cp) {
                continue;
            }
        }
        if out.objects.len() + out.prefixes.len() >= max_keys {
            out.truncated = true;
            break;
        }
        match common {
            Some(cp) => {
                out.prefixes.push(cp.to_string());
                out.last = Some(cp.to_string());
            }
            None => {
                out.objects.push((key.to_string(), rec.clone()));
                out.last = Some(key.to_string());
            }
        }
    }
    out
}

fn list_entry(key: String, rec: &ObjectRecord) -> dto::Object {
    dto::Object {
        key: Some(key),
        e_tag: Some(ETag::Strong(rec.manifest.etag.clone())),
        size: Some(rec.manifest.size_bytes as i64),
        last_modified: Some(timestamp(rec.manifest.modified_ms)),
        storage_class: Some(dto::ObjectStorageClass::from_static(
            dto::ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

/// Percent-encodes a key for `encoding-type=url` listings (clients decode with
/// `unquote_plus`, so `+` and space must be escaped).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Applies a listing's `encoding-type` to one returned name.
fn encoder(encoding: Option<&dto::EncodingType>) -> S3Result<fn(String) -> String> {
    match encoding.map(|e| e.as_str()) {
        None => Ok(|s| s),
        Some("url") => Ok(|s| url_encode(&s)),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("encoding-type {other:?} is not supported; use url"),
        )),
    }
}

fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(MAX_LIST_KEYS)),
    }
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    /// A gateway over `ledger` and `transport`, accepting the keys in `keys`.
    pub fn new(ledger: Arc<L>, transport: Arc<T>, keys: Arc<KeyStore>, cfg: GatewayConfig) -> Self {
        Self {
            ledger,
            transport,
            keys,
            upload_slots: tokio::sync::Semaphore::new(cfg.max_concurrent_uploads),
            cfg,
            uploads: Mutex::new(BTreeMap::new()),
            seed_counter: AtomicU64::new(0),
        }
    }

    fn account<I>(&self, req: &S3Request<I>) -> S3Result<Option<AccountId>> {
        match &req.credentials {
            None => Ok(None),
            Some(c) => self
                .keys
                .account(&c.access_key)
                .map(Some)
                .ok_or_else(|| s3_error!(InvalidAccessKeyId)),
        }
    }

    fn signed<I>(&self, req: &S3Request<I>) -> S3Result<AccountId> {
        self.account(req)?
            .ok_or_else(|| s3_error!(AccessDenied, "this operation needs a signed request"))
    }

    fn authorized(&self, s: &State, account: &AccountId) -> S3Result<()> {
        let gateway = self.ledger.gateway();
        if *account == gateway || s.gateway_authorized(account, &gateway) {
            Ok(())
        } else {
            Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                format!(
                    "account {} has not authorized gateway {}; submit an AuthorizeGateway transaction first",
                    hex(account),
                    hex(&gateway)
                ),
            ))
        }
    }

    fn writable<'s>(
        &self,
        s: &'s State,
        account: &AccountId,
        bucket: &str,
    ) -> S3Result<&'s Bucket> {
        let b = s.bucket(bucket).ok_or_else(|| s3_error!(NoSuchBucket))?;
        if b.owner != *account {
            return Err(s3_error!(
                AccessDenied,
                "the bucket belongs to another account"
            ));
        }
        self.authorized(s, account)?;
        Ok(b)
    }

    fn readable<'s>(
        &self,
        s: &'s State,
        account: Option<&AccountId>,
        bucket: &str,
    ) -> S3Result<&'s Bucket> {
        let b = s.bucket(bucket).ok_or_else(|| s3_error!(NoSuchBucket))?;
        if b.acl == Acl::PublicRead {
            return Ok(b);
        }
        match account {
            Some(a) if *a == b.owner => {
                self.authorized(s, a)?;
                Ok(b)
            }
            _ => Err(s3_error!(
                AccessDenied,
                "the bucket is private to another account"
            )),
        }
    }

    fn seed(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.update(
            &self
                .seed_counter
                .fetch_add(1, Ordering::Relaxed)
                .to_le_bytes(),
        );
        h.update(&now_ms().to_le_bytes());
        *h.finalize().as_bytes()
    }

    fn place(
        &self,
        s: &State,
        coding: Coding,
        seed: &[u8; 32],
        size_hint: u64,
    ) -> S3Result<Vec<NodeId>> {
        let candidates = placement::candidates(s, |id| s.node(id).map_or(0, |n| n.used_bytes));
        let segment = size_hint.min(self.cfg.segment_size_bytes as u64);
        placement::place(
            &candidates,
            seed,
            usize::from(coding.data),
            usize::from(coding.parity),
            fragment_size_bytes(segment, coding.data),
            placement::failure_domain(s),
        )
        .map_err(|e| unavailable(format!("cannot place this object's fragments: {e}")))
    }

    async fn upload_slot(&self) -> S3Result<tokio::sync::SemaphorePermit<'_>> {
        // The semaphore is fair (FIFO), so waiting uploads are served in arrival order.
        match tokio::time::timeout(
            std::time::Duration::from_millis(UPLOAD_SLOT_WAIT_MS),
            self.upload_slots.acquire(),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(s3_error!(
                SlowDown,
                "too many uploads in progress on this gateway; retry with backoff"
            )),
        }
    }

    fn upload_config(&self, coding: Coding, placed: &[NodeId]) -> UploadConfig {
        // Slots fail together when their nodes share the cluster's failure domain.
        let domains = self
            .ledger
            .read(|s| placement::domains_of(s, placement::failure_domain(s), placed));
        let mut fragment_domains = crate::pipeline::DISTINCT_DOMAINS;
        for (i, d) in domains.iter().enumerate().take(64) {
            let first = domains.iter().position(|x| x == d).unwrap_or(i);
            fragment_domains[i] = first as u8;
        }
        UploadConfig {
            coding,
            segment_size_bytes: self.cfg.segment_size_bytes,
            write_quorum: (usize::from(coding.data) + self.cfg.write_quorum_extra)
                .min(coding.total()),
            fragment_domains,
        }
    }

    /// Streams a request body into fragments, checking what the client declared about it;
    /// returns its segments, size and MD5.
    async fn store_body<S, E>(
        &self,
        coding: Coding,
        placement: &[NodeId],
        body: S,
        declared: Declared<'_>,
    ) -> S3Result<(Vec<Segment>, u64, [u8; 16])>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Declared {
            content_length,
            content_md5,
            crc32,
            trailers,
        } = declared;
        if let Some(m) = content_md5 {
            let m = m.trim();
            let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
            if m.len() != 24 || !m.ends_with("==") || !m[..22].chars().all(b64) {
                return Err(s3_error!(
                    InvalidDigest,
                    "Content-MD5 must be the base64 of a 16-byte MD5 digest"
                ));
            }
        }
        let mut hasher = Md5::new();
        // CRC32 only when the client declared one (header or trailer): not on every upload.
        let mut crc = (crc32.is_some() || trailers.is_some()).then(crc32fast::Hasher::new);
        let mut size = 0u64;
        let counted = body.map(|chunk| {
            if let Ok(b) = &chunk {
                hasher.update(b);
                if let Some(c) = &mut crc {
                    c.update(b);
                }
                size += b.len() as u64;
            }
            chunk
        });
        let segments = upload(
            &*self.transport,
            &self.upload_config(coding, placement),
            placement,
            counted,
        )
        .await
        .map_err(upload_error)?;
        let md5: [u8; 16] = hasher.finalize().into();
        if let Some(expected) = content_length {
            if expected != size as i64 {
                return Err(S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    format!("Content-Length said {expected} bytes but the body had {size}"),
                ));
            }
        }
        if let Some(expected) = content_md5 {
            if expected.trim() != base64(&md5) {
                return Err(s3_error!(
                    BadDigest,
                    "the Content-MD5 you specified did not match what we received"
                ));
            }
        }
        if let Some(c) = crc {
            check_crc32(crc32, trailers, c.finalize())?;
        }
        Ok((segments, size, md5))
    }

    async fn commit(&self, kind: TxKind) -> S3Result<()> {
        match self.ledger.commit(kind).await {
            // Superseded: a write with a later request time already applied; to this client
            // its write succeeded and was overwritten at once, as S3 reports it.
            Ok(()) | Err(CommitError::Rejected(TxError::Superseded { .. })) => Ok(()),
            Err(e) => Err(commit_error(e)),
        }
    }

    /// Reads an object the caller may see, with its bucket's coding.
    fn object(
        &self,
        account: Option<&AccountId>,
        bucket: &str,
        key: &str,
    ) -> S3Result<(ObjectRecord, Coding)> {
        self.ledger.read(|s| {
            let b = self.readable(s, account, bucket)?;
            let coding = Coding::from(b);
            let rec = s.object(bucket, key).ok_or_else(|| s3_error!(NoSuchKey))?;
            Ok((rec.clone(), coding))
        })
    }

    /// Streams `start..end` of an object; fails (503) before any byte is sent if the first
    /// segment cannot be rebuilt.
    async fn body(
        &self,
        rec: &ObjectRecord,
        coding: Coding,
        start: u64,
        end: u64,
    ) -> S3Result<StreamingBlob> {
        let stream = read_range(
            self.transport.clone(),
            coding,
            rec.manifest.placement.clone().into(),
            rec.manifest.segments.clone().into(),
            start,
            end,
            self.cfg.extra_read_requests,
        )
        .map_err(download_error)?;
        let mut stream = Box::pin(stream);
        let first = match stream.next().await {
            None => Bytes::new(),
            Some(r) => r.map_err(download_error)?,
        };
        let rest = stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
        Ok(StreamingBlob::wrap(SyncStream(Mutex::new(Box::pin(
            futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest),
        )))))
    }

    /// One listing page of a bucket the caller may read, as S3 entries with names encoded as
    /// `encoding` asks (`enc` encodes the other names of the reply the same way).
    #[allow(clippy::too_many_arguments)]
    fn list_page(
        &self,
        account: Option<&AccountId>,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max_keys: usize,
        encoding: Option<&dto::EncodingType>,
    ) -> S3Result<Page> {
        let enc = encoder(encoding)?;
        let listing = self.ledger.read(|s| {
            self.readable(s, account, bucket)?;
            Ok::<_, S3Error>(list(s, bucket, prefix, delimiter, after, max_keys))
        })?;
        Ok(Page {
            contents: listing
                .objects
                .into_iter()
                .map(|(k, r)| list_entry(enc(k), &r))
                .collect(),
            prefixes: listing
                .prefixes
                .into_iter()
                .map(|p| dto::CommonPrefix {
                    prefix: Some(enc(p)),
                })
                .collect(),
            truncated: listing.truncated,
            last: listing.last,
            enc,
        })
    }

    fn new_upload_id(&self, bucket: &str, key: &str) -> String {
        hex(&self.seed(&[bucket.as_bytes(), key.as_bytes(), b"multipart"])[..16])
    }
}

#[async_trait::async_trait]
impl<L: Ledger, T: FragmentTransport + 'static> S3 for Gateway<L, T> {
    async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let account = self.signed(&req)?;
        let bucket = req.input.bucket.clone();
        objects::validate_bucket_name(&bucket)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string()))?;
        let acl = match req.input.acl.as_ref().map(|a| a.as_str()) {
            None | Some("private") => Acl::Private,
            Some("public-read") => Acl::PublicRead,
            Some(other) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!("canned ACL {other:?} is not supported; use private or public-read"),
                ))
            }
        };
        let requested = match req.headers.get(CODING_HEADER) {
            None => None,
            Some(v) => {
                let parsed = v.to_str().ok().and_then(|v| {
                    let (k, m) = v.trim().split_once('+')?;
                    Some(Coding {
                        data: k.parse().ok()?,
                        parity: m.parse().ok()?,
                    })
                });
                let coding = parsed.ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "x-cairn-coding must look like 4+8 (data+parity shards)"
                    )
                })?;
                objects::validate_coding(coding.data, coding.parity).map_err(|e| {
                    S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string())
                })?;
                Some(coding)
            }
        };
        let coding = self.ledger.read(|s| {
            self.authorized(s, &account)?;
            if let Some(b) = s.bucket(&bucket) {
                return Err(if b.owner == account {
                    s3_error!(BucketAlreadyOwnedByYou)
                } else {
                    s3_error!(BucketAlreadyExists)
                });
            }
            // Sized by admitted storage nodes, not healthy ones: a node that is down for a
            // while must not change the coding new buckets get (placement degrades instead).
            let nodes = cairn_ledger::registry::count(s, cairn_ledger::registry::Role::Storage);
            match requested {
                Some(c) if c.total() > nodes => Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!(
                        "RS({}, {}) needs {} storage nodes but the network has {nodes}",
                        c.data,
                        c.parity,
                        c.total()
                    ),
                )),
                Some(c) => Ok(c),
                None => default_coding(nodes).ok_or_else(|| {
                    unavailable(format!(
                        "need at least 2 admitted storage nodes, found {nodes}"
                    ))
                }),
            }
        })?;
        self.commit(TxKind::CreateBucket {
            owner: account,
            bucket: bucket.clone(),
            acl,
            data_shards: coding.data,
            parity_shards: coding.parity,
        })
        .await?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let account = self.signed(&req)?;
        let bucket = req.input.bucket;
        self.ledger.read(|s| {
            let b = self.writable(s, &account, &bucket)?;
            if b.object_count > 0 {
                return Err(s3_error!(BucketNotEmpty));
            }
            Ok(())
        })?;
        self.commit(TxKind::DeleteBucket {
            owner: account,
            bucket,
        })
        .await?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        let account = self.account(&req)?;
        self.ledger.read(|s| {
            self.readable(s, account.as_ref(), &req.input.bucket)
                .map(|_| ())
        })?;
        Ok(S3Response::new(dto::HeadBucketOutput {
            bucket_region: Some("us-east-1".into()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        let account = self.account(&req)?;
        self.ledger.read(|s| {
            self.readable(s, account.as_ref(), &req.input.bucket)
                .map(|_| ())
        })?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let account = self.signed(&req)?;
        let owned: Vec<(String, u64)> = self.ledger.read(|s| {
            self.authorized(s, &account)?;
            Ok::<_, S3Error>(
                s.buckets()
                    .filter(|(_, b)| b.owner == account)
                    .map(|(n, b)| (n.clone(), b.created_height))
                    .collect(),
            )
        })?;
        let mut buckets = Vec::with_capacity(owned.len());
        for (name, height) in owned {
            let created = self.ledger.block_time_ms(height).await;
            buckets.push(dto::Bucket {
                name: Some(name),
                creation_date: created.map(timestamp),
                bucket_region: None,
            });
        }
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(dto::Owner {
                id: Some(hex(&account)),
                display_name: None,
            }),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let account = self.signed(&req)?;
        let _slot = self.upload_slot().await?;
        let input = req.input;
        check_key(&input.key)?;
        if input.if_match.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "If-Match on PUT is not supported; use If-None-Match: *"
            ));
        }
        let if_absent = match &input.if_none_match {
            None => false,
            Some(ETagCondition::Any) => true,
            Some(_) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on PUT only supports *"
                ))
            }
        };
        let modified_ms = now_ms();
        let size_hint = input.content_length.unwrap_or(0).max(0) as u64;
        let seed = self.seed(&[input.bucket.as_bytes(), input.key.as_bytes()]);
        let (coding, placed) = self.ledger.read(|s| {
            let b = self.writable(s, &account, &input.bucket)?;
            if if_absent && s.object(&input.bucket, &input.key).is_some() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "the key exists and If-None-Match: * was given"
                ));
            }
            let coding = Coding::from(b);
            Ok((coding, self.place(s, coding, &seed, size_hint)?))
        })?;
        let body = input.body.unwrap_or_else(empty_body);
        let started = std::time::Instant::now();
        let (segments, size, md5) = self
            .store_body(
                coding,
                &placed,
                body,
                Declared {
                    content_length: input.content_length,
                    content_md5: input.content_md5.as_deref(),
                    crc32: input.checksum_crc32.as_deref(),
                    trailers: req.trailing_headers.as_ref(),
                },
            )
            .await?;
        let stored_ms = started.elapsed().as_millis();
        let etag = hex(&md5);
        let manifest = ObjectManifest {
            size_bytes: size,
            etag: etag.clone(),
            content_type: input
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            modified_ms,
            metadata: sorted_metadata(input.metadata),
            placement: placed,
            segments,
        };
        manifest.validate().map_err(manifest_error)?;
        let (bucket, key) = (input.bucket, input.key);
        let started = std::time::Instant::now();
        let committed = self
            .commit(TxKind::PutObject {
                owner: account,
                bucket: bucket.clone(),
                key: key.clone(),
                manifest,
                if_absent,
            })
            .await;
        tracing::debug!(
            bucket,
            key,
            size,
            stored_ms,
            commit_ms = started.elapsed().as_millis() as u64,
            ok = committed.is_ok(),
            "PutObject"
        );
        committed?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let account = self.account(&req)?;
        let input = req.input;
        let (rec, coding) = self.object(account.as_ref(), &input.bucket, &input.key)?;
        let m = &rec.manifest;
        check_conditions(
            &m.etag,
            m.modified_ms,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GET by partNumber is not supported; use a Range"
            ));
        }
        let (range, content_range) = match &input.range {
            None => (0..m.size_bytes, None),
            Some(r) => {
                let range = r.check(m.size_bytes).map_err(|_| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRange,
                        format!(
                            "the requested range is not satisfiable for a {}-byte object",
                            m.size_bytes
                        ),
                    )
                })?;
                let cr = format!(
                    "bytes {}-{}/{}",
                    range.start,
                    range.end.saturating_sub(1),
                    m.size_bytes
                );
                (range, Some(cr))
            }
        };
        let body = self.body(&rec, coding, range.start, range.end).await?;
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(body),
            accept_ranges: Some("bytes".into()),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            content_type: Some(m.content_type.clone()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.modified_ms)),
            metadata: metadata_map(&m.metadata),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let account = self.account(&req)?;
        let input = req.input;
        let (rec, coding) = self.object(account.as_ref(), &input.bucket, &input.key)?;
        let m = &rec.manifest;
        check_conditions(
            &m.etag,
            m.modified_ms,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let zones = self.ledger.read(|s| {
            m.placement
                .iter()
                .filter_map(|n| s.node(n).map(|r| r.zone.clone()))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        });
        let mut resp = S3Response::new(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(m.size_bytes as i64),
            content_type: Some(m.content_type.clone()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.modified_ms)),
            metadata: metadata_map(&m.metadata),
            ..Default::default()
        });
        // Where the object lives, for operators and the devnet self-check.
        for (name, value) in [
            (CODING_HEADER, format!("{}+{}", coding.data, coding.parity)),
            (NODES_HEADER, m.placement.len().to_string()),
            (ZONES_HEADER, zones.to_string()),
        ] {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers.insert(name, v);
            }
        }
        Ok(resp)
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        self.delete_one(account, &input.bucket, &input.key).await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "DeleteObjects takes at most 1000 keys"
            ));
        }
        self.ledger
            .read(|s| self.writable(s, &account, &input.bucket).map(|_| ()))?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let results = futures::future::join_all(input.delete.objects.iter().map(|o| async {
            (
                o.key.clone(),
                self.delete_one(account, &input.bucket, &o.key).await,
            )
        }))
        .await;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, r) in results {
            match r {
                Ok(()) if !quiet => deleted.push(dto::DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err(e) => errors.push(dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(key),
                    message: e.message().map(str::to_string),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        check_key(&input.key)?;
        let (src_bucket, src_key) = match &input.copy_source {
            dto::CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "only bucket/key copy sources are supported"
                ))
            }
        };
        let (src, src_coding) = self.object(Some(&account), &src_bucket, &src_key)?;
        let sm = &src.manifest;
        check_conditions(
            &sm.etag,
            sm.modified_ms,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed, "a copy-source precondition failed")
            } else {
                e
            }
        })?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        let (content_type, metadata) = if replace {
            (
                input
                    .content_type
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
                sorted_metadata(input.metadata.clone()),
            )
        } else {
            if src_bucket == input.bucket && src_key == input.key {
                return Err(s3_error!(
                    InvalidRequest,
                    "copying an object onto itself needs x-amz-metadata-directive: REPLACE"
                ));
            }
            (sm.content_type.clone(), sm.metadata.clone())
        };
        let dst_coding = self.ledger.read(|s| {
            let b = self.writable(s, &account, &input.bucket)?;
            Ok::<_, S3Error>(Coding::from(b))
        })?;
        let modified_ms = now_ms();
        // Fragments are content-addressed, so a copy into a bucket with the same coding
        // shares them and moves no data.
        // Shared fragments on nodes that went unhealthy count as missing; if what is left
        // no longer meets the durability rule, the copy re-encodes instead.
        let shared = (dst_coding == src_coding)
            .then(|| {
                let mut segments = sm.segments.clone();
                self.ledger
                    .read(|s| placement::refresh(s, dst_coding.data, &sm.placement, &mut segments))
                    .ok()
                    .map(|()| (sm.placement.clone(), segments))
            })
            .flatten();
        let (placement, segments) = if let Some(shared) = shared {
            shared
        } else {
            let _slot = self.upload_slot().await?;
            let seed = self.seed(&[input.bucket.as_bytes(), input.key.as_bytes()]);
            let placed = self
                .ledger
                .read(|s| self.place(s, dst_coding, &seed, sm.size_bytes))?;
            let body = self.body(&src, src_coding, 0, sm.size_bytes).await?;
            let (segments, _, _) = self
                .store_body(dst_coding, &placed, body, Declared::default())
                .await?;
            (placed, segments)
        };
        let manifest = ObjectManifest {
            size_bytes: sm.size_bytes,
            etag: sm.etag.clone(),
            content_type,
            modified_ms,
            metadata,
            placement,
            segments,
        };
        manifest.validate().map_err(manifest_error)?;
        self.commit(TxKind::PutObject {
            owner: account,
            bucket: input.bucket,
            key: input.key,
            manifest,
            if_absent: false,
        })
        .await?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(ETag::Strong(sm.etag.clone())),
                last_modified: Some(timestamp(modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let account = self.account(&req)?;
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.clone().unwrap_or_default();
        let page = self.list_page(
            account.as_ref(),
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &marker,
            max,
            input.encoding_type.as_ref(),
        )?;
        let enc = page.enc;
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            marker: Some(enc(marker)),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: page.last.filter(|_| page.truncated).map(enc),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            delimiter: input.delimiter.map(enc),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let account = self.account(&req)?;
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match &input.continuation_token {
            Some(t) => unhex(t)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "the continuation token is not one this gateway issued"
                    )
                })?,
            None => input.start_after.clone().unwrap_or_default(),
        };
        let page = self.list_page(
            account.as_ref(),
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            &after,
            max,
            input.encoding_type.as_ref(),
        )?;
        let enc = page.enc;
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            max_keys: Some(max as i32),
            key_count: Some((page.contents.len() + page.prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: page
                .last
                .filter(|_| page.truncated)
                .map(|l| hex(l.as_bytes())),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            delimiter: input.delimiter.map(enc),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(enc),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        check_key(&input.key)?;
        let upload_id = self.new_upload_id(&input.bucket, &input.key);
        let seed = self.seed(&[upload_id.as_bytes()]);
        let (coding, placed) = self.ledger.read(|s| {
            let b = self.writable(s, &account, &input.bucket)?;
            let coding = Coding::from(b);
            Ok::<_, S3Error>((
                coding,
                self.place(s, coding, &seed, self.cfg.segment_size_bytes as u64)?,
            ))
        })?;
        let mut uploads = self.uploads.lock().expect("uploads lock");
        if uploads.len() >= self.cfg.max_multipart_uploads {
            return Err(s3_error!(
                SlowDown,
                "too many multipart uploads in progress; complete or abort some"
            ));
        }
        uploads.insert(
            (input.bucket.clone(), input.key.clone(), upload_id.clone()),
            Multipart {
                owner: account,
                coding,
                placement: placed,
                content_type: input
                    .content_type
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
                metadata: sorted_metadata(input.metadata),
                initiated_ms: now_ms(),
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers run from 1 to 10000"
            ));
        }
        let id = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let (coding, placed) = {
            let uploads = self.uploads.lock().expect("uploads lock");
            let u = uploads.get(&id).ok_or_else(|| s3_error!(NoSuchUpload))?;
            if u.owner != account {
                return Err(s3_error!(
                    AccessDenied,
                    "the upload belongs to another account"
                ));
            }
            (u.coding, u.placement.clone())
        };
        let _slot = self.upload_slot().await?;
        let body = input.body.unwrap_or_else(empty_body);
        let (segments, size, md5) = self
            .store_body(
                coding,
                &placed,
                body,
                Declared {
                    content_length: input.content_length,
                    content_md5: input.content_md5.as_deref(),
                    crc32: input.checksum_crc32.as_deref(),
                    trailers: req.trailing_headers.as_ref(),
                },
            )
            .await?;
        let mut uploads = self.uploads.lock().expect("uploads lock");
        let u = uploads.get_mut(&id).ok_or_else(|| {
            s3_error!(
                NoSuchUpload,
                "the upload was completed or aborted meanwhile"
            )
        })?;
        u.parts.insert(
            input.part_number,
            Part {
                segments,
                size_bytes: size,
                md5,
                modified_ms: now_ms(),
            },
        );
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(ETag::Strong(hex(&md5))),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        let id = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if listed.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "CompleteMultipartUpload needs at least one part"
            ));
        }
        let if_absent = matches!(input.if_none_match, Some(ETagCondition::Any));
        let (manifest, u_data_shards) = {
            let uploads = self.uploads.lock().expect("uploads lock");
            let u = uploads.get(&id).ok_or_else(|| s3_error!(NoSuchUpload))?;
            if u.owner != account {
                return Err(s3_error!(
                    AccessDenied,
                    "the upload belongs to another account"
                ));
            }
            let mut segments = Vec::new();
            let mut md5s = Vec::with_capacity(listed.len() * 16);
            let mut size = 0u64;
            let mut previous = 0;
            for (i, p) in listed.iter().enumerate() {
                let n = p.part_number.unwrap_or(0);
                if n <= previous {
                    return Err(s3_error!(
                        InvalidPartOrder,
                        "parts must be listed in ascending order"
                    ));
                }
                previous = n;
                let part = u.parts.get(&n).ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidPart,
                        format!("part {n} was not uploaded"),
                    )
                })?;
                if p.e_tag
                    .as_ref()
                    .is_some_and(|t| t.value() != hex(&part.md5))
                {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidPart,
                        format!("part {n}'s ETag does not match the uploaded part"),
                    ));
                }
                if i + 1 < listed.len() && part.size_bytes < MIN_PART_SIZE_BYTES {
                    return Err(S3Error::with_message(
                        S3ErrorCode::EntityTooSmall,
                        format!(
                            "part {n} is {} bytes; every part but the last needs at least 5 MiB",
                            part.size_bytes
                        ),
                    ));
                }
                segments.extend(part.segments.iter().cloned());
                md5s.extend_from_slice(&part.md5);
                size += part.size_bytes;
            }
            if segments.len() > MAX_MANIFEST_SEGMENTS {
                return Err(S3Error::with_message(
                    S3ErrorCode::EntityTooLarge,
                    format!(
                        "the parts add up to {} segments; one object holds at most {MAX_MANIFEST_SEGMENTS} (use fewer, larger parts)",
                        segments.len()
                    ),
                ));
            }
            let etag = format!("{}-{}", hex(&Md5::digest(&md5s)), listed.len());
            let manifest = ObjectManifest {
                size_bytes: size,
                etag,
                content_type: u.content_type.clone(),
                modified_ms: u.initiated_ms,
                metadata: u.metadata.clone(),
                placement: u.placement.clone(),
                segments,
            };
            (manifest, u.coding.data)
        };
        manifest.validate().map_err(manifest_error)?;
        // Parts may be old: fragments on nodes that went unhealthy since count as missing.
        let mut manifest = manifest;
        self.ledger
            .read(|s| {
                placement::refresh(
                    s,
                    u_data_shards,
                    &manifest.placement,
                    &mut manifest.segments,
                )
            })
            .map_err(|e| unavailable(format!("the uploaded parts are no longer durable: {e}")))?;
        let etag = manifest.etag.clone();
        self.ledger.read(|s| {
            self.writable(s, &account, &input.bucket)?;
            if if_absent && s.object(&input.bucket, &input.key).is_some() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "the key exists and If-None-Match: * was given"
                ));
            }
            Ok(())
        })?;
        self.commit(TxKind::PutObject {
            owner: account,
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            manifest,
            if_absent,
        })
        .await?;
        self.uploads.lock().expect("uploads lock").remove(&id);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        let id = (input.bucket, input.key, input.upload_id);
        let mut uploads = self.uploads.lock().expect("uploads lock");
        match uploads.get(&id) {
            None => return Err(s3_error!(NoSuchUpload)),
            Some(u) if u.owner != account => {
                return Err(s3_error!(
                    AccessDenied,
                    "the upload belongs to another account"
                ))
            }
            Some(_) => {}
        }
        // The parts' fragments become unreferenced; garbage collection reclaims them.
        uploads.remove(&id);
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        let max = input.max_parts.map_or(1000, |m| m.clamp(0, 1000)) as usize;
        let marker = input.part_number_marker.unwrap_or(0);
        let id = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let uploads = self.uploads.lock().expect("uploads lock");
        let u = uploads.get(&id).ok_or_else(|| s3_error!(NoSuchUpload))?;
        if u.owner != account {
            return Err(s3_error!(
                AccessDenied,
                "the upload belongs to another account"
            ));
        }
        let mut parts: Vec<dto::Part> = u
            .parts
            .range(marker.saturating_add(1)..)
            .take(max + 1)
            .map(|(n, p)| dto::Part {
                part_number: Some(*n),
                e_tag: Some(ETag::Strong(hex(&p.md5))),
                size: Some(p.size_bytes as i64),
                last_modified: Some(timestamp(p.modified_ms)),
                ..Default::default()
            })
            .collect();
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            part_number_marker: Some(marker),
            next_part_number_marker: parts
                .last()
                .and_then(|p| p.part_number)
                .filter(|_| truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        self.ledger
            .read(|s| self.writable(s, &account, &input.bucket).map(|_| ()))?;
        let max = input.max_uploads.map_or(1000, |m| m.clamp(0, 1000)) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let uploads = self.uploads.lock().expect("uploads lock");
        let mut listed: Vec<dto::MultipartUpload> = uploads
            .iter()
            .filter(|((b, k, id), u)| {
                *b == input.bucket
                    && u.owner == account
                    && k.starts_with(&prefix)
                    && (k.as_str(), id.as_str()) > (key_marker.as_str(), id_marker.as_str())
            })
            .take(max + 1)
            .map(|((_, k, id), u)| dto::MultipartUpload {
                key: Some(k.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(timestamp(u.initiated_ms)),
                ..Default::default()
            })
            .collect();
        let truncated = listed.len() > max;
        listed.truncate(max);
        let last = listed.last().map(|u| (u.key.clone(), u.upload_id.clone()));
        let (next_key, next_id) = match last.filter(|_| truncated) {
            Some((k, id)) => (k, id),
            None => (None, None),
        };
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(listed),
            ..Default::default()
        }))
    }
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    /// Deletes one key; a missing key is a success, as in S3.
    async fn delete_one(&self, account: AccountId, bucket: &str, key: &str) -> S3Result<()> {
        let exists = self.ledger.read(|s| {
            self.writable(s, &account, bucket)?;
            Ok::<_, S3Error>(s.object(bucket, key).is_some())
        })?;
        if !exists {
            return Ok(());
        }
        match self
            .ledger
            .commit(TxKind::DeleteObject {
                owner: account,
                bucket: bucket.to_string(),
                key: key.to_string(),
                request_ms: now_ms(),
            })
            .await
        {
            // A newer write already won (S3's latest-request-time rule): the delete "happened"
            // and was overwritten, which S3 reports as success.
            Ok(())
            | Err(CommitError::Rejected(TxError::NoSuchObject))
            | Err(CommitError::Rejected(TxError::Superseded { .. })) => Ok(()),
            Err(e) => Err(commit_error(e)),
        }
    }
}

/// Virtual-host-style addressing under one domain (`<bucket>.<domain>`); any other Host
/// (an IP address, `localhost`, the bare domain) is path-style.
pub struct VirtualHosts {
    domain: String,
}

impl VirtualHosts {
    /// Buckets are addressed as `<bucket>.<domain>`.
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.trim_matches('.').to_ascii_lowercase(),
        }
    }
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        // Strip a port, but not the colons of a bracketed IPv6 literal.
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        };
        let bucket = name
            .len()
            .checked_sub(self.domain.len() + 1)
            .filter(|&cut| {
                name.as_bytes()[cut] == b'.' && name[cut + 1..].eq_ignore_ascii_case(&self.domain)
            })
            .map(|cut| &name[..cut]);
        Ok(match bucket {
            Some(b) if !b.is_empty() => {
                s3s::host::VirtualHost::new(self.domain.as_str()).with_bucket(b)
            }
            _ => s3s::host::VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn preconditions_follow_rfc9110_order() {
        let etag = "abc";
        let t = |s: i64| Timestamp::from(UNIX_EPOCH + Duration::from_secs(s as u64));
        let tag = |v: &str| ETagCondition::ETag(ETag::Strong(v.into()));
        let code = |r: S3Result<()>| r.err().map(|e| e.code().as_str().to_string());
        let m = 1_000_000;
        assert_eq!(
            code(check_conditions(
                etag,
                m,
                Some(&tag("abc")),
                None,
                None,
                None
            )),
            None
        );
        assert_eq!(
            code(check_conditions(etag, m, Some(&tag("x")), None, None, None)).as_deref(),
            Some("PreconditionFailed")
        );
        assert_eq!(
            code(check_conditions(
                etag,
                m,
                None,
                Some(&tag("abc")),
                None,
                None
            ))
            .as_deref(),
            Some("NotModified")
        );
        assert_eq!(
            code(check_conditions(
                etag,
                m,
                None,
                Some(&ETagCondition::Any),
                None,
                None
            ))
            .as_deref(),
            Some("NotModified")
        );
        assert_eq!(
            code(check_conditions(etag, m, None, None, Some(&t(1000)), None)).as_deref(),
            Some("NotModified")
        );
        assert_eq!(
            code(check_conditions(etag, m, None, None, Some(&t(999)), None)),
            None
        );
        assert_eq!(
            code(check_conditions(etag, m, None, None, None, Some(&t(999)))).as_deref(),
            Some("PreconditionFailed")
        );
        // If-Match that holds overrides a failing If-Unmodified-Since (RFC 9110 13.2.2).
        assert_eq!(
            code(check_conditions(
                etag,
                m,
                Some(&tag("abc")),
                None,
                None,
                Some(&t(1))
            )),
            None
        );
        // If-None-Match that fails (no match) overrides If-Modified-Since.
        assert_eq!(
            code(check_conditions(
                etag,
                m,
                None,
                Some(&tag("zz")),
                Some(&t(5000)),
                None
            )),
            None
        );
    }

    #[test]
    fn url_encoding_escapes_plus_and_space() {
        assert_eq!(url_encode("a/5MiB+1 x"), "a/5MiB%2B1%20x");
        assert_eq!(url_encode("ü"), "%C3%BC");
        let enc = encoder(None).unwrap();
        assert_eq!(enc("a+b".into()), "a+b");
        assert!(encoder(Some(&dto::EncodingType::from_static("base64"))).is_err());
    }

    #[test]
    fn crc32_checks_the_declared_value() {
        let crc = crc32fast::hash(b"hello world");
        assert_eq!(crc, 0x0d4a_1185);
        assert!(check_crc32(Some("DUoRhQ=="), None, crc).is_ok());
        assert!(check_crc32(None, None, crc).is_ok());
        let err = check_crc32(Some("AAAAAA=="), None, crc).unwrap_err();
        assert_eq!(err.code().as_str(), "BadDigest");
    }

    /// Pages through `keys` like a client following `last` tokens.
    fn pages(keys: &[&str], prefix: &str, delimiter: Option<&str>, max: usize) -> Vec<Vec<String>> {
        let rec = ObjectRecord {
            manifest: ObjectManifest {
                size_bytes: 0,
                etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
                content_type: DEFAULT_CONTENT_TYPE.into(),
                modified_ms: 0,
                metadata: vec![],
                placement: vec![],
                segments: vec![],
            },
            put_by: [0; 32],
            put_height: 1,
            tx_hash: [0; 32],
        };
        let mut sorted: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        sorted.sort();
        let mut after = String::new();
        let mut out = Vec::new();
        loop {
            let iter = sorted
                .iter()
                .filter(|k| **k > after.as_str())
                .map(|k| (*k, &rec));
            let page = paginate(iter, prefix, delimiter, &after, max);
            let mut names: Vec<String> = page.objects.iter().map(|(k, _)| k.clone()).collect();
            names.extend(page.prefixes.iter().map(|p| format!("{p}*")));
            names.sort();
            out.push(names);
            match page.last.filter(|_| page.truncated) {
                Some(l) => after = l,
                None => return out,
            }
            assert!(out.len() < 100, "pagination does not terminate");
        }
    }

    #[test]
    fn pagination_groups_common_prefixes_across_pages() {
        let keys = ["a/1", "a/2", "a/3", "b", "c/x/1", "c/y", "d"];
        assert_eq!(
            pages(&keys, "", Some("/"), 1000),
            vec![vec!["a/*", "b", "c/*", "d"]]
        );
        // One entry per page: a common prefix is never split or repeated.
        assert_eq!(
            pages(&keys, "", Some("/"), 1),
            vec![vec!["a/*"], vec!["b"], vec!["c/*"], vec!["d"]]
        );
        assert_eq!(
            pages(&keys, "c/", Some("/"), 1),
            vec![vec!["c/x/*"], vec!["c/y"]]
        );
        // Without a delimiter every key is listed, in order, across pages of 3.
        let flat: Vec<String> = pages(&keys, "", None, 3).concat();
        assert_eq!(flat, keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        assert_eq!(
            pages(&keys, "zz", Some("/"), 10),
            vec![Vec::<String>::new()]
        );
    }

    proptest::proptest! {
        #[test]
        fn pagination_lists_every_key_once(
            keys in proptest::collection::btree_set("[ab/]{1,6}", 0..40),
            max in 1usize..7,
        ) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let flat: Vec<String> = pages(&keys, "", None, max).concat();
            proptest::prop_assert_eq!(flat, keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            // With a delimiter, every key is either listed or under exactly one listed prefix.
            let grouped: Vec<String> = pages(&keys, "", Some("/"), max).concat();
            for k in &keys {
                let covered = grouped.iter().filter(|g| match g.strip_suffix('*') {
                    Some(p) => k.starts_with(p),
                    None => g.as_str() == *k,
                }).count();
                proptest::prop_assert_eq!(covered, 1, "{} covered {} times in {:?}", k, covered, grouped);
            }
        }
    }

    #[test]
    fn tokens_round_trip_any_key() {
        for k in ["", "a/b", "ünï/ključ", "x\u{1}y"] {
            assert_eq!(unhex(&hex(k.as_bytes())).unwrap(), k.as_bytes());
        }
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
    }

    #[test]
    fn virtual_hosts_only_under_the_domain() {
        use s3s::host::S3Host;
        let h = VirtualHosts::new("s3.cairn.test");
        let bucket = |host: &str| {
            h.parse_host_header(host)
                .unwrap()
                .bucket()
                .map(str::to_string)
        };
        assert_eq!(bucket("photos.s3.cairn.test").as_deref(), Some("photos"));
        assert_eq!(
            bucket("photos.s3.cairn.test:9000").as_deref(),
            Some("photos")
        );
        assert_eq!(bucket("a.b.s3.CAIRN.test:9000").as_deref(), Some("a.b"));
        assert_eq!(bucket("s3.cairn.test:9000"), None);
        assert_eq!(bucket("127.0.0.1:9000"), None);
        assert_eq!(bucket("[::1]:9000"), None);
        assert_eq!(bucket("xs3.cairn.test"), None);
        assert_eq!(bucket("localhost"), None);
    }

    #[test]
    fn default_coding_fits_the_network() {
        assert_eq!(default_coding(12), Some(Coding::DEFAULT));
        assert_eq!(default_coding(40), Some(Coding::DEFAULT));
        assert_eq!(default_coding(4), Some(Coding { data: 1, parity: 3 }));
        assert_eq!(default_coding(6), Some(Coding { data: 2, parity: 4 }));
        assert_eq!(default_coding(1), None);
    }
}
