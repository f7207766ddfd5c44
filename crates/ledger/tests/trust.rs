//! Invariants 10 and 11 through blocks (issue 10).
//!
//! 10: nobody without admission changes placement, DNS answers or fragments. A registration must
//! prove possession of the node key; it grants nothing; only a quorum of the committee admits,
//! within what was requested; DNS plan rights and override quorums count the committee.
//!
//! 11: time never runs backwards for an object. Every transaction expires; an older write or
//! delete never replaces a newer one, whatever order blocks apply them in; tombstones last
//! exactly as long as a transaction signed before the delete could still apply.

mod common;

use cairn_ledger::{
    dns::{Endpoint, Plan},
    objects::ObjectManifest,
    placement::{candidates, place, FailureDomain},
    versions::{WriteVersion, TOMBSTONE_RETENTION_BLOCKS},
    zones::{endpoint_of, override_message, quorum, ManagedRole},
    *,
};
use common::*;
use ed25519_dalek::Signer;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ORIGIN: &str = "example.test";
const NAME: &str = "s3.example.test";
/// First operator account of the committee validators added by [`Net::new`] (10, 11, ...).
const FIRST_VALIDATOR: u8 = 10;
/// Operator of the 12 genesis storage nodes (not a committee member).
const STORAGE_OP: u8 = 20;
/// Request time of test writes (ms).
const T0_MS: u64 = 1_700_000_000_000;

/// The S3 address of committee validator `j` (0-based), 127.0.1.(j+1).
fn validator_ip(j: u8) -> Vec<u8> {
    vec![127, 0, 1, j + 1]
}

fn all_roles(validator: bool, storage: bool, gateway: bool) -> Roles {
    Roles {
        validator,
        storage,
        gateway,
        cache: false,
    }
}

/// Three addresses (p2p, admin, S3) with the S3 address on `s3_ip`.
fn addresses(s3_ip: [u8; 4]) -> Vec<String> {
    let [a, b, c, d] = s3_ip;
    vec![
        format!("10.200.0.{d}:1"),
        format!("10.200.0.{d}:2"),
        format!("{a}.{b}.{c}.{d}:9000"),
    ]
}

/// [`genesis`] (committee: the genesis node, operated by OP) plus `validators` more committee
/// members (validator + gateway, operated by accounts 10, 11, ... with node id = account id),
/// and 12 admitted storage nodes in zones z0..z2 operated by [`STORAGE_OP`].
fn genesis_with(validators: u8) -> Genesis {
    let mut g = genesis();
    for j in 0..validators {
        let op = FIRST_VALIDATOR + j;
        g.accounts.push((id(&key(op)), format!("v{j}")));
        g.nodes.push((
            id(&key(op)),
            NodeRecordInit {
                operator: id(&key(op)),
                zone: format!("z{}", j % 3),
                roles: all_roles(true, false, true),
                addresses: addresses([127, 0, 1, j + 1]),
                capacity_bytes: 0,
                stake: 1,
            },
        ));
    }
    g.accounts.push((id(&key(STORAGE_OP)), "storage".into()));
    push_storage_nodes(&mut g, STORAGE_OP);
    g
}

/// A chain: state plus each signer's next nonce.
struct Net {
    state: State,
    nonces: BTreeMap<u8, u64>,
    validators: u8,
}

impl Net {
    fn new(validators: u8) -> Self {
        Self {
            state: State::genesis(&genesis_with(validators)).unwrap(),
            nonces: BTreeMap::new(),
            validators,
        }
    }

    /// Committee operators: OP and the validator accounts.
    fn committee_ops(&self) -> Vec<u8> {
        std::iter::once(OP)
            .chain((0..self.validators).map(|j| FIRST_VALIDATOR + j))
            .collect()
    }

    /// Signed with the next nonce and the longest validity from the next height.
    fn stx(&mut self, signer: u8, kind: TxKind) -> SignedTx {
        let n = self.nonces.entry(signer).or_insert(0);
        *n += 1;
        let valid_until = self.state.height() + MAX_TX_VALIDITY_BLOCKS;
        signed_until(signer, *n, valid_until, kind)
    }

    /// One block with these transactions.
    fn block(&mut self, txs: &[SignedTx]) -> BlockOutcome {
        let bytes: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
        self.state
            .apply_block(
                self.state.height() + 1,
                (self.state.height() + 1) * 1_000,
                &bytes,
            )
            .unwrap()
    }

    /// One block holding one transaction; checks `check_tx` predicted its receipt.
    fn run_events(&mut self, signer: u8, kind: TxKind) -> (Result<(), TxError>, Vec<Event>) {
        let stx = self.stx(signer, kind);
        let predicted = self.state.check_tx(&stx);
        let out = self.block(&[stx]);
        assert_eq!(out.receipts[0], predicted, "check_tx agrees with apply");
        (out.receipts[0].clone(), out.events)
    }

    fn run(&mut self, signer: u8, kind: TxKind) -> Result<(), TxError> {
        self.run_events(signer, kind).0
    }

    /// `n` blocks in which every committee node heartbeats.
    fn advance(&mut self, n: u64) {
        for _ in 0..n {
            let txs: Vec<SignedTx> = self
                .committee_ops()
                .into_iter()
                .map(|op| {
                    let node = if op == OP {
                        genesis_node()
                    } else {
                        id(&key(op))
                    };
                    let seq = self.state.node(&node).unwrap().last_heartbeat_seq + 1;
                    self.stx(op, heartbeat(node, seq))
                })
                .collect();
            let out = self.block(&txs);
            assert!(out.receipts.iter().all(Result::is_ok));
        }
    }

    /// ADMIN's zone with `s3.example.test` bound to every committee validator's gateway.
    fn bind_dns(&mut self) {
        assert_eq!(
            self.run(
                ADMIN,
                TxKind::ZoneUpdate {
                    origin: ORIGIN.into(),
                    expected_version: 0,
                    upserts: cairn_ledger::dns::minimal_apex(ORIGIN),
                    deletes: vec![],
                }
            ),
            Ok(())
        );
        let endpoints = (0..self.validators).map(validator_ip).collect::<Vec<_>>();
        assert_eq!(
            self.run(ADMIN, manage("s3.example.test", &endpoints)),
            Ok(())
        );
    }

    fn admit(
        &mut self,
        signer: u8,
        node: NodeId,
        roles: Roles,
        cap: u64,
        by: &[u8],
    ) -> Result<(), TxError> {
        let kind = admit(&self.state, node, roles, cap, by);
        self.run(signer, kind)
    }

    /// Every gateway endpoint any node offers for DNS.
    fn offered_endpoints(&self) -> Vec<Endpoint> {
        let mut e: Vec<Endpoint> = self
            .state
            .nodes()
            .filter_map(|(_, n)| endpoint_of(n, ManagedRole::Gateway))
            .collect();
        e.sort();
        e
    }

    fn candidate_ids(&self) -> Vec<NodeId> {
        candidates(&self.state, |_| 0)
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    /// Placements of 6 fragments for 64 seeds.
    fn placements(&self) -> Vec<Vec<NodeId>> {
        let c = candidates(&self.state, |_| 0);
        (0..64u8)
            .map(|i| place(&c, &[i; 32], 2, 4, 1 << 20, FailureDomain::Zone).unwrap())
            .collect()
    }

    fn current_endpoints(&self) -> Vec<Endpoint> {
        self.state.zone(ORIGIN).unwrap().managed[NAME]
            .state
            .current
            .endpoints
            .clone()
    }
}

fn endpoints(ips: &[Vec<u8>]) -> Vec<Endpoint> {
    ips.iter()
        .map(|ip| Endpoint {
            address: ip.clone(),
            weight: 100,
        })
        .collect()
}

fn manage(name: &str, ips: &[Vec<u8>]) -> TxKind {
    TxKind::ManageName {
        origin: ORIGIN.into(),
        name: name.into(),
        ttl_secs: 30,
        role: ManagedRole::Gateway,
        endpoints: endpoints(ips),
    }
}

fn plan_on(state: &State, ips: &[Vec<u8>]) -> Plan {
    let current = state.zone(ORIGIN).unwrap().managed[NAME]
        .state
        .current
        .number;
    Plan {
        generation: current + 1,
        base_generation: current,
        endpoints: endpoints(ips),
        evidence_height: state.height(),
        reason: "test".into(),
    }
}

fn dns_plan(plan: Plan) -> TxKind {
    TxKind::DnsPlan {
        origin: ORIGIN.into(),
        name: NAME.into(),
        plan,
    }
}

/// A `DnsOverride` of `plan` approved by the accounts of test keys `approvers`.
fn dns_override(plan: Plan, approvers: &[u8]) -> TxKind {
    let message = override_message(ORIGIN, NAME, &plan);
    TxKind::DnsOverride {
        origin: ORIGIN.into(),
        name: NAME.into(),
        plan,
        approvals: approvers
            .iter()
            .map(|a| (id(&key(*a)), key(*a).sign(&message).to_bytes().to_vec()))
            .collect(),
    }
}

fn put(bucket: &str, k: &str, m: ObjectManifest) -> TxKind {
    TxKind::PutObject {
        owner: id(&key(ADMIN)),
        bucket: bucket.into(),
        key: k.into(),
        manifest: m,
        if_absent: false,
    }
}

fn delete(bucket: &str, k: &str, request_ms: u64) -> TxKind {
    TxKind::DeleteObject {
        owner: id(&key(ADMIN)),
        bucket: bucket.into(),
        key: k.into(),
        request_ms,
    }
}

// ---------------------------------------------------------------------------------------------
// Invariant 10: admission.
// ---------------------------------------------------------------------------------------------

/// A node registration needs the node key's signature over exactly this registration by this
/// operator. Without it the transaction is invalid on its own: the block carrying it is refused.
#[test]
fn registration_without_a_valid_proof_of_possession_invalidates_the_block() {
    let zone = "z2";
    let storage = roles(false, true);
    let addrs = vec!["10.0.0.1:9000".to_string()];
    let good = register_node_as(OP, 4, zone, storage.clone(), addrs.clone(), 1 << 40);
    assert!(SignedTx::decode_and_verify(&signed(OP, 1, good.clone()).encode()).is_ok());
    let with = |possession: Vec<u8>| {
        let mut k = good.clone();
        if let TxKind::RegisterNode { possession: p, .. } = &mut k {
            *p = possession;
        }
        k
    };
    let message = |operator: u8| {
        admission::possession_message(
            &id(&key(operator)),
            &node_id(4),
            zone,
            &storage,
            &addrs,
            1 << 40,
            5,
        )
    };
    let sig = |seed: u8, m: &[u8]| key(seed).sign(m).to_bytes().to_vec();
    let mut retargeted = good.clone();
    if let TxKind::RegisterNode { addresses, .. } = &mut retargeted {
        addresses[0] = "10.6.6.6:9000".into();
    }
    let mut more_capacity = good.clone();
    if let TxKind::RegisterNode { capacity_bytes, .. } = &mut more_capacity {
        *capacity_bytes = u64::MAX;
    }
    let bad: Vec<(&str, TxKind, TxError)> = vec![
        (
            "all-zero proof",
            with(vec![0; 64]),
            TxError::NoPossessionProof,
        ),
        (
            "signed by another key",
            with(sig(5, &message(OP))),
            TxError::NoPossessionProof,
        ),
        (
            "signed by the operator's own key, not the node's",
            with(sig(OP, &message(OP))),
            TxError::NoPossessionProof,
        ),
        (
            "made for another operator",
            with(sig(4, &message(ADMIN))),
            TxError::NoPossessionProof,
        ),
        (
            "over other addresses",
            retargeted,
            TxError::NoPossessionProof,
        ),
        (
            "over another capacity",
            more_capacity,
            TxError::NoPossessionProof,
        ),
    ];
    let mut s = State::genesis(&genesis()).unwrap();
    s.take_dirty();
    let before = s.clone();
    for (what, kind, error) in bad {
        let stx = signed(OP, 1, kind);
        assert_eq!(
            SignedTx::decode_and_verify(&stx.encode()),
            Err(error.clone()),
            "{what}"
        );
        let block = vec![tx(ADMIN, 1, cfg("a", "v", 0)), stx.encode()];
        let expected = BlockError::BadTx { index: 1, error };
        assert_eq!(
            State::validate_block_txs(&block),
            Err(expected.clone()),
            "{what}"
        );
        assert_eq!(s.apply_block(1, 1_000, &block), Err(expected), "{what}");
        assert_eq!(s, before, "{what}: a refused block changes nothing");
    }
    // No proof at all is a malformed field.
    assert!(matches!(
        SignedTx::decode_and_verify(&signed(OP, 1, with(vec![])).encode()),
        Err(TxError::InvalidField {
            field: "possession",
            ..
        })
    ));
    assert!(s.take_dirty().is_empty());
    // The good one applies and registers a pending node.
    let out = s.apply_block(1, 1_000, &[tx(OP, 1, good)]).unwrap();
    assert_eq!(out.receipts, vec![Ok(())]);
    assert!(admission::is_pending(s.node(&node_id(4)).unwrap()));
}

/// A registered but never admitted node asked for every role and 2^64-1 bytes: placement never
/// picks it, writes naming it are refused, it offers no DNS endpoint, and its operator has no
/// DNS plan or override rights.
#[test]
fn a_pending_node_has_no_roles_and_no_capacity() {
    let mut net = Net::new(3);
    net.bind_dns();
    net.advance(2);
    let before = (
        net.candidate_ids(),
        net.placements(),
        net.offered_endpoints(),
    );
    let attacker_ip = [203, 0, 113, 9];
    let pending = node_id(40);
    assert_eq!(
        net.run(
            STRANGER,
            TxKind::RegisterAccount {
                name: "mallory".into()
            }
        ),
        Ok(())
    );
    let (r, events) = net.run_events(
        STRANGER,
        register_node_as(
            STRANGER,
            40,
            "z0",
            Roles {
                validator: true,
                storage: true,
                gateway: true,
                cache: true,
            },
            addresses(attacker_ip),
            u64::MAX,
        ),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(
        events,
        vec![Event::NodeRegistered {
            node: pending,
            operator: id(&key(STRANGER))
        }]
    );
    let rec = net.state.node(&pending).unwrap();
    assert!(admission::is_pending(rec));
    assert_eq!(rec.roles, roles(false, false));
    assert_eq!(rec.capacity_bytes, 0);
    assert_eq!(rec.requested_capacity_bytes, u64::MAX);
    assert!(rec.requested_roles.storage && rec.requested_roles.gateway);

    // Placement: not a candidate, never placed, whatever the seed.
    assert!(!net.candidate_ids().contains(&pending));
    assert_eq!(
        (
            net.candidate_ids(),
            net.placements(),
            net.offered_endpoints()
        ),
        before
    );
    // A write naming it is refused.
    assert_eq!(net.run(ADMIN, create_bucket(ADMIN, "data")), Ok(()));
    let mut placement = storage_placement();
    placement[5] = pending;
    assert!(matches!(
        net.run(ADMIN, put("data", "k", manifest_on(10, T0_MS, placement))),
        Err(TxError::InvalidPlacement { .. })
    ));
    assert!(net.state.object("data", "k").is_none());
    // DNS: its address is no endpoint, neither for a new name nor in a plan.
    let ip = attacker_ip.to_vec();
    assert!(matches!(
        net.run(
            ADMIN,
            manage("evil.example.test", std::slice::from_ref(&ip))
        ),
        Err(TxError::UnknownEndpoint { .. })
    ));
    let mut ips: Vec<Vec<u8>> = (0..3).map(validator_ip).collect();
    ips.push(ip.clone());
    let plan = plan_on(&net.state, &ips);
    assert!(matches!(
        net.run(FIRST_VALIDATOR, dns_plan(plan.clone())),
        Err(TxError::UnknownEndpoint { .. })
    ));
    // Its operator asked for the validator role: no plan rights.
    let plan = plan_on(
        &net.state,
        &(0..3).map(validator_ip).collect::<Vec<_>>()[..2],
    );
    assert_eq!(
        net.run(STRANGER, dns_plan(plan.clone())),
        Err(TxError::NotValidator)
    );
    // Nor do its approvals count toward an override (the node key's neither).
    assert_eq!(
        net.run(
            ADMIN,
            dns_override(plan, &[OP, FIRST_VALIDATOR, STRANGER, 40])
        ),
        Err(TxError::OverrideQuorum {
            votes: 2,
            needed: 3
        })
    );
    assert_eq!(
        net.current_endpoints(),
        endpoints(&(0..3).map(validator_ip).collect::<Vec<_>>())
    );
}

/// The attack of issue 10: a fresh account registers 12 storage nodes of 2^64-1 bytes, a
/// gateway on its own address and 30 "validators". Placement, DNS answers and the committee's
/// override quorum are exactly as before; the Sybil can neither plan, approve nor admit itself.
#[test]
fn a_sybil_of_self_registrations_changes_nothing() {
    let mut net = Net::new(10); // a committee of 11: quorum 8
    assert_eq!(quorum(11), 8);
    net.bind_dns();
    net.advance(2);
    assert_eq!(net.run(ADMIN, create_bucket(ADMIN, "data")), Ok(()));
    let committee: Vec<NodeId> = net.state.committee().copied().collect();
    assert_eq!(committee.len(), 11);
    let before = (
        net.candidate_ids(),
        net.placements(),
        net.offered_endpoints(),
    );
    let served_before = net.state.zone(ORIGIN).unwrap().served_sets();

    assert_eq!(
        net.run(
            STRANGER,
            TxKind::RegisterAccount {
                name: "sybil".into()
            }
        ),
        Ok(())
    );
    let mut txs = Vec::new();
    for i in 0..12u8 {
        let kind = register_node_as(
            STRANGER,
            40 + i,
            &format!("z{}", i % 3),
            roles(false, true),
            vec![format!("10.66.0.{i}:9000")],
            u64::MAX,
        );
        txs.push(net.stx(STRANGER, kind));
    }
    let gateway = register_node_as(
        STRANGER,
        60,
        "z0",
        all_roles(false, false, true),
        addresses([203, 0, 113, 66]),
        0,
    );
    txs.push(net.stx(STRANGER, gateway));
    for i in 0..30u8 {
        let kind = register_node_as(
            STRANGER,
            70 + i,
            "z1",
            roles(true, false),
            vec![format!("10.67.0.{i}:1")],
            1,
        );
        txs.push(net.stx(STRANGER, kind));
    }
    let out = net.block(&txs);
    assert_eq!(
        out.receipts,
        vec![Ok(()); 43],
        "registrations are accepted as pending"
    );
    assert_eq!(net.state.nodes().count(), 1 + 10 + 12 + 43);

    // Placement and DNS: unchanged.
    assert_eq!(
        (
            net.candidate_ids(),
            net.placements(),
            net.offered_endpoints()
        ),
        before
    );
    assert_eq!(
        net.state.committee().copied().collect::<Vec<_>>(),
        committee
    );
    let mut placement = storage_placement();
    placement[0] = node_id(40);
    assert!(matches!(
        net.run(ADMIN, put("data", "k", manifest_on(10, T0_MS, placement))),
        Err(TxError::InvalidPlacement { .. })
    ));
    assert!(matches!(
        net.run(ADMIN, manage("evil.example.test", &[vec![203, 0, 113, 66]])),
        Err(TxError::UnknownEndpoint { .. })
    ));
    let honest: Vec<Vec<u8>> = (0..10).map(validator_ip).collect();
    let mut with_attacker = honest.clone();
    with_attacker.push(vec![203, 0, 113, 66]);
    assert!(matches!(
        net.run(
            FIRST_VALIDATOR,
            dns_plan(plan_on(&net.state, &with_attacker))
        ),
        Err(TxError::UnknownEndpoint { .. })
    ));
    assert_eq!(
        net.run(STRANGER, dns_plan(plan_on(&net.state, &honest[..9]))),
        Err(TxError::NotValidator)
    );
    assert_eq!(net.state.zone(ORIGIN).unwrap().served_sets(), served_before);

    // The Sybil cannot admit itself: its approvals (account and node keys) count zero.
    let sybil_keys: Vec<u8> = std::iter::once(STRANGER).chain(40..52).collect();
    assert_eq!(
        net.admit(
            STRANGER,
            node_id(40),
            roles(false, true),
            1 << 40,
            &sybil_keys
        ),
        Err(TxError::AdmissionQuorum {
            votes: 0,
            needed: 8
        })
    );

    // The honest committee still reaches an override; 7 honest plus every Sybil key does not.
    net.advance(1);
    let target = honest[..3].to_vec();
    let ops = net.committee_ops();
    let mut sybil_approvers: Vec<u8> = ops[..7].to_vec();
    sybil_approvers.push(STRANGER);
    sybil_approvers.extend(70..100);
    assert_eq!(
        net.run(
            ADMIN,
            dns_override(plan_on(&net.state, &target), &sybil_approvers)
        ),
        Err(TxError::OverrideQuorum {
            votes: 7,
            needed: 8
        })
    );
    assert_eq!(
        net.run(ADMIN, dns_override(plan_on(&net.state, &target), &ops[..8])),
        Ok(())
    );
    assert_eq!(net.current_endpoints(), endpoints(&target));
}

/// Admission takes a quorum of distinct committee members approving exactly this grant, within
/// the request, at the node's current admission count.
#[test]
fn admission_needs_a_committee_quorum_within_the_request() {
    let mut net = Net::new(3); // committee of 4: quorum 3
    net.bind_dns();
    let [v0, v1, _v2] = [FIRST_VALIDATOR, FIRST_VALIDATOR + 1, FIRST_VALIDATOR + 2];
    assert_eq!(
        net.run(
            STRANGER,
            TxKind::RegisterAccount {
                name: "joiner".into()
            }
        ),
        Ok(())
    );
    let node = node_id(40);
    let asked = all_roles(false, true, true);
    let s3 = [198, 51, 100, 7];
    assert_eq!(
        net.run(
            STRANGER,
            register_node_as(STRANGER, 40, "z1", asked.clone(), addresses(s3), 1 << 40)
        ),
        Ok(())
    );
    let storage = roles(false, true);
    let too_few = Err(TxError::AdmissionQuorum {
        votes: 2,
        needed: 3,
    });
    assert_eq!(
        net.admit(STRANGER, node, storage.clone(), 1 << 30, &[OP, v0]),
        too_few
    );
    // The same member twice is one vote.
    assert_eq!(
        net.admit(STRANGER, node, storage.clone(), 1 << 30, &[OP, v0, v0]),
        too_few
    );
    // Non-committee accounts do not count: a stranger, the admin, an admitted storage
    // operator, and the node itself.
    assert_eq!(
        net.admit(
            STRANGER,
            node,
            storage.clone(),
            1 << 30,
            &[OP, v0, STRANGER, ADMIN, STORAGE_OP, 40]
        ),
        too_few
    );
    // An approval of another grant does not count for this one.
    let mut forged = admit(&net.state, node, storage.clone(), 1 << 30, &[OP, v0]);
    if let (
        TxKind::AdmitNode { approvals, .. },
        TxKind::AdmitNode {
            approvals: other, ..
        },
    ) = (
        &mut forged,
        admit(&net.state, node, storage.clone(), 1 << 31, &[v1]),
    ) {
        approvals.extend(other);
    }
    assert_eq!(net.run(STRANGER, forged), too_few);
    // A grant beyond the request is refused even with every committee approval.
    let everyone = net.committee_ops();
    for (roles, cap) in [
        (storage.clone(), (1 << 40) + 1),
        (all_roles(true, true, false), 1 << 30),
        (
            Roles {
                cache: true,
                ..storage.clone()
            },
            1 << 30,
        ),
    ] {
        assert!(
            matches!(
                net.admit(STRANGER, node, roles.clone(), cap, &everyone),
                Err(TxError::InvalidField { field: "roles", .. })
            ),
            "{roles:?} {cap}"
        );
    }
    assert_eq!(
        net.admit(ADMIN, node_id(41), storage.clone(), 1, &everyone),
        Err(TxError::UnknownNode)
    );
    assert!(admission::is_pending(net.state.node(&node).unwrap()));
    assert!(!net.candidate_ids().contains(&node));

    // A quorum admits it as storage (anyone may submit the approvals).
    let first = admit(&net.state, node, storage.clone(), 1 << 30, &[OP, v0, v1]);
    let (r, events) = net.run_events(ADMIN, first.clone());
    assert_eq!(r, Ok(()));
    assert_eq!(
        events,
        vec![Event::NodeAdmitted {
            node,
            roles: storage.clone(),
            capacity_bytes: 1 << 30
        }]
    );
    let rec = net.state.node(&node).unwrap();
    assert_eq!(
        (rec.roles.clone(), rec.capacity_bytes, rec.admissions),
        (storage.clone(), 1 << 30, 1)
    );
    assert!(net.candidate_ids().contains(&node));
    let c = candidates(&net.state, |_| 0);
    assert_eq!(
        c.iter().find(|c| c.id == node).unwrap().free_bytes,
        1 << 30,
        "placement weighs by the granted capacity, not the requested one"
    );

    // Storage-admitted, it asked for gateway too, but is no gateway until a new admission.
    let ip = s3.to_vec();
    assert!(matches!(
        net.run(ADMIN, manage("new.example.test", std::slice::from_ref(&ip))),
        Err(TxError::UnknownEndpoint { .. })
    ));
    // The first admission's approvals cannot be replayed (they name admission count 0).
    assert_eq!(
        net.run(ADMIN, first.clone()),
        Err(TxError::AdmissionQuorum {
            votes: 0,
            needed: 3
        })
    );
    let second = admit(&net.state, node, asked.clone(), 1 << 30, &[OP, v0, v1]);
    assert_eq!(net.run(ADMIN, second.clone()), Ok(()));
    assert_eq!(
        net.run(ADMIN, manage("new.example.test", std::slice::from_ref(&ip))),
        Ok(())
    );

    // Suspended by a third admission (no roles): replaying either earlier grant fails.
    assert_eq!(
        net.admit(ADMIN, node, roles(false, false), 0, &[OP, v0, v1]),
        Ok(())
    );
    let rec = net.state.node(&node).unwrap();
    assert_eq!(
        (rec.roles.clone(), rec.capacity_bytes, rec.admissions),
        (roles(false, false), 0, 3)
    );
    for replay in [first, second] {
        assert_eq!(
            net.run(ADMIN, replay),
            Err(TxError::AdmissionQuorum {
                votes: 0,
                needed: 3
            })
        );
    }
    assert!(!net.candidate_ids().contains(&node));
    assert!(!net.offered_endpoints().iter().any(|e| e.address == ip));
}

/// Admitted validator-role records are not the committee: the committee alone plans and its
/// quorum alone overrides, however many validator records exist.
#[test]
fn override_quorum_is_counted_over_the_committee() {
    let mut net = Net::new(3); // committee of 4: quorum 3
    net.bind_dns();
    let ops = net.committee_ops();
    // Five more validator-role nodes, properly registered and admitted by the committee.
    for i in 0..5u8 {
        let op = 30 + i;
        assert_eq!(
            net.run(
                op,
                TxKind::RegisterAccount {
                    name: format!("extra{i}")
                }
            ),
            Ok(())
        );
        assert_eq!(
            net.run(
                op,
                register_node_as(
                    op,
                    50 + i,
                    "z0",
                    roles(true, false),
                    vec![format!("10.9.0.{i}:1")],
                    1
                )
            ),
            Ok(())
        );
        assert_eq!(
            net.admit(op, node_id(50 + i), roles(true, false), 1, &ops[..3]),
            Ok(())
        );
        assert!(net.state.node(&node_id(50 + i)).unwrap().roles.validator);
    }
    assert_eq!(
        net.state.nodes().filter(|(_, n)| n.roles.validator).count(),
        9
    );
    assert_eq!(
        net.state.committee().count(),
        4,
        "admission never adds to the committee"
    );
    net.advance(2);
    let ips: Vec<Vec<u8>> = (0..3).map(validator_ip).collect();
    // Counted over the 9 validator records the quorum would be 7: two committee members plus
    // five admitted validators would pass. Counted over the committee: 2 of 3.
    let mut approvers = ops[..2].to_vec();
    approvers.extend(30..35);
    assert_eq!(
        net.run(
            ADMIN,
            dns_override(plan_on(&net.state, &ips[..1]), &approvers)
        ),
        Err(TxError::OverrideQuorum {
            votes: 2,
            needed: 3
        })
    );
    // An admitted validator is not a planner either.
    assert_eq!(
        net.run(30, dns_plan(plan_on(&net.state, &ips[..2]))),
        Err(TxError::NotValidator)
    );
    // Three committee members are enough (7 would be needed over validator records).
    assert_eq!(
        net.run(
            ADMIN,
            dns_override(plan_on(&net.state, &ips[..1]), &ops[1..4])
        ),
        Ok(())
    );
    assert_eq!(net.current_endpoints(), endpoints(&ips[..1]));
}

/// Block time for tests about versions over thousands of blocks: held still, so the storage
/// nodes (which never heartbeat here) stay healthy and only the rule under test decides.
const FROZEN_MS: u64 = 1_000;

/// A node may hold two fragments of a segment (degraded placement), but never so many that
/// losing its zone leaves fewer than k: the ledger refuses that placement.
#[test]
fn doubled_up_placement_is_checked_against_zone_loss() {
    let mut net = Net::new(0);
    assert_eq!(net.run(ADMIN, create_bucket(ADMIN, "data")), Ok(()));
    let mut placement = storage_placement();
    placement[11] = placement[0];
    let stx = net.stx(
        ADMIN,
        put("data", "k", manifest_on(10, T0_MS, placement.clone())),
    );
    assert!(
        SignedTx::decode_and_verify(&stx.encode()).is_ok(),
        "stateless: allowed"
    );
    assert_eq!(
        net.run(ADMIN, put("data", "k", manifest_on(10, T0_MS, placement))),
        Ok(())
    );
    let all_on_one = vec![storage_placement()[0]; 12];
    assert!(matches!(
        net.run(ADMIN, put("data", "k2", manifest_on(10, T0_MS, all_on_one))),
        Err(TxError::InvalidPlacement { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Invariant 11: expiry and write order.
// ---------------------------------------------------------------------------------------------

/// Expired and too-far `valid_until` transactions are refused with receipts (the block stays
/// valid), predicted by `check_tx`, and consume no nonce.
#[test]
fn expired_and_too_far_transactions_get_rejected_receipts() {
    let mut s = State::genesis(&genesis()).unwrap();
    for h in 1..=10 {
        s.apply_block(h, h * 1_000, &[] as &[Vec<u8>]).unwrap();
    }
    let h = 11; // the next height
    let txs = vec![
        signed_until(ADMIN, 1, h - 1, cfg("a", "v", 0)),
        signed_until(ADMIN, 2, h, cfg("b", "v", 0)),
        signed_until(ADMIN, 3, h + MAX_TX_VALIDITY_BLOCKS, cfg("c", "v", 0)),
        signed_until(ADMIN, 4, h + MAX_TX_VALIDITY_BLOCKS + 1, cfg("d", "v", 0)),
        signed_until(ADMIN, 5, u64::MAX, cfg("e", "v", 0)),
        signed_until(ADMIN, 6, 1, cfg("f", "v", 0)),
    ];
    let expected = vec![
        Err(TxError::Expired {
            valid_until: h - 1,
            height: h,
        }),
        Ok(()),
        Ok(()),
        Err(TxError::ValidityTooLong {
            valid_until: h + MAX_TX_VALIDITY_BLOCKS + 1,
            max: h + MAX_TX_VALIDITY_BLOCKS,
        }),
        Err(TxError::ValidityTooLong {
            valid_until: u64::MAX,
            max: h + MAX_TX_VALIDITY_BLOCKS,
        }),
        Err(TxError::Expired {
            valid_until: 1,
            height: h,
        }),
    ];
    let predicted: Vec<_> = txs.iter().map(|t| s.check_tx(t)).collect();
    assert_eq!(predicted, expected, "check_tx");
    let bytes: Vec<Vec<u8>> = txs.iter().map(SignedTx::encode).collect();
    assert_eq!(
        State::validate_block_txs(&bytes),
        Ok(txs.clone()),
        "statelessly valid"
    );
    let out = s.apply_block(h, h * 1_000, &bytes).unwrap();
    assert_eq!(
        out.receipts, expected,
        "rejected receipts, not an invalid block"
    );
    assert!(s.config("a").is_none() && s.config("d").is_none() && s.config("e").is_none());
    assert!(s.config("b").is_some() && s.config("c").is_some());
    for (t, e) in txs.iter().zip(&expected) {
        if let Err(error) = e {
            assert!(out.events.contains(&Event::TxRejected {
                hash: t.hash(),
                error: error.clone()
            }));
        }
    }
    // The rejected ones consumed no nonce: nonce 1 is usable again with a fresh valid_until.
    let again = signed_until(ADMIN, 1, h + 1, cfg("a", "v", 0));
    assert_eq!(s.check_tx(&again), Ok(()));
    assert_eq!(
        s.apply_block(h + 1, (h + 1) * 1_000, &[again.encode()])
            .unwrap()
            .receipts,
        vec![Ok(())]
    );
    // A transaction that was still valid is refused once its height has passed.
    let late = signed_until(ADMIN, 7, h + 1, cfg("g", "v", 0));
    assert_eq!(
        s.check_tx(&late),
        Err(TxError::Expired {
            valid_until: h + 1,
            height: h + 2
        })
    );
    let out = s
        .apply_block(h + 2, (h + 2) * 1_000, &[late.encode()])
        .unwrap();
    assert_eq!(
        out.receipts,
        vec![Err(TxError::Expired {
            valid_until: h + 1,
            height: h + 2
        })]
    );
    assert_eq!(
        check_validity(h, h),
        Ok(()),
        "valid through its valid_until height"
    );
}

/// Deleting leaves a tombstone that refuses older writes for exactly as long as a transaction
/// signed before the delete can still apply, then is pruned (and the pruning persists).
#[test]
fn tombstones_refuse_older_writes_then_are_pruned_after_retention() {
    let mut net = Net::new(0);
    let mut mirror = BTreeMap::new();
    absorb(&mut mirror, net.state.take_dirty());
    assert_eq!(net.run(ADMIN, create_bucket(ADMIN, "data")), Ok(()));
    assert_eq!(
        net.run(
            ADMIN,
            put("data", "k", manifest_on(10, T0_MS, storage_placement()))
        ),
        Ok(())
    );
    // A write requested before the delete, signed now with the longest validity: the
    // gateway's slow request.
    let signed_at = net.state.height();
    let older_write = signed_until(
        ADMIN,
        100,
        signed_at + MAX_TX_VALIDITY_BLOCKS,
        put("data", "k", manifest_on(20, T0_MS + 5, storage_placement())),
    );
    let (r, events) = net.run_events(ADMIN, delete("data", "k", T0_MS + 10));
    assert_eq!(r, Ok(()));
    assert_eq!(
        events,
        vec![Event::ObjectDeleted {
            bucket: "data".into(),
            key: "k".into(),
            existed: true
        }]
    );
    let deleted_at = net.state.height();
    let tomb = *net.state.tombstone("data", "k").unwrap();
    assert_eq!(
        (tomb.height, tomb.version.request_ms),
        (deleted_at, T0_MS + 10)
    );
    assert!(net.state.object("data", "k").is_none());
    // A delete of an absent key also leaves a tombstone.
    assert_eq!(net.run(ADMIN, delete("data", "never", T0_MS)), Ok(()));
    assert!(net.state.tombstone("data", "never").is_some());

    // Up to the last height the older write could apply at, the tombstone refuses it.
    let last = signed_at + MAX_TX_VALIDITY_BLOCKS;
    assert!(last <= deleted_at + TOMBSTONE_RETENTION_BLOCKS);
    while net.state.height() + 1 < last {
        let h = net.state.height() + 1;
        net.state
            .apply_block(h, FROZEN_MS, &[] as &[Vec<u8>])
            .unwrap();
        absorb(&mut mirror, net.state.take_dirty());
    }
    assert!(net.state.tombstone("data", "k").is_some());
    let superseded = Err(TxError::Superseded {
        request_ms: T0_MS + 5,
        current_ms: T0_MS + 10,
    });
    assert_eq!(net.state.check_tx(&older_write), superseded);
    let out = net
        .state
        .apply_block(last, FROZEN_MS, &[older_write.encode()])
        .unwrap();
    assert_eq!(out.receipts, vec![superseded]);
    absorb(&mut mirror, net.state.take_dirty());
    // Past that height it is expired: it can never apply.
    assert!(matches!(
        net.state.check_tx(&older_write),
        Err(TxError::Expired { .. })
    ));

    // Kept through deleted_at + RETENTION, pruned by the next block.
    while net.state.height() < deleted_at + TOMBSTONE_RETENTION_BLOCKS {
        let h = net.state.height() + 1;
        net.state
            .apply_block(h, FROZEN_MS, &[] as &[Vec<u8>])
            .unwrap();
        absorb(&mut mirror, net.state.take_dirty());
    }
    assert_eq!(net.state.tombstone("data", "k"), Some(&tomb));
    let h = net.state.height() + 1;
    net.state
        .apply_block(h, FROZEN_MS, &[] as &[Vec<u8>])
        .unwrap();
    let dirty = net.state.take_dirty();
    assert!(
        dirty.iter().any(|(k, v)| k[0] == 9 && v.is_none()),
        "the pruned tombstone is deleted from the store"
    );
    absorb(&mut mirror, dirty);
    assert!(net.state.tombstone("data", "k").is_none());
    assert!(
        net.state.tombstone("data", "never").is_some(),
        "younger one kept"
    );
    let rebuilt = State::from_entries(mirror).unwrap();
    assert_eq!(rebuilt, net.state);
    assert_eq!(rebuilt.state_root(), net.state.state_root());
    assert!(rebuilt.tombstone("data", "k").is_none());
}

/// A newer write removes the tombstone of an older delete.
#[test]
fn a_newer_write_replaces_a_tombstone() {
    let mut net = Net::new(0);
    assert_eq!(net.run(ADMIN, create_bucket(ADMIN, "data")), Ok(()));
    assert_eq!(net.run(ADMIN, delete("data", "k", T0_MS)), Ok(()));
    assert!(net.state.tombstone("data", "k").is_some());
    assert_eq!(
        net.run(
            ADMIN,
            put("data", "k", manifest_on(10, T0_MS - 1, storage_placement()))
        ),
        Err(TxError::Superseded {
            request_ms: T0_MS - 1,
            current_ms: T0_MS
        })
    );
    assert_eq!(
        net.run(
            ADMIN,
            put("data", "k", manifest_on(10, T0_MS + 1, storage_placement()))
        ),
        Ok(())
    );
    assert!(net.state.tombstone("data", "k").is_none());
    assert_eq!(
        net.state.object("data", "k").unwrap().manifest.modified_ms,
        T0_MS + 1
    );
    assert_eq!(net.state.bucket("data").unwrap().object_count, 1);
}

/// Committee, admissions and tombstones survive entries -> from_entries (any order) and the
/// take_dirty mirror with the same root; corrupt committee or tombstone entries are reported.
#[test]
fn committee_and_tombstones_persist_with_the_same_root() {
    let mut net = Net::new(3);
    let mut mirror = BTreeMap::new();
    absorb(&mut mirror, net.state.take_dirty());
    let ops = net.committee_ops();
    assert_eq!(net.run(ADMIN, create_bucket(ADMIN, "data")), Ok(()));
    assert_eq!(
        net.run(STRANGER, TxKind::RegisterAccount { name: "s".into() }),
        Ok(())
    );
    assert_eq!(
        net.run(STRANGER, register_node(STRANGER, 40, "10.0.0.1:1")),
        Ok(())
    );
    assert_eq!(
        net.run(STRANGER, register_node(STRANGER, 41, "10.0.0.2:1")),
        Ok(())
    );
    assert_eq!(
        net.admit(ADMIN, node_id(40), roles(false, true), 1 << 20, &ops[..3]),
        Ok(())
    );
    assert_eq!(
        net.run(
            ADMIN,
            put("data", "k", manifest_on(10, T0_MS, storage_placement()))
        ),
        Ok(())
    );
    assert_eq!(net.run(ADMIN, delete("data", "k", T0_MS + 1)), Ok(()));
    assert_eq!(net.run(ADMIN, delete("data", "gone", T0_MS)), Ok(()));
    absorb(&mut mirror, net.state.take_dirty());
    let s = &net.state;
    for rebuilt in [
        State::from_entries(s.entries()).unwrap(),
        State::from_entries(s.entries().into_iter().rev()).unwrap(),
        State::from_entries(mirror.clone()).unwrap(),
    ] {
        assert_eq!(&rebuilt, s);
        assert_eq!(rebuilt.state_root(), s.state_root());
        assert_eq!(
            rebuilt.committee().collect::<Vec<_>>(),
            s.committee().collect::<Vec<_>>()
        );
        assert_eq!(rebuilt.committee().count(), 4);
        assert_eq!(rebuilt.tombstone("data", "k"), s.tombstone("data", "k"));
        assert!(rebuilt.tombstone("data", "gone").is_some());
        assert_eq!(rebuilt.node(&node_id(40)).unwrap().admissions, 1);
        assert!(admission::is_pending(rebuilt.node(&node_id(41)).unwrap()));
        assert_eq!(rebuilt.entries(), s.entries());
    }
    // Dropping the committee changes the root (it is committed state).
    let without: Vec<_> = s.entries().into_iter().filter(|(k, _)| k[0] != 8).collect();
    assert_ne!(
        State::from_entries(without).unwrap().state_root(),
        s.state_root()
    );
    // And the rebuilt state applies the next block identically (pruning included).
    let mut a = s.clone();
    let mut b = State::from_entries(s.entries()).unwrap();
    let next = [tx(ADMIN, 99, delete("data", "k", T0_MS + 2))];
    assert_eq!(
        a.apply_block(a.height() + 1, (a.height() + 1) * 1_000, &next),
        b.apply_block(b.height() + 1, (b.height() + 1) * 1_000, &next)
    );
    assert_eq!(a, b);

    let corrupt = |entries: Vec<(Vec<u8>, Vec<u8>)>| match State::from_entries(entries) {
        Err(StateError::Corrupt { reason }) => reason,
        Ok(_) => panic!("corrupt entries were accepted"),
    };
    let mut e = s.entries();
    let c = e.iter_mut().find(|(k, _)| k[0] == 8).unwrap();
    c.1.push(1);
    assert_eq!(corrupt(e), "committee entry has a value");
    let mut e = s.entries();
    let c = e.iter_mut().find(|(k, _)| k[0] == 8).unwrap();
    c.0.pop();
    assert_eq!(corrupt(e), "committee key is not 32 bytes");
    let mut e = s.entries();
    let t = e.iter_mut().find(|(k, _)| k[0] == 9).unwrap();
    t.1.pop();
    assert!(corrupt(e).contains("tombstone entry"));
}

// ---------------------------------------------------------------------------------------------
// Property: the write order is independent of the order blocks apply writes and deletes in.
// ---------------------------------------------------------------------------------------------

/// One write or delete of the random workload.
#[derive(Clone, Debug)]
struct WriteOp {
    key: u8,
    delete: bool,
    request_ms: u64,
    size: u64,
}

fn arb_write() -> impl Strategy<Value = WriteOp> {
    (
        0u8..3,
        any::<bool>(),
        0u64..5,
        prop_oneof![Just(0u64), Just(10), Just(1_000)],
    )
        .prop_map(|(key, delete, request_ms, size)| WriteOp {
            key,
            delete,
            request_ms: T0_MS + request_ms,
            size,
        })
}

fn write_key(k: u8) -> String {
    format!("k{k}")
}

/// Op `i` as ADMIN's transaction with nonce i + 2 (nonce 1 creates the bucket).
fn write_tx(i: usize, op: &WriteOp) -> SignedTx {
    let kind = if op.delete {
        delete("data", &write_key(op.key), op.request_ms)
    } else {
        put(
            "data",
            &write_key(op.key),
            manifest_on(op.size, op.request_ms, storage_placement()),
        )
    };
    signed(ADMIN, i as u64 + 2, kind)
}

fn version(op: &WriteOp, stx: &SignedTx) -> WriteVersion {
    WriteVersion {
        request_ms: op.request_ms,
        tx_hash: stx.hash(),
    }
}

/// Applies the ops in `order`; `gaps[j]` empty blocks precede op j's position, and a gap of 0
/// puts it in the same block as the previous op. Checks every receipt against the model.
fn apply_in_order(ops: &[WriteOp], txs: &[SignedTx], order: &[usize], gaps: &[u8]) -> State {
    let mut s = State::genesis(&genesis_with(0)).unwrap();
    let create = signed(ADMIN, 1, create_bucket(ADMIN, "data"));
    assert_eq!(
        s.apply_block(1, 1_000, &[create.encode()])
            .unwrap()
            .receipts,
        vec![Ok(())]
    );
    // Group into blocks.
    let mut blocks: Vec<(u64, Vec<usize>)> = Vec::new();
    for (j, &i) in order.iter().enumerate() {
        let gap = gaps.get(j).copied().unwrap_or(1);
        match blocks.last_mut() {
            Some((_, b)) if gap == 0 => b.push(i),
            _ => blocks.push((u64::from(gap.max(1)) - 1, vec![i])),
        }
    }
    let mut best: BTreeMap<u8, WriteVersion> = BTreeMap::new();
    for (empty, block) in blocks {
        for _ in 0..empty {
            s.apply_block(s.height() + 1, FROZEN_MS, &[] as &[Vec<u8>])
                .unwrap();
        }
        let bytes: Vec<Vec<u8>> = block.iter().map(|&i| txs[i].encode()).collect();
        let out = s.apply_block(s.height() + 1, FROZEN_MS, &bytes).unwrap();
        for (&i, receipt) in block.iter().zip(&out.receipts) {
            let v = version(&ops[i], &txs[i]);
            match best.get(&ops[i].key) {
                Some(b) if *b >= v => assert_eq!(
                    receipt,
                    &Err(TxError::Superseded {
                        request_ms: v.request_ms,
                        current_ms: b.request_ms
                    }),
                    "op {i} is older than the current version"
                ),
                _ => {
                    assert_eq!(receipt, &Ok(()), "op {i} is the newest so far");
                    best.insert(ops[i].key, v);
                }
            }
        }
    }
    assert!(
        s.height() < TOMBSTONE_RETENTION_BLOCKS,
        "all within retention"
    );
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever order (and delays) the writes and deletes apply in, each key ends as the
    /// version with the greatest (request time, tx hash) says: that write's manifest, or absent
    /// with that delete's tombstone; usage and counts match the live objects; state persists.
    #[test]
    fn an_older_write_or_delete_never_replaces_a_newer_one(
        (ops, order) in proptest::collection::vec(arb_write(), 1..40)
            .prop_flat_map(|ops| {
                let n = ops.len();
                (Just(ops), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
            }),
        gaps in proptest::collection::vec(0u8..4, 40),
    ) {
        let txs: Vec<SignedTx> = ops.iter().enumerate().map(|(i, op)| write_tx(i, op)).collect();
        let s = apply_in_order(&ops, &txs, &order, &gaps);
        // The same ops in index order, one per block, reach the same objects and tombstones.
        let in_order: Vec<usize> = (0..ops.len()).collect();
        let t = apply_in_order(&ops, &txs, &in_order, &[]);
        let mut live_bytes = 0;
        let mut live = 0;
        for k in 0..3u8 {
            let key = write_key(k);
            let winner = ops
                .iter()
                .zip(&txs)
                .filter(|(op, _)| op.key == k)
                .max_by_key(|(op, stx)| version(op, stx));
            let object = s.object("data", &key);
            let tombstone = s.tombstone("data", &key);
            match winner {
                None => prop_assert!(object.is_none() && tombstone.is_none()),
                Some((op, stx)) if op.delete => {
                    prop_assert!(object.is_none(), "{} deleted by the newest op", key);
                    prop_assert_eq!(tombstone.map(|t| t.version), Some(version(op, stx)));
                }
                Some((op, stx)) => {
                    let o = object.expect("the newest op wrote it");
                    prop_assert_eq!(o.tx_hash, stx.hash());
                    prop_assert_eq!(&o.manifest, &manifest_on(op.size, op.request_ms, storage_placement()));
                    prop_assert!(tombstone.is_none());
                    live += 1;
                    live_bytes += o.manifest.bytes_per_node(4);
                }
            }
            // (Heights differ between the two runs; versions and manifests must not.)
            let other = t.object("data", &key);
            prop_assert_eq!(object.map(|o| (&o.manifest, o.tx_hash)), other.map(|o| (&o.manifest, o.tx_hash)));
            prop_assert_eq!(
                tombstone.map(|t| t.version),
                t.tombstone("data", &key).map(|t| t.version)
            );
        }
        prop_assert_eq!(s.bucket("data").unwrap().object_count, live);
        for i in 0..12 {
            prop_assert_eq!(s.node(&storage_node(i)).unwrap().used_bytes, live_bytes);
        }
        let rebuilt = State::from_entries(s.entries()).unwrap();
        prop_assert_eq!(rebuilt.state_root(), s.state_root());
        prop_assert_eq!(&rebuilt, &s);
    }
}
