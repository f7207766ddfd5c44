//! `cairn-ledger`: Cairn's deterministic state machine.
//!
//! What it is: the rules of the system as a pure function `(state, finalized block) -> (state,
//! events)`. It has no I/O, no clock, no async, no threads and no randomness; the same blocks
//! from the same genesis always give the same [`State::state_root`] on every machine.
//!
//! Contract:
//! - [`SignedTx::decode_and_verify`] performs every check that needs no state: strict canonical
//!   decoding (bounded lengths, no trailing bytes, bools 0/1, known tags, UTF-8), field
//!   validation ([`Tx::validate`]) and the ed25519 `verify_strict` signature over
//!   [`SIGNING_DOMAIN`] followed by [`Tx::encode`]. A block holding a transaction that fails it
//!   is invalid as a whole ([`BlockError::BadTx`]) and leaves the state unchanged.
//! - Stateful rules (unknown account, replayed or too-old nonce, compare-and-set version,
//!   heartbeat sequence, node ownership) never invalidate a block: the transaction is skipped
//!   with an `Err` receipt and an [`Event::TxRejected`], so verifying a block needs no state.
//! - Replay protection: each account keeps the highest accepted nonce and a bitmask of used
//!   nonces below it; a nonce is accepted at most once, and up to `NONCE_WINDOW - 1` behind the
//!   highest, so gossip may reorder a client's transactions ([`check_nonce`]).
//! - Persistence: [`State::entries`] / [`State::take_dirty`] expose canonical key/value bytes;
//!   [`State::from_entries`] rebuilds a state with the identical root.
//! - Bytes from the network or from disk never panic this crate (property-tested); they give
//!   [`TxError`] or [`StateError`].
//!
//! Limits (all named): [`MAX_TX_SIZE_BYTES`], [`MAX_TXS_PER_BLOCK`], [`NONCE_WINDOW`],
//! [`MAX_NAME_SIZE_BYTES`], [`MAX_ZONE_SIZE_BYTES`], [`MAX_ADDRESSES`],
//! [`MAX_ADDRESS_SIZE_BYTES`], [`MAX_CONFIG_KEY_SIZE_BYTES`], [`MAX_CONFIG_VALUE_SIZE_BYTES`],
//! [`MAX_CHAIN_ID_SIZE_BYTES`].
//!
//! Layout, by rule rather than by layer:
//! - `rules/`: the stateful rules, one file per transaction family, each holding that
//!   family's check and apply together (`accounts.rs`: signer, nonce, `RegisterAccount`,
//!   `ConfigSet`; `nodes.rs`: `RegisterNode`, `AdmitNode`, `Heartbeat`; `buckets.rs`;
//!   `objects.rs`; `dns.rs`). `rules::check(state, tx, height)` changes nothing and returns a
//!   `Checked` value carrying every record the transaction will write, computed once;
//!   `rules::apply(state, checked)` only writes it and returns the [`Event`], so apply cannot
//!   fail and never re-looks-up what check found. [`State::check_tx`] (the mempool) and
//!   block application run the same `check`.
//! - [`state`]: the tables and their accessors, root maintenance ([`State::take_dirty`]) and
//!   the block loop ([`State::apply_block`]); `state/codec.rs` holds the canonical entry
//!   encoding ([`State::entries`], [`State::from_entries`]).
//! - Pure domain modules the rules call: [`tx`] (encoding, stateless validation),
//!   [`admission`], [`objects`], [`versions`], [`placement`], [`registry`], [`zones`], [`dns`].
//!
//! Placement ([`placement`]): which storage nodes receive a segment's fragments is a pure
//! function of the finalized registry (zones, health, free capacity) and a seed.
//!
//! State root: an incremental homomorphic multiset hash ([`lthash`]) over every canonical
//! (key, value) entry, updated in O(entries touched) per block. It commits to the whole state
//! (the height is an entry) but, unlike a Merkle tree, gives no per-entry inclusion proofs;
//! light-client proofs are future work.

#![warn(missing_docs)]

pub mod admission;
pub mod audit;
pub mod codec;
pub mod dns;
pub mod lthash;
pub mod merkle;
pub mod objects;
pub mod placement;
pub mod registry;
mod rules;
pub mod state;
pub mod tx;
pub mod versions;
pub mod zones;

pub use state::{
    check_nonce, check_validity, Account, BlockOutcome, ConfigEntry, Event, Genesis, NodeRecord,
    NodeRecordInit, State, MAX_CHAIN_ID_SIZE_BYTES,
};
pub use tx::{
    Roles, SignedTx, Tx, TxKind, MAX_ADDRESSES, MAX_ADDRESS_SIZE_BYTES, MAX_CONFIG_KEY_SIZE_BYTES,
    MAX_CONFIG_VALUE_SIZE_BYTES, MAX_NAME_SIZE_BYTES, MAX_TX_SIZE_BYTES, MAX_ZONE_SIZE_BYTES,
    SIGNING_DOMAIN,
};

/// Most transactions in one block.
pub const MAX_TXS_PER_BLOCK: usize = 4096;
/// Longest a transaction may stay valid: its `valid_until` is at most this many blocks past
/// the height it applies at (about 30 minutes at one block per 500 ms).
pub const MAX_TX_VALIDITY_BLOCKS: u64 = 3_600;
/// Size of the anti-replay nonce window (bits in [`Account::nonce_window`]).
pub const NONCE_WINDOW: u64 = 64;
const _: () = assert!(NONCE_WINDOW >= 1 && NONCE_WINDOW <= u64::BITS as u64);

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
    #[error("malformed transaction ({reason}); re-encode it with a current cairn client")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The encoding is larger than [`MAX_TX_SIZE_BYTES`].
    #[error("transaction is {size_bytes} bytes but the limit is {max_bytes}; shrink its fields")]
    Oversize {
        /// Encoded size.
        size_bytes: usize,
        /// Limit.
        max_bytes: usize,
    },
    /// The signature does not verify for the signer key.
    #[error("bad signature; sign the transaction with the signer account's private key")]
    BadSignature,
    /// A field is out of bounds or badly formed.
    #[error("invalid {field}: {reason}; fix the field and sign again")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The signer has no account.
    #[error("unknown signer account; register it first with a RegisterAccount transaction")]
    UnknownAccount,
    /// The signer already has an account.
    #[error("account already registered; use it instead of registering again")]
    AccountExists,
    /// The nonce was already used by this account.
    #[error("nonce {nonce} was already used; sign again with a fresh nonce")]
    NonceReplayed {
        /// Nonce given.
        nonce: u64,
    },
    /// The nonce is behind the replay window.
    #[error(
        "nonce {nonce} is too old (smallest accepted is {min}); sign again with a fresh nonce"
    )]
    NonceTooOld {
        /// Nonce given.
        nonce: u64,
        /// Smallest nonce still acceptable.
        min: u64,
    },
    /// The node is not registered.
    #[error("unknown node; register it first with a RegisterNode transaction")]
    UnknownNode,
    /// The node is already registered.
    #[error("node already registered; send heartbeats for it instead")]
    NodeExists,
    /// The signer is not the node's operator.
    #[error("signer is not the node's operator; sign with the operator account's key")]
    NotNodeOperator,
    /// The heartbeat sequence did not increase.
    #[error("heartbeat seq {seq} is not above the last accepted {last}; send a higher seq")]
    StaleHeartbeat {
        /// Sequence given.
        seq: u64,
        /// Last accepted sequence.
        last: u64,
    },
    /// The compare-and-set base is not the current version.
    #[error(
        "config version mismatch: expected {expected} but current is {current}; re-read the entry and retry"
    )]
    ConfigVersionMismatch {
        /// Version the writer expected.
        expected: u64,
        /// Current version (0 = absent).
        current: u64,
    },
    /// The bucket does not exist.
    #[error("no such bucket; create it first")]
    NoSuchBucket,
    /// The bucket name is taken.
    #[error("bucket already exists; pick another name")]
    BucketExists,
    /// DeleteBucket on a bucket that still holds objects.
    #[error("bucket still holds {objects} objects; delete them first")]
    BucketNotEmpty {
        /// Objects left.
        objects: u64,
    },
    /// The object does not exist.
    #[error("no such object")]
    NoSuchObject,
    /// A conditional (if-absent) write found the key taken.
    #[error("object already exists and the write required it to be absent")]
    ObjectExists,
    /// The signer may not act for the owner, or the owner does not own the bucket.
    #[error("not authorized: sign as the bucket owner, or have the owner authorize this gateway")]
    NotAuthorized,
    /// The manifest's placement does not fit the bucket or the registry.
    #[error("invalid placement: {reason}; recompute it from the current node registry")]
    InvalidPlacement {
        /// What is wrong.
        reason: String,
    },
    /// The zone does not exist.
    #[error("no such zone; create it with `cairn dns import` first")]
    NoSuchZone,
    /// The zone's version moved on (compare-and-set).
    #[error("zone version mismatch: expected {expected} but current is {current}; re-read the zone and retry")]
    ZoneVersionMismatch {
        /// Expected by the writer.
        expected: u64,
        /// Current.
        current: u64,
    },
    /// The zone would be invalid after the change.
    #[error("{error}")]
    InvalidZone {
        /// What is wrong.
        error: crate::dns::RecordError,
    },
    /// The new zone overlaps an existing one.
    #[error("zone overlaps existing zone {other}; pick a name outside it")]
    ZoneOverlap {
        /// The existing zone.
        other: String,
    },
    /// No managed name of that name in the zone.
    #[error("no such managed name; bind it with `cairn dns manage` first")]
    NoSuchManagedName,
    /// The managed name is already bound.
    #[error("managed name already bound; planners maintain it")]
    ManagedNameExists,
    /// Only committee operators plan or approve overrides.
    #[error(
        "signer operates no node of the current committee; plans and override approvals come from the committee"
    )]
    NotValidator,
    /// The plan broke a DNS rule.
    #[error("plan rejected: {error}")]
    PlanRejected {
        /// Which rule.
        error: crate::dns::PlanError,
    },
    /// An endpoint in a plan is not offered by any node of the name's role.
    #[error("endpoint {address} is not the address of a registered node with the name's role")]
    UnknownEndpoint {
        /// The address.
        address: String,
    },
    /// The transaction's `valid_until` height has passed.
    #[error("transaction expired: valid until height {valid_until}, now {height}; sign it again with a later valid_until")]
    Expired {
        /// Its last valid height.
        valid_until: u64,
        /// The height it would apply at.
        height: u64,
    },
    /// `valid_until` is too far ahead.
    #[error("valid_until {valid_until} is too far ahead (at most {max}); sign it again with a nearer one")]
    ValidityTooLong {
        /// Given.
        valid_until: u64,
        /// Largest accepted now.
        max: u64,
    },
    /// An object write or delete older than the object's current version (or its delete).
    #[error("a newer write to this object (request time {current_ms} ms) already applied; this one (request time {request_ms} ms) is superseded")]
    Superseded {
        /// This write's request time.
        request_ms: u64,
        /// The current version's request time.
        current_ms: u64,
    },
    /// A node registration without a valid proof of possession of the node key.
    #[error("the node key's proof of possession does not verify; sign the registration with the node key too (`cairn node register`)")]
    NoPossessionProof,
    /// Too few committee approvals for an admission.
    #[error("admission has approvals from {votes} committee members but needs {needed}; collect more committee signatures (`cairn node admit`)")]
    AdmissionQuorum {
        /// Committee members covered by valid approvals.
        votes: usize,
        /// Quorum.
        needed: usize,
    },
    /// Too few valid validator approvals for an override.
    #[error("override has approvals from {votes} validator nodes but needs {needed}; collect more signatures")]
    OverrideQuorum {
        /// Validator nodes covered by valid approvals.
        votes: usize,
        /// Quorum.
        needed: usize,
    },
    /// The proof names a round that is not open (an old or future round).
    #[error("audit round {round} is not open (the open round is {open:?}); prove the current round's challenges")]
    AuditRoundNotOpen {
        /// Round named.
        round: u64,
        /// The open round, if any.
        open: Option<u64>,
    },
    /// The open round's deadline has passed.
    #[error(
        "audit round {round}'s deadline was height {deadline}; proofs after it count as missed"
    )]
    AuditProofLate {
        /// Round named.
        round: u64,
        /// Last height at which its proofs apply.
        deadline: u64,
    },
    /// The node has no challenges in the open round.
    #[error("this node has no challenges in the open audit round")]
    NotChallenged,
    /// A challenge index is out of range or was already answered.
    #[error(
        "audit challenge {index} does not exist or was already answered; send only open challenges"
    )]
    ChallengeNotOpen {
        /// Index given.
        index: u8,
    },
    /// The reporting node does not hold that fragment (per the manifest).
    #[error("the manifest does not record this fragment as stored on this node")]
    FragmentNotHeld,
}

/// Why a block is invalid as a whole (the state is left unchanged).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// More than [`MAX_TXS_PER_BLOCK`] transactions.
    #[error("block has {count} transactions but the limit is {max}; propose a smaller block")]
    TooManyTxs {
        /// Count given.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// The block is not at the next height.
    #[error("block height {got} is not the next height {expected}; apply blocks in order")]
    WrongHeight {
        /// Next height.
        expected: u64,
        /// Height given.
        got: u64,
    },
    /// A transaction fails stateless checks.
    #[error("transaction {index} is invalid ({error}); the proposer must drop it")]
    BadTx {
        /// Index in the block.
        index: usize,
        /// Reason.
        error: TxError,
    },
}

/// Why stored entries could not be turned back into a [`State`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// An entry is not a canonical ledger entry.
    #[error(
        "stored ledger state is corrupt ({reason}); restore the data directory from a backup or resync it"
    )]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
}
