//! Fragment transfer between nodes over HTTP: `PUT /fragments/{root}` and
//! `GET /fragments/{root}` on each storage node's API port, and [`HttpTransport`], the client
//! side used by the gateway pipeline.
//!
//! Authentication: every request carries `x-cairn-node` (the requester's node id, hex),
//! `x-cairn-time-ms` and `x-cairn-signature`, an ed25519 signature by that node's key over
//! [`AUTH_DOMAIN`] ‖ method ‖ root ‖ time. The server accepts it only if the signer is a node
//! registered in finalized ledger state and the time is within [`MAX_CLOCK_SKEW_MS`]. The
//! body needs no signature: it is content-addressed, and the store refuses bytes that do not
//! hash to the root in the path. A replayed PUT is idempotent; a replayed GET reveals only what
//! the original requester could read.
//!
//! Limits: bodies up to [`MAX_FRAGMENT_SIZE_BYTES`], a bounded number of concurrent writes per
//! store (`503 Busy` beyond it), keep-alive connections with `TCP_NODELAY` (at most
//! [`MAX_IDLE_CONNECTIONS_PER_NODE`] idle per node), and a per-request timeout on the client.

use crate::{
    admin::{error, read_body, Admin},
    config::{hex, unhex},
};
use bytes::Bytes;
use cairn_gateway::{FragmentTransport, TransportError};
use cairn_ledger::{Hash, NodeId};
use cairn_storage::{store::MAX_FRAGMENT_SIZE_BYTES, StoreError};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::{collections::HashMap, net::SocketAddr, time::Duration};

/// Domain separation of fragment request signatures.
pub const AUTH_DOMAIN: &[u8] = b"cairn/fragment/v1\0";
/// Largest accepted difference between a request's time and the server's clock.
pub const MAX_CLOCK_SKEW_MS: u64 = 300_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The signed message of one request.
pub fn signing_message(method: &str, root: &Hash, time_ms: u64) -> Vec<u8> {
    let mut m = AUTH_DOMAIN.to_vec();
    m.extend_from_slice(method.as_bytes());
    m.push(0);
    m.extend_from_slice(root);
    m.extend_from_slice(&time_ms.to_le_bytes());
    m
}

/// Checks a request's signature headers; returns the requesting node or the reason to refuse.
fn authenticate(
    admin: &Admin,
    headers: &HeaderMap,
    method: &str,
    root: &Hash,
) -> Result<NodeId, String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let node: NodeId = get("x-cairn-node")
        .and_then(unhex::<32>)
        .ok_or("missing or malformed x-cairn-node")?;
    let time_ms: u64 = get("x-cairn-time-ms")
        .and_then(|t| t.parse().ok())
        .ok_or("missing or malformed x-cairn-time-ms")?;
    let sig: [u8; 64] = get("x-cairn-signature")
        .and_then(unhex::<64>)
        .ok_or("missing or malformed x-cairn-signature")?;
    if now_ms().abs_diff(time_ms) > MAX_CLOCK_SKEW_MS {
        return Err(format!(
            "request time is more than {MAX_CLOCK_SKEW_MS} ms from this node's clock; check NTP"
        ));
    }
    if !admin.shared.with_state(|s| s.node(&node).is_some()) {
        return Err("requester is not a registered node".into());
    }
    let key = VerifyingKey::from_bytes(&node).map_err(|_| "requester key is invalid")?;
    key.verify_strict(
        &signing_message(method, root, time_ms),
        &Signature::from_bytes(&sig),
    )
    .map_err(|_| "bad request signature".to_string())?;
    Ok(node)
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

/// Serves `PUT|GET /fragments/{root}`.
pub async fn handle(admin: &Admin, req: Request<Incoming>, root: &str) -> Response<Full<Bytes>> {
    let Some(store) = admin.fragments.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "NotAStorageNode",
            "this node does not store fragments",
        );
    };
    let Some(root) = unhex::<32>(root) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRoot",
            "expected 64 hex characters",
        );
    };
    let method = req.method().as_str().to_string();
    if let Err(why) = authenticate(admin, req.headers(), &method, &root) {
        return error(StatusCode::FORBIDDEN, "AccessDenied", why);
    }
    let result = match method.as_str() {
        "PUT" => {
            let body = match read_body(req, MAX_FRAGMENT_SIZE_BYTES, "FragmentTooLarge").await {
                Ok(body) => body,
                Err(response) => return response,
            };
            off_runtime(move || store.put(&root, &body).map(|()| Bytes::new())).await
        }
        // Unverified here: the requesting gateway verifies every fragment against the
        // manifest's root (invariant 6), so hashing twice would only halve read throughput.
        "GET" => off_runtime(move || store.read_unverified(&root).map(Bytes::from)).await,
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "use PUT or GET",
            )
        }
    };
    match result {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/octet-stream")
            .body(Full::new(body))
            .expect("static response parts are valid"),
        Err(e @ StoreError::NotFound { .. }) => error(StatusCode::NOT_FOUND, "NoSuchFragment", e),
        Err(e @ StoreError::Corrupt { .. }) => error(StatusCode::CONFLICT, "FragmentCorrupt", e),
        Err(e @ StoreError::Busy { .. }) => error(StatusCode::SERVICE_UNAVAILABLE, "Busy", e),
        Err(e @ StoreError::Oversize { .. }) => {
            error(StatusCode::PAYLOAD_TOO_LARGE, "FragmentTooLarge", e)
        }
        Err(e @ StoreError::Io { .. }) => error(StatusCode::INTERNAL_SERVER_ERROR, "DiskError", e),
    }
}

/// Idle keep-alive connections kept per node; more are closed after use.
pub const MAX_IDLE_CONNECTIONS_PER_NODE: usize = 16;

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Client side: pushes and fetches fragments over HTTP, signing as this node. Connections are
/// kept alive and reused, so a busy gateway does not burn an ephemeral port (and a TIME_WAIT
/// slot) per fragment.
pub struct HttpTransport {
    key: SigningKey,
    addresses: HashMap<NodeId, SocketAddr>,
    timeout: Duration,
    idle: std::sync::Mutex<HashMap<SocketAddr, Vec<Sender>>>,
}

impl HttpTransport {
    /// A transport signing with `key` that reaches node `id` at `addresses[id]`.
    pub fn new(key: SigningKey, addresses: HashMap<NodeId, SocketAddr>, timeout_ms: u64) -> Self {
        Self {
            key,
            addresses,
            timeout: Duration::from_millis(timeout_ms),
            idle: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A ready idle connection to `addr`, or a new one.
    async fn sender(&self, addr: SocketAddr) -> Result<Sender, String> {
        loop {
            let candidate = self
                .idle
                .lock()
                .expect("idle pool lock")
                .get_mut(&addr)
                .and_then(Vec::pop);
            match candidate {
                Some(mut s) => {
                    // A connection the server closed meanwhile is dropped, not reused.
                    if std::future::poll_fn(|cx| s.poll_ready(cx)).await.is_ok() {
                        return Ok(s);
                    }
                }
                None => break,
            }
        }
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn release(&self, addr: SocketAddr, sender: Sender) {
        let mut idle = self.idle.lock().expect("idle pool lock");
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE_CONNECTIONS_PER_NODE && !sender.is_closed() {
            list.push(sender);
        }
    }

    async fn request(
        &self,
        method: &str,
        node: NodeId,
        root: Hash,
        body: Bytes,
    ) -> Result<Bytes, TransportError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            TransportError(format!("{what} node {}: {e}", hex(&node[..4])))
        };
        let addr = *self
            .addresses
            .get(&node)
            .ok_or_else(|| err("no address for", &"unknown node"))?;
        let time_ms = now_ms();
        let sig = self.key.sign(&signing_message(method, &root, time_ms));
        let req = Request::builder()
            .method(method)
            .uri(format!("/fragments/{}", hex(&root)))
            .header("host", addr.to_string())
            .header("x-cairn-node", hex(&self.key.verifying_key().to_bytes()))
            .header("x-cairn-time-ms", time_ms.to_string())
            .header("x-cairn-signature", hex(&sig.to_bytes()))
            .body(Full::new(body))
            .map_err(|e| err("building request for", &e))?;
        let exchange = async {
            let mut sender = self
                .sender(addr)
                .await
                .map_err(|e| err("connecting to", &e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| err("request to", &e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_FRAGMENT_SIZE_BYTES)
                .collect()
                .await
                .map_err(|e| err("reading reply of", &e))?
                .to_bytes();
            // Only a connection whose reply was read to the end goes back to the pool; one
            // abandoned by a timeout or cancellation is dropped (closed) with this future.
            self.release(addr, sender);
            if !status.is_success() {
                let msg = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                return Err(err(&format!("{method} {status} from"), &msg));
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| err("timed out on", &format!("{} ms", self.timeout.as_millis())))?
    }
}

impl FragmentTransport for HttpTransport {
    async fn put(&self, node: NodeId, root: Hash, data: Bytes) -> Result<(), TransportError> {
        self.request("PUT", node, root, data).await.map(|_| ())
    }
    async fn get(&self, node: NodeId, root: Hash) -> Result<Bytes, TransportError> {
        self.request("GET", node, root, Bytes::new()).await
    }
    async fn hedge_delay(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
