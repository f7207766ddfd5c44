//! Wiring for audits: the chain adapter the storage crate's prover and scrubber use, their
//! start, and the admin API's `GET /audit` view that `cairn audit status` prints.

use crate::{
    config::{account_key, hex},
    tasks::{serving, TaskSet},
};
use cairn_chain::{Nonces, Shared, TxStatus};
use cairn_ledger::{audit, Hash, NodeId, State, Tx, TxKind};
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
        let signer = self.key.verifying_key().to_bytes();
        let (nonce, height) = self
            .shared
            .with_state(|s| (self.nonces.next(s), s.height()));
        let nonce = nonce.ok_or("no free nonce: too many transactions of this node in flight")?;
        let tx = Tx {
            signer,
            nonce,
            valid_until: height + validity_blocks,
            kind,
        }
        .sign(&self.key);
        self.shared
            .submit(tx.encode().into())
            .map_err(|e| e.to_string())
    }

    fn pending(&self, hash: &Hash) -> bool {
        self.shared.tx_status(hash) == TxStatus::Pending
    }
}

/// Starts the prover and the scrubber of storage node `node`, each on its own clock (not
/// critical: a node whose prover stopped still serves, and its misses show in
/// `cairn audit status`).
pub fn start_workers<C: Clock + Send + 'static>(
    tasks: &mut TaskSet,
    clocks: (C, C),
    chain: Arc<NodeChain>,
    node: NodeId,
    store: cairn_storage::FragmentStore,
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

/// One node's audit standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAuditView {
    /// Node id (hex).
    pub node_id: String,
    /// Rounds judged.
    pub rounds: u64,
    /// Passed.
    pub passes: u64,
    /// Failed (a wrong leaf or path).
    pub fails: u64,
    /// Missed.
    pub misses: u64,
    /// Credit.
    pub credit: u32,
    /// Strikes since its last pass.
    pub strikes: u32,
    /// `ok`, `striking` or `faulty`.
    pub state: String,
    /// Proof bytes of its last judged round.
    pub last_proof_bytes: u64,
    /// Stake taken so far.
    pub slashed_total: u64,
    /// Fragments it reported lost.
    pub lost_reported: u64,
    /// Challenges in the open round: (proved, open, failed).
    pub open_round: Option<(usize, usize, usize)>,
}

/// The view of `s`.
pub fn view(s: &State) -> AuditView {
    let p = *s.audit_params();
    let mut nodes: std::collections::BTreeMap<NodeId, NodeAuditView> = s
        .audit_records()
        .map(|(id, r)| {
            (
                *id,
                NodeAuditView {
                    node_id: hex(id),
                    rounds: r.rounds,
                    passes: r.passes,
                    fails: r.fails,
                    misses: r.misses,
                    credit: r.credit,
                    strikes: r.strikes,
                    state: if r.faulty {
                        "faulty"
                    } else if r.strikes > 0 {
                        "striking"
                    } else {
                        "ok"
                    }
                    .into(),
                    last_proof_bytes: r.last_proof_bytes,
                    slashed_total: r.slashed_total,
                    lost_reported: r.lost_reported,
                    open_round: None,
                },
            )
        })
        .collect();
    for id in audit::audited_nodes(s) {
        let Some(nr) = s.audit_challenges(&id) else {
            continue;
        };
        let count = |o: audit::Outcome| nr.outcomes.iter().filter(|x| **x == o).count();
        let row = nodes.entry(id).or_insert_with(|| NodeAuditView {
            node_id: hex(&id),
            rounds: 0,
            passes: 0,
            fails: 0,
            misses: 0,
            credit: audit::CREDIT_START,
            strikes: 0,
            state: "ok".into(),
            last_proof_bytes: 0,
            slashed_total: 0,
            lost_reported: 0,
            open_round: None,
        });
        row.open_round = Some((
            count(audit::Outcome::Proved),
            count(audit::Outcome::Open),
            count(audit::Outcome::Failed),
        ));
    }
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
        nodes: nodes.into_values().collect(),
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
            n.rounds,
            n.passes,
            n.fails,
            n.misses,
            n.lost_reported,
            n.credit,
            n.strikes,
            n.state,
            n.last_proof_bytes,
            n.slashed_total,
            n.open_round
                .map_or("-".into(), |(a, b, c)| format!("{a}/{b}/{c}"))
        );
    }
    Ok(())
}
