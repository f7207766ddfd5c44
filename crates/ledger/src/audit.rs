//! Proofs of storage: every storage node keeps proving, publicly, that it still holds the
//! fragments the ledger says it holds (see `docs/AUDIT.md` for the scheme, the detection
//! math and the limits).
//!
//! Contract (all pure, recomputable by anyone from the ledger):
//! - Rounds: round `r` opens at the end of block `r × round_blocks` and is judged at the end
//!   of block `r × round_blocks + deadline_blocks`. A round's seed is [`round_seed`] over the
//!   state root after the last block of the previous round, so it is fixed by finalized data
//!   before the round begins and nobody can choose it afterwards. (The committee-rotation
//!   issue will swap the source for the threshold VRF beacon behind the same function.)
//! - Challenges ([`derive_challenges`]): for every admitted, non-faulty storage node, up to
//!   `challenges_per_node` distinct fragments drawn uniformly without replacement among the
//!   fragments the manifests record as stored on it, and one uniform leaf of each.
//! - Proofs ([`AuditProof`], at most [`MAX_LEAVES_PER_PROOF`] leaves per transaction) are
//!   verified against the fragment roots recorded in the challenge; a wrong leaf or path marks
//!   that challenge failed, it is not a rejected transaction, so a bad proof is evidence.
//! - Verdicts ([`judge`]): pass (every challenge proved), fail (any proof wrong) or missed
//!   (something unanswered by the deadline), with credit, escalating stake penalties and
//!   `faulty` after `faulty_after_strikes` strikes.
//!
//! Limits: proof bytes per transaction are bounded by [`MAX_LEAVES_PER_PROOF`] leaves of at
//! most [`merkle::LEAF_SIZE_BYTES`] and [`MAX_PATH_HASHES`] path hashes each; challenge
//! derivation walks every stored fragment twice per round (O(fragments), documented in
//! `docs/AUDIT.md`).

use crate::{
    codec::{Reader, Writer},
    merkle::{self, LEAF_SIZE_BYTES},
    objects::fragment_size_bytes,
    registry::{self, Role},
    state::State,
    Hash, NodeId, TxError,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most leaf proofs in one `AuditProof` transaction (8 × ~4.5 KiB fits the 64 KiB tx cap).
pub const MAX_LEAVES_PER_PROOF: usize = 8;
/// Most sibling hashes in one leaf's path (a 32 MiB fragment has 8,192 leaves: 13 levels).
pub const MAX_PATH_HASHES: usize = 24;
/// Most challenges per node per round (outcomes fit a u64 mask).
pub const MAX_CHALLENGES_PER_NODE: u8 = 64;
/// Highest credit a node can hold.
pub const CREDIT_MAX: u32 = 1_000;
/// Credit of a node before its first round.
pub const CREDIT_START: u32 = 500;

/// Audit parameters, fixed at genesis (validated by [`AuditParams::validate`]); a key left
/// out of the genesis `[audit]` table takes its default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditParams {
    /// Blocks per round (`AUDIT_ROUND_BLOCKS`).
    pub round_blocks: u64,
    /// Blocks after a round opens by which its proofs must be finalized (D).
    pub deadline_blocks: u64,
    /// Challenged fragments per node per round (S; see `docs/AUDIT.md` for why 16).
    pub challenges_per_node: u8,
    /// Strikes at which a node becomes faulty (a miss adds 1, a fail 2; a pass clears them).
    pub faulty_after_strikes: u32,
}

impl Default for AuditParams {
    /// The devnet's: a round about every minute (the devnet finalizes 4–8 blocks a second),
    /// half a round to answer, S = 16, faulty after three failed or six missed rounds in a row.
    fn default() -> Self {
        Self {
            round_blocks: 240,
            deadline_blocks: 120,
            challenges_per_node: 16,
            faulty_after_strikes: 6,
        }
    }
}

impl AuditParams {
    /// Refuses parameters that would make rounds overlap or the masks overflow.
    pub fn validate(&self) -> Result<(), TxError> {
        let bad = |reason: String| TxError::InvalidField {
            field: "audit",
            reason,
        };
        if !(2..=1_000_000).contains(&self.round_blocks) {
            return Err(bad(format!(
                "round_blocks is {}, must be 2..=1000000",
                self.round_blocks
            )));
        }
        if self.deadline_blocks == 0 || self.deadline_blocks >= self.round_blocks {
            return Err(bad(format!(
                "deadline_blocks is {}, must be 1..round_blocks ({})",
                self.deadline_blocks, self.round_blocks
            )));
        }
        if self.challenges_per_node == 0 || self.challenges_per_node > MAX_CHALLENGES_PER_NODE {
            return Err(bad(format!(
                "challenges_per_node is {}, must be 1..={MAX_CHALLENGES_PER_NODE}",
                self.challenges_per_node
            )));
        }
        if !(1..=1_000).contains(&self.faulty_after_strikes) {
            return Err(bad(format!(
                "faulty_after_strikes is {}, must be 1..=1000",
                self.faulty_after_strikes
            )));
        }
        Ok(())
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.round_blocks);
        w.u64(self.deadline_blocks);
        w.u8(self.challenges_per_node);
        w.u64(u64::from(self.faulty_after_strikes));
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let p = Self {
            round_blocks: r.u64()?,
            deadline_blocks: r.u64()?,
            challenges_per_node: r.u8()?,
            faulty_after_strikes: u32::try_from(r.u64()?)
                .map_err(|_| TxError::Malformed { reason: "strikes" })?,
        };
        p.validate()?;
        Ok(p)
    }
}

/// The round in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    /// Round number (its opening height / `round_blocks`).
    pub number: u64,
    /// Height at whose end it opened.
    pub opened_height: u64,
    /// Its seed ([`round_seed`]).
    pub seed: Hash,
    /// Judged at its deadline (kept until the next round opens, so late proofs are named).
    pub judged: bool,
}

/// One challenged leaf: which fragment, which leaf, and what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Challenge {
    /// Bucket of the object.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Segment index.
    pub segment: u32,
    /// Fragment index within the segment (the placement slot).
    pub fragment: u8,
    /// Leaf index within the fragment.
    pub leaf: u64,
    /// The fragment's Merkle root from the manifest.
    pub root: Hash,
    /// The fragment's length, to which the root also commits.
    pub fragment_len: u64,
}

/// Where one challenge stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Not answered yet.
    Open,
    /// A valid leaf and path were finalized.
    Proved,
    /// A leaf or path that does not match the root was finalized.
    Failed,
}

/// One node's challenges in the open round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRound {
    /// Round number.
    pub round: u64,
    /// The challenges, in derivation order.
    pub challenges: Vec<Challenge>,
    /// Outcome of challenge i.
    pub outcomes: Vec<Outcome>,
    /// Bytes of leaf proofs finalized for this round so far.
    pub proof_bytes: u64,
}

/// A round's verdict on one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every challenge proved.
    Pass,
    /// At least one proof was wrong.
    Fail,
    /// Something was left unanswered by the deadline (and nothing was wrong).
    Missed,
}

/// A node's audit history and standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Rounds judged.
    pub rounds: u64,
    /// Passed rounds.
    pub passes: u64,
    /// Failed rounds.
    pub fails: u64,
    /// Missed rounds.
    pub misses: u64,
    /// Credit, 0..=[`CREDIT_MAX`].
    pub credit: u32,
    /// Strikes since the last pass.
    pub strikes: u32,
    /// Marked faulty: no longer challenged or placed on; its fragments are repair work.
    pub faulty: bool,
    /// Proof bytes of its last judged round.
    pub last_proof_bytes: u64,
    /// Stake taken by penalties so far.
    pub slashed_total: u64,
    /// Fragments it reported lost (`FragmentLost`).
    pub lost_reported: u64,
}

impl Default for AuditRecord {
    fn default() -> Self {
        Self {
            rounds: 0,
            passes: 0,
            fails: 0,
            misses: 0,
            credit: CREDIT_START,
            strikes: 0,
            faulty: false,
            last_proof_bytes: 0,
            slashed_total: 0,
            lost_reported: 0,
        }
    }
}

/// One leaf and its Merkle path, answering challenge `challenge` of the node's round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafProof {
    /// Index into the node's challenges.
    pub challenge: u8,
    /// The leaf's bytes.
    pub data: Vec<u8>,
    /// Sibling hashes, bottom-up ([`merkle::Proof`]).
    pub path: Vec<Hash>,
}

/// The body of an `AuditProof` transaction: some of `node`'s answers for `round`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditProof {
    /// The challenged node.
    pub node: NodeId,
    /// Round answered.
    pub round: u64,
    /// 1..=[`MAX_LEAVES_PER_PROOF`] answers, distinct challenges.
    pub leaves: Vec<LeafProof>,
}

/// The body of a `FragmentLost` transaction: `node` reports it no longer holds a fragment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentLost {
    /// The reporting node (must hold the fragment).
    pub node: NodeId,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Segment index.
    pub segment: u32,
    /// Fragment index (placement slot).
    pub fragment: u8,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl AuditProof {
    /// Bytes of leaf data and paths carried (what `proof_bytes` counts).
    pub fn proof_bytes(&self) -> u64 {
        self.leaves
            .iter()
            .map(|l| (l.data.len() + 32 * l.path.len()) as u64)
            .sum()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.fixed(&self.node);
        w.u64(self.round);
        w.len(self.leaves.len());
        for l in &self.leaves {
            w.u8(l.challenge);
            w.bytes(&l.data);
            w.len(l.path.len());
            for h in &l.path {
                w.fixed(h);
            }
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let node = r.fixed::<32>()?;
        let round = r.u64()?;
        let count = r.len(MAX_LEAVES_PER_PROOF)?;
        let mut leaves = Vec::with_capacity(count);
        for _ in 0..count {
            let challenge = r.u8()?;
            let data = r.bytes(LEAF_SIZE_BYTES)?.to_vec();
            let n = r.len(MAX_PATH_HASHES)?;
            let mut path = Vec::with_capacity(n);
            for _ in 0..n {
                path.push(r.fixed::<32>()?);
            }
            leaves.push(LeafProof {
                challenge,
                data,
                path,
            });
        }
        Ok(Self {
            node,
            round,
            leaves,
        })
    }

    /// Stateless checks: 1..=[`MAX_LEAVES_PER_PROOF`] leaves, distinct challenge indices below
    /// [`MAX_CHALLENGES_PER_NODE`], bounded leaves and paths.
    pub fn validate(&self) -> Result<(), TxError> {
        if self.leaves.is_empty() || self.leaves.len() > MAX_LEAVES_PER_PROOF {
            return Err(invalid(
                "leaves",
                format!(
                    "{} leaf proofs, must be 1..={MAX_LEAVES_PER_PROOF}",
                    self.leaves.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for l in &self.leaves {
            if l.challenge >= MAX_CHALLENGES_PER_NODE || !seen.insert(l.challenge) {
                return Err(invalid(
                    "leaves",
                    format!(
                        "challenge index {} is out of range or repeated",
                        l.challenge
                    ),
                ));
            }
            if l.data.len() > LEAF_SIZE_BYTES || l.path.len() > MAX_PATH_HASHES {
                return Err(invalid("leaves", "a leaf or path exceeds its bound"));
            }
        }
        Ok(())
    }
}

/// (bucket, key, segment, slot): where one fragment sits.
fn write_fragment_ref(w: &mut Writer, bucket: &str, key: &str, segment: u32, fragment: u8) {
    w.str(bucket);
    w.str(key);
    w.u64(u64::from(segment));
    w.u8(fragment);
}

fn read_fragment_ref(r: &mut Reader<'_>) -> Result<(String, String, u32, u8), TxError> {
    Ok((
        r.str(crate::objects::MAX_BUCKET_NAME_SIZE_BYTES)?,
        r.str(crate::objects::MAX_OBJECT_KEY_SIZE_BYTES)?,
        u32::try_from(r.u64()?).map_err(|_| TxError::Malformed {
            reason: "segment index",
        })?,
        r.u8()?,
    ))
}

impl FragmentLost {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.fixed(&self.node);
        write_fragment_ref(w, &self.bucket, &self.key, self.segment, self.fragment);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let node = r.fixed::<32>()?;
        let (bucket, key, segment, fragment) = read_fragment_ref(r)?;
        Ok(Self {
            node,
            bucket,
            key,
            segment,
            fragment,
        })
    }

    /// Stateless checks: a valid bucket name and object key.
    pub fn validate(&self) -> Result<(), TxError> {
        crate::objects::validate_bucket_name(&self.bucket)?;
        crate::objects::validate_object_key(&self.key)
    }
}

/// The seed of round `round`: BLAKE3 over a domain tag, the chain id, the round and the state
/// root after the last block of the previous round. The one seed source; the rotation issue
/// replaces it with the threshold VRF beacon.
pub fn round_seed(chain_id: &str, round: u64, prior_root: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn/audit/seed/v1\0");
    h.update(&(chain_id.len() as u64).to_le_bytes());
    h.update(chain_id.as_bytes());
    h.update(&round.to_le_bytes());
    h.update(prior_root);
    *h.finalize().as_bytes()
}

/// A uniform draw in `0..bound` (`bound` ≥ 1) named by (seed, node, what, i): 128 bits of
/// BLAKE3 reduced mod `bound`, so the bias is below 2^-64.
fn draw(seed: &Hash, node: &NodeId, what: u8, i: u64, bound: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(seed);
    h.update(node);
    h.update(&[what]);
    h.update(&i.to_le_bytes());
    let b = h.finalize();
    let mut x = [0u8; 16];
    x.copy_from_slice(&b.as_bytes()[..16]);
    (u128::from_le_bytes(x) % u128::from(bound.max(1))) as u64
}

/// `count` distinct ranks in `0..n`, uniformly (Floyd's algorithm on [`draw`]).
fn sample_ranks(seed: &Hash, node: &NodeId, n: u64, count: u64) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for j in n - count..n {
        let t = draw(seed, node, 0, j, j + 1);
        if !out.insert(t) {
            out.insert(j);
        }
    }
    out
}

/// Nodes that are audited: admitted storage nodes not marked faulty (healthy or not: a node
/// that is down still owes its proofs).
pub fn audited_nodes(state: &State) -> BTreeSet<NodeId> {
    state
        .nodes()
        .filter(|(id, n)| registry::has_role(n, Role::Storage) && !state.is_faulty(id))
        .map(|(id, _)| *id)
        .collect()
}

/// Every stored fragment of an audited node, in canonical order (object key, segment, slot):
/// calls `f(node, challenge-without-leaf)`.
fn for_each_fragment(
    state: &State,
    audited: &BTreeSet<NodeId>,
    mut f: impl FnMut(&NodeId, &dyn Fn() -> Challenge),
) {
    for (bucket, key, rec) in state.all_objects() {
        let k = state.bucket(bucket).map_or(1, |b| b.data_shards);
        let m = &rec.manifest;
        for (s, seg) in m.segments.iter().enumerate() {
            let len = fragment_size_bytes(seg.len_bytes, k);
            for (i, node) in m.placement.iter().enumerate().take(64) {
                if seg.stored_mask >> i & 1 == 0 || !audited.contains(node) {
                    continue;
                }
                let Some(root) = seg.fragment_roots.get(i) else {
                    continue;
                };
                f(node, &|| Challenge {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    segment: s as u32,
                    fragment: i as u8,
                    leaf: 0,
                    root: *root,
                    fragment_len: len,
                });
            }
        }
    }
}

/// Every fragment the manifests record as stored on `node`, in canonical order, each as a
/// challenge of its leaf 0 (what the scrubber walks and a `FragmentLost` names).
pub fn held_fragments(state: &State, node: &NodeId) -> Vec<Challenge> {
    let only = BTreeSet::from([*node]);
    let mut out = Vec::new();
    for_each_fragment(state, &only, |_, make| out.push(make()));
    out
}

/// The challenges of a round with `seed`: for every audited node holding fragments, up to
/// `per_node` distinct fragments uniformly without replacement, one uniform leaf each.
pub fn derive_challenges(
    state: &State,
    seed: &Hash,
    per_node: u8,
) -> BTreeMap<NodeId, Vec<Challenge>> {
    let audited = audited_nodes(state);
    let mut counts: BTreeMap<NodeId, u64> = BTreeMap::new();
    for_each_fragment(state, &audited, |node, _| {
        *counts.entry(*node).or_default() += 1;
    });
    let picks: BTreeMap<NodeId, BTreeSet<u64>> = counts
        .iter()
        .map(|(node, n)| {
            let count = (*n).min(u64::from(per_node));
            (*node, sample_ranks(seed, node, *n, count))
        })
        .collect();
    let mut rank: BTreeMap<NodeId, u64> = BTreeMap::new();
    let mut out: BTreeMap<NodeId, Vec<Challenge>> = BTreeMap::new();
    for_each_fragment(state, &audited, |node, make| {
        let r = rank.entry(*node).or_default();
        if picks.get(node).is_some_and(|p| p.contains(r)) {
            let mut c = make();
            c.leaf = draw(seed, node, 1, *r, merkle::leaf_count(c.fragment_len));
            out.entry(*node).or_default().push(c);
        }
        *r += 1;
    });
    out
}

/// True if `proof` is the challenged leaf with a valid path to the challenge's root.
pub fn verify_leaf(challenge: &Challenge, proof: &LeafProof) -> bool {
    merkle::Proof {
        siblings: proof.path.clone(),
    }
    .verify(
        &challenge.root,
        challenge.fragment_len,
        challenge.leaf,
        &proof.data,
    )
}

/// The verdict a round's outcomes give.
pub fn verdict(outcomes: &[Outcome]) -> Verdict {
    if outcomes.contains(&Outcome::Failed) {
        Verdict::Fail
    } else if outcomes.iter().all(|o| *o == Outcome::Proved) {
        Verdict::Pass
    } else {
        Verdict::Missed
    }
}

/// Percent of stake a penalty takes at `strikes` (after the round's strikes are added): none
/// for a first miss, 5% at 2–3 strikes, 15% from 4 on. A fail adds two strikes, so wrong data
/// costs stake at once while one missed round (a reboot) does not.
pub fn penalty_percent(strikes: u32) -> u64 {
    match strikes {
        0 | 1 => 0,
        2 | 3 => 5,
        _ => 15,
    }
}

/// The record after `verdict` for a node with `stake`; returns it and the stake taken.
pub fn judge(
    rec: &AuditRecord,
    verdict: Verdict,
    stake: u64,
    proof_bytes: u64,
    params: &AuditParams,
) -> (AuditRecord, u64) {
    let mut r = rec.clone();
    r.rounds += 1;
    r.last_proof_bytes = proof_bytes;
    let mut slashed = 0;
    match verdict {
        Verdict::Pass => {
            r.passes += 1;
            r.credit = (r.credit + 1).min(CREDIT_MAX);
            r.strikes = 0;
        }
        Verdict::Missed | Verdict::Fail => {
            let (add, per_strike): (u32, u32) = if verdict == Verdict::Fail {
                r.fails += 1;
                (2, 50)
            } else {
                r.misses += 1;
                (1, 10)
            };
            r.strikes = r.strikes.saturating_add(add);
            r.credit = r
                .credit
                .saturating_sub(per_strike.saturating_mul(r.strikes));
            slashed = stake / 100 * penalty_percent(r.strikes)
                + stake % 100 * penalty_percent(r.strikes) / 100;
            r.slashed_total = r.slashed_total.saturating_add(slashed);
            if r.strikes >= params.faulty_after_strikes {
                r.faulty = true;
            }
        }
    }
    (r, slashed)
}

/// Credit a self-reported lost fragment costs: less than being caught (a miss costs 10 per
/// strike, a fail 50) so honest reporting pays, but not free, so a node cannot shed data (and
/// hand the network its repair) at no cost. No strike and no stake.
pub const LOST_FRAGMENT_CREDIT: u32 = 1;

/// The record after its node reported one lost fragment.
pub fn charge_loss(rec: &AuditRecord) -> AuditRecord {
    AuditRecord {
        lost_reported: rec.lost_reported.saturating_add(1),
        credit: rec.credit.saturating_sub(LOST_FRAGMENT_CREDIT),
        ..rec.clone()
    }
}

/// Probability that `s` challenges drawn without replacement among `n` fragments hit at least
/// one of `lost` (hypergeometric): 1 - C(n - lost, s) / C(n, s). For docs, the CLI and tests;
/// never used by a rule (floating point).
pub fn detection_probability(n: u64, lost: u64, s: u64) -> f64 {
    if lost == 0 || n == 0 {
        return 0.0;
    }
    let s = s.min(n);
    let mut miss = 1.0f64;
    for i in 0..s {
        let good = n - lost;
        if good < i + 1 {
            return 1.0;
        }
        miss *= (good - i) as f64 / (n - i) as f64;
    }
    1.0 - miss
}

pub(crate) fn write_record(w: &mut Writer, r: &AuditRecord) {
    for v in [r.rounds, r.passes, r.fails, r.misses] {
        w.u64(v);
    }
    w.u64(u64::from(r.credit));
    w.u64(u64::from(r.strikes));
    w.bool(r.faulty);
    w.u64(r.last_proof_bytes);
    w.u64(r.slashed_total);
    w.u64(r.lost_reported);
}

pub(crate) fn read_record(r: &mut Reader<'_>) -> Result<AuditRecord, TxError> {
    let small = |r: &mut Reader<'_>, what| {
        u32::try_from(r.u64()?).map_err(|_| TxError::Malformed { reason: what })
    };
    let rec = AuditRecord {
        rounds: r.u64()?,
        passes: r.u64()?,
        fails: r.u64()?,
        misses: r.u64()?,
        credit: small(r, "credit")?,
        strikes: small(r, "strikes")?,
        faulty: r.bool()?,
        last_proof_bytes: r.u64()?,
        slashed_total: r.u64()?,
        lost_reported: r.u64()?,
    };
    if rec.credit > CREDIT_MAX {
        return Err(TxError::Malformed {
            reason: "credit above its maximum",
        });
    }
    Ok(rec)
}

pub(crate) fn write_round(w: &mut Writer, nr: &NodeRound) {
    w.u64(nr.round);
    w.u64(nr.proof_bytes);
    w.len(nr.challenges.len());
    for (c, o) in nr.challenges.iter().zip(&nr.outcomes) {
        write_fragment_ref(w, &c.bucket, &c.key, c.segment, c.fragment);
        w.u64(c.leaf);
        w.fixed(&c.root);
        w.u64(c.fragment_len);
        w.u8(match o {
            Outcome::Open => 0,
            Outcome::Proved => 1,
            Outcome::Failed => 2,
        });
    }
}

pub(crate) fn read_round(r: &mut Reader<'_>) -> Result<NodeRound, TxError> {
    let round = r.u64()?;
    let proof_bytes = r.u64()?;
    let n = r.len(usize::from(MAX_CHALLENGES_PER_NODE))?;
    let mut challenges = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    for _ in 0..n {
        let (bucket, key, segment, fragment) = read_fragment_ref(r)?;
        challenges.push(Challenge {
            bucket,
            key,
            segment,
            fragment,
            leaf: r.u64()?,
            root: r.fixed::<32>()?,
            fragment_len: r.u64()?,
        });
        outcomes.push(match r.u8()? {
            0 => Outcome::Open,
            1 => Outcome::Proved,
            2 => Outcome::Failed,
            _ => return Err(TxError::Malformed { reason: "outcome" }),
        });
    }
    Ok(NodeRound {
        round,
        challenges,
        outcomes,
        proof_bytes,
    })
}

#[cfg(test)]
mod tests;
