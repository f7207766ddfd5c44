//! The fragment listener of a storage node: `PUT /fragments/{root}`, `GET /fragments/{root}`
//! and `HEAD /fragments/{root}` (a gateway that read rotten bytes asks the node to re-verify
//! its copy; a missing or corrupt one is queued for the scrubber, see
//! [`FragmentServer::with_suspects`]) on its own port (`fragment_listen` in `node.toml`, advertised as
//! `addresses[3]` of the node's ledger record), separate from the admin API. The client side
//! is [`crate::client::HttpTransport`].
//!
//! Access by role: every request carries a ticket signed by the requesting node (see
//! [`crate::auth`] for the signed message and headers). Only gateway nodes may PUT
//! (for a ticket naming this node, the root and the body length), GET or HEAD; tickets are fresh for
//! [`crate::auth::MAX_REQUEST_AGE_MS`] and single-use (replay cache of at most
//! [`crate::auth::MAX_REPLAY_ENTRIES`] entries).
//!
//! Bounded resources, checked in this order, all before a body byte is read:
//! * at most [`MAX_CONNECTIONS`] connections, [`MAX_CONNECTIONS_PER_IP`] from one source IP
//!   (the shared gate of `crate::conn`: when full, the longest-idle connection is closed),
//!   `TCP_NODELAY`, request heads of at most [`MAX_HEAD_SIZE_BYTES`] in total and per header
//!   (431 beyond), and a head (and keep-alive idle) timeout of [`HEADER_READ_TIMEOUT_MS`];
//! * a PUT must declare `Content-Length` (411 otherwise) of at most
//!   `MAX_FRAGMENT_SIZE_BYTES` (413);
//! * the ticket is checked (403 / 421 / 400);
//! * the body's bytes are reserved from a budget of [`MAX_INFLIGHT_BODY_BYTES`] shared by all
//!   uploads and downloads in flight; over budget the answer is `503 SlowDown` with
//!   `Retry-After`. A GET reserves its fragment's size before reading it from disk and holds it
//!   until the response is sent;
//! * the body is read into one buffer of its declared length (so the budget is the memory
//!   bound: with [`MAX_INFLIGHT_BODY_BYTES`] of 256 MiB, 32 concurrent 32 MiB pushes grow the
//!   process by less than [`MAX_INFLIGHT_BODY_BYTES`] + 64 MiB, tested);
//! * the body must arrive within [`BODY_TIMEOUT_BASE_MS`] plus its length at
//!   [`MIN_BODY_RATE_BYTES_PER_S`] (408 otherwise).
//!
//! Errors are JSON `{"error": CODE, "message": ...}` with the status of [`FragmentError`].

use crate::{
    auth::{self, AuthError, Presented, ReplayCache, RequesterKind},
    protocol::unhex,
    store::MAX_FRAGMENT_SIZE_BYTES,
    FragmentStore, StoreError,
};
use bytes::{Bytes, BytesMut};
use cairn_ledger::{Hash, NodeId};
use http_body_util::BodyExt;
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    Request, Response, StatusCode,
};
use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    net::TcpListener,
    sync::{OwnedSemaphorePermit, Semaphore},
};

/// Most concurrent connections on the fragment listener.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most concurrent connections from one source IP (gateways keep a few pooled each).
pub const MAX_CONNECTIONS_PER_IP: usize = 512;
/// Request head (line + headers) limit; fragment requests need well under 1 KiB.
pub const MAX_HEAD_SIZE_BYTES: usize = 16 * 1024;
/// Longest a client may take to send a request head, and longest an idle keep-alive
/// connection stays open (clients drop pooled connections sooner).
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Body bytes (uploads being read plus downloads being sent) held in memory at once.
pub const MAX_INFLIGHT_BODY_BYTES: usize = 256 * 1024 * 1024;
/// Fixed part of the body deadline.
pub const BODY_TIMEOUT_BASE_MS: u64 = 10_000;
/// Slowest accepted upload rate (the body deadline grows by its length at this rate).
pub const MIN_BODY_RATE_BYTES_PER_S: u64 = 1024 * 1024;
/// `Retry-After` of 503 answers.
pub const RETRY_AFTER_S: u64 = 1;

/// Tunable bounds of one fragment server (the constants above by default; tests shrink them).
#[derive(Clone, Debug)]
pub struct Limits {
    /// See [`MAX_INFLIGHT_BODY_BYTES`].
    pub max_inflight_body_bytes: usize,
    /// See [`HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout_ms: u64,
    /// See [`BODY_TIMEOUT_BASE_MS`].
    pub body_timeout_base_ms: u64,
    /// See [`MIN_BODY_RATE_BYTES_PER_S`].
    pub min_body_rate_bytes_per_s: u64,
    /// See [`crate::auth::MAX_REPLAY_ENTRIES`].
    pub max_replay_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_inflight_body_bytes: MAX_INFLIGHT_BODY_BYTES,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS,
            body_timeout_base_ms: BODY_TIMEOUT_BASE_MS,
            min_body_rate_bytes_per_s: MIN_BODY_RATE_BYTES_PER_S,
            max_replay_entries: auth::MAX_REPLAY_ENTRIES,
        }
    }
}

/// Why a fragment request failed; [`FragmentError::status`] is its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum FragmentError {
    /// Not a `/fragments/{root}` path.
    #[error("no route for {0}; the fragment listener serves only /fragments/{{root}}")]
    NoRoute(String),
    /// The root is not 64 hex characters.
    #[error("fragment root must be 64 hex characters")]
    BadRoot,
    /// Neither PUT nor GET.
    #[error("use PUT or GET")]
    MethodNotAllowed,
    /// The ticket was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A PUT without `Content-Length` (chunked): its size could not be reserved up front.
    #[error("PUT needs a Content-Length header (chunked bodies are refused)")]
    LengthRequired,
    /// A GET with a body.
    #[error("GET takes no body")]
    BodyOnGet,
    /// Larger than any fragment.
    #[error("body of {len_bytes} bytes exceeds the {max_bytes}-byte fragment limit")]
    TooLarge {
        /// Declared length.
        len_bytes: u64,
        /// The limit.
        max_bytes: usize,
    },
    /// The in-flight body budget is spent.
    #[error("{max_bytes} body bytes already in flight on this node; retry after {RETRY_AFTER_S} s or use another node")]
    OverCapacity {
        /// The budget.
        max_bytes: usize,
    },
    /// The body did not arrive in time.
    #[error("body not received within {ms} ms (minimum rate {MIN_BODY_RATE_BYTES_PER_S} bytes/s)")]
    BodyTimeout {
        /// The deadline.
        ms: u64,
    },
    /// The body was cut off or malformed.
    #[error("body cut off or longer than its Content-Length")]
    BodyCutOff,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FragmentError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::BadRoot | Self::BodyOnGet | Self::BodyCutOff => StatusCode::BAD_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Auth(e) => e.status(),
            Self::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::OverCapacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            Self::Store(StoreError::Corrupt { .. }) => StatusCode::CONFLICT,
            Self::Store(StoreError::Busy { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(StoreError::Oversize { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Store(StoreError::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoRoute(_) => "NotFound",
            Self::BadRoot => "BadRoot",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::Auth(e) => e.code(),
            Self::LengthRequired => "MissingContentLength",
            Self::BodyOnGet => "InvalidArgument",
            Self::TooLarge { .. } => "FragmentTooLarge",
            Self::OverCapacity { .. } => "SlowDown",
            Self::BodyTimeout { .. } => "RequestTimeout",
            Self::BodyCutOff => "IncompleteBody",
            Self::Store(StoreError::NotFound { .. }) => "NoSuchFragment",
            Self::Store(StoreError::Corrupt { .. }) => "FragmentCorrupt",
            Self::Store(StoreError::Busy { .. }) => "Busy",
            Self::Store(StoreError::Oversize { .. }) => "FragmentTooLarge",
            Self::Store(StoreError::Io { .. }) => "DiskError",
        }
    }
}

/// A response body that holds its share of the in-flight byte budget until it is sent (or
/// the connection drops).
pub struct FragBody {
    data: Option<Bytes>,
    _reserved: Option<OwnedSemaphorePermit>,
}

impl FragBody {
    fn new(data: Bytes, reserved: Option<OwnedSemaphorePermit>) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
            _reserved: reserved,
        }
    }
}

impl Body for FragBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Checks a requester's role against finalized state (see [`auth::authorize`]).
pub type Authorizer = Box<dyn Fn(&str, &NodeId) -> Result<RequesterKind, AuthError> + Send + Sync>;

/// One storage node's fragment server.
pub struct FragmentServer {
    me: NodeId,
    store: FragmentStore,
    authorize: Authorizer,
    replay: Mutex<ReplayCache>,
    budget: Arc<Semaphore>,
    limits: Limits,
    /// Where a `HEAD` that finds a fragment missing or corrupt sends its root (the scrubber).
    suspects: Option<Arc<crate::prover::Suspects>>,
}

impl FragmentServer {
    /// A server for node `me` over `store`, checking roles with `authorize` (in a node:
    /// [`auth::authorize`] on the current finalized state).
    pub fn new(me: NodeId, store: FragmentStore, authorize: Authorizer, limits: Limits) -> Self {
        Self {
            me,
            store,
            authorize,
            replay: Mutex::new(ReplayCache::new(limits.max_replay_entries)),
            budget: Arc::new(Semaphore::new(
                limits.max_inflight_body_bytes.min(Semaphore::MAX_PERMITS),
            )),
            limits,
            suspects: None,
        }
    }

    /// Sends the roots that a gateway's `HEAD` finds missing or corrupt to `suspects`, which
    /// this node's scrubber reports on the ledger.
    pub fn with_suspects(mut self, suspects: Arc<crate::prover::Suspects>) -> Self {
        self.suspects = Some(suspects);
        self
    }

    /// Reserves `len` bytes of the in-flight budget, or refuses at once.
    fn reserve(&self, len: u64) -> Result<OwnedSemaphorePermit, FragmentError> {
        let over = || FragmentError::OverCapacity {
            max_bytes: self.limits.max_inflight_body_bytes,
        };
        let n = u32::try_from(len.max(1)).map_err(|_| over())?;
        self.budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| over())
    }

    fn check(
        &self,
        headers: &hyper::HeaderMap,
        method: &str,
        root: Hash,
        len: u64,
    ) -> Result<RequesterKind, AuthError> {
        let presented: Presented = auth::parse(headers, method, root, len)?;
        auth::verify(
            &presented,
            &self.me,
            now_ms(),
            |r| (self.authorize)(method, r),
            &self.replay,
        )
    }

    async fn handle(&self, req: Request<Incoming>) -> Result<Response<FragBody>, FragmentError> {
        let path = req.uri().path().to_string();
        let root = match path.strip_prefix("/fragments/") {
            Some(r) if !r.contains('/') => unhex::<32>(r).ok_or(FragmentError::BadRoot)?,
            _ => return Err(FragmentError::NoRoute(path)),
        };
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or(FragmentError::BodyCutOff)
            })
            .transpose()?;
        let chunked = req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
        match req.method().as_str() {
            "PUT" => {
                let len = match declared {
                    Some(len) if !chunked => len,
                    _ => return Err(FragmentError::LengthRequired),
                };
                if len > MAX_FRAGMENT_SIZE_BYTES as u64 {
                    return Err(FragmentError::TooLarge {
                        len_bytes: len,
                        max_bytes: MAX_FRAGMENT_SIZE_BYTES,
                    });
                }
                self.check(req.headers(), "PUT", root, len)?;
                let reserved = self.reserve(len)?;
                let deadline_ms = self.limits.body_timeout_base_ms
                    + len * 1000 / self.limits.min_body_rate_bytes_per_s.max(1);
                let body = tokio::time::timeout(
                    Duration::from_millis(deadline_ms),
                    read_body_exact(req.into_body(), len as usize),
                )
                .await
                .map_err(|_| FragmentError::BodyTimeout { ms: deadline_ms })??;
                let store = self.store.clone();
                off_runtime(move || store.put(&root, &body).map(|()| Bytes::new())).await?;
                drop(reserved);
                Ok(ok(Bytes::new(), None))
            }
            "GET" => {
                if declared.unwrap_or(0) != 0 || chunked {
                    return Err(FragmentError::BodyOnGet);
                }
                self.check(req.headers(), "GET", root, 0)?;
                let size = self.store.size_of(&root)?;
                let reserved = self.reserve(size.min(MAX_FRAGMENT_SIZE_BYTES as u64))?;
                let store = self.store.clone();
                // Unverified here: the requesting gateway verifies every fragment against the
                // manifest's root (invariant 6), so hashing twice would only halve throughput.
                let data =
                    off_runtime(move || store.read_unverified(&root).map(Bytes::from)).await?;
                Ok(ok(data, Some(reserved)))
            }
            // A gateway found this fragment corrupt when it read it: verify our copy.
            "HEAD" => {
                if declared.unwrap_or(0) != 0 || chunked {
                    return Err(FragmentError::BodyOnGet);
                }
                self.check(req.headers(), "HEAD", root, 0)?;
                let size = self.store.size_of(&root).unwrap_or(0);
                let reserved = self.reserve(size.min(MAX_FRAGMENT_SIZE_BYTES as u64))?;
                let store = self.store.clone();
                let verdict = off_runtime(move || store.get(&root).map(|_| Bytes::new())).await;
                drop(reserved);
                let lost = matches!(
                    verdict,
                    Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. })
                );
                if let (true, Some(s)) = (lost, &self.suspects) {
                    s.push(root);
                }
                verdict?;
                Ok(ok(Bytes::new(), None))
            }
            _ => Err(FragmentError::MethodNotAllowed),
        }
    }
}

/// Reads a body of exactly `len` bytes into one buffer allocated up front, so a body costs
/// its length once (collecting frames and then joining them would briefly cost it twice).
async fn read_body_exact(mut body: Incoming, len: usize) -> Result<Bytes, FragmentError> {
    let mut buf = BytesMut::with_capacity(len);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| FragmentError::BodyCutOff)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > len {
                return Err(FragmentError::BodyCutOff);
            }
            buf.extend_from_slice(&data);
        }
    }
    if buf.len() != len {
        return Err(FragmentError::BodyCutOff);
    }
    Ok(buf.freeze())
}

fn ok(data: Bytes, reserved: Option<OwnedSemaphorePermit>) -> Response<FragBody> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .body(FragBody::new(data, reserved))
        .expect("static response parts are valid")
}

fn error_response(e: &FragmentError, close: bool) -> Response<FragBody> {
    let body = serde_json::json!({"error": e.code(), "message": e.to_string()}).to_string() + "\n";
    let mut b = Response::builder()
        .status(e.status())
        .header("content-type", "application/json");
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        b = b.header("retry-after", RETRY_AFTER_S.to_string());
    }
    if close {
        // The body was not read, so the connection's framing is unknown: close it.
        b = b.header("connection", "close");
    }
    b.body(FragBody::new(Bytes::from(body), None))
        .expect("static response parts are valid")
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs blocking disk work (reads, fsync) off the async workers.
async fn off_runtime(
    f: impl FnOnce() -> Result<Bytes, StoreError> + Send + 'static,
) -> Result<Bytes, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            path: "fragment store".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// Binds the fragment listener (fails fast with a clear error if the port is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    cairn_dns::gate::bind_listener(addr, "the fragment listener")
}

/// Serves fragments on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, server: Arc<FragmentServer>) {
    // The same gate as the S3 and admin listeners: caps per listener and per source IP, and
    // the longest-idle connection is closed to make room, so idle sockets never hold the
    // slots gateways need.
    let limits = crate::conn::Limits {
        max_connections: MAX_CONNECTIONS,
        max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
        header_timeout_ms: server.limits.header_read_timeout_ms,
        max_head_bytes: MAX_HEAD_SIZE_BYTES,
        ..crate::conn::Limits::default()
    };
    crate::conn::serve_http(listener, limits, move |req: Request<Incoming>| {
        let server = server.clone();
        async move {
            let has_body = req
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0")
                || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
            let resp = match server.handle(req).await {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::debug!(error = %e, "fragment request refused");
                    error_response(&e, has_body)
                }
            };
            Ok::<_, std::convert::Infallible>(resp)
        }
    })
    .await
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
