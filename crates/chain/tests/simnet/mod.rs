//! Helpers shared by the whole-network simulations: the validators' keys and genesis, the
//! simulated network and its links, starting nodes, and waiting on virtual time.
#![allow(dead_code)]

use bytes::Bytes;
use cairn_chain::{engine, mempool::SigCache, store::MemStore, Node, Shared};
use cairn_ledger::{audit::AuditParams, Genesis, NodeRecordInit, Roles, Tx, TxKind};
use commonware_cryptography::{ed25519, Signer};
use commonware_p2p::simulated::{self, Link, Network, Oracle};
use commonware_runtime::{deterministic, Clock, Supervisor};
use commonware_utils::{probability, NZUsize};
use std::{sync::Arc, time::Duration};

pub const N: usize = 11;
/// Audit rounds short enough for a few dozen simulated heights to see several.
pub const SIM_AUDIT: AuditParams = AuditParams {
    round_blocks: 20,
    deadline_blocks: 10,
    challenges_per_node: 16,
    faulty_after_strikes: 6,
};
pub const CHAIN: &str = "cairn-sim";

pub struct SeedGuard(pub u64);
impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed with seed {} (rerun with CAIRN_SIM_SEED={})",
                self.0, self.0
            );
        }
    }
}

/// `CAIRN_SIM_SEED` alone if set, otherwise `defaults`.
pub fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("CAIRN_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => defaults.to_vec(),
    }
}

pub fn keys() -> Vec<ed25519::PrivateKey> {
    let mut keys: Vec<_> = (0..N as u64).map(ed25519::PrivateKey::from_seed).collect();
    keys.sort_by_key(|k| k.public_key());
    keys
}

pub fn pk_bytes(k: &ed25519::PublicKey) -> [u8; 32] {
    k.as_ref().try_into().unwrap()
}

pub fn genesis(keys: &[ed25519::PrivateKey]) -> Genesis {
    let admin = admin_key();
    let mut accounts = vec![(admin.verifying_key().to_bytes(), "admin".to_string())];
    let mut nodes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let id = pk_bytes(&k.public_key());
        accounts.push((id, format!("v{i}")));
        nodes.push((
            id,
            NodeRecordInit {
                operator: id,
                zone: format!("z{}", i % 3 + 1),
                roles: Roles {
                    validator: true,
                    storage: true,
                    gateway: false,
                    cache: false,
                },
                addresses: vec![format!("127.0.0.1:{}", 7000 + i)],
                capacity_bytes: 1 << 40,
                stake: 1,
            },
        ));
    }
    // Gateways that run no node in the simulation: their health is whatever heartbeats the
    // DNS scenario submits for them.
    for (i, k) in gateway_keys().iter().enumerate() {
        let id = k.verifying_key().to_bytes();
        accounts.push((id, format!("g{i}")));
        nodes.push((
            id,
            NodeRecordInit {
                operator: id,
                zone: "z1".into(),
                roles: Roles {
                    validator: false,
                    storage: false,
                    gateway: true,
                    cache: false,
                },
                addresses: vec![
                    format!("127.0.0.1:{}", 8000 + i),
                    format!("127.0.0.1:{}", 8100 + i),
                    format!("127.0.1.{}:9000", i + 1),
                ],
                capacity_bytes: 0,
                stake: 0,
            },
        ));
    }
    Genesis {
        audit: SIM_AUDIT,
        chain_id: CHAIN.into(),
        accounts,
        nodes,
    }
}

pub const GATEWAYS: usize = 5;

pub fn gateway_keys() -> Vec<ed25519_dalek::SigningKey> {
    (0..GATEWAYS as u8)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[100 + i; 32]))
        .collect()
}

/// The ledger account key of a validator (the same ed25519 key as its consensus key).
pub fn account_key(k: &ed25519::PrivateKey) -> ed25519_dalek::SigningKey {
    use commonware_codec::Encode;
    ed25519_dalek::SigningKey::from_bytes(&k.encode().as_ref().try_into().unwrap())
}

pub fn admin_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

/// Every directed link: 40 ms mean latency with 15 ms jitter (standard deviation), and one
/// message in ten lost.
pub const LINK: Link = Link {
    latency: Duration::from_millis(40),
    jitter: Duration::from_millis(15),
    success_rate: probability!(0.9),
};

/// The AWS race's links: lossless and faster, so the planners outpace the slow one by more
/// generations than history keeps within its two-minute stall (on [`LINK`] they do not).
pub const RACE_LINK: Link = Link {
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(5),
    success_rate: probability!(1.0),
};

pub fn runner(seed: u64, timeout: Duration) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(timeout)),
    )
}

pub async fn network(
    context: &deterministic::Context,
    keys: &[ed25519::PrivateKey],
    link: Link,
) -> Oracle<ed25519::PublicKey, deterministic::Context> {
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: engine::max_message_size(),
            max_peers_per_set: NZUsize!(N),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        keys.iter().map(|k| k.public_key()),
    )
    .await;
    network.start();
    for a in keys {
        for b in keys {
            if a.public_key() != b.public_key() {
                oracle
                    .add_link(a.public_key(), b.public_key(), link.clone())
                    .await
                    .unwrap();
            }
        }
    }
    oracle
}

/// Starts validator `index` on `store` (its state survives a restart) and the archive under
/// the partition prefix `v{index}` (likewise), with a signature cache of its own.
/// `incarnation` counts restarts.
pub async fn start_node(
    context: &deterministic::Context,
    oracle: &Oracle<ed25519::PublicKey, deterministic::Context>,
    key: &ed25519::PrivateKey,
    index: usize,
    incarnation: usize,
    store: MemStore,
) -> Node {
    let keys = keys();
    let control = oracle.control(key.public_key());
    let mut regs = Vec::new();
    for channel in 0..6u64 {
        regs.push(
            control
                .register(channel, engine::CHANNEL_QUOTA)
                .await
                .unwrap(),
        );
    }
    let mut regs = regs.into_iter();
    let channels = engine::Channels {
        votes: regs.next().unwrap(),
        certificates: regs.next().unwrap(),
        resolver: regs.next().unwrap(),
        backfill: regs.next().unwrap(),
        broadcast: regs.next().unwrap(),
        txs: regs.next().unwrap(),
    };
    let mut cfg = engine::Config::new(
        CHAIN,
        keys.iter().map(|k| k.public_key()).collect(),
        format!("v{index}"),
    );
    cfg.leader_timeout_ms = 1_000;
    cfg.certification_timeout_ms = 1_500;
    cfg.empty_block_interval_ms = 100;
    engine::start(
        context
            .child("node")
            .with_attribute("index", index)
            .with_attribute("incarnation", incarnation),
        cfg,
        key.clone(),
        &genesis(&keys),
        Box::new(store),
        // Never shared between nodes: a shared cache would let one node skip a signature
        // check because another node made it.
        Arc::new(SigCache::new(100_000)),
        channels,
        oracle.manager(),
        control,
    )
    .await
    .expect("node starts")
}

/// The simulated network with all [`N`] validators running on fresh in-memory stores
/// (returned, so a crashed node can restart on its own).
pub async fn start_all(
    context: &deterministic::Context,
    link: Link,
) -> (
    Vec<ed25519::PrivateKey>,
    Oracle<ed25519::PublicKey, deterministic::Context>,
    Vec<Node>,
    Vec<MemStore>,
) {
    let keys = keys();
    let oracle = network(context, &keys, link).await;
    let stores: Vec<MemStore> = (0..N).map(|_| MemStore::default()).collect();
    let mut nodes = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        nodes.push(start_node(context, &oracle, k, i, 0, stores[i].clone()).await);
    }
    (keys, oracle, nodes, stores)
}

/// Polls `done` every 10 ms of virtual time; false if it still fails after `limit`.
pub async fn wait_until(
    context: &deterministic::Context,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let start = context.current();
    loop {
        if done() {
            return true;
        }
        if context.current().duration_since(start).unwrap() > limit {
            return false;
        }
        context.sleep(Duration::from_millis(10)).await;
    }
}

pub async fn wait_height(
    context: &deterministic::Context,
    nodes: &[&Arc<Shared>],
    height: u64,
    limit: Duration,
) -> bool {
    wait_until(context, limit, || {
        nodes.iter().all(|s| s.finalized_height() >= height)
    })
    .await
}

pub fn max_height(nodes: &[&Arc<Shared>]) -> u64 {
    nodes.iter().map(|s| s.finalized_height()).max().unwrap()
}

/// Finalized state roots agree at every height two nodes share (safety).
pub fn assert_agree(nodes: &[&Arc<Shared>]) {
    let min = nodes.iter().map(|s| s.finalized_height()).min().unwrap();
    let roots: Vec<_> = nodes.iter().map(|s| s.root_at(min)).collect();
    assert!(
        roots.iter().all(|r| r.is_some() && *r == roots[0]),
        "state roots differ at height {min}: {roots:?}"
    );
}

pub fn config_tx(nonce: u64, key: &str) -> Bytes {
    admin_tx(
        nonce,
        TxKind::ConfigSet {
            key: key.into(),
            value: "v".into(),
            expected_version: 0,
        },
    )
}

pub fn admin_tx(nonce: u64, kind: TxKind) -> Bytes {
    let admin = admin_key();
    Tx {
        signer: admin.verifying_key().to_bytes(),
        nonce,
        valid_until: cairn_ledger::MAX_TX_VALIDITY_BLOCKS,
        kind,
    }
    .sign(&admin)
    .encode()
    .into()
}
