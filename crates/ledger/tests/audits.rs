//! Audits end to end through blocks: rounds open and close on schedule, honest answers pass,
//! forged, foreign, stale, late and repeated answers do not, silence escalates to `faulty`, and
//! a lost fragment reported by its node leaves the manifest.

mod common;

use cairn_ledger::{
    audit::{self, AuditParams, AuditProof, FragmentLost, LeafProof, Verdict},
    merkle::{MerkleTree, LEAF_SIZE_BYTES},
    objects::{ObjectManifest, Segment},
    registry, *,
};
use common::*;
use std::collections::BTreeMap;

const BUCKET: &str = "audited";
/// Objects written, one segment each, so every storage node holds this many fragments.
const OBJECTS: u8 = 6;
/// Each fragment spans three leaves (the last one short).
const FRAGMENT_BYTES: usize = 2 * LEAF_SIZE_BYTES + 100;

fn params() -> AuditParams {
    AuditParams {
        round_blocks: 10,
        deadline_blocks: 5,
        challenges_per_node: 4,
        faulty_after_strikes: 6,
    }
}

/// A chain with 12 storage nodes (operated by `OP`), each holding one fragment of each of
/// [`OBJECTS`] objects, whose bytes the test keeps to answer challenges.
struct Net {
    state: State,
    nonces: BTreeMap<u8, u64>,
    /// Fragment bytes by (object key, slot).
    data: BTreeMap<(String, u8), Vec<u8>>,
    heartbeat_seq: u64,
    events: Vec<Event>,
}

fn fragment_bytes(object: u8, slot: u8) -> Vec<u8> {
    (0..FRAGMENT_BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 21) as u8 ^ object ^ slot.rotate_left(3))
        .collect()
}

impl Net {
    fn new() -> Self {
        Self::with(params())
    }

    fn with(audit: AuditParams) -> Self {
        let mut g = genesis();
        push_storage_nodes(&mut g, OP);
        g.accounts.push((id(&key(STRANGER)), "stranger".into()));
        g.audit = audit;
        let mut net = Self {
            state: State::genesis(&g).unwrap(),
            nonces: BTreeMap::new(),
            data: BTreeMap::new(),
            heartbeat_seq: 0,
            events: vec![],
        };
        let create = net.stx(ADMIN, create_bucket(ADMIN, BUCKET));
        assert_eq!(net.block(vec![create]), vec![Ok(())]);
        let mut puts = vec![];
        for o in 0..OBJECTS {
            let name = format!("obj-{o}");
            let mut roots = vec![];
            for slot in 0..12u8 {
                let d = fragment_bytes(o, slot);
                roots.push(MerkleTree::build(&d).root());
                net.data.insert((name.clone(), slot), d);
            }
            // RS(4, 8): a segment of 4 × FRAGMENT_BYTES gives fragments of FRAGMENT_BYTES.
            let len = 4 * FRAGMENT_BYTES as u64;
            let manifest = ObjectManifest::single_segment(len, storage_placement(), roots, 0xfff);
            puts.push(net.stx(
                ADMIN,
                TxKind::PutObject {
                    owner: id(&key(ADMIN)),
                    bucket: BUCKET.into(),
                    key: name,
                    manifest,
                    if_absent: false,
                },
            ));
        }
        assert!(net.block(puts).iter().all(Result::is_ok));
        net
    }

    fn stx(&mut self, signer: u8, kind: TxKind) -> Vec<u8> {
        let n = self.nonces.entry(signer).or_insert(0);
        *n += 1;
        signed_until(signer, *n, self.state.height() + 100, kind).encode()
    }

    fn block(&mut self, txs: Vec<Vec<u8>>) -> Vec<Result<(), TxError>> {
        let h = self.state.height() + 1;
        let out = self.state.apply_block(h, h * 1_000, &txs).unwrap();
        self.events.extend(out.events);
        out.receipts
    }

    /// Empty blocks (with heartbeats every 5, so storage nodes stay healthy) up to `height`.
    fn run_to(&mut self, height: u64) {
        while self.state.height() < height {
            let txs = if self.state.height().is_multiple_of(5) {
                self.heartbeat_seq += 1;
                let seq = self.heartbeat_seq;
                (0..12)
                    .map(|i| self.stx(OP, heartbeat(storage_node(i), seq)))
                    .collect()
            } else {
                vec![]
            };
            self.block(txs);
        }
    }

    /// `node`'s honest answers to every open challenge.
    fn honest(&self, node: NodeId) -> AuditProof {
        let nr = self.state.audit_challenges(&node).expect("challenged");
        let leaves = nr
            .challenges
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let d = &self.data[&(c.key.clone(), c.fragment)];
                let start = c.leaf as usize * LEAF_SIZE_BYTES;
                LeafProof {
                    challenge: i as u8,
                    data: d[start..(start + LEAF_SIZE_BYTES).min(d.len())].to_vec(),
                    path: MerkleTree::build(d).prove(c.leaf).unwrap().siblings,
                }
            })
            .collect();
        AuditProof {
            node,
            round: nr.round,
            leaves,
        }
    }

    fn verdicts(&self, round: u64) -> BTreeMap<NodeId, Verdict> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::AuditVerdict {
                    node,
                    round: r,
                    verdict,
                    ..
                } if *r == round => Some((*node, *verdict)),
                _ => None,
            })
            .collect()
    }
}

fn proof_tx(net: &mut Net, proof: AuditProof) -> Vec<u8> {
    net.stx(OP, TxKind::AuditProof(proof))
}

#[test]
fn rounds_open_on_schedule_with_recomputable_challenges() {
    let mut net = Net::new();
    net.run_to(9);
    assert!(net.state.audit_round().is_none());
    let root_before = net.state.state_root();
    net.run_to(10);
    let round = net.state.audit_round().unwrap().clone();
    assert_eq!((round.number, round.opened_height), (1, 10));
    // Anyone can recompute the seed and the challenges from the ledger.
    assert_eq!(
        round.seed,
        audit::round_seed(net.state.chain_id(), 1, &root_before)
    );
    let again = audit::derive_challenges(&net.state, &round.seed, 4);
    assert_eq!(again.len(), 12, "every storage node holds fragments");
    for i in 0..12 {
        let nr = net.state.audit_challenges(&storage_node(i)).unwrap();
        assert_eq!(nr.challenges, again[&storage_node(i)]);
        assert_eq!(nr.challenges.len(), 4);
        // Distinct fragments, each really on this node.
        let mut keys: Vec<_> = nr.challenges.iter().map(|c| &c.key).collect();
        keys.dedup();
        assert_eq!(keys.len(), 4);
        assert!(nr.challenges.iter().all(|c| c.fragment == i));
    }
    // The audit state reloads with the same root.
    let reloaded = State::from_entries(net.state.entries()).unwrap();
    assert_eq!(reloaded, net.state);
    assert_eq!(reloaded.state_root(), net.state.state_root());
}

#[test]
fn honest_answers_pass_silence_misses_and_forgery_fails() {
    let mut net = Net::new();
    net.run_to(10);
    let mut txs = vec![];
    for i in 0..6 {
        let p = net.honest(storage_node(i));
        txs.push(proof_tx(&mut net, p));
    }
    // Node 6 forges one leaf.
    let mut forged = net.honest(storage_node(6));
    forged.leaves[1].data[0] ^= 1;
    txs.push(proof_tx(&mut net, forged));
    assert!(
        net.block(txs).iter().all(Result::is_ok),
        "bad data is evidence, not a refusal"
    );
    let stake_before = net.state.node(&storage_node(6)).unwrap().stake;
    net.run_to(15);
    let v = net.verdicts(1);
    for i in 0..6 {
        assert_eq!(v[&storage_node(i)], Verdict::Pass, "node {i}");
    }
    assert_eq!(v[&storage_node(6)], Verdict::Fail);
    for i in 7..12 {
        assert_eq!(v[&storage_node(i)], Verdict::Missed, "node {i}");
    }
    let recs: BTreeMap<_, _> = net.state.audit_records().collect();
    let pass = recs[&storage_node(0)];
    assert_eq!((pass.passes, pass.strikes), (1, 0));
    assert!(pass.last_proof_bytes > 0);
    assert_eq!(recs[&storage_node(6)].strikes, 2);
    assert_eq!(recs[&storage_node(7)].strikes, 1);
    // Genesis storage nodes have stake 1: a fail at two strikes takes 5%, rounded down.
    let stake_after = net.state.node(&storage_node(6)).unwrap().stake;
    assert!(stake_after <= stake_before);
}

#[test]
fn stale_late_repeated_foreign_and_unchallenged_answers() {
    let mut net = Net::new();
    net.run_to(10);
    let node = storage_node(0);
    // Another round's number.
    let mut stale = net.honest(node);
    stale.round = 0;
    let stale = proof_tx(&mut net, stale);
    // Someone not operating the node.
    let p = net.honest(node);
    let stranger = net.stx(STRANGER, TxKind::AuditProof(p));
    // A node that holds nothing (the genesis validator).
    let mut nothing = net.honest(node);
    nothing.node = genesis_node();
    let nothing = proof_tx(&mut net, nothing);
    // Node 1 answers its first challenge with node 0's leaf and path: a valid proof of a
    // fragment it does not hold, so it fails.
    let mut foreign = net.honest(storage_node(1));
    foreign.leaves = vec![LeafProof {
        challenge: 0,
        ..net.honest(node).leaves[0].clone()
    }];
    let foreign = proof_tx(&mut net, foreign);
    let r = net.block(vec![stale, stranger, nothing, foreign]);
    assert_eq!(
        r[0],
        Err(TxError::AuditRoundNotOpen {
            round: 0,
            open: Some(1)
        })
    );
    assert_eq!(r[1], Err(TxError::NotNodeOperator));
    assert_eq!(r[2], Err(TxError::NotChallenged));
    assert_eq!(r[3], Ok(()));
    assert!(net.events.iter().any(|e| matches!(
        e,
        Event::AuditProof { node: n, failed: 1, .. } if *n == storage_node(1)
    )));
    // Answer once, then the same challenges again (a replayed proof in a new transaction).
    let p = net.honest(node);
    let first = proof_tx(&mut net, p.clone());
    let again = proof_tx(&mut net, p.clone());
    let r = net.block(vec![first, again]);
    assert_eq!(r, vec![Ok(()), Err(TxError::ChallengeNotOpen { index: 0 })]);
    // After the deadline (height 15) the round's answers are late.
    net.run_to(15);
    let late = net.honest_late(storage_node(2), 1);
    let late = proof_tx(&mut net, late);
    assert_eq!(
        net.block(vec![late]),
        vec![Err(TxError::AuditProofLate {
            round: 1,
            deadline: 15
        })]
    );
}

impl Net {
    /// A structurally valid answer for a round that has closed.
    fn honest_late(&self, node: NodeId, round: u64) -> AuditProof {
        AuditProof {
            node,
            round,
            leaves: vec![LeafProof {
                challenge: 0,
                data: vec![0; 10],
                path: vec![],
            }],
        }
    }
}

#[test]
fn a_silent_node_becomes_faulty_and_leaves_placement_and_audits() {
    let mut net = Net::new();
    let silent = storage_node(11);
    let mut faulty_round = None;
    for round in 1..=8u64 {
        net.run_to(round * 10);
        let txs: Vec<_> = (0..11)
            .map(|i| {
                let p = net.honest(storage_node(i));
                proof_tx(&mut net, p)
            })
            .collect();
        assert!(net.block(txs).iter().all(Result::is_ok));
        net.run_to(round * 10 + 5);
        assert_eq!(net.verdicts(round)[&storage_node(0)], Verdict::Pass);
        if net.state.is_faulty(&silent) && faulty_round.is_none() {
            faulty_round = Some(round);
        }
        if faulty_round.is_some_and(|f| round > f) {
            assert!(!net.verdicts(round).contains_key(&silent));
        }
    }
    // Six misses in a row (one strike each) reach the threshold.
    assert_eq!(faulty_round, Some(6));
    assert_eq!(
        net.events
            .iter()
            .filter(|e| matches!(e, Event::NodeFaulty { node } if *node == silent))
            .count(),
        1
    );
    let rec = net
        .state
        .audit_records()
        .find(|(id, _)| **id == silent)
        .unwrap()
        .1;
    assert_eq!((rec.misses, rec.passes), (6, 0));
    assert!(rec.credit < audit::CREDIT_START);
    // Faulty nodes are never placed on again, and the ledger refuses a manifest that does.
    assert!(!registry::is_storage_endpoint(&net.state, &silent));
    assert!(registry::endpoints(&net.state, registry::Role::Storage).all(|(id, _)| *id != silent));
    let placed = manifest_on(100, 2, storage_placement());
    let put = net.stx(
        ADMIN,
        TxKind::PutObject {
            owner: id(&key(ADMIN)),
            bucket: BUCKET.into(),
            key: "after".into(),
            manifest: ObjectManifest {
                segments: vec![Segment {
                    stored_mask: 0xfff,
                    ..placed.segments[0].clone()
                }],
                ..placed
            },
            if_absent: false,
        },
    );
    assert!(matches!(
        net.block(vec![put])[0],
        Err(TxError::InvalidPlacement { .. })
    ));
}

#[test]
fn a_lost_fragment_leaves_the_manifest() {
    // More challenges than fragments: every fragment still held is challenged.
    let mut net = Net::with(AuditParams {
        challenges_per_node: 8,
        ..params()
    });
    let lost = |node: u8, slot: u8| FragmentLost {
        node: storage_node(node),
        bucket: BUCKET.into(),
        key: "obj-2".into(),
        segment: 0,
        fragment: slot,
    };
    let good = net.stx(OP, TxKind::FragmentLost(lost(3, 3)));
    let again = net.stx(OP, TxKind::FragmentLost(lost(3, 3)));
    let not_theirs = net.stx(OP, TxKind::FragmentLost(lost(4, 3)));
    let stranger = net.stx(STRANGER, TxKind::FragmentLost(lost(5, 5)));
    let no_segment = net.stx(
        OP,
        TxKind::FragmentLost(FragmentLost {
            segment: 1,
            ..lost(6, 6)
        }),
    );
    let r = net.block(vec![good, again, not_theirs, stranger, no_segment]);
    assert_eq!(
        r,
        vec![
            Ok(()),
            Err(TxError::FragmentNotHeld),
            Err(TxError::FragmentNotHeld),
            Err(TxError::NotNodeOperator),
            Err(TxError::FragmentNotHeld),
        ]
    );
    let seg = &net.state.object(BUCKET, "obj-2").unwrap().manifest.segments[0];
    assert_eq!(seg.stored_mask, 0xfff & !(1 << 3));
    // Reporting costs a little credit, no strike and no stake.
    let rec = net
        .state
        .audit_records()
        .find(|(id, _)| **id == storage_node(3))
        .unwrap()
        .1;
    assert_eq!(rec.lost_reported, 1);
    assert_eq!(
        rec.credit,
        audit::CREDIT_START - audit::LOST_FRAGMENT_CREDIT
    );
    assert_eq!((rec.strikes, rec.slashed_total), (0, 0));
    // The node is challenged for every fragment it still holds, and no longer for that one.
    net.run_to(10);
    let nr = net.state.audit_challenges(&storage_node(3)).unwrap();
    assert_eq!(nr.challenges.len(), usize::from(OBJECTS) - 1);
    assert!(nr.challenges.iter().all(|c| c.key != "obj-2"));
    assert_eq!(
        net.state
            .audit_challenges(&storage_node(4))
            .unwrap()
            .challenges
            .len(),
        usize::from(OBJECTS)
    );
}
