//! The DNS planner every validator runs, generic over commonware's runtime so the same code
//! runs in a node and in the deterministic simulator (`crates/chain/tests/sim.rs`).
//!
//! Contract: the planner only reads finalized state and submits `DnsPlan` transactions built
//! by the ledger's own planner step (`cairn_ledger::dns::next_plan`). Whether a plan takes
//! effect is decided by the ledger's compare-and-set, so a slow, stalled or duplicated planner
//! can waste a transaction but never roll a name back or empty it.
//! Limits: at most one plan in flight per managed name per planner; polls every
//! [`PLANNER_POLL_MS`].

use cairn_chain::{Nonces, Shared, TxStatus};
use cairn_ledger::{
    dns::{next_plan, MIN_PLAN_INTERVAL_BLOCKS},
    registry,
    zones::endpoint_of,
    AccountId, State, Tx, TxKind,
};
use commonware_runtime::Clock;
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// Extra blocks each validator (by rank) waits after a plan becomes allowed, so usually one
/// planner submits and the others see the new generation instead of racing.
pub const PLANNER_STAGGER_BLOCKS: u64 = 2;
/// How often a planner looks at the finalized state.
pub const PLANNER_POLL_MS: u64 = 250;
/// Blocks a submitted plan stays valid (its base generation is stale soon after anyway).
pub const PLAN_VALIDITY_BLOCKS: u64 = 20;

/// The plans the validator operated by `me` would submit now: for each managed name,
/// `next_plan` from the nodes healthy at the current height, once its stagger has passed.
pub fn plans_due(state: &State, me: &AccountId) -> Vec<TxKind> {
    let mut validators: Vec<&[u8; 32]> = state
        .nodes()
        .filter(|(_, n)| n.roles.validator)
        .map(|(id, _)| id)
        .collect();
    validators.sort();
    let Some(rank) = validators.iter().position(|v| *v == me) else {
        return Vec::new();
    };
    let height = state.height();
    let mut out = Vec::new();
    for (origin, zone) in state.zones() {
        for (name, m) in &zone.managed {
            let wait = MIN_PLAN_INTERVAL_BLOCKS + rank as u64 * PLANNER_STAGGER_BLOCKS;
            if height + 1 < m.state.current.height + wait {
                continue;
            }
            let mut healthy: Vec<_> = state
                .nodes()
                .filter(|(_, n)| registry::is_healthy(state, n))
                .filter_map(|(_, n)| endpoint_of(n, m.role))
                .collect();
            healthy.sort();
            healthy.dedup_by(|a, b| a.address == b.address);
            if let Some(plan) = next_plan(&m.state, &healthy, height, height + 1) {
                out.push(TxKind::DnsPlan {
                    origin: origin.clone(),
                    name: name.clone(),
                    plan,
                });
            }
        }
    }
    out
}

/// Runs a planner forever, signing with `key` (a validator's operator account).
pub async fn run<C: Clock>(
    clock: C,
    shared: Arc<Shared>,
    key: ed25519_dalek::SigningKey,
    nonces: Arc<Nonces>,
) {
    let me = key.verifying_key().to_bytes();
    let mut outstanding: BTreeMap<(String, String), [u8; 32]> = BTreeMap::new();
    loop {
        clock.sleep(Duration::from_millis(PLANNER_POLL_MS)).await;
        outstanding.retain(|_, h| shared.tx_status(h) == TxStatus::Pending);
        let due = shared.with_state(|s| {
            plans_due(s, &me)
                .into_iter()
                .filter(|kind| match kind {
                    TxKind::DnsPlan { origin, name, .. } => {
                        !outstanding.contains_key(&(origin.clone(), name.clone()))
                    }
                    _ => false,
                })
                .filter_map(|kind| Some((kind, nonces.next(s)?)))
                .collect::<Vec<_>>()
        });
        for (kind, nonce) in due {
            let TxKind::DnsPlan { origin, name, .. } = &kind else {
                continue;
            };
            let k = (origin.clone(), name.clone());
            let tx = Tx {
                signer: me,
                nonce,
                // A plan is only worth its base generation: let it lapse quickly.
                valid_until: shared.finalized_height() + PLAN_VALIDITY_BLOCKS,
                kind,
            }
            .sign(&key);
            match shared.submit(tx.encode().into()) {
                Ok(hash) => {
                    tracing::info!(origin = %k.0, name = %k.1, "planner submitted a plan");
                    outstanding.insert(k, hash);
                }
                Err(e) => tracing::warn!("planner could not submit: {e}"),
            }
        }
    }
}
