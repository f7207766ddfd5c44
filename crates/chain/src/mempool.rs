//! Bounded transaction pool shared by the admin API, tx gossip and the block proposer.
//!
//! Contract: every transaction in the pool passed stateless validation (decode, field checks,
//! signature). The pool never holds more than `max_txs` transactions or `max_bytes` bytes; a
//! full pool refuses new work with [`MempoolError::Full`] instead of evicting accepted work.
//! Expired work is evicted: [`Mempool::evict_expired`] drops every transaction whose
//! `valid_until` is below the next height, since the ledger would refuse it anyway.

use bytes::Bytes;
use cairn_ledger::Hash;
use commonware_utils::sync::{Mutex, Notify};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MempoolError {
    /// The pool is at its bound; the client should retry later.
    #[error("mempool full ({txs} txs, {size_bytes} bytes); retry later")]
    Full {
        /// Transactions held.
        txs: usize,
        /// Bytes held.
        size_bytes: usize,
    },
}

struct Inner {
    /// Each pooled transaction with its `valid_until`.
    by_hash: HashMap<Hash, (Bytes, u64)>,
    /// (valid_until, hash) of every pooled transaction, for eviction in expiry order.
    expiry: BTreeSet<(u64, Hash)>,
    order: VecDeque<Hash>,
    size_bytes: usize,
    gossip: Vec<Bytes>,
}

/// A bounded FIFO pool of validated transactions.
pub struct Mempool {
    inner: Mutex<Inner>,
    max_txs: usize,
    max_bytes: usize,
    notify: Notify,
}

impl Mempool {
    /// Creates an empty pool with the given bounds.
    pub fn new(max_txs: usize, max_bytes: usize) -> Self {
        assert!(
            max_txs > 0 && max_bytes > 0,
            "mempool bounds must be positive"
        );
        Self {
            inner: Mutex::new(Inner {
                by_hash: HashMap::new(),
                expiry: BTreeSet::new(),
                order: VecDeque::new(),
                size_bytes: 0,
                gossip: Vec::new(),
            }),
            max_txs,
            max_bytes,
            notify: Notify::new(),
        }
    }

    /// Inserts a validated transaction valid through height `valid_until`. Returns `Ok(false)`
    /// if it was already present. When `gossip` is set it is queued for relay to peers.
    pub fn insert(
        &self,
        hash: Hash,
        tx: Bytes,
        valid_until: u64,
        gossip: bool,
    ) -> Result<bool, MempoolError> {
        let mut inner = self.inner.lock();
        if inner.by_hash.contains_key(&hash) {
            return Ok(false);
        }
        if inner.by_hash.len() >= self.max_txs || inner.size_bytes + tx.len() > self.max_bytes {
            return Err(MempoolError::Full {
                txs: inner.by_hash.len(),
                size_bytes: inner.size_bytes,
            });
        }
        inner.size_bytes += tx.len();
        inner.order.push_back(hash);
        inner.expiry.insert((valid_until, hash));
        if gossip {
            inner.gossip.push(tx.clone());
        }
        inner.by_hash.insert(hash, (tx, valid_until));
        drop(inner);
        self.notify.notify_waiters();
        Ok(true)
    }

    /// True if the pool holds this transaction.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.inner.lock().by_hash.contains_key(hash)
    }

    /// Picks transactions in arrival order, skipping `exclude`, within both bounds.
    pub fn select(&self, exclude: &HashSet<Hash>, max_txs: usize, max_bytes: usize) -> Vec<Bytes> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        let mut size_bytes = 0;
        for hash in inner.order.iter() {
            if out.len() >= max_txs {
                break;
            }
            if exclude.contains(hash) {
                continue;
            }
            let Some((tx, _)) = inner.by_hash.get(hash) else {
                continue;
            };
            if size_bytes + tx.len() > max_bytes {
                break;
            }
            size_bytes += tx.len();
            out.push(tx.clone());
        }
        out
    }

    /// Removes transactions (included in a finalized block).
    pub fn remove<'a>(&self, hashes: impl IntoIterator<Item = &'a Hash>) {
        let mut inner = self.inner.lock();
        let mut removed = 0usize;
        for hash in hashes {
            if let Some((tx, valid_until)) = inner.by_hash.remove(hash) {
                inner.size_bytes -= tx.len();
                inner.expiry.remove(&(valid_until, *hash));
                removed += 1;
            }
        }
        if removed > 0 {
            // Order entries for removed hashes are dropped lazily here, bounded by the pool size.
            let Inner { by_hash, order, .. } = &mut *inner;
            order.retain(|h| by_hash.contains_key(h));
        }
        debug_assert_eq!(inner.order.len(), inner.by_hash.len());
    }

    /// Drops every transaction that can no longer apply at `next_height` (its `valid_until`
    /// is below it); returns how many were dropped.
    pub fn evict_expired(&self, next_height: u64) -> usize {
        let expired: Vec<Hash> = {
            let inner = self.inner.lock();
            inner
                .expiry
                .iter()
                .take_while(|(v, _)| *v < next_height)
                .map(|(_, h)| *h)
                .collect()
        };
        let n = expired.len();
        if n > 0 {
            self.remove(expired.iter());
        }
        n
    }

    /// Takes the transactions queued for gossip.
    pub fn take_gossip(&self) -> Vec<Bytes> {
        std::mem::take(&mut self.inner.lock().gossip)
    }

    /// Number of transactions held.
    pub fn len(&self) -> usize {
        self.inner.lock().by_hash.len()
    }

    /// True when the pool holds no transactions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until a transaction is inserted (may wake spuriously).
    pub async fn inserted(&self) {
        self.notify.notified().await;
    }
}

/// A bounded set of transaction hashes whose signatures were already verified.
///
/// Signature checks dominate CPU cost; a node verifies each transaction once (on gossip or
/// submit) and the proposer, verifier and executor consult this set. In a single-process devnet
/// all nodes share one cache, since they share one address space and one CPU budget.
pub struct SigCache {
    inner: Mutex<(HashSet<Hash>, VecDeque<Hash>)>,
    capacity: usize,
}

impl SigCache {
    /// Creates a cache holding at most `capacity` hashes (oldest evicted first).
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0);
        Self {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity,
        }
    }

    /// True if this hash was verified.
    pub fn contains(&self, hash: &Hash) -> bool {
        self.inner.lock().0.contains(hash)
    }

    /// Records a verified hash.
    pub fn insert(&self, hash: Hash) {
        let mut inner = self.inner.lock();
        if inner.0.insert(hash) {
            inner.1.push_back(hash);
            if inner.1.len() > self.capacity {
                if let Some(old) = inner.1.pop_front() {
                    inner.0.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u8) -> Hash {
        [i; 32]
    }

    #[test]
    fn bounds_and_fifo() {
        let pool = Mempool::new(2, 100);
        assert_eq!(
            pool.insert(h(1), Bytes::from_static(b"a"), 10, false),
            Ok(true)
        );
        assert_eq!(
            pool.insert(h(1), Bytes::from_static(b"a"), 10, false),
            Ok(false)
        );
        assert_eq!(
            pool.insert(h(2), Bytes::from_static(b"b"), 10, true),
            Ok(true)
        );
        assert!(matches!(
            pool.insert(h(3), Bytes::from_static(b"c"), 10, false),
            Err(MempoolError::Full { txs: 2, .. })
        ));
        let exclude = HashSet::from([h(1)]);
        assert_eq!(
            pool.select(&exclude, 10, 100),
            vec![Bytes::from_static(b"b")]
        );
        assert_eq!(pool.select(&HashSet::new(), 1, 100).len(), 1);
        pool.remove([&h(1)]);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take_gossip(), vec![Bytes::from_static(b"b")]);
        assert!(pool.take_gossip().is_empty());
        let big = Mempool::new(10, 3);
        assert!(big
            .insert(h(1), Bytes::from_static(b"abcd"), 10, false)
            .is_err());
    }

    #[test]
    fn expired_transactions_are_evicted_in_expiry_order() {
        let pool = Mempool::new(10, 100);
        for (i, valid_until) in [(1u8, 5u64), (2, 3), (3, 9), (4, 4)] {
            assert_eq!(
                pool.insert(h(i), Bytes::from(vec![i]), valid_until, false),
                Ok(true)
            );
        }
        assert_eq!(
            pool.evict_expired(3),
            0,
            "valid through height 3 still applies at 3"
        );
        assert_eq!(pool.evict_expired(5), 2);
        assert!(!pool.contains(&h(2)) && !pool.contains(&h(4)));
        assert!(pool.contains(&h(1)) && pool.contains(&h(3)));
        pool.remove([&h(1)]);
        assert_eq!(pool.evict_expired(100), 1);
        assert!(pool.is_empty());
        assert!(pool.select(&HashSet::new(), 10, 100).is_empty());
    }

    #[test]
    fn sig_cache_evicts_oldest() {
        let cache = SigCache::new(2);
        cache.insert(h(1));
        cache.insert(h(2));
        cache.insert(h(3));
        assert!(!cache.contains(&h(1)));
        assert!(cache.contains(&h(2)) && cache.contains(&h(3)));
    }
}
