//! The AWS DynamoDB DNS race (19–20 Oct 2025) replayed against the ledger's plan rules, and a
//! property test with three planners that read stale state, get delayed, crash, retry and
//! sometimes send garbage. Heights are virtual time: one block per step.

use cairn_ledger::dns::{
    next_plan, Endpoint, ManagedName, Plan, PlanError, MAX_EVIDENCE_AGE_BLOCKS,
    MAX_HISTORY_GENERATIONS, MIN_PLAN_INTERVAL_BLOCKS, VELOCITY_LIMIT_PERCENT,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

const UNIVERSE: u8 = 8;

fn ep(i: u8) -> Endpoint {
    Endpoint {
        address: vec![10, 0, 0, i],
        weight: 10,
    }
}

/// What a well-behaved planner proposes from its view of health: add every healthy endpoint,
/// drop unhealthy ones within the velocity limit, never propose an empty set.
fn plan_from(view: &ManagedName, healthy: &BTreeSet<u8>, evidence: u64) -> Option<Plan> {
    let current: BTreeSet<u8> = view
        .current
        .endpoints
        .iter()
        .map(|e| e.address[3])
        .collect();
    let mut next: BTreeSet<u8> = current.union(healthy).copied().collect();
    let budget = current.len() as u64 * 10 * VELOCITY_LIMIT_PERCENT / 100;
    let mut removed = 0;
    for i in current.difference(healthy) {
        if removed + 10 <= budget && next.len() > 1 {
            next.remove(i);
            removed += 10;
        }
    }
    if next == current || next.is_empty() {
        return None;
    }
    Some(Plan {
        generation: view.current.number + 1,
        base_generation: view.current.number,
        endpoints: next.into_iter().map(ep).collect(),
        evidence_height: evidence,
        reason: String::new(),
    })
}

fn all() -> BTreeSet<u8> {
    (0..UNIVERSE).collect()
}

#[test]
fn the_aws_race_cannot_empty_or_roll_back_a_name() {
    const PLANNER: [u8; 32] = [1; 32];
    let mut ledger = ManagedName::create((0..UNIVERSE).map(ep).collect(), 0, PLANNER).unwrap();
    // Enactor A reads generation 1 and computes a plan, then stalls for "minutes".
    let mut healthy = all();
    healthy.remove(&7);
    let slow = plan_from(&ledger, &healthy, 0).expect("a change to make");
    // Planners B and C keep going: 100 generations, far beyond the history limit, with health
    // flapping so the sets keep changing.
    let mut height = 0;
    for round in 0..100u64 {
        height += MIN_PLAN_INTERVAL_BLOCKS;
        let mut healthy = all();
        healthy.remove(&((round % UNIVERSE as u64) as u8));
        if let Some(p) = plan_from(&ledger, &healthy, height) {
            let contains = |e: &Endpoint| healthy.contains(&e.address[3]);
            ledger
                .apply_plan(&p, height, [2 + (round % 2) as u8; 32], contains, false)
                .unwrap();
        }
    }
    let before = ledger.clone();
    assert!(before.current.number > MAX_HISTORY_GENERATIONS as u64);
    // A finally applies its plan, planned against generation 1: refused by compare-and-set
    // (in AWS it overwrote the newer plan, and the clean-up then deleted it).
    height += MIN_PLAN_INTERVAL_BLOCKS;
    let err = ledger
        .apply_plan(&slow, height, PLANNER, |_| true, false)
        .unwrap_err();
    assert_eq!(
        err,
        PlanError::StaleBase {
            base: 1,
            current: before.current.number
        }
    );
    // Even re-labelled as the next generation, its evidence is minutes old: refused.
    let relabelled = Plan {
        generation: before.current.number + 1,
        base_generation: before.current.number,
        ..slow
    };
    assert!(matches!(
        ledger.apply_plan(&relabelled, height, PLANNER, |_| true, false),
        Err(PlanError::Evidence { .. })
    ));
    assert_eq!(ledger, before, "refused plans change nothing");
    assert!(!ledger.current.endpoints.is_empty());
    assert!(ledger.generation(ledger.last_known_good).is_some());
}

#[derive(Clone, Debug)]
enum Step {
    /// Planner p reads the name and the health it sees now.
    Read { p: usize },
    /// Planner p submits what it computed at its last read (possibly long ago).
    Submit { p: usize },
    /// Planner p crashes: forgets its read.
    Crash { p: usize },
    /// Planner p sends an arbitrary plan.
    Garbage {
        base: u64,
        generation_delta: u64,
        members: Vec<u8>,
        evidence_lag: u64,
        overridden: bool,
    },
    /// Endpoint i changes health.
    Flip { i: u8 },
    /// Blocks pass.
    Wait { blocks: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3usize).prop_map(|p| Step::Read { p }),
        4 => (0..3usize).prop_map(|p| Step::Submit { p }),
        1 => (0..3usize).prop_map(|p| Step::Crash { p }),
        1 => (0..20u64, 0..3u64, proptest::collection::vec(0..UNIVERSE, 0..6), 0..200u64, any::<bool>())
            .prop_map(|(base, generation_delta, members, evidence_lag, overridden)| Step::Garbage {
                base, generation_delta, members, evidence_lag, overridden
            }),
        3 => (0..UNIVERSE).prop_map(|i| Step::Flip { i }),
        3 => (1..300u64).prop_map(|blocks| Step::Wait { blocks }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn three_racing_planners_never_break_the_invariants(steps in proptest::collection::vec(step(), 1..200)) {
        let mut ledger = ManagedName::create((0..UNIVERSE).map(ep).collect(), 0, [0; 32]).unwrap();
        let mut healthy = all();
        let mut height = 0u64;
        let mut reads: [Option<(ManagedName, BTreeSet<u8>, u64)>; 3] = [None, None, None];
        for s in steps {
            height += 1;
            let before = ledger.clone();
            let is_healthy = |h: &BTreeSet<u8>| {
                let h = h.clone();
                move |e: &Endpoint| h.contains(&e.address[3])
            };
            let result = match s {
                Step::Read { p } => {
                    reads[p] = Some((ledger.clone(), healthy.clone(), height));
                    None
                }
                Step::Crash { p } => {
                    reads[p] = None;
                    None
                }
                Step::Submit { p } => reads[p].take().and_then(|(view, seen, at)| {
                    plan_from(&view, &seen, at).map(|plan| {
                        (plan.clone(), ledger.apply_plan(&plan, height, [p as u8; 32], is_healthy(&healthy), false), false)
                    })
                }),
                Step::Garbage { base, generation_delta, members, evidence_lag, overridden } => {
                    let set: BTreeSet<u8> = members.into_iter().collect();
                    let plan = Plan {
                        generation: base.saturating_add(generation_delta),
                        base_generation: base,
                        endpoints: set.into_iter().map(ep).collect(),
                        evidence_height: height.saturating_sub(evidence_lag),
                        reason: String::new(),
                    };
                    let r = ledger.apply_plan(&plan, height, [9; 32], is_healthy(&healthy), overridden);
                    Some((plan, r, overridden))
                }
                Step::Flip { i } => {
                    if !healthy.remove(&i) {
                        healthy.insert(i);
                    }
                    None
                }
                Step::Wait { blocks } => {
                    height += blocks;
                    None
                }
            };
            // Invariant: never empty, whatever planners do.
            prop_assert!(!ledger.current.endpoints.is_empty());
            match result {
                Some((plan, Ok(_), overridden)) => {
                    // Applied only on the current base, as exactly the next generation.
                    prop_assert_eq!(plan.base_generation, before.current.number);
                    prop_assert_eq!(ledger.current.number, before.current.number + 1);
                    prop_assert_eq!(&ledger.current.endpoints, &plan.endpoints);
                    prop_assert!(height - plan.evidence_height <= MAX_EVIDENCE_AGE_BLOCKS);
                    if !overridden {
                        prop_assert!(height >= before.current.height + MIN_PLAN_INTERVAL_BLOCKS);
                        let old: u64 = before.current.endpoints.iter().map(|e| u64::from(e.weight)).sum();
                        let dropped: Vec<_> = before.current.endpoints.iter()
                            .filter(|e| !plan.endpoints.iter().any(|n| n.address == e.address))
                            .collect();
                        let removed: u64 = dropped.iter().map(|e| u64::from(e.weight)).sum();
                        // The velocity limit, or a single endpoint (so small sets can shrink).
                        prop_assert!(removed * 100 <= VELOCITY_LIMIT_PERCENT * old || dropped.len() == 1);
                    }
                }
                Some((_, Err(_), _)) => prop_assert_eq!(&ledger, &before),
                None => prop_assert_eq!(&ledger, &before),
            }
            // History is bounded and never loses the active or last-known-good generation.
            prop_assert!(ledger.history.len() <= MAX_HISTORY_GENERATIONS + 1);
            prop_assert!(ledger.generation(ledger.current.number).is_some());
            prop_assert!(ledger.generation(ledger.last_known_good).is_some());
            prop_assert!(ledger.history.iter().all(|g| g.number < ledger.current.number));
        }
    }
}

proptest! {
    /// The planners' shared step ([`next_plan`]) only proposes plans the ledger accepts, never
    /// an empty set, and from any start reaches exactly the healthy set within a bounded number
    /// of plans (the velocity limit slows removals, it never blocks them).
    #[test]
    fn the_planner_step_converges_to_the_healthy_set(
        start in proptest::collection::btree_set(0u8..16, 1..16),
        healthy in proptest::collection::btree_set(0u8..16, 0..16),
    ) {
        let mk = |set: &BTreeSet<u8>| -> Vec<Endpoint> { set.iter().map(|i| ep(*i)).collect() };
        let mut name = ManagedName::create(mk(&start), 0, [1; 32]).unwrap();
        let healthy_eps = mk(&healthy);
        let mut height = 0;
        for _ in 0..40 {
            height += MIN_PLAN_INTERVAL_BLOCKS;
            let Some(plan) = next_plan(&name, &healthy_eps, height, height) else { break };
            prop_assert!(!plan.endpoints.is_empty());
            let accepted = name.apply_plan(&plan, height, [2; 32], |_| true, false);
            prop_assert!(accepted.is_ok(), "planner proposed a refused plan: {:?}", accepted);
        }
        let now: BTreeSet<u8> = name.current.endpoints.iter().map(|e| e.address[3]).collect();
        if healthy.is_empty() {
            prop_assert_eq!(now, start, "no healthy endpoint: fail static");
        } else {
            prop_assert_eq!(now, healthy);
            prop_assert!(next_plan(&name, &healthy_eps, height + 100, height + 100).is_none());
        }
    }
}
