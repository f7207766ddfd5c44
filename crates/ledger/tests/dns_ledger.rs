//! DNS transactions through blocks: zone ownership and compare-and-set, managed names bound to
//! registered gateways, plans only from validators, committee overrides, health alerts, and
//! persistence of it all.

mod common;

use cairn_ledger::{
    dns::{Endpoint, Plan, PlanError, RData, RecordSet},
    zones::override_message,
    *,
};
use common::*;
use ed25519_dalek::Signer;

const ORIGIN: &str = "example.test";
/// The health window in this file's blocks (block time is height × 1 s).
const HEALTH_WINDOW_BLOCKS: u64 = registry::HEALTH_WINDOW_MS / 1_000;
fn gateway_ip(i: u8) -> Vec<u8> {
    vec![127, 0, 1, i]
}

/// Four validator/gateway nodes, operated by accounts 10..=13, S3 on 127.0.1.1..=4.
fn genesis4() -> Genesis {
    let mut g = genesis();
    push_validators(&mut g, true);
    g
}

fn apex() -> Vec<RecordSet> {
    cairn_ledger::dns::minimal_apex(ORIGIN)
}

fn zone_update(expected_version: u64, upserts: Vec<RecordSet>) -> TxKind {
    TxKind::ZoneUpdate {
        origin: ORIGIN.into(),
        expected_version,
        upserts,
        deletes: vec![],
    }
}

fn endpoints(ips: &[u8]) -> Vec<Endpoint> {
    ips.iter()
        .map(|i| Endpoint {
            address: gateway_ip(*i),
            weight: 100,
        })
        .collect()
}

struct Chain {
    state: State,
    nonces: std::collections::BTreeMap<u8, u64>,
}

impl Chain {
    fn new() -> Self {
        Self {
            state: State::genesis(&genesis4()).unwrap(),
            nonces: Default::default(),
        }
    }

    fn stx(&mut self, signer: u8, kind: TxKind) -> SignedTx {
        let n = self.nonces.entry(signer).or_insert(0);
        *n += 1;
        signed(signer, *n, kind)
    }

    /// One block holding one tx; returns its receipt and the block's events. A tx that fails
    /// stateless validation never reaches a block: its error is returned as the receipt.
    fn run(&mut self, signer: u8, kind: TxKind) -> (Result<(), TxError>, Vec<Event>) {
        let stx = self.stx(signer, kind);
        if let Err(e) = stx.tx.validate() {
            *self.nonces.get_mut(&signer).unwrap() -= 1;
            return (Err(e), vec![]);
        }
        let tx = stx.encode();
        let out = self
            .state
            .apply_block(
                self.state.height() + 1,
                (self.state.height() + 1) * 1_000,
                &[tx],
            )
            .unwrap();
        (out.receipts[0].clone(), out.events)
    }

    /// Empty blocks with heartbeats from the given validators, `n` times.
    fn advance(&mut self, n: u64, alive: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for _ in 0..n {
            let txs: Vec<Vec<u8>> = alive
                .iter()
                .map(|op| {
                    let node = id(&key(*op));
                    let seq = self.state.node(&node).unwrap().last_heartbeat_seq + 1;
                    self.stx(*op, TxKind::Heartbeat { node, seq }).encode()
                })
                .collect();
            let out = self
                .state
                .apply_block(
                    self.state.height() + 1,
                    (self.state.height() + 1) * 1_000,
                    &txs,
                )
                .unwrap();
            events.extend(out.events);
        }
        events
    }

    fn plan(&mut self, signer: u8, base: u64, ips: &[u8]) -> Result<(), TxError> {
        let plan = Plan {
            generation: base + 1,
            base_generation: base,
            endpoints: endpoints(ips),
            evidence_height: self.state.height(),
            reason: "test".into(),
        };
        self.run(
            signer,
            TxKind::DnsPlan {
                origin: ORIGIN.into(),
                name: "s3.example.test".into(),
                plan,
            },
        )
        .0
    }

    fn current(&self) -> Vec<Vec<u8>> {
        let z = self.state.zone(ORIGIN).unwrap();
        z.managed["s3.example.test"]
            .state
            .current
            .endpoints
            .iter()
            .map(|e| e.address.clone())
            .collect()
    }
}

fn bound_chain() -> Chain {
    let mut c = Chain::new();
    assert_eq!(c.run(ADMIN, zone_update(0, apex())).0, Ok(()));
    let (r, _) = c.run(
        ADMIN,
        TxKind::ManageName {
            origin: ORIGIN.into(),
            name: "s3.example.test".into(),
            ttl_secs: 30,
            role: zones::ManagedRole::Gateway,
            endpoints: endpoints(&[1, 2, 3, 4]),
        },
    );
    assert_eq!(r, Ok(()));
    c
}

#[test]
fn zones_belong_to_their_creator_and_update_by_compare_and_set() {
    let mut c = Chain::new();
    // Without SOA/NS the zone is refused with a clear error.
    let (r, _) = c.run(ADMIN, zone_update(0, vec![apex()[1].clone()]));
    assert!(
        matches!(&r, Err(TxError::InvalidZone { .. }))
            && r.unwrap_err().to_string().contains("SOA")
    );
    let (r, events) = c.run(ADMIN, zone_update(0, apex()));
    assert_eq!(r, Ok(()));
    assert!(events.contains(&Event::ZoneUpdated {
        origin: ORIGIN.into(),
        version: 1
    }));
    let www = RecordSet {
        name: "www.example.test".into(),
        ttl_secs: 60,
        records: vec![RData::A([192, 0, 2, 1])],
    };
    // Someone else cannot change it, even with the right version.
    assert_eq!(
        c.run(OP, zone_update(1, vec![www.clone()])).0,
        Err(TxError::NotAuthorized)
    );
    // A stale version is refused.
    assert_eq!(
        c.run(ADMIN, zone_update(0, vec![www.clone()])).0,
        Err(TxError::ZoneVersionMismatch {
            expected: 0,
            current: 1
        })
    );
    assert_eq!(c.run(ADMIN, zone_update(1, vec![www.clone()])).0, Ok(()));
    let z = c.state.zone(ORIGIN).unwrap();
    assert_eq!(z.version, 2);
    assert!(z.sets.contains(&www));
    // Overlapping zones are refused.
    let sub = TxKind::ZoneUpdate {
        origin: "sub.example.test".into(),
        expected_version: 0,
        upserts: vec![],
        deletes: vec![("x.sub.example.test".into(), 1)],
    };
    assert!(matches!(c.run(OP, sub).0, Err(TxError::ZoneOverlap { .. })));
}

#[test]
fn managed_names_take_only_registered_gateways() {
    let mut c = Chain::new();
    assert_eq!(c.run(ADMIN, zone_update(0, apex())).0, Ok(()));
    let bind = |ips: Vec<Endpoint>| TxKind::ManageName {
        origin: ORIGIN.into(),
        name: "s3.example.test".into(),
        ttl_secs: 30,
        role: zones::ManagedRole::Gateway,
        endpoints: ips,
    };
    let stranger = vec![Endpoint {
        address: vec![203, 0, 113, 9],
        weight: 100,
    }];
    assert!(matches!(
        c.run(ADMIN, bind(stranger)).0,
        Err(TxError::UnknownEndpoint { .. })
    ));
    assert_eq!(
        c.run(ADMIN, bind(vec![])).0.unwrap_err(),
        TxError::PlanRejected {
            error: PlanError::Empty
        },
        "stateless validation already refuses an empty set"
    );
    assert_eq!(
        c.run(OP, bind(endpoints(&[1]))).0,
        Err(TxError::NotAuthorized)
    );
    assert_eq!(c.run(ADMIN, bind(endpoints(&[1, 2]))).0, Ok(()));
    assert_eq!(
        c.run(ADMIN, bind(endpoints(&[1, 2]))).0,
        Err(TxError::ManagedNameExists)
    );
    // Static A records cannot shadow the managed name.
    let a = RecordSet {
        name: "s3.example.test".into(),
        ttl_secs: 60,
        records: vec![RData::A([192, 0, 2, 1])],
    };
    let version = c.state.zone(ORIGIN).unwrap().version;
    assert!(matches!(
        c.run(ADMIN, zone_update(version, vec![a])).0,
        Err(TxError::InvalidZone { .. })
    ));
    // Served records include the managed A set.
    let served = c.state.zone(ORIGIN).unwrap().served_sets();
    assert!(served.iter().any(|s| s.name == "s3.example.test"
        && s.records == vec![RData::A([127, 0, 1, 1]), RData::A([127, 0, 1, 2])]));
}

#[test]
fn plans_come_from_validators_and_obey_compare_and_set() {
    let mut c = bound_chain();
    c.advance(10, &VALIDATORS);
    // The admin operates no validator.
    assert_eq!(c.plan(ADMIN, 1, &[1, 2, 3]), Err(TxError::NotValidator));
    assert_eq!(c.plan(10, 1, &[1, 2, 3]), Ok(()));
    assert_eq!(
        c.current(),
        vec![gateway_ip(1), gateway_ip(2), gateway_ip(3)]
    );
    c.advance(10, &VALIDATORS);
    // A second planner that read generation 1 is stale.
    assert_eq!(
        c.plan(11, 1, &[1, 2]),
        Err(TxError::PlanRejected {
            error: PlanError::StaleBase {
                base: 1,
                current: 2
            }
        })
    );
    assert_eq!(c.plan(11, 2, &[1, 2, 3, 4]), Ok(()));
    // Too soon for the next one.
    assert!(matches!(
        c.plan(12, 3, &[1, 2, 3]),
        Err(TxError::PlanRejected {
            error: PlanError::TooSoon { .. }
        })
    ));
    c.advance(10, &VALIDATORS);
    // Dropping two of four (50%) breaks the velocity limit.
    assert!(matches!(
        c.plan(12, 3, &[1, 2]),
        Err(TxError::PlanRejected {
            error: PlanError::Velocity { .. }
        })
    ));
    let z = c.state.zone(ORIGIN).unwrap();
    let m = &z.managed["s3.example.test"];
    assert_eq!(m.state.current.number, 3);
    assert_eq!(m.state.history.len(), 2);
    assert_eq!(m.state.history[0].reason, "created");
}

fn approve(c: &Chain, signers: &[u8], plan: &Plan) -> Vec<(AccountId, Vec<u8>)> {
    let msg = override_message(ORIGIN, "s3.example.test", plan);
    let _ = c;
    signers
        .iter()
        .map(|s| {
            let k = key(*s);
            (id(&k), k.sign(&msg).to_bytes().to_vec())
        })
        .collect()
}

#[test]
fn overrides_need_a_validator_quorum_and_are_recorded() {
    let mut c = bound_chain();
    c.advance(2, &VALIDATORS);
    let plan = Plan {
        generation: 2,
        base_generation: 1,
        endpoints: endpoints(&[1]),
        evidence_height: c.state.height(),
        reason: "drain three gateways for maintenance".into(),
    };
    let over = |approvals| TxKind::DnsOverride {
        origin: ORIGIN.into(),
        name: "s3.example.test".into(),
        plan: plan.clone(),
        approvals,
    };
    // Five validator nodes exist (the genesis one plus four): quorum is 4.
    let few = approve(&c, &[10, 11, 12], &plan);
    assert_eq!(
        c.run(ADMIN, over(few)).0,
        Err(TxError::OverrideQuorum {
            votes: 3,
            needed: 4
        })
    );
    // A forged approval (signed over another plan) does not count.
    let mut other = plan.clone();
    other.reason = "something else".into();
    let mut forged = approve(&c, &[10, 11, 12], &plan);
    forged.extend(approve(&c, &[13], &other));
    assert_eq!(
        c.run(ADMIN, over(forged)).0,
        Err(TxError::OverrideQuorum {
            votes: 3,
            needed: 4
        })
    );
    let ok = approve(&c, &[10, 11, 12, 13], &plan);
    let (r, events) = c.run(ADMIN, over(ok));
    assert_eq!(r, Ok(()));
    assert!(events.contains(&Event::DnsPlanned {
        origin: ORIGIN.into(),
        name: "s3.example.test".into(),
        generation: 2,
        overridden: true
    }));
    assert_eq!(c.current(), vec![gateway_ip(1)]);
    let g = &c.state.zone(ORIGIN).unwrap().managed["s3.example.test"]
        .state
        .current;
    assert!(g.overridden);
    assert_eq!(g.reason, "drain three gateways for maintenance");
    // Even an override never empties the name (stateless rule).
    let mut empty = plan.clone();
    empty.generation = 3;
    empty.base_generation = 2;
    empty.endpoints.clear();
    let approvals = approve(&c, &[10, 11, 12, 13], &empty);
    assert!(matches!(
        c.run(
            ADMIN,
            TxKind::DnsOverride {
                origin: ORIGIN.into(),
                name: "s3.example.test".into(),
                plan: empty,
                approvals,
            }
        )
        .0,
        Err(TxError::PlanRejected {
            error: PlanError::Empty
        })
    ));
}

#[test]
fn all_unhealthy_raises_one_alert_and_keeps_the_records() {
    let mut c = bound_chain();
    // Nobody heartbeats: past the health window every endpoint is unhealthy.
    let events = c.advance(HEALTH_WINDOW_BLOCKS + 5, &[]);
    let alerts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::DnsAllUnhealthy { .. }))
        .collect();
    assert_eq!(alerts.len(), 1, "one alert per outage: {alerts:?}");
    assert_eq!(c.current().len(), 4, "fail static: the records stay");
    // One gateway comes back: the alert clears, and a later outage alerts again.
    c.advance(3, &[10]);
    assert!(!c.state.zone(ORIGIN).unwrap().managed["s3.example.test"].alerting);
    let events = c.advance(HEALTH_WINDOW_BLOCKS + 2, &[]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::DnsAllUnhealthy { .. }))
            .count(),
        1
    );
}

#[test]
fn dns_state_persists_with_the_same_root() {
    let mut c = bound_chain();
    c.advance(10, &VALIDATORS);
    c.plan(10, 1, &[1, 2, 3]).unwrap();
    let back = State::from_entries(c.state.entries()).unwrap();
    assert_eq!(back, c.state);
    assert_eq!(back.state_root(), c.state.state_root());
    // A corrupt zone entry is reported, not panicked on.
    let mut entries = c.state.entries();
    let z = entries.iter_mut().find(|(k, _)| k[0] == 7).unwrap();
    z.1.truncate(z.1.len() / 2);
    assert!(State::from_entries(entries).is_err());
}

/// What a validator's planner proposes from `view` (the state it last read): the same step the
/// node runs (`cairn_ledger::dns::next_plan` over nodes healthy at the view's height).
fn planner_view(view: &State) -> Option<Plan> {
    let m = &view.zone(ORIGIN)?.managed["s3.example.test"];
    let height = view.height();
    let mut healthy: Vec<Endpoint> = view
        .nodes()
        .filter(|(_, n)| registry::is_healthy(view, n))
        .filter_map(|(_, n)| zones::endpoint_of(n, m.role))
        .collect();
    healthy.sort();
    cairn_ledger::dns::next_plan(&m.state, &healthy, height, height + 1)
}

/// The AWS DynamoDB race of 19-20 Oct 2025 replayed through real blocks: planner A reads the
/// state and computes a plan, then stalls for 1,800 blocks (15 minutes at the 500 ms idle
/// block interval) while planners B and C keep planning from fresh reads as gateways flap,
/// advancing far more generations than history keeps. A's plan then arrives: the ledger
/// refuses it, and the name never has an empty, rolled-back or pruned-active record set.
#[test]
fn aws_race_through_blocks_with_three_planners() {
    let mut c = bound_chain();
    c.advance(12, &VALIDATORS);
    // Gateway 4 stops: A sees it unhealthy later, but reads now and stalls.
    let stale_view = {
        c.advance(HEALTH_WINDOW_BLOCKS + 2, &VALIDATORS[..3]);
        c.state.clone()
    };
    let stale = planner_view(&stale_view).expect("A has a plan: drop gateway 4");
    assert_eq!(stale.base_generation, 1);
    let mut max_generation = 1;
    let mut last_generation = 1;
    for block in 0..1800u64 {
        // Gateways 3 and 4 flap on different periods, so B and C keep re-planning.
        let mut alive = vec![10u8, 11];
        if (block / 60) % 2 == 0 {
            alive.push(12);
        }
        if (block / 90) % 2 == 1 {
            alive.push(13);
        }
        let planner = if block % 2 == 0 { 11 } else { 12 };
        let mut txs: Vec<Vec<u8>> = alive
            .iter()
            .map(|op| {
                let node = id(&key(*op));
                let seq = c.state.node(&node).unwrap().last_heartbeat_seq + 1;
                c.stx(*op, TxKind::Heartbeat { node, seq }).encode()
            })
            .collect();
        if let Some(plan) = planner_view(&c.state) {
            txs.push(
                c.stx(
                    planner,
                    TxKind::DnsPlan {
                        origin: ORIGIN.into(),
                        name: "s3.example.test".into(),
                        plan,
                    },
                )
                .encode(),
            );
        }
        c.state
            .apply_block(c.state.height() + 1, (c.state.height() + 1) * 1_000, &txs)
            .unwrap();
        let m = &c.state.zone(ORIGIN).unwrap().managed["s3.example.test"];
        let g = m.state.current.number;
        assert!(
            g >= last_generation,
            "generation went back: {last_generation} -> {g}"
        );
        last_generation = g;
        max_generation = max_generation.max(g);
        assert!(
            !m.state.current.endpoints.is_empty(),
            "empty at block {block}"
        );
        assert!(
            m.state.generation(m.state.last_known_good).is_some(),
            "LKG pruned"
        );
    }
    let before = c.state.zone(ORIGIN).unwrap().clone();
    let m = &before.managed["s3.example.test"];
    assert!(
        max_generation > cairn_ledger::dns::MAX_HISTORY_GENERATIONS as u64 + 8,
        "B and C advanced {max_generation} generations, more than history keeps"
    );
    assert!(
        m.state.generation(1).is_none(),
        "old generations were pruned"
    );
    // A wakes up and submits the plan it computed 1,800 blocks ago.
    let r = c.run(
        10,
        TxKind::DnsPlan {
            origin: ORIGIN.into(),
            name: "s3.example.test".into(),
            plan: stale.clone(),
        },
    );
    assert!(matches!(
        r.0,
        Err(TxError::PlanRejected {
            error: PlanError::StaleBase { .. }
        })
    ));
    // Even relabelled onto the current generation, its evidence is too old.
    let relabelled = Plan {
        generation: m.state.current.number + 1,
        base_generation: m.state.current.number,
        ..stale
    };
    let r = c.run(
        10,
        TxKind::DnsPlan {
            origin: ORIGIN.into(),
            name: "s3.example.test".into(),
            plan: relabelled,
        },
    );
    assert!(matches!(
        r.0,
        Err(TxError::PlanRejected {
            error: PlanError::Evidence { .. }
        })
    ));
    let after = c.state.zone(ORIGIN).unwrap();
    assert_eq!(
        after.managed["s3.example.test"].state.current,
        before.managed["s3.example.test"].state.current
    );
}
