//! The S3 commit path: how the gateway turns a write into a finalized ledger transaction on
//! the node it runs in. [`ChainLedger`] reads the node's finalized state snapshot, signs with
//! the node's operator account, submits to the node's mempool and waits, bounded, for the
//! receipt or for the transaction's expiry height.

use crate::s3::{CommitError, Ledger};
use cairn_chain::{engine::BlockReader, Nonces, Shared, SubmitError, TxStatus};
use cairn_ledger::{AccountId, State, Tx, TxKind};
use ed25519_dalek::SigningKey;
use std::{sync::Arc, time::Duration};
use tokio::sync::Semaphore;

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

/// The gateway's view of the node it runs in: finalized state, mempool and finality feed.
pub struct ChainLedger {
    shared: Arc<Shared>,
    blocks: BlockReader,
    key: SigningKey,
    nonces: Arc<Nonces>,
    inflight: Semaphore,
}

impl ChainLedger {
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

    /// The node's shared chain state this ledger reads and submits to.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The key writes are signed with (the node's operator account).
    pub fn key(&self) -> &SigningKey {
        &self.key
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

impl Ledger for ChainLedger {
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
