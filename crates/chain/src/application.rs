//! The marshal [`Application`]: builds blocks from the mempool and verifies peers' blocks.
//!
//! Contract:
//! - `propose` never includes a transaction that an unfinalized ancestor already carries, and
//!   waits (bounded by `empty_block_interval_ms`) for work before proposing an empty block.
//! - `verify` accepts a block only if every transaction decodes, passes the ledger's stateless
//!   checks and carries a valid signature, and the block respects the size bounds. Stateful
//!   rules (nonces, ownership) are applied at execution, where a failing transaction becomes a
//!   rejected receipt: that keeps verification independent of unfinalized state.

use crate::{
    block::{Block, MAX_BLOCK_TXS, MAX_BLOCK_TX_BYTES},
    shared::Shared,
    Scheme,
};
use cairn_ledger::Hash;
use commonware_consensus::{
    marshal::ancestry::Ancestry, simplex::types::Context, Application as MarshalApplication,
};
use commonware_cryptography::{ed25519, Digested, Digestible};
use commonware_macros::select;
use commonware_runtime::{Clock, Metrics, Spawner};
use futures::StreamExt;
use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

/// How far ahead of a verifier's clock a block's timestamp may be; block time decides node
/// health (`cairn_ledger::registry`), so this bounds how far a proposer can age every node.
pub const MAX_BLOCK_FUTURE_MS: u64 = 5_000;

/// Block builder and verifier for one node.
#[derive(Clone)]
pub struct Application {
    shared: Arc<Shared>,
    empty_block_interval: Duration,
}

impl Application {
    /// Creates the application over a node's shared state.
    pub fn new(shared: Arc<Shared>, empty_block_interval_ms: u64) -> Self {
        Self {
            shared,
            empty_block_interval: Duration::from_millis(empty_block_interval_ms),
        }
    }

    /// Hashes of transactions carried by blocks between `ancestry` and the finalized tip.
    async fn pending_hashes(
        &self,
        mut ancestry: impl Ancestry<Block>,
    ) -> Option<(Digested<Block>, HashSet<Hash>)> {
        let finalized = self.shared.finalized_height();
        let first = ancestry.next().await?;
        let mut exclude = HashSet::new();
        let mut cursor = Some(first.clone());
        // Bounded: at most the (small) number of notarized-but-unfinalized ancestors.
        while let Some(block) = cursor {
            if block.inner().height <= finalized {
                break;
            }
            for tx in &block.inner().txs {
                exclude.insert(crate::shared::tx_hash(tx));
            }
            cursor = ancestry.next().await;
        }
        Some((first, exclude))
    }
}

fn now_ms<E: Clock>(context: &E) -> u64 {
    context
        .current()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<E> MarshalApplication<E> for Application
where
    E: Clock + Spawner + Metrics,
{
    type SigningScheme = Scheme;
    type Context = Context<crate::Digest, ed25519::PublicKey>;
    type Block = Block;
    type Input = ();

    async fn propose(
        &mut self,
        (context, _consensus): (E, Self::Context),
        ancestry: impl Ancestry<Block>,
        _input: (),
    ) -> Option<Digested<Block>> {
        // Wait for work, bounded, so an idle chain does not spin out empty blocks.
        if self.shared.mempool.is_empty() {
            let notified = self.shared.mempool.inserted();
            let deadline = context.sleep(self.empty_block_interval);
            if self.shared.mempool.is_empty() {
                select! {
                    _ = notified => {},
                    _ = deadline => {},
                }
            }
        }
        let (parent, exclude) = self.pending_hashes(ancestry).await?;
        let txs = self
            .shared
            .mempool
            .select(&exclude, MAX_BLOCK_TXS, MAX_BLOCK_TX_BYTES);
        let timestamp_ms = now_ms(&context).max(parent.inner().timestamp_ms);
        let block = Block::new(
            parent.digest(),
            parent.inner().height + 1,
            timestamp_ms,
            txs,
        );
        let digest = block.digest();
        Some(Digested::precomputed(block, digest))
    }

    async fn verify(
        &mut self,
        (context, _consensus): (E, Self::Context),
        mut ancestry: impl Ancestry<Block>,
    ) -> bool {
        // Only the tip is needed: stateless checks do not depend on ancestors, and the ledger
        // never lets block time go backwards (it keeps the larger of parent and block time).
        let Some(block) = ancestry.next().await else {
            return false;
        };
        let block = block.inner();
        if block.txs.len() > MAX_BLOCK_TXS || block.tx_bytes() > MAX_BLOCK_TX_BYTES {
            return false;
        }
        // Block time drives node health, so a proposer may not run it ahead of our clock.
        if block.timestamp_ms > now_ms(&context).saturating_add(MAX_BLOCK_FUTURE_MS) {
            return false;
        }
        self.shared.verify_txs(&block.txs).is_ok()
    }
}
