//! The node's S3 endpoint: the gateway crate's s3s service over this node's finalized state,
//! mempool and fragment transport, on its own hyper listener.

use cairn_chain::{engine::BlockReader, Nonces, Shared, SubmitError, TxStatus};
use cairn_gateway::{
    keys::{Access, Auth, KeyStore},
    s3::{CommitError, Gateway, GatewayConfig, Ledger, VirtualHosts},
};
use cairn_ledger::{AccountId, State, Tx, TxKind};
use cairn_storage::client::{fragment_address, HttpTransport};
use ed25519_dalek::SigningKey;
use s3s::service::S3ServiceBuilder;
use serde::Deserialize;
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
// Connection limits (caps, timeouts, head size, body rate) are `crate::conn::Limits`.

/// Blocks an S3 write's transaction stays valid (`valid_until` = finalized height + this):
/// about 20 s on an idle chain (one block per 500 ms), less under load.
pub const S3_TX_VALIDITY_BLOCKS: u64 = 40;
/// Longest a write waits for its transaction before answering 503. Normally the answer comes
/// sooner: the receipt, or the finalized `valid_until` height without it (then the write can
/// never apply). Only a node cut off from the chain for this long answers 503 with the outcome
/// unknown; if that write applies later, the ledger's write order still keeps any newer one.
pub const COMMIT_TIMEOUT_MS: u64 = 30_000;
/// Transactions this gateway has in flight at once (inside the ledger's 64-nonce window).
pub const MAX_INFLIGHT_TXS: usize = 48;
/// Longest a write waits for an in-flight slot before answering 503 SlowDown.
pub const INFLIGHT_WAIT_MS: u64 = 60_000;
/// Per-request timeout of fragment transfers.
pub const FRAGMENT_TIMEOUT_MS: u64 = 10_000;

/// The gateway's view of this node.
pub struct NodeLedger {
    shared: Arc<Shared>,
    blocks: BlockReader,
    key: SigningKey,
    nonces: Arc<Nonces>,
    inflight: Semaphore,
}

impl NodeLedger {
    /// Signs with `key` (the node's operator account), drawing nonces from `nonces`.
    pub fn new(
        shared: Arc<Shared>,
        blocks: BlockReader,
        key: SigningKey,
        nonces: Arc<Nonces>,
    ) -> Self {
        Self {
            shared,
            blocks,
            key,
            nonces,
            inflight: Semaphore::new(MAX_INFLIGHT_TXS),
        }
    }

    async fn finalize(&self, kind: TxKind) -> Result<(), CommitError> {
        // Subscribe before submitting so the finalizing block cannot slip past.
        let mut blocks = self.shared.subscribe_blocks();
        let signer = self.gateway();
        let nonce = self
            .shared
            .with_state(|s| self.nonces.next(s))
            .ok_or_else(|| {
                CommitError::Unavailable("this node's account is not registered".into())
            })?;
        let valid_until = self.shared.finalized_height() + S3_TX_VALIDITY_BLOCKS;
        let tx = Tx {
            signer,
            nonce,
            valid_until,
            kind,
        }
        .sign(&self.key);
        let hash = self
            .shared
            .submit(tx.encode().into())
            .map_err(|e| match e {
                SubmitError::Invalid(e) => CommitError::Rejected(e),
                SubmitError::Busy(e) => CommitError::Unavailable(e.to_string()),
            })?;
        loop {
            match blocks.recv().await {
                Ok(b) => {
                    if let Some(i) = b.tx_hashes.iter().position(|h| *h == hash) {
                        return b.receipts[i].clone().map_err(CommitError::Rejected);
                    }
                    if b.summary.height >= valid_until {
                        return Err(expired(valid_until));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    match self.shared.tx_status(&hash) {
                        TxStatus::Finalized { result, .. } => {
                            return result.map_err(CommitError::Rejected)
                        }
                        _ if self.shared.finalized_height() >= valid_until => {
                            return Err(expired(valid_until))
                        }
                        _ => {}
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(CommitError::Unavailable("the chain stopped".into()))
                }
            }
        }
    }
}

/// The write's expiry height finalized without it: it can never apply.
fn expired(valid_until: u64) -> CommitError {
    CommitError::Unavailable(format!(
        "not finalized by its expiry height {valid_until}, so it will never apply; retry the request"
    ))
}

impl Ledger for NodeLedger {
    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.shared.with_state(f)
    }

    fn gateway(&self) -> AccountId {
        self.key.verifying_key().to_bytes()
    }

    async fn commit(&self, kind: TxKind) -> Result<(), CommitError> {
        // Waiting for a slot is bounded separately, so a burst (DeleteObjects of 1000 keys)
        // queues instead of timing out, while a stalled chain still answers within bounds.
        let _permit = match tokio::time::timeout(
            Duration::from_millis(INFLIGHT_WAIT_MS),
            self.inflight.acquire(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => {
                return Err(CommitError::Unavailable(format!(
                "{MAX_INFLIGHT_TXS} writes already waiting for finality for {INFLIGHT_WAIT_MS} ms"
            )))
            }
        };
        match tokio::time::timeout(Duration::from_millis(COMMIT_TIMEOUT_MS), self.finalize(kind)).await {
            Ok(r) => r,
            Err(_) => Err(CommitError::Unavailable(format!(
                "not finalized within {COMMIT_TIMEOUT_MS} ms and this node has not seen its expiry height; the committee may have lost its quorum or this node is cut off. If the write applies later, any newer write to the key still wins"
            ))),
        }
    }

    async fn block_time_ms(&self, height: u64) -> Option<u64> {
        self.blocks.get(height).await.map(|b| b.timestamp_ms)
    }
}

/// One entry of a gateway key file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    access_key: String,
    secret_key: String,
    /// Hex account id the key acts for.
    account: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

/// Loads a gateway key file (`[[keys]] access_key, secret_key, account`).
pub fn load_keys(path: &Path) -> Result<KeyStore, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: KeyFile = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {}",
            path.display(),
            crate::config::toml_error(&text, &e)
        )
    })?;
    let mut store = KeyStore::new();
    for k in file.keys {
        let account = crate::config::hex32(&k.account)
            .ok_or_else(|| format!("{}: account must be 64 hex characters", path.display()))?;
        store
            .insert(&k.access_key, &k.secret_key, account)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(store)
}

/// The text of a key file holding one key.
pub fn key_file_text(access_key: &str, secret_key: &str, account: &AccountId) -> String {
    format!(
        "# S3 keys of this gateway; never share or commit this file.\n[[keys]]\naccess_key = \"{access_key}\"\nsecret_key = \"{secret_key}\"\naccount = \"{}\"\n",
        crate::config::hex(account)
    )
}

/// Binds the S3 listener (fails fast with a clear error if the port is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind the S3 endpoint on {addr}: {e}"),
        )
    })
}

/// Serves S3 on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    ledger: Arc<NodeLedger>,
    keys: KeyStore,
    domain: &str,
    cfg: GatewayConfig,
) {
    // The address book follows the finalized ledger: each transfer looks its node up in the
    // current state, so nodes registered or re-addressed after this listener started are found.
    let shared = ledger.shared.clone();
    let transport = Arc::new(HttpTransport::new(
        ledger.key.clone(),
        Arc::new(move |id| shared.with_state(|s| s.node(id).and_then(fragment_address))),
        FRAGMENT_TIMEOUT_MS,
    ));
    let keys = Arc::new(keys);
    let gateway = Gateway::new(ledger.clone(), transport, keys.clone(), cfg);
    let mut builder = S3ServiceBuilder::new(gateway);
    builder.set_auth(Auth(keys));
    builder.set_access(Access(ledger));
    builder.set_host(VirtualHosts::new(domain));
    let service = builder.build();
    let limits = crate::conn::Limits::default();
    let limits_for_serve = limits.clone();
    // An error answered before the body was read (e.g. KeyTooLongError on a PUT sent with
    // Expect: 100-continue) leaves the connection's framing unknown to the client, so such
    // responses close the connection instead of letting the next request on it be misparsed.
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let has_body = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
            || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
        let req = req.map(|b| s3s::Body::http_body_unsync(crate::conn::RateGuard::new(b, &limits)));
        let service = service.clone();
        async move {
            let mut resp = service.call(req).await?;
            if has_body && resp.status().as_u16() >= 400 {
                resp.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, s3s::HttpError>(resp)
        }
    };
    crate::conn::serve_http(listener, limits_for_serve, handler).await;
}
