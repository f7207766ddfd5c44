//! The S3 protocol layer: s3s handlers over finalized ledger state and the fragment data path.
//!
//! Every write is acknowledged only after its manifest transaction is finalized
//! ([`Ledger::commit`]), so a later read or list on any gateway that has seen that height sees
//! it. Reads use only finalized state and storage nodes, never consensus, so they keep working
//! while the committee has lost its quorum.
//!
//! Layout: this file holds the [`Gateway`], the [`Ledger`] it runs on, its configuration, the
//! access checks every handler shares and the one `S3` impl that routes each operation to its
//! group: `bucket`, `put`, `get`, `copy`, `delete`, `list`, `multipart`; `conditions` holds the
//! RFC 9110 preconditions and the refusal of headers Cairn does not implement; `place` picks
//! storage nodes. Every failure becomes an S3 error through [`crate::error::Error`].

mod bucket;
mod conditions;
mod copy;
mod delete;
mod get;
mod list;
mod multipart;
mod place;
mod put;

use self::{
    multipart::{Multipart, UploadKey},
    place::Placed,
};
use crate::{
    error::{unavailable, Error},
    keys::KeyStore,
    pipeline::{FragmentTransport, UploadConfig},
};
use bytes::Bytes;
use cairn_ledger::{
    objects::{Acl, Bucket, ObjectRecord},
    placement, AccountId, State, TxError, TxKind,
};
use cairn_storage::Coding;
use futures::Stream;
use s3s::{
    dto::{self, StreamingBlob, Timestamp},
    s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3,
};
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{atomic::AtomicU64, Arc, Mutex},
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

    async fn commit(&self, kind: TxKind) -> S3Result<()> {
        match self.ledger.commit(kind).await {
            // Superseded: a write with a later request time already applied; to this client
            // its write succeeded and was overwritten at once, as S3 reports it.
            Ok(()) | Err(CommitError::Rejected(TxError::Superseded { .. })) => Ok(()),
            Err(e) => Err(Error::from(e).into()),
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
}

/// Routes each s3s operation to the handler of the same name in its operation group.
macro_rules! route {
    ($($op:ident($input:ident) -> $output:ident;)*) => {
        #[async_trait::async_trait]
        impl<L: Ledger, T: FragmentTransport + 'static> S3 for Gateway<L, T> {
            $(
                async fn $op(
                    &self,
                    req: S3Request<dto::$input>,
                ) -> S3Result<S3Response<dto::$output>> {
                    Gateway::$op(self, req).await
                }
            )*
        }
    };
}

route! {
    create_bucket(CreateBucketInput) -> CreateBucketOutput;
    delete_bucket(DeleteBucketInput) -> DeleteBucketOutput;
    head_bucket(HeadBucketInput) -> HeadBucketOutput;
    get_bucket_location(GetBucketLocationInput) -> GetBucketLocationOutput;
    list_buckets(ListBucketsInput) -> ListBucketsOutput;
    put_object(PutObjectInput) -> PutObjectOutput;
    get_object(GetObjectInput) -> GetObjectOutput;
    head_object(HeadObjectInput) -> HeadObjectOutput;
    delete_object(DeleteObjectInput) -> DeleteObjectOutput;
    delete_objects(DeleteObjectsInput) -> DeleteObjectsOutput;
    copy_object(CopyObjectInput) -> CopyObjectOutput;
    list_objects(ListObjectsInput) -> ListObjectsOutput;
    list_objects_v2(ListObjectsV2Input) -> ListObjectsV2Output;
    create_multipart_upload(CreateMultipartUploadInput) -> CreateMultipartUploadOutput;
    upload_part(UploadPartInput) -> UploadPartOutput;
    complete_multipart_upload(CompleteMultipartUploadInput) -> CompleteMultipartUploadOutput;
    abort_multipart_upload(AbortMultipartUploadInput) -> AbortMultipartUploadOutput;
    list_parts(ListPartsInput) -> ListPartsOutput;
    list_multipart_uploads(ListMultipartUploadsInput) -> ListMultipartUploadsOutput;
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

/// The (keys, common prefixes, truncated) counts of one ListObjects page computed from `state`
/// exactly as the handlers do; lets benchmarks run real listings beside block application.
pub fn listing_counts(
    state: &State,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: usize,
) -> (usize, usize, bool) {
    let page = list::list(state, bucket, prefix, delimiter, "", max_keys);
    (page.objects.len(), page.prefixes.len(), page.truncated)
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
