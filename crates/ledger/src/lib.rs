//! `cairn-ledger`: Cairn's deterministic state machine.
//!
//! What it is: the rules of the system as a pure function `(state, finalized block) -> (state,
//! events)`. It has no I/O, no clock, no async and no randomness; the same blocks from the same
//! genesis always give the same [`State::state_root`].
//!
//! Contract:
//! - [`SignedTx::decode_and_verify`] performs every check that needs no state: strict canonical
//!   decoding (bounded lengths, no trailing bytes), field validation and the ed25519 signature
//!   over [`tx::SIGNING_DOMAIN`] and the body. A block holding a transaction that fails it is
//!   invalid as a whole ([`BlockError::BadTx`]).
//! - Stateful rules (unknown account, replayed nonce, compare-and-set version, heartbeat
//!   sequence, ownership) never invalidate a block: the transaction is skipped with a rejected
//!   receipt, so verifying a block needs no unfinalized state.
//! - Replay protection: each account keeps the highest accepted nonce and a 64-bit window of
//!   used nonces below it ([`NONCE_WINDOW`]); a nonce is accepted once, and up to 63 behind the
//!   highest (so gossip may reorder a client's transactions).
//!
//! Limits: [`MAX_TX_SIZE_BYTES`], [`MAX_TXS_PER_BLOCK`], and the field bounds in [`tx`]. The
//! state root is recomputed over all entries after each block: O(entries), measured fine for
//! the devnet; a Merkleized incremental root is future work once state grows past ~100k entries.
//! Input from the network never panics this crate (property-tested).

pub mod codec;
pub mod state;
pub mod tx;

pub use state::{
    check_nonce, Account, BlockOutcome, ConfigEntry, Event, Genesis, NodeRecord, NodeRecordInit,
    State,
};
pub use tx::{Roles, SignedTx, Tx, TxKind, MAX_TX_SIZE_BYTES};

/// Most transactions in one block.
pub const MAX_TXS_PER_BLOCK: usize = 4096;
/// Size of the anti-replay nonce window.
pub const NONCE_WINDOW: u64 = 64;
/// An account id: ed25519 public key bytes.
pub type AccountId = [u8; 32];
/// A node id: the node's p2p ed25519 public key bytes.
pub type NodeId = [u8; 32];
/// A blake3 hash.
pub type Hash = [u8; 32];

/// Why a transaction was refused; the message says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize)]
pub enum TxError {
    /// The bytes are not a canonical transaction.
    #[error("malformed transaction ({reason}); re-encode it with a current client")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// Too large.
    #[error("transaction is {size_bytes} bytes, the limit is {max_bytes}; shrink it")]
    Oversize {
        /// Size.
        size_bytes: usize,
        /// Limit.
        max_bytes: usize,
    },
    /// Signature does not verify for the signer key.
    #[error("bad signature; sign with the signer account's key")]
    BadSignature,
    /// A field is out of bounds.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Signer is not registered.
    #[error("unknown account; register it first (register-account)")]
    UnknownAccount,
    /// Account already registered.
    #[error("account already registered")]
    AccountExists,
    /// Nonce was used already.
    #[error("nonce {nonce} already used; use a fresh nonce")]
    NonceReplayed {
        /// Nonce.
        nonce: u64,
    },
    /// Nonce is behind the replay window.
    #[error("nonce {nonce} is too old (minimum {min}); use a fresh nonce")]
    NonceTooOld {
        /// Nonce.
        nonce: u64,
        /// Smallest acceptable.
        min: u64,
    },
    /// Node not registered.
    #[error("unknown node; register it first")]
    UnknownNode,
    /// Node already registered.
    #[error("node already registered")]
    NodeExists,
    /// Signer is not the node's operator.
    #[error("signer is not the node's operator")]
    NotNodeOperator,
    /// Heartbeat sequence did not increase.
    #[error("heartbeat seq {seq} is not above {last}; use a higher sequence")]
    StaleHeartbeat {
        /// Given.
        seq: u64,
        /// Last accepted.
        last: u64,
    },
    /// Compare-and-set version mismatch.
    #[error(
        "config version mismatch: expected {expected}, current is {current}; re-read and retry"
    )]
    ConfigVersionMismatch {
        /// Expected by the writer.
        expected: u64,
        /// Current.
        current: u64,
    },
}

/// Why a block is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Too many transactions.
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTxs {
        /// Count.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// Not the next height.
    #[error("block height {got} is not the next height {expected}")]
    WrongHeight {
        /// Expected.
        expected: u64,
        /// Given.
        got: u64,
    },
    /// A transaction fails stateless checks.
    #[error("transaction {index} is invalid: {error}")]
    BadTx {
        /// Index in the block.
        index: usize,
        /// Reason.
        error: TxError,
    },
}
