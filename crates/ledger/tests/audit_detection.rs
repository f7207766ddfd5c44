//! Detection against prediction: through real blocks, 12 storage nodes each hold FRAGMENTS
//! one-leaf fragments; node 9 silently dropped 10% of them, node 10 1%, node 11 everything,
//! and all answer every challenge they can. Over SEEDS chains (the seed source is the state
//! root, so each chain id gives other challenges) this measures the rounds until each
//! dropping node's first non-pass verdict and compares them with the hypergeometric prediction
//! (`audit::detection_probability`). Honest nodes must never get anything but a pass.
//! Deterministic: fixed chain ids. Run with `--nocapture` to see the table.

mod common;

use cairn_ledger::{
    audit::{self, AuditParams, AuditProof, LeafProof, Verdict},
    merkle::MerkleTree,
    objects::ObjectManifest,
    *,
};
use common::*;
use std::collections::{BTreeMap, BTreeSet};

const FRAGMENTS: u16 = 200;
const SEEDS: u64 = 10;
const ROUNDS: u64 = 30;
/// (node slot, fragments it dropped).
const DROPPERS: [(u8, u16); 3] = [(9, FRAGMENTS / 10), (10, FRAGMENTS / 100), (11, FRAGMENTS)];

fn frag(o: u16, slot: u8) -> Vec<u8> {
    let mut v = o.to_le_bytes().to_vec();
    v.extend_from_slice(&[slot; 30]);
    v
}

struct Chain {
    state: State,
    nonce: BTreeMap<u8, u64>,
}

impl Chain {
    fn block(&mut self, kinds: Vec<(u8, TxKind)>) -> Vec<Event> {
        let txs: Vec<Vec<u8>> = kinds
            .into_iter()
            .map(|(signer, kind)| {
                let n = self.nonce.entry(signer).or_insert(0);
                *n += 1;
                signed_until(signer, *n, self.state.height() + 50, kind).encode()
            })
            .collect();
        let h = self.state.height() + 1;
        let out = self.state.apply_block(h, h * 1_000, &txs).unwrap();
        assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
        out.events
    }
}

/// Rounds until each dropper's first non-pass verdict (None: not within ROUNDS).
fn run(seed: u64) -> BTreeMap<u8, Option<u64>> {
    let mut g = genesis();
    g.chain_id = format!("detect-{seed}");
    push_storage_nodes(&mut g, OP);
    g.audit = AuditParams {
        round_blocks: 2,
        deadline_blocks: 1,
        challenges_per_node: 16,
        faulty_after_strikes: 1_000,
    };
    let mut c = Chain {
        state: State::genesis(&g).unwrap(),
        nonce: BTreeMap::new(),
    };
    c.block(vec![(ADMIN, create_bucket(ADMIN, "bkt"))]);
    let mut puts = vec![];
    for o in 0..FRAGMENTS {
        let roots = (0..12u8)
            .map(|s| MerkleTree::build(&frag(o, s)).root())
            .collect();
        let len = 4 * frag(o, 0).len() as u64;
        let manifest = ObjectManifest::single_segment(len, storage_placement(), roots, 0xfff);
        puts.push((
            ADMIN,
            TxKind::PutObject {
                owner: id(&key(ADMIN)),
                bucket: "bkt".into(),
                key: format!("{o:04}"),
                manifest,
                if_absent: false,
            },
        ));
    }
    c.block(puts);
    // Which objects each dropper lost: the first `n` keys in a seed-dependent order.
    let dropped: BTreeMap<u8, BTreeSet<String>> = DROPPERS
        .iter()
        .map(|(slot, n)| {
            let mut keys: Vec<String> = (0..FRAGMENTS).map(|o| format!("{o:04}")).collect();
            keys.sort_by_key(|k| *blake3::hash(format!("{seed}/{slot}/{k}").as_bytes()).as_bytes());
            (*slot, keys.into_iter().take(usize::from(*n)).collect())
        })
        .collect();
    let mut first: BTreeMap<u8, Option<u64>> = DROPPERS.iter().map(|(s, _)| (*s, None)).collect();
    for nth in 1..=ROUNDS {
        // Run to the next round opening.
        while c.state.audit_round().is_none_or(|r| r.judged) {
            c.block(vec![]);
        }
        let mut proofs = vec![];
        for slot in 0..12u8 {
            let node = storage_node(slot);
            let nr = c.state.audit_challenges(&node).unwrap();
            let lost = dropped.get(&slot);
            let leaves: Vec<LeafProof> = nr
                .challenges
                .iter()
                .enumerate()
                .filter(|(_, ch)| !lost.is_some_and(|l| l.contains(&ch.key)))
                .map(|(i, ch)| {
                    let o: u16 = ch.key.parse().unwrap();
                    let data = frag(o, slot);
                    LeafProof {
                        challenge: i as u8,
                        path: MerkleTree::build(&data).prove(0).unwrap().siblings,
                        data,
                    }
                })
                .collect();
            for chunk in leaves.chunks(audit::MAX_LEAVES_PER_PROOF) {
                let p = AuditProof {
                    node,
                    round: nr.round,
                    leaves: chunk.to_vec(),
                };
                proofs.push((OP, TxKind::AuditProof(p)));
            }
        }
        // The deadline is the next block: the proofs and the verdicts share it.
        let events = c.block(proofs);
        for e in events {
            if let Event::AuditVerdict { node, verdict, .. } = e {
                let slot = node[0] - 100;
                match first.get_mut(&slot) {
                    Some(f) if verdict != Verdict::Pass && f.is_none() => *f = Some(nth),
                    Some(_) => {}
                    None => assert_eq!(verdict, Verdict::Pass, "honest node {slot}, seed {seed}"),
                }
            }
        }
    }
    first
}

#[test]
fn detection_matches_the_hypergeometric_prediction() {
    let runs: Vec<_> = (0..SEEDS).map(run).collect();
    println!(
        "node  lost   predicted p/round  predicted mean rounds  measured mean  worst  undetected"
    );
    for (slot, lost) in DROPPERS {
        let p = audit::detection_probability(u64::from(FRAGMENTS), u64::from(lost), 16);
        let found: Vec<u64> = runs.iter().filter_map(|r| r[&slot]).collect();
        let mean = found.iter().sum::<u64>() as f64 / found.len().max(1) as f64;
        let worst = found.iter().max().copied().unwrap_or(0);
        println!(
            "{slot:>4}  {:>4}%  {p:>17.3}  {:>21.2}  {mean:>13.2}  {worst:>5}  {:>10}",
            u64::from(lost) * 100 / u64::from(FRAGMENTS),
            1.0 / p,
            runs.len() - found.len()
        );
        match slot {
            // Everything lost: the first round.
            11 => assert!(found.len() == runs.len() && worst == 1),
            // 10%: within 3 rounds on every seed (99.6% predicted per seed).
            9 => assert!(found.len() == runs.len() && worst <= 3, "{found:?}"),
            // 1%: within 30 rounds with 99.2% per seed, so a miss in 10 seeds has a 7% chance
            // (this fixed seed set has one); two would have 0.2%.
            _ => assert!(found.len() + 1 >= runs.len(), "{found:?}"),
        }
        // The measured mean is within a factor of two of the prediction.
        assert!(
            mean <= 2.0 / p + 1.0,
            "node {slot}: mean {mean}, predicted {}",
            1.0 / p
        );
    }
}
