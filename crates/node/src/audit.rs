//! Wiring for audits: the chain adapter the storage crate's prover and scrubber use, their
//! start, and the admin API's `GET /audit` view that `cairn audit status` prints.

use crate::{
    config::{account_key, hex},
    tasks::{serving, TaskSet},
};
use cairn_chain::{Nonces, Shared, TxStatus};
use cairn_ledger::{audit, Hash, NodeId, State, TxKind};
use cairn_storage::prover::{self, AuditChain, AuditStats};
use commonware_runtime::Clock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Default scrub rate: a small share of one disk.
pub const DEFAULT_SCRUB_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;

/// Signs with this node's operator key at a free nonce (shared with heartbeats and planner).
pub struct NodeChain {
    shared: Arc<Shared>,
    nonces: Arc<Nonces>,
    key: ed25519_dalek::SigningKey,
}

impl NodeChain {
    /// An adapter over `shared` signing with `key` (the node key, also its operator account).
    pub fn new(
        shared: Arc<Shared>,
        nonces: Arc<Nonces>,
        key: &commonware_cryptography::ed25519::PrivateKey,
    ) -> Self {
        Self {
            shared,
            nonces,
            key: account_key(key),
        }
    }
}

impl AuditChain for NodeChain {
    fn snapshot(&self) -> Arc<State> {
        self.shared.snapshot()
    }

    fn submit(&self, kind: TxKind, validity_blocks: u64) -> Result<Hash, String> {
        self.shared
            .sign_and_submit(&self.key, &self.nonces, kind, validity_blocks)
            .map_err(|e| e.to_string())
    }

    fn pending(&self, hash: &Hash) -> bool {
        self.shared.tx_status(hash) == TxStatus::Pending
    }
}

/// Starts the prover and the scrubber of storage node `node`, each on its own clock (not
/// critical: a node whose prover stopped still serves, and its misses show in
/// `cairn audit status`).
pub fn start_workers<C: Clock + commonware_runtime::Metrics + Send + 'static>(
    tasks: &mut TaskSet,
    clocks: (C, C),
    chain: Arc<NodeChain>,
    node: NodeId,
    store: cairn_storage::FragmentStore,
    suspects: Arc<prover::Suspects>,
    scrub_bytes_per_sec: u64,
) -> Arc<AuditStats> {
    let stats = Arc::new(AuditStats::default());
    let store = Arc::new(store);
    tasks.start(serving(
        "prover",
        false,
        prover::run_prover(clocks.0, chain.clone(), node, store.clone(), stats.clone()),
    ));
    tasks.start(serving(
        "scrubber",
        false,
        prover::run_scrubber(
            clocks.1,
            chain,
            node,
            store,
            stats.clone(),
            suspects,
            scrub_bytes_per_sec,
        ),
    ));
    stats
}

/// `GET /audit`: the round in progress and every audited node's standing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditView {
    /// Height of the state read.
    pub height: u64,
    /// The parameters.
    pub params: audit::AuditParams,
    /// The last opened round, if any: (number, opened at, judged).
    pub round: Option<RoundView>,
    /// One row per node with an audit record or open challenges, by id.
    pub nodes: Vec<NodeAuditView>,
}

/// The last opened round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundView {
    /// Round number.
    pub number: u64,
    /// Height it opened at.
    pub opened_height: u64,
    /// Last height its proofs apply at.
    pub deadline_height: u64,
    /// Its seed (hex).
    pub seed: String,
    /// Judged already.
    pub judged: bool,
}

/// One node's audit standing: its ledger record, flattened, plus a summary state and the
/// open round's progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAuditView {
    /// Node id (hex).
    pub node_id: String,
    /// `ok`, `striking` or `faulty`.
    pub state: String,
    /// Its record (a fresh one before its first judged round).
    #[serde(flatten)]
    pub record: audit::AuditRecord,
    /// Challenges in the open round: (proved, open, failed).
    pub open_round: Option<(usize, usize, usize)>,
}

/// The view of `s`.
pub fn view(s: &State) -> AuditView {
    let p = *s.audit_params();
    let records: std::collections::BTreeMap<&NodeId, &audit::AuditRecord> =
        s.audit_records().collect();
    let challenged = audit::audited_nodes(s)
        .into_iter()
        .filter(|id| s.audit_challenges(id).is_some());
    let ids: std::collections::BTreeSet<NodeId> =
        records.keys().map(|id| **id).chain(challenged).collect();
    let nodes = ids
        .into_iter()
        .map(|id| {
            let record = records
                .get(&id)
                .map_or_else(Default::default, |r| (*r).clone());
            let open_round = s.audit_challenges(&id).map(|nr| {
                let count = |o: audit::Outcome| nr.outcomes.iter().filter(|x| **x == o).count();
                (
                    count(audit::Outcome::Proved),
                    count(audit::Outcome::Open),
                    count(audit::Outcome::Failed),
                )
            });
            let state = if record.faulty {
                "faulty"
            } else if record.strikes > 0 {
                "striking"
            } else {
                "ok"
            };
            NodeAuditView {
                node_id: hex(&id),
                state: state.into(),
                record,
                open_round,
            }
        })
        .collect();
    AuditView {
        height: s.height(),
        params: p,
        round: s.audit_round().map(|r| RoundView {
            number: r.number,
            opened_height: r.opened_height,
            deadline_height: r.opened_height + p.deadline_blocks,
            seed: hex(&r.seed),
            judged: r.judged,
        }),
        nodes,
    }
}

/// Node names by id (hex), asked of each admitted node's own admin API (names are not on the
/// ledger); a node that does not answer is left out.
fn names(endpoint: &str) -> std::collections::BTreeMap<String, String> {
    let Ok(nodes) = crate::client::get::<crate::api::Nodes>(endpoint, "/nodes") else {
        return Default::default();
    };
    nodes
        .nodes
        .iter()
        .filter(|n| n.admitted())
        .filter_map(|n| {
            let admin = n.endpoint(cairn_ledger::registry::Service::Admin)?;
            let s: crate::api::Status = crate::client::get(admin, "/status").ok()?;
            Some((n.node_id.clone(), s.name))
        })
        .collect()
}

/// `cairn audit status`: prints the view from `endpoint`.
pub fn print_status(endpoint: &str) -> Result<(), String> {
    let v: AuditView = crate::client::get(endpoint, "/audit")?;
    let names = names(endpoint);
    match &v.round {
        Some(r) => println!(
            "round {} opened at {} (deadline {}){}; height {}; S = {}, round = {} blocks",
            r.number,
            r.opened_height,
            r.deadline_height,
            if r.judged { ", judged" } else { "" },
            v.height,
            v.params.challenges_per_node,
            v.params.round_blocks
        ),
        None => println!(
            "no round opened yet (height {}, first round at {})",
            v.height, v.params.round_blocks
        ),
    }
    println!(
        "{:<16} {:<6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:<9} {:>9} {:>7}  open round (ok/open/bad)",
        "node", "name", "rounds", "pass", "fail", "miss", "lost", "credit", "strikes", "state",
        "proof B", "slashed"
    );
    for n in &v.nodes {
        println!(
            "{:<16} {:<6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:<9} {:>9} {:>7}  {}",
            &n.node_id[..16],
            names.get(&n.node_id).map_or("-", String::as_str),
            n.record.rounds,
            n.record.passes,
            n.record.fails,
            n.record.misses,
            n.record.lost_reported,
            n.record.credit,
            n.record.strikes,
            n.state,
            n.record.last_proof_bytes,
            n.record.slashed_total,
            n.open_round
                .map_or("-".into(), |(a, b, c)| format!("{a}/{b}/{c}"))
        );
    }
    Ok(())
}

/// What `cairn audit verify` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Rounds whose seed and challenges were recomputed and matched.
    pub rounds: u64,
    /// `AuditProof` transactions re-verified.
    pub proofs: u64,
    /// Leaves that verified.
    pub leaves_ok: u64,
    /// Leaves that did not (recorded as failed outcomes by the ledger too).
    pub leaves_bad: u64,
    /// Verdicts the replay produced in the range.
    pub verdicts: u64,
}

#[derive(Deserialize)]
struct RawBlock {
    timestamp_ms: u64,
    txs: Vec<String>,
}

/// `cairn audit verify`: replays the chain from `genesis` through height `to` from any node's
/// blocks (signatures and every rule re-checked here), and for heights `from..=to` recomputes
/// each round's seed and challenges and re-verifies every audit proof from ledger data alone.
/// Fails on any disagreement, including the node's own state root at `to` when it still has it.
pub fn verify(
    endpoint: &str,
    genesis: &cairn_ledger::Genesis,
    from: u64,
    to: u64,
) -> Result<Verified, String> {
    let mut state = State::genesis(genesis).map_err(|e| format!("genesis: {e}"))?;
    let mut out = Verified::default();
    for h in 1..=to {
        let raw: RawBlock = crate::client::get(endpoint, &format!("/blocks/{h}/txs"))?;
        let mut txs = Vec::with_capacity(raw.txs.len());
        for t in &raw.txs {
            let bytes = cairn_storage::protocol::unhex_vec(t)
                .ok_or_else(|| format!("block {h}: a transaction is not hex"))?;
            txs.push(
                cairn_ledger::SignedTx::decode_and_verify(&bytes)
                    .map_err(|e| format!("block {h}: {e}"))?,
            );
        }
        if h >= from {
            for tx in &txs {
                let TxKind::AuditProof(p) = &tx.tx.kind else {
                    continue;
                };
                let Some(nr) = state
                    .audit_challenges(&p.node)
                    .filter(|nr| nr.round == p.round)
                else {
                    continue;
                };
                out.proofs += 1;
                for l in &p.leaves {
                    match nr.challenges.get(usize::from(l.challenge)) {
                        Some(c) if audit::verify_leaf(c, l) => out.leaves_ok += 1,
                        _ => out.leaves_bad += 1,
                    }
                }
            }
        }
        let root_before = state.state_root();
        let outcome = state
            .apply_verified_block(h, raw.timestamp_ms, &txs)
            .map_err(|e| format!("block {h} does not apply: {e}"))?;
        if h < from {
            continue;
        }
        out.verdicts += outcome
            .events
            .iter()
            .filter(|e| matches!(e, cairn_ledger::Event::AuditVerdict { .. }))
            .count() as u64;
        if let Some(r) = state.audit_round().filter(|r| r.opened_height == h) {
            let seed = audit::round_seed(state.chain_id(), r.number, &root_before);
            if seed != r.seed {
                return Err(format!("round {}: the seed does not recompute", r.number));
            }
            let per = state.audit_params().challenges_per_node;
            for (node, list) in audit::derive_challenges(&state, &seed, per) {
                if state.audit_challenges(&node).map(|nr| &nr.challenges) != Some(&list) {
                    return Err(format!(
                        "round {}: {}'s challenges do not recompute",
                        r.number,
                        hex(&node)
                    ));
                }
            }
            out.rounds += 1;
        }
    }
    let block: serde_json::Value = crate::client::get(endpoint, &format!("/blocks/{to}"))?;
    if let Some(root) = block["state_root"].as_str() {
        if root != hex(&state.state_root()) {
            return Err(format!(
                "the replayed state root at {to} differs from the node's ({root})"
            ));
        }
    }
    Ok(out)
}
