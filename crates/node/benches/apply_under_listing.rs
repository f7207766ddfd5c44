//! Block application on a node while S3 listings run on it (issue 11, outcome 7).
//!
//! Builds a node's finalized state with `CAIRN_BENCH_KEYS` objects (default 100,000) in one
//! bucket, then applies `CAIRN_BENCH_BLOCKS` blocks (default 200) of 20 PutObjects each, twice:
//! alone (the reference), and with a second thread running delimiter listings of the whole
//! bucket back to back (every key sits under one common prefix, so each listing walks all of
//! them). Prints p50/p99/max apply latency of both runs and their ratio.
//!
//!     cargo bench -p cairn-node --bench apply_under_listing

use bytes::Bytes;
use cairn_chain::{mempool::SigCache, store::MemStore, Block, Shared};
use cairn_ledger::{
    objects::{Acl, ObjectManifest, Segment},
    Genesis, NodeRecordInit, Roles, Tx, TxKind,
};
use commonware_cryptography::Digestible;
use ed25519_dalek::SigningKey;
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const BUCKET: &str = "bench";
const TXS_PER_BLOCK: usize = 2_000;
const PUTS_PER_MEASURED_BLOCK: usize = 20;
/// Block time of block 1; later blocks add 1 ms per height, far inside the health window.
const T0_MS: u64 = 1_800_000_000_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Chain {
    shared: Arc<Shared>,
    owner: SigningKey,
    nonce: u64,
    parent: Block,
    storage: Vec<[u8; 32]>,
}

impl Chain {
    fn new() -> Self {
        let owner = SigningKey::from_bytes(&[1; 32]);
        let owner_id = owner.verifying_key().to_bytes();
        let storage: Vec<[u8; 32]> = (0..12u8).map(|i| [100 + i; 32]).collect();
        let genesis = Genesis {
            audit: Default::default(),
            chain_id: "bench".into(),
            accounts: vec![(owner_id, "owner".into())],
            nodes: storage
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    (
                        *id,
                        NodeRecordInit {
                            operator: owner_id,
                            zone: format!("z{}", i % 3),
                            roles: Roles {
                                validator: i == 0,
                                storage: true,
                                gateway: false,
                                cache: false,
                            },
                            addresses: vec![format!("127.0.0.1:{}", 2000 + i)],
                            capacity_bytes: 1 << 40,
                            stake: 1,
                        },
                    )
                })
                .collect(),
        };
        let genesis_block = Block::genesis("bench");
        let shared = Shared::open(
            &genesis,
            &genesis_block,
            Box::new(MemStore::default()),
            cairn_chain::mempool::Mempool::new(1 << 16, 1 << 30),
            Arc::new(SigCache::new(1 << 16)),
        )
        .expect("genesis opens");
        Self {
            shared,
            owner,
            nonce: 0,
            parent: genesis_block,
            storage,
        }
    }

    fn tx(&mut self, kind: TxKind) -> Bytes {
        self.nonce += 1;
        let height = self.parent.height + 1;
        Bytes::from(
            Tx {
                signer: self.owner.verifying_key().to_bytes(),
                nonce: self.nonce,
                valid_until: height + 100,
                kind,
            }
            .sign(&self.owner)
            .encode(),
        )
    }

    fn put(&mut self, key: String) -> Bytes {
        let manifest = ObjectManifest {
            size_bytes: 4096,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            content_type: "application/octet-stream".into(),
            modified_ms: T0_MS,
            metadata: vec![],
            placement: self.storage.clone(),
            segments: vec![Segment {
                len_bytes: 4096,
                fragment_roots: (0..12u8).map(|i| [i; 32]).collect(),
                stored_mask: 0xfff,
            }],
        };
        self.tx(TxKind::PutObject {
            owner: self.owner.verifying_key().to_bytes(),
            bucket: BUCKET.into(),
            key,
            manifest,
            if_absent: false,
        })
    }

    /// Applies a block of `txs`; returns how long `apply_finalized` took.
    fn apply(&mut self, txs: Vec<Bytes>) -> Duration {
        let height = self.parent.height + 1;
        let block = Block::new(self.parent.digest(), height, T0_MS + height, txs);
        let t0 = Instant::now();
        let done = self.shared.apply_finalized(&block).expect("block applies");
        let took = t0.elapsed();
        assert!(
            done.receipts.iter().all(|r| r.is_ok()),
            "a bench transaction was rejected at height {height}: {:?}",
            done.receipts.iter().find(|r| r.is_err())
        );
        self.parent = block;
        took
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Applies `blocks` measured blocks; returns (p50, p99, max) in ms.
fn measure(chain: &mut Chain, blocks: usize, round: &str) -> (f64, f64, f64) {
    let mut took = Vec::with_capacity(blocks);
    for b in 0..blocks {
        let txs = (0..PUTS_PER_MEASURED_BLOCK)
            .map(|i| chain.put(format!("m/{round}/{b:05}/{i:02}")))
            .collect();
        took.push(chain.apply(txs));
    }
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.99)),
        ms(*took.last().expect("at least one block")),
    )
}

fn main() {
    let keys = env_usize("CAIRN_BENCH_KEYS", 100_000);
    let blocks = env_usize("CAIRN_BENCH_BLOCKS", 200).max(1);
    let mut chain = Chain::new();
    let owner = chain.owner.verifying_key().to_bytes();
    let create = chain.tx(TxKind::CreateBucket {
        owner,
        bucket: BUCKET.into(),
        acl: Acl::Private,
        data_shards: 4,
        parity_shards: 8,
    });
    chain.apply(vec![create]);
    let t0 = Instant::now();
    let mut written = 0;
    while written < keys {
        let n = TXS_PER_BLOCK.min(keys - written);
        let txs = (written..written + n)
            .map(|i| chain.put(format!("d/{i:07}")))
            .collect();
        chain.apply(txs);
        written += n;
    }
    println!("filled {keys} keys in {:.1} s", t0.elapsed().as_secs_f64());
    let listing =
        |s: &cairn_ledger::State| cairn_gateway::s3::listing_counts(s, BUCKET, "", Some("/"), 1000);
    let (k, p, _) = chain.shared.with_state(listing);
    assert_eq!((k, p), (0, 1), "expected the one common prefix d/");
    // Warm up allocator and caches, then the reference run.
    measure(&mut chain, blocks.min(20), "warm");
    let alone = measure(&mut chain, blocks, "alone");

    let stop = Arc::new(AtomicBool::new(false));
    let listings = Arc::new(AtomicU64::new(0));
    let lister = {
        let (shared, stop, listings) = (chain.shared.clone(), stop.clone(), listings.clone());
        std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let (_, prefixes, _) = shared.with_state(listing);
                assert_eq!(prefixes, 2, "expected the common prefixes d/ and m/");
                longest = longest.max(t0.elapsed());
                listings.fetch_add(1, Ordering::Relaxed);
            }
            longest
        })
    };
    let busy = measure(&mut chain, blocks, "busy");
    stop.store(true, Ordering::Relaxed);
    let longest_listing = lister.join().expect("lister thread");
    let listings = listings.load(Ordering::Relaxed);
    println!(
        "apply_under_listing: {keys} keys, {blocks} blocks of {PUTS_PER_MEASURED_BLOCK} PutObjects"
    );
    println!(
        "  alone          p50 {:8.3} ms  p99 {:8.3} ms  max {:8.3} ms",
        alone.0, alone.1, alone.2
    );
    println!(
        "  with listings  p50 {:8.3} ms  p99 {:8.3} ms  max {:8.3} ms  ({listings} listings, longest {:.1} ms)",
        busy.0,
        busy.1,
        busy.2,
        longest_listing.as_secs_f64() * 1e3
    );
    println!(
        "  ratio (with / alone)  p50 {:.2}x  p99 {:.2}x  max {:.2}x",
        busy.0 / alone.0,
        busy.1 / alone.1,
        busy.2 / alone.2
    );
}
