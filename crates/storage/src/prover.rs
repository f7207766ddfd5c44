//! The storage node's audit workers: the prover answers this node's challenges in each open
//! round, and the scrubber re-verifies every fragment the node holds and reports losses.
//!
//! Contract: both read only finalized snapshots ([`AuditChain::snapshot`]) and act only by
//! submitting transactions ([`AuditChain::submit`]). The prover answers from verified reads
//! only: a fragment that is missing or fails its root is never answered (that challenge is
//! missed, not failed) and is reported with `FragmentLost` instead, which is what an honest
//! node that lost data does. Both are generic over commonware's [`Clock`], so they run in the
//! deterministic simulator too.
//!
//! Limits: at most [`MAX_OUTSTANDING_PROOFS`] proof transactions in flight; the scrubber reads
//! at most `bytes_per_sec` on average and at most [`MAX_LOST_REPORTS_PER_PASS`] reports per
//! pass.

use crate::{merkle::MerkleTree, FragmentStore, StoreError};
use cairn_ledger::{
    audit::{self, AuditProof, Challenge, FragmentLost, LeafProof, Outcome, MAX_LEAVES_PER_PROOF},
    merkle::LEAF_SIZE_BYTES,
    Hash, NodeId, State, TxKind,
};
use commonware_runtime::{
    telemetry::metrics::{raw::Histogram, Registered},
    Clock, Metrics,
};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

/// How often the prover looks for new challenges.
pub const PROVER_POLL_MS: u64 = 500;
/// Most audit proof transactions of this node in flight at once.
pub const MAX_OUTSTANDING_PROOFS: usize = 16;
/// Blocks a proof transaction stays valid (it cannot apply after the deadline anyway).
pub const PROOF_VALIDITY_BLOCKS: u64 = 60;
/// Most `FragmentLost` reports the scrubber sends per pass (the rest wait for the next).
pub const MAX_LOST_REPORTS_PER_PASS: usize = 256;
/// The scrubber's pause between passes.
pub const SCRUB_IDLE_MS: u64 = 10_000;
/// How often the scrubber checks the fragments gateways reported corrupt.
pub const SUSPECT_POLL_MS: u64 = 1_000;
/// Most reported roots waiting for the scrubber (more are dropped: the next pass finds them).
pub const MAX_SUSPECTS: usize = 1_024;

/// Roots that gateways found corrupt when they read them, for the scrubber to check first.
#[derive(Debug, Default)]
pub struct Suspects(std::sync::Mutex<BTreeSet<Hash>>);

impl Suspects {
    /// Queues `root` (dropped when [`MAX_SUSPECTS`] are already waiting).
    pub fn push(&self, root: Hash) {
        if let Ok(mut s) = self.0.lock() {
            if s.len() < MAX_SUSPECTS {
                s.insert(root);
            }
        }
    }

    /// Takes every queued root.
    pub fn take(&self) -> BTreeSet<Hash> {
        self.0
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// What the audit workers need from the node: snapshots of finalized state and a way to
/// sign (with this node's operator key, at a free nonce) and submit a transaction.
pub trait AuditChain: Send + Sync + 'static {
    /// The latest finalized state.
    fn snapshot(&self) -> Arc<State>;
    /// Signs and submits `kind`, valid for `validity_blocks`; returns its hash.
    fn submit(&self, kind: TxKind, validity_blocks: u64) -> Result<Hash, String>;
    /// True while `hash` waits in the mempool (neither finalized nor dropped).
    fn pending(&self, hash: &Hash) -> bool;
}

/// Counters the workers keep for `/metrics` and `cairn audit status`.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Proof transactions submitted.
    pub proofs_submitted: AtomicU64,
    /// Leaves proved (submitted).
    pub leaves_proved: AtomicU64,
    /// Microseconds spent building proofs (reads, trees, paths).
    pub prove_us: AtomicU64,
    /// Bytes of leaves and paths submitted.
    pub proof_bytes: AtomicU64,
    /// Fragments the scrubber verified.
    pub scrubbed_fragments: AtomicU64,
    /// Bytes the scrubber read.
    pub scrubbed_bytes: AtomicU64,
    /// Fragments found missing or corrupt (by either worker).
    pub lost_found: AtomicU64,
    /// `FragmentLost` transactions submitted.
    pub lost_reported: AtomicU64,
}

impl AuditStats {
    /// The counters in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let rows = [
            ("cairn_audit_proofs_submitted_total", &self.proofs_submitted),
            ("cairn_audit_leaves_proved_total", &self.leaves_proved),
            ("cairn_audit_prove_microseconds_total", &self.prove_us),
            ("cairn_audit_proof_bytes_total", &self.proof_bytes),
            ("cairn_scrub_fragments_total", &self.scrubbed_fragments),
            ("cairn_scrub_bytes_total", &self.scrubbed_bytes),
            ("cairn_fragments_lost_found_total", &self.lost_found),
            ("cairn_fragments_lost_reported_total", &self.lost_reported),
        ];
        rows.iter()
            .map(|(name, v)| {
                format!(
                    "# TYPE {name} counter\n{name} {}\n",
                    v.load(Ordering::Relaxed)
                )
            })
            .collect()
    }
}

/// Histograms the prover registers on its runtime context (exported on `/metrics`).
#[derive(Clone)]
pub struct ProverHistograms {
    prove_ms: Registered<Histogram>,
    proof_bytes: Registered<Histogram>,
}

impl ProverHistograms {
    /// Registers `audit_prove_ms` (per poll that built proofs) and `audit_proof_bytes` (per
    /// proof transaction) on `ctx`.
    pub fn register<M: Metrics>(ctx: &M) -> Self {
        let ms = [
            0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 5_000.0,
        ];
        let bytes = [1_024.0, 4_096.0, 16_384.0, 32_768.0, 40_000.0, 65_536.0];
        Self {
            prove_ms: ctx.register(
                "audit_prove_ms",
                "Milliseconds a prover poll spent reading, verifying and proving challenged leaves",
                Histogram::new(ms),
            ),
            proof_bytes: ctx.register(
                "audit_proof_bytes",
                "Bytes of leaves and paths in one audit proof transaction",
                Histogram::new(bytes),
            ),
        }
    }
}

/// One challenged fragment's fate on this node.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The leaf and its path.
    Proof(LeafProof),
    /// The fragment is gone or corrupt: report it, do not answer.
    Lost(Challenge),
    /// The disk could not be read (not evidence of loss): try again next poll.
    Retry,
}

/// The answer to challenge `index` from the fragment in `store`: verified before use.
pub fn answer(store: &FragmentStore, index: u8, c: &Challenge) -> Answer {
    match store.get(&c.root) {
        Ok(data) => {
            let tree = MerkleTree::build(&data);
            let start = (c.leaf as usize).saturating_mul(LEAF_SIZE_BYTES);
            match (tree.prove(c.leaf), data.get(start..)) {
                (Some(path), Some(rest)) => Answer::Proof(LeafProof {
                    challenge: index,
                    data: rest[..rest.len().min(LEAF_SIZE_BYTES)].to_vec(),
                    path: path.siblings,
                }),
                // The stored bytes verify but do not have that leaf: the manifest's length and
                // the file disagree, which only a corrupt record explains.
                _ => Answer::Lost(c.clone()),
            }
        }
        Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => Answer::Lost(c.clone()),
        Err(e) => {
            tracing::warn!("audit: cannot read fragment for challenge {index}: {e}");
            Answer::Retry
        }
    }
}

fn lost_tx(node: NodeId, c: &Challenge) -> TxKind {
    TxKind::FragmentLost(FragmentLost {
        node,
        bucket: c.bucket.clone(),
        key: c.key.clone(),
        segment: c.segment,
        fragment: c.fragment,
    })
}

/// The prover's memory between polls: which challenges of which round are in flight.
#[derive(Default)]
pub struct Prover {
    round: Option<u64>,
    /// Challenge indices answered by a transaction still pending.
    in_flight: BTreeMap<u8, Hash>,
    /// Fragments already reported lost (by key, segment, slot), this round.
    reported: BTreeSet<(String, String, u32, u8)>,
}

impl Prover {
    /// One poll: answers every open challenge of `node` not already in flight, in proof
    /// transactions of at most [`MAX_LEAVES_PER_PROOF`] leaves, and reports lost fragments.
    pub fn poll(
        &mut self,
        chain: &dyn AuditChain,
        node: &NodeId,
        store: &FragmentStore,
        stats: &AuditStats,
        histograms: Option<&ProverHistograms>,
    ) {
        let state = chain.snapshot();
        let Some(nr) = state.audit_challenges(node) else {
            return;
        };
        if self.round != Some(nr.round) {
            *self = Self {
                round: Some(nr.round),
                ..Self::default()
            };
        }
        self.in_flight.retain(|_, h| chain.pending(h));
        let started = std::time::Instant::now();
        let mut leaves = Vec::new();
        for (i, (c, o)) in nr.challenges.iter().zip(&nr.outcomes).enumerate() {
            let i = i as u8;
            if *o != Outcome::Open || self.in_flight.contains_key(&i) {
                continue;
            }
            match answer(store, i, c) {
                Answer::Proof(p) => leaves.push(p),
                Answer::Retry => {}
                Answer::Lost(c) => {
                    let k = (c.bucket.clone(), c.key.clone(), c.segment, c.fragment);
                    if self.reported.insert(k) {
                        stats.lost_found.fetch_add(1, Ordering::Relaxed);
                        match chain.submit(lost_tx(*node, &c), PROOF_VALIDITY_BLOCKS) {
                            Ok(_) => {
                                stats.lost_reported.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => tracing::warn!("audit: cannot report a lost fragment: {e}"),
                        }
                    }
                }
            }
        }
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.prove_us.fetch_add(elapsed_us, Ordering::Relaxed);
        if let (Some(h), false) = (histograms, leaves.is_empty()) {
            h.prove_ms.metric().observe(elapsed_us as f64 / 1e3);
        }
        for chunk in leaves.chunks(MAX_LEAVES_PER_PROOF) {
            if self.in_flight.len() >= MAX_OUTSTANDING_PROOFS {
                break;
            }
            let proof = AuditProof {
                node: *node,
                round: nr.round,
                leaves: chunk.to_vec(),
            };
            let bytes = proof.proof_bytes();
            match chain.submit(TxKind::AuditProof(proof), PROOF_VALIDITY_BLOCKS) {
                Ok(hash) => {
                    for l in chunk {
                        self.in_flight.insert(l.challenge, hash);
                    }
                    stats.proofs_submitted.fetch_add(1, Ordering::Relaxed);
                    stats
                        .leaves_proved
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    stats.proof_bytes.fetch_add(bytes, Ordering::Relaxed);
                    if let Some(h) = histograms {
                        h.proof_bytes.metric().observe(bytes as f64);
                    }
                }
                Err(e) => tracing::warn!("audit: cannot submit a proof: {e}"),
            }
        }
    }
}

/// Runs the prover for `node` forever (the node wraps it in a named worker).
pub async fn run_prover<C: Clock + Metrics>(
    clock: C,
    chain: Arc<dyn AuditChain>,
    node: NodeId,
    store: Arc<FragmentStore>,
    stats: Arc<AuditStats>,
) {
    let histograms = ProverHistograms::register(&clock);
    let mut prover = Prover::default();
    loop {
        clock.sleep(Duration::from_millis(PROVER_POLL_MS)).await;
        prover.poll(&*chain, &node, &store, &stats, Some(&histograms));
    }
}

/// One scrub pass over every fragment the manifests place on `node`: verifies each, reports
/// the missing or corrupt ones (at most [`MAX_LOST_REPORTS_PER_PASS`]), and sleeps so reads
/// average at most `bytes_per_sec`. Returns how many were reported.
pub async fn scrub_pass<C: Clock>(
    clock: &C,
    chain: &dyn AuditChain,
    node: &NodeId,
    store: &FragmentStore,
    stats: &AuditStats,
    bytes_per_sec: u64,
) -> usize {
    let state = chain.snapshot();
    let mut reported = 0;
    for c in audit::held_fragments(&state, node) {
        let len = store.size_of(&c.root).unwrap_or(0);
        let lost = match store.get(&c.root) {
            Ok(_) => false,
            Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) => true,
            Err(e) => {
                tracing::warn!("scrub: cannot read a fragment: {e}");
                false
            }
        };
        stats.scrubbed_fragments.fetch_add(1, Ordering::Relaxed);
        stats.scrubbed_bytes.fetch_add(len, Ordering::Relaxed);
        if lost && reported < MAX_LOST_REPORTS_PER_PASS {
            stats.lost_found.fetch_add(1, Ordering::Relaxed);
            match chain.submit(lost_tx(*node, &c), PROOF_VALIDITY_BLOCKS) {
                Ok(_) => {
                    reported += 1;
                    stats.lost_reported.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("scrub: cannot report a lost fragment: {e}"),
            }
        }
        // 0 = unpaced.
        if let Some(ms) = len.saturating_mul(1_000).checked_div(bytes_per_sec) {
            if ms > 0 {
                clock.sleep(Duration::from_millis(ms)).await;
            }
        }
    }
    reported
}

/// Verifies the fragments of `node` whose roots gateways reported (`suspects`) and reports
/// the missing or corrupt ones; returns how many were reported.
pub fn check_suspects(
    chain: &dyn AuditChain,
    node: &NodeId,
    store: &FragmentStore,
    stats: &AuditStats,
    suspects: &Suspects,
) -> usize {
    let roots = suspects.take();
    if roots.is_empty() {
        return 0;
    }
    let state = chain.snapshot();
    let mut reported = 0;
    for c in audit::held_fragments(&state, node) {
        if !roots.contains(&c.root) {
            continue;
        }
        if let Err(StoreError::NotFound { .. } | StoreError::Corrupt { .. }) = store.get(&c.root) {
            stats.lost_found.fetch_add(1, Ordering::Relaxed);
            if chain
                .submit(lost_tx(*node, &c), PROOF_VALIDITY_BLOCKS)
                .is_ok()
            {
                reported += 1;
                stats.lost_reported.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    reported
}

/// Runs the scrubber for `node` forever: the reported suspects every [`SUSPECT_POLL_MS`], and a
/// full pass [`SCRUB_IDLE_MS`] after the previous one ended.
pub async fn run_scrubber<C: Clock>(
    clock: C,
    chain: Arc<dyn AuditChain>,
    node: NodeId,
    store: Arc<FragmentStore>,
    stats: Arc<AuditStats>,
    suspects: Arc<Suspects>,
    bytes_per_sec: u64,
) {
    let mut last_pass = clock.current();
    loop {
        clock.sleep(Duration::from_millis(SUSPECT_POLL_MS)).await;
        let n = check_suspects(&*chain, &node, &store, &stats, &suspects);
        if n > 0 {
            tracing::warn!(
                reported = n,
                "scrub: reported fragments gateways found corrupt"
            );
        }
        let idle = clock
            .current()
            .duration_since(last_pass)
            .unwrap_or_default();
        if idle < Duration::from_millis(SCRUB_IDLE_MS) {
            continue;
        }
        let n = scrub_pass(&clock, &*chain, &node, &store, &stats, bytes_per_sec).await;
        if n > 0 {
            tracing::warn!(reported = n, "scrub: reported lost fragments");
        }
        last_pass = clock.current();
    }
}

#[cfg(test)]
mod tests;
