//! State one node's services share: the finalized ledger, the mempool and the finality feeds.
//!
//! Readers never block finality: the finalized state is published as an immutable
//! `Arc<State>` per block. [`Shared::snapshot`] and [`Shared::with_state`] hold a lock only to
//! clone that pointer, so a long reader (a listing of 100k keys) works on its own snapshot while
//! the finalizer applies the next block to a copy. The copy is cheap because the ledger's large
//! tables are persistent maps (`imbl`), shared between versions.

use crate::{
    block::Block,
    mempool::{Mempool, MempoolError, SigCache},
    store::{StateStore, StoreError},
};
use bytes::Bytes;
use cairn_ledger::{AccountId, BlockOutcome, Hash, SignedTx, State, TxError};
use commonware_cryptography::Digestible;
use commonware_utils::sync::{Mutex, RwLock};
use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};
use tokio::sync::{broadcast, watch};

/// Hash of an encoded transaction (equals [`SignedTx::hash`] for canonical bytes).
pub fn tx_hash(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

/// Most finalized transactions whose receipts stay queryable by hash.
pub const TX_INDEX_CAPACITY: usize = 200_000;
/// Capacity of the finalized-block feed; slow subscribers see `Lagged`.
pub const BLOCK_FEED_CAPACITY: usize = 4096;

/// What the chain publishes for each finalized height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finalized {
    /// Finalized height.
    pub height: u64,
    /// Block digest (hex).
    pub digest: [u8; 32],
    /// Ledger state root after applying the block.
    pub state_root: Hash,
    /// Proposer timestamp of the block.
    pub timestamp_ms: u64,
    /// Number of transactions in the block.
    pub tx_count: usize,
}

/// A finalized block with its transaction hashes and receipts.
#[derive(Debug)]
pub struct FinalizedBlock {
    /// Summary published on the watch channel.
    pub summary: Finalized,
    /// Hashes of the block's transactions, in block order.
    pub tx_hashes: Vec<Hash>,
    /// Per-transaction result, in block order.
    pub receipts: Vec<Result<(), TxError>>,
}

/// Why a submitted transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The transaction is invalid on its own (bytes, fields, signature) or against state.
    #[error("transaction rejected: {0}")]
    Invalid(#[from] TxError),
    /// The mempool is full.
    #[error(transparent)]
    Busy(#[from] MempoolError),
}

/// Where a transaction is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// In this node's mempool.
    Pending,
    /// Finalized at `height`; `result` is the execution receipt.
    Finalized {
        /// Height of the block that carried it.
        height: u64,
        /// Execution result.
        result: Result<(), TxError>,
    },
    /// Not known to this node.
    Unknown,
}

/// Receipts of recently finalized transactions, with insertion order for eviction.
type TxIndex = (HashMap<Hash, (u64, Result<(), TxError>)>, VecDeque<Hash>);

/// Node-wide shared state.
pub struct Shared {
    /// The latest finalized state. The lock guards only the pointer swap together with the
    /// mempool, receipt index and root bookkeeping of that block, never a reader's work.
    state: RwLock<Arc<State>>,
    /// Serializes block application (one writer computes the next state at a time).
    writer: Mutex<()>,
    /// Validated transactions waiting for a block.
    pub mempool: Mempool,
    sig_cache: Arc<SigCache>,
    store: Mutex<Box<dyn StateStore>>,
    finalized_tx: watch::Sender<Finalized>,
    blocks_tx: broadcast::Sender<Arc<FinalizedBlock>>,
    tx_index: Mutex<TxIndex>,
    roots: Mutex<VecDeque<(u64, Hash)>>,
    replayed_blocks: AtomicU64,
}

/// State is written to the store every this many heights, merging the blocks in between.
///
/// Why not every block: each node of an in-process devnet persisting every block put redb on the
/// finality path (14% of CPU at 5,000 tx/s, see docs/BENCHMARKS.md). Skipped heights are safe to
/// lose: marshal's archive holds every finalized block and the finalizer replays the gap after
/// a restart, so a crash costs at most this many block replays.
pub const PERSIST_EVERY_BLOCKS: u64 = 16;

/// How many recent (height, state root) pairs a node remembers for audits and tests.
pub const RECENT_ROOTS: usize = 4096;

impl Shared {
    /// Loads durable state (or genesis) and builds the shared node state.
    pub fn open(
        genesis: &cairn_ledger::Genesis,
        genesis_block: &Block,
        mut store: Box<dyn StateStore>,
        mempool: Mempool,
        sig_cache: Arc<SigCache>,
    ) -> Result<Arc<Self>, StoreError> {
        let state = match store.load()? {
            Some(state) => state,
            None => {
                let mut state = State::genesis(genesis).map_err(StoreError::Genesis)?;
                let dirty = state.take_dirty();
                store.commit(0, dirty)?;
                state
            }
        };
        let summary = Finalized {
            height: state.height(),
            digest: if state.height() == 0 {
                genesis_block.digest().0
            } else {
                [0; 32]
            },
            state_root: state.state_root(),
            timestamp_ms: 0,
            tx_count: 0,
        };
        let (finalized_tx, _) = watch::channel(summary);
        let (blocks_tx, _) = broadcast::channel(BLOCK_FEED_CAPACITY);
        Ok(Arc::new(Self {
            state: RwLock::new(Arc::new(state)),
            writer: Mutex::new(()),
            mempool,
            sig_cache,
            store: Mutex::new(store),
            finalized_tx,
            blocks_tx,
            tx_index: Mutex::new((HashMap::new(), VecDeque::new())),
            roots: Mutex::new(VecDeque::new()),
            replayed_blocks: AtomicU64::new(0),
        }))
    }

    /// State root after applying `height`, if it is among the recent heights this node applied.
    pub fn root_at(&self, height: u64) -> Option<Hash> {
        self.roots
            .lock()
            .iter()
            .find(|(h, _)| *h == height)
            .map(|(_, r)| *r)
    }

    /// Finalized blocks this node re-applied from its block archive since it started: the gap
    /// between durable state and marshal's redelivery after a restart (0 on a fresh node).
    pub fn replayed_blocks(&self) -> u64 {
        self.replayed_blocks.load(Ordering::Relaxed)
    }

    /// Applies a finalized block read back from the archive (the restart replay path).
    pub(crate) fn replay_finalized(&self, block: &Block) -> Result<(), ApplyError> {
        self.apply_finalized(block)?;
        self.replayed_blocks.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Latest finalized (and applied) height.
    pub fn finalized_height(&self) -> u64 {
        self.state.read().height()
    }

    /// The latest finalized state: an immutable snapshot that later blocks never change.
    pub fn snapshot(&self) -> Arc<State> {
        self.state.read().clone()
    }

    /// Runs `f` on the latest finalized state's snapshot; never delays block application.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.snapshot())
    }

    /// Subscribes to the latest finalized height (a watch: intermediate values may be skipped).
    pub fn subscribe(&self) -> watch::Receiver<Finalized> {
        self.finalized_tx.subscribe()
    }

    /// Subscribes to every finalized block (bounded; a slow reader gets `Lagged`).
    pub fn subscribe_blocks(&self) -> broadcast::Receiver<Arc<FinalizedBlock>> {
        self.blocks_tx.subscribe()
    }

    /// Decodes and checks one transaction, verifying its signature at most once per node.
    pub fn check_tx_bytes(&self, bytes: &[u8]) -> Result<(SignedTx, Hash), TxError> {
        let hash = tx_hash(bytes);
        let tx = if self.sig_cache.contains(&hash) {
            SignedTx::decode(bytes)?
        } else {
            let tx = SignedTx::decode_and_verify(bytes)?;
            self.sig_cache.insert(hash);
            tx
        };
        Ok((tx, hash))
    }

    /// Verifies every transaction of a block statelessly.
    pub fn verify_txs(&self, txs: &[Bytes]) -> Result<Vec<SignedTx>, TxError> {
        txs.iter()
            .map(|bytes| self.check_tx_bytes(bytes).map(|(tx, _)| tx))
            .collect()
    }

    /// Admits a transaction from a client: stateless checks, a stateful pre-check, then the pool.
    pub fn submit(&self, bytes: Bytes) -> Result<Hash, SubmitError> {
        let (tx, hash) = self.check_tx_bytes(&bytes)?;
        if self.tx_index.lock().0.contains_key(&hash) {
            return Ok(hash);
        }
        self.snapshot().check_tx(&tx)?;
        self.mempool.insert(hash, bytes, tx.tx.valid_until, true)?;
        Ok(hash)
    }

    /// Signs `kind` with `key` (the account `nonces` allocates for) at its next free nonce,
    /// valid for `validity_blocks` past the finalized height, and submits it. The one signing
    /// path of a node's own workers.
    pub fn sign_and_submit(
        &self,
        key: &ed25519_dalek::SigningKey,
        nonces: &Nonces,
        kind: cairn_ledger::TxKind,
        validity_blocks: u64,
    ) -> Result<Hash, SubmitError> {
        let (nonce, height) = self.with_state(|s| (nonces.next(s), s.height()));
        let nonce = nonce.ok_or(SubmitError::Invalid(TxError::UnknownAccount))?;
        let tx = cairn_ledger::Tx {
            signer: key.verifying_key().to_bytes(),
            nonce,
            valid_until: height + validity_blocks,
            kind,
        }
        .sign(key);
        self.submit(tx.encode().into())
    }

    /// Admits a transaction relayed by a peer (no re-gossip; invalid ones are dropped).
    pub fn admit_gossip(&self, bytes: Bytes) -> bool {
        match self.check_tx_bytes(&bytes) {
            Ok((tx, hash)) => {
                if self.tx_index.lock().0.contains_key(&hash) {
                    return false;
                }
                // An expired relay would only be evicted again: refuse it at the door.
                if tx.tx.valid_until <= self.finalized_height() {
                    return false;
                }
                matches!(
                    self.mempool.insert(hash, bytes, tx.tx.valid_until, false),
                    Ok(true)
                )
            }
            Err(_) => false,
        }
    }

    /// Where a transaction is.
    pub fn tx_status(&self, hash: &Hash) -> TxStatus {
        if let Some((height, result)) = self.tx_index.lock().0.get(hash) {
            return TxStatus::Finalized {
                height: *height,
                result: result.clone(),
            };
        }
        if self.mempool.contains(hash) {
            return TxStatus::Pending;
        }
        TxStatus::Unknown
    }

    fn index_receipts(&self, height: u64, hashes: &[Hash], receipts: &[Result<(), TxError>]) {
        let mut index = self.tx_index.lock();
        for (hash, receipt) in hashes.iter().zip(receipts) {
            if index.0.insert(*hash, (height, receipt.clone())).is_none() {
                index.1.push_back(*hash);
            }
        }
        while index.1.len() > TX_INDEX_CAPACITY {
            if let Some(old) = index.1.pop_front() {
                index.0.remove(&old);
            }
        }
    }

    /// Applies the finalized block at the next height, persists it, and publishes it.
    ///
    /// Contract: `block.height == finalized_height() + 1`; the block was finalized by consensus
    /// (so it was verified by a quorum and its transactions are stateless-valid).
    pub fn apply_finalized(&self, block: &Block) -> Result<Arc<FinalizedBlock>, ApplyError> {
        let txs = self.verify_txs(&block.txs).map_err(ApplyError::InvalidTx)?;
        let tx_hashes: Vec<Hash> = block.txs.iter().map(|b| tx_hash(b)).collect();
        let _writer = self.writer.lock();
        let mut next = State::clone(&self.snapshot());
        let expected = next.height() + 1;
        if block.height != expected {
            return Err(ApplyError::Height {
                expected,
                got: block.height,
            });
        }
        // Applied to a private copy: readers keep the previous snapshot meanwhile.
        let outcome: BlockOutcome = next
            .apply_verified_block(block.height, block.timestamp_ms, &txs)
            .map_err(ApplyError::Ledger)?;
        let dirty = block
            .height
            .is_multiple_of(PERSIST_EVERY_BLOCKS)
            .then(|| next.take_dirty());
        {
            let mut state = self.state.write();
            debug_assert_eq!(state.height() + 1, block.height, "one writer at a time");
            // Under the state lock, so no proposer or gossip admission can observe the new
            // height while the block's transactions are still pooled or unindexed (which would
            // let them be included twice).
            self.mempool.remove(tx_hashes.iter());
            self.mempool.evict_expired(block.height.saturating_add(1));
            self.index_receipts(block.height, &tx_hashes, &outcome.receipts);
            // Recorded under the state lock: whoever reads height H from `finalized_height`
            // then finds H's root in `root_at`. Recording it later once let `cairn bench chain`
            // see the new height without its root and report a divergence that was not there.
            {
                let mut roots = self.roots.lock();
                roots.push_back((block.height, outcome.state_root));
                if roots.len() > RECENT_ROOTS {
                    roots.pop_front();
                }
            }
            *state = Arc::new(next);
        }
        // Durable state trails the applied height by less than PERSIST_EVERY_BLOCKS, and never
        // leads marshal's archive (see crate docs on restart consistency).
        if let Some(dirty) = dirty {
            self.store
                .lock()
                .commit(block.height, dirty)
                .map_err(ApplyError::Store)?;
        }
        let summary = Finalized {
            height: block.height,
            digest: block.digest().0,
            state_root: outcome.state_root,
            timestamp_ms: block.timestamp_ms,
            tx_count: block.txs.len(),
        };
        let finalized = Arc::new(FinalizedBlock {
            summary: summary.clone(),
            tx_hashes,
            receipts: outcome.receipts,
        });
        self.finalized_tx.send_replace(summary);
        let _ = self.blocks_tx.send(finalized.clone());
        Ok(finalized)
    }
}

/// Why a finalized block could not be applied (each is a node-local fault, not peer input).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A finalized block carried an invalid transaction: the committee is faulty beyond f.
    #[error("finalized block carries an invalid transaction: {0}")]
    InvalidTx(TxError),
    /// Blocks must be applied in height order.
    #[error("finalized block out of order: expected height {expected}, got {got}")]
    Height {
        /// Next height the state expects.
        expected: u64,
        /// Height delivered.
        got: u64,
    },
    /// The ledger refused the block.
    #[error("ledger refused finalized block: {0}")]
    Ledger(cairn_ledger::BlockError),
    /// The durable store failed; the node must stop rather than diverge.
    #[error("state store failed: {0}")]
    Store(StoreError),
}

/// Nonce allocator for one account, shared by every task that signs with it (heartbeats,
/// the S3 gateway, the planner), so they never reuse a nonce.
pub struct Nonces {
    account: AccountId,
    next: Mutex<u64>,
}

impl Nonces {
    /// Allocator for `account`.
    pub fn new(account: AccountId) -> Self {
        Self {
            account,
            next: Mutex::new(0),
        }
    }

    /// The next nonce to sign with, or `None` if the account does not exist.
    pub fn next(&self, state: &State) -> Option<u64> {
        let finalized = state.account(&self.account)?.nonce_max;
        let mut next = self.next.lock();
        let n = (*next).max(finalized + 1);
        *next = n + 1;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use cairn_ledger::{Genesis, NodeRecordInit, Roles};
    use std::{sync::mpsc, time::Duration};

    fn one_node_shared() -> (Arc<Shared>, Block) {
        let genesis = Genesis {
            audit: Default::default(),
            chain_id: "snap".into(),
            accounts: vec![([1; 32], "op".into())],
            nodes: vec![(
                [9; 32],
                NodeRecordInit {
                    operator: [1; 32],
                    zone: "z1".into(),
                    roles: Roles {
                        validator: true,
                        storage: false,
                        gateway: false,
                        cache: false,
                    },
                    addresses: vec!["127.0.0.1:1".into()],
                    capacity_bytes: 1,
                    stake: 1,
                },
            )],
        };
        let block = Block::genesis("snap");
        let shared = Shared::open(
            &genesis,
            &block,
            Box::new(MemStore::default()),
            Mempool::new(16, 1 << 16),
            Arc::new(SigCache::new(16)),
        )
        .expect("genesis opens");
        (shared, block)
    }

    #[test]
    fn a_reader_holding_the_state_does_not_delay_block_application() {
        let (shared, genesis) = one_node_shared();
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let reader = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                shared.with_state(|s| {
                    entered_tx.send(()).expect("test thread waits");
                    // A long listing: it holds its view until the test releases it.
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                    s.height()
                })
            })
        };
        entered_rx.recv().expect("reader entered");
        let (done_tx, done_rx) = mpsc::channel();
        let applier = {
            let shared = shared.clone();
            let block = Block::new(genesis.digest(), 1, 1_000, Vec::new());
            std::thread::spawn(move || {
                let applied = shared.apply_finalized(&block).map(|f| f.summary.height);
                done_tx.send(applied.ok()).expect("test thread waits");
            })
        };
        let applied = done_rx.recv_timeout(Duration::from_secs(10));
        release_tx.send(()).ok();
        applier.join().expect("applier thread");
        assert_eq!(
            applied,
            Ok(Some(1)),
            "block 1 was not applied within 10 s while a reader held the state"
        );
        assert_eq!(
            reader.join().expect("reader thread"),
            0,
            "a snapshot changed under its reader"
        );
        assert_eq!(shared.finalized_height(), 1);
        assert_eq!(shared.snapshot().height(), 1);
    }
}
