//! Client side of the fragment protocol: [`HttpTransport`] pushes and fetches fragments for the
//! gateway pipeline, signing a fresh single-use ticket per request (see
//! [`crate::auth`]) that names the receiving node.
//!
//! Addresses: a node's fragment listener is the `registry::Service::Fragments` address of its
//! ledger record (after p2p, admin API and S3, the last a placeholder repeating the admin
//! address on nodes without S3). The transport looks the address up in the *current*
//! finalized state on every request, so nodes registered or re-addressed after the gateway
//! started are reachable without a restart. A record without a fragment address (an older
//! layout) is reported as such, not sent to the admin API.
//!
//! Keep-alive connections with `TCP_NODELAY` (at most [`MAX_IDLE_CONNECTIONS_PER_NODE`] idle
//! per node, each dropped after [`CLIENT_IDLE_MS`], before the server's idle timeout), a
//! per-request timeout, and up to [`MAX_ATTEMPTS`] tries on 503 (a busy node) within it.

use crate::{
    auth::{self, Ticket},
    protocol::{hex, FragmentTransport, TransportError},
    server::{now_ms, HEADER_READ_TIMEOUT_MS},
    store::MAX_FRAGMENT_SIZE_BYTES,
};
use bytes::Bytes;
use cairn_ledger::{Hash, NodeId, NodeRecord};
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// Idle keep-alive connections kept per node; more are closed after use.
pub const MAX_IDLE_CONNECTIONS_PER_NODE: usize = 16;
/// Longest a pooled connection is reused after its last reply (half the server's idle
/// timeout, so the client never picks a connection the server is closing).
pub const CLIENT_IDLE_MS: u64 = HEADER_READ_TIMEOUT_MS / 2;
/// Tries per request when the node answers 503 (busy or over its in-flight budget).
pub const MAX_ATTEMPTS: u32 = 3;
/// Pause before the second try; doubles after each.
pub const RETRY_BACKOFF_MS: u64 = 100;

/// The fragment listener a node advertises, if any.
pub fn fragment_address(node: &NodeRecord) -> Option<SocketAddr> {
    cairn_ledger::registry::address(node, cairn_ledger::registry::Service::Fragments)
}

/// Resolves a node id to its fragment address (in a node: from current finalized state).
pub type AddressBook = Arc<dyn Fn(&NodeId) -> Option<SocketAddr> + Send + Sync>;

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Pushes and fetches fragments over HTTP, signing as this node. Connections are kept alive and
/// reused, so a busy gateway does not burn an ephemeral port (and a TIME_WAIT slot) per
/// fragment.
pub struct HttpTransport {
    key: SigningKey,
    addresses: AddressBook,
    timeout: Duration,
    idle: std::sync::Mutex<HashMap<SocketAddr, Vec<(Sender, Instant)>>>,
}

/// One answered exchange.
struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl HttpTransport {
    /// A transport signing with `key` that finds nodes through `addresses`.
    pub fn new(key: SigningKey, addresses: AddressBook, timeout_ms: u64) -> Self {
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
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&addr)
                .and_then(Vec::pop);
            match candidate {
                Some((mut s, since)) => {
                    // A connection idle too long, or closed by the server meanwhile, is
                    // dropped, not reused.
                    if since.elapsed() < Duration::from_millis(CLIENT_IDLE_MS)
                        && std::future::poll_fn(|cx| s.poll_ready(cx)).await.is_ok()
                    {
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
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(addr).or_default();
        list.retain(|(s, since)| {
            !s.is_closed() && since.elapsed() < Duration::from_millis(CLIENT_IDLE_MS)
        });
        if list.len() < MAX_IDLE_CONNECTIONS_PER_NODE && !sender.is_closed() {
            list.push((sender, Instant::now()));
        }
    }

    /// One signed exchange with the node at `addr`.
    async fn exchange(
        &self,
        method: &str,
        addr: SocketAddr,
        node: NodeId,
        root: Hash,
        body: Bytes,
    ) -> Result<Reply, String> {
        let ticket = Ticket {
            method: method.to_string(),
            target: node,
            root,
            content_length: body.len() as u64,
            time_ms: now_ms(),
            nonce: auth::fresh_nonce(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/fragments/{}", hex(&root)))
            .header("host", addr.to_string());
        for (name, value) in auth::sign(&self.key, &ticket) {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("building request: {e}"))?;
        let mut sender = self.sender(addr).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_FRAGMENT_SIZE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading reply: {e}"))?
            .to_bytes();
        // Only a connection whose reply was read to the end goes back to the pool; one
        // abandoned by a timeout or cancellation is dropped (closed) with this future.
        self.release(addr, sender);
        Ok(Reply { status, body })
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
        let addr = (self.addresses)(&node).ok_or_else(|| {
            err(
                "no fragment address for",
                &"its ledger record advertises no fragment address (unknown node or an older layout)",
            )
        })?;
        let attempts = async {
            let mut attempt = 1;
            loop {
                let reply = self
                    .exchange(method, addr, node, root, body.clone())
                    .await
                    .map_err(|e| err(&format!("{method} to"), &e))?;
                if reply.status.is_success() {
                    return Ok(reply.body);
                }
                let msg =
                    String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]).into_owned();
                if reply.status != StatusCode::SERVICE_UNAVAILABLE || attempt >= MAX_ATTEMPTS {
                    return Err(err(&format!("{method} {} from", reply.status), &msg));
                }
                tokio::time::sleep(Duration::from_millis(RETRY_BACKOFF_MS << (attempt - 1))).await;
                attempt += 1;
            }
        };
        tokio::time::timeout(self.timeout, attempts)
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
    async fn report_corrupt(&self, node: NodeId, root: Hash) {
        // HEAD asks the holder to re-verify its copy; its answer changes nothing here.
        if let Err(e) = self.request("HEAD", node, root, Bytes::new()).await {
            tracing::debug!("corrupt-fragment report: {e}");
        }
    }
}
