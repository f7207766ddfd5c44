//! `cairn-chain`: commonware simplex BFT consensus over the deterministic `cairn-ledger`.
//!
//! What it does: orders blocks of signed transactions with simplex (ed25519 attributable
//! signatures, round-robin leaders), disseminates and backfills blocks with marshal, applies
//! each finalized block exactly once and in order to the ledger, persists the resulting state
//! and publishes the new finalized height on a watch channel ([`Shared::subscribe`]).
//!
//! Contract:
//! - Only finalized blocks change ledger state; services read [`Shared`] and submit
//!   transactions, never mutate state directly.
//! - All node logic is generic over commonware runtime traits, so whole networks run in the
//!   deterministic simulator (see `tests/sim.rs`).
//! - Restart consistency: ledger state is written only for blocks marshal already archived
//!   (every [`shared::PERSIST_EVERY_BLOCKS`] heights), a block at or below the applied height
//!   is acknowledged without re-applying, and a gap above it is replayed from the archive
//!   (counted by [`Shared::replayed_blocks`]).
//!
//! Limits: [`block::MAX_BLOCK_TXS`] transactions and [`block::MAX_BLOCK_TX_BYTES`] bytes per
//! block, a mempool bounded in count and bytes ([`engine::Config`]), gossip batches of at most
//! [`engine::MAX_GOSSIP_TXS`]. One fixed committee (epoch 0) until committee rotation lands.

pub mod application;
pub mod block;
pub mod engine;
pub mod mempool;
pub mod shared;
pub mod store;

pub use block::{Block, Digest};
pub use engine::{start, Channels, Config, Node};
pub use shared::{Finalized, FinalizedBlock, Nonces, Shared, SubmitError, TxStatus};

/// The consensus signing scheme: ed25519 (attributable, cheap to verify; see docs/ARCHITECTURE.md).
pub type Scheme = commonware_consensus::simplex::scheme::ed25519::Scheme;
