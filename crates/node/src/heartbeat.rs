//! The heartbeat worker: one `Heartbeat` transaction per interval (one outstanding at a time),
//! which the ledger's health rule reads. A node whose critical worker has failed (see
//! [`crate::tasks::Health`]) sends none, so it falls out of placement and DNS within one
//! health window instead of advertising a node that cannot do its job.

use crate::{
    config::{account_key, node_id},
    tasks::{Health, Stop, WorkerError},
};
use cairn_chain::{Nonces, Shared};
use cairn_ledger::{Tx, TxKind};
use commonware_cryptography::ed25519;
use std::{sync::Arc, time::Duration};

/// Blocks a heartbeat stays valid: a late heartbeat says nothing about now.
pub const HEARTBEAT_VALIDITY_BLOCKS: u64 = 20;

/// Submits heartbeats every `interval` while `health` is healthy, until `stop`.
pub async fn run(
    shared: Arc<Shared>,
    key: ed25519::PrivateKey,
    nonces: Arc<Nonces>,
    interval: Duration,
    health: Health,
    mut stop: Stop,
) -> Result<(), WorkerError> {
    let id = node_id(&key);
    let signing = account_key(&key);
    let mut outstanding: Option<[u8; 32]> = None;
    let mut warned = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.requested() => return Ok(()),
        }
        if !health.healthy() {
            if !warned {
                tracing::error!("a critical worker failed: heartbeats stop (see GET /workers)");
                warned = true;
            }
            continue;
        }
        if let Some(hash) = outstanding {
            if shared.tx_status(&hash) == cairn_chain::TxStatus::Pending {
                continue;
            }
        }
        let Some((nonce, seq)) = shared.with_state(|s| {
            let node = s.node(&id)?;
            Some((nonces.next(s)?, node.last_heartbeat_seq + 1))
        }) else {
            continue;
        };
        let tx = Tx {
            signer: id,
            nonce,
            valid_until: shared.finalized_height() + HEARTBEAT_VALIDITY_BLOCKS,
            kind: TxKind::Heartbeat { node: id, seq },
        }
        .sign(&signing);
        outstanding = shared.submit(tx.encode().into()).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{hex, GenesisAccount, GenesisFile, GenesisNode},
        tasks::{FnWorker, TaskSet, WorkerState},
    };
    use cairn_chain::{
        block::Block,
        mempool::{Mempool, SigCache},
        store::MemStore,
    };
    use commonware_cryptography::Signer;

    fn shared_with_node(key: &ed25519::PrivateKey) -> Arc<Shared> {
        let addr = "127.0.0.1:1".parse().unwrap();
        let genesis = GenesisFile {
            audit: Default::default(),
            chain_id: "hb-test".into(),
            accounts: vec![GenesisAccount {
                public_key: hex(ed25519::PrivateKey::from_seed(99).public_key().as_ref()),
                name: "admin".into(),
            }],
            nodes: vec![GenesisNode {
                public_key: hex(key.public_key().as_ref()),
                name: "n00".into(),
                zone: "z1".into(),
                roles: vec!["validator".into(), "storage".into()],
                p2p_address: addr,
                admin_address: addr,
                s3_address: None,
                fragment_address: Some(addr),
                capacity_bytes: 1 << 30,
                stake: 1,
            }],
        };
        Shared::open(
            &genesis.to_ledger().unwrap(),
            &Block::genesis("hb-test"),
            Box::new(MemStore::default()),
            Mempool::new(100, 1 << 20),
            Arc::new(SigCache::new(100)),
        )
        .unwrap()
    }

    /// Runs the heartbeat worker beside a critical worker that fails (or not) and returns how
    /// many heartbeats reached the mempool in ~10 intervals.
    async fn heartbeats_sent(critical_fails: bool) -> usize {
        let key = ed25519::PrivateKey::from_seed(7);
        let shared = shared_with_node(&key);
        let mut set = TaskSet::new();
        let health = set.health();
        set.start(FnWorker::new(
            "finalizer",
            true,
            move |mut stop: Stop| async move {
                if critical_fails {
                    return Err(WorkerError::Fatal("cannot apply block 3".into()));
                }
                stop.requested().await;
                Ok(())
            },
        ));
        let (s, h) = (shared.clone(), health.clone());
        let nonces = Arc::new(Nonces::new(node_id(&key)));
        set.start(FnWorker::new("heartbeats", true, move |stop| {
            run(s, key, nonces, Duration::from_millis(10), h, stop)
        }));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let state = health.report().workers[0].state;
        assert_eq!(
            state,
            if critical_fails {
                WorkerState::Failed
            } else {
                WorkerState::Running
            }
        );
        set.shutdown(Duration::from_secs(1)).await;
        shared.mempool.len()
    }

    #[tokio::test]
    async fn heartbeats_stop_while_a_critical_worker_is_dead() {
        // Blocks never finalize here, so one heartbeat stays outstanding: exactly one is sent.
        assert_eq!(heartbeats_sent(false).await, 1);
        assert_eq!(heartbeats_sent(true).await, 0);
    }
}
