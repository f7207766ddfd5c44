//! `cairn-storage`: the data path of one storage node, without networking.
//!
//! What it is: erasure coding of segments into fragments ([`erasure`], `reed-solomon-simd`,
//! default RS(4, 8)), a BLAKE3 Merkle tree over 4 KiB leaves of each fragment whose root is the
//! fragment's address and the value manifests record ([`merkle`]), and a durable on-disk
//! fragment store ([`store`]).
//!
//! Contract:
//! - A fragment is only ever stored under, and returned for, the root its content hashes to;
//!   reads re-verify, so bit rot surfaces as an error, never as wrong bytes.
//! - A write is atomic and durable when `put` returns (temp file, fsync, rename, dir fsync).
//! - Any k of a segment's k + m fragments rebuild it byte for byte.
//!
//! Limits: [`store::MAX_FRAGMENT_SIZE_BYTES`] per fragment, a bounded number of concurrent
//! writes per store, at most [`erasure::MAX_DATA_SHARDS`] + [`erasure::MAX_PARITY_SHARDS`]
//! fragments per segment. Whole fragments are read into memory (at k = 4, a fragment of the
//! largest, 32 MiB, segment is 8 MiB; of the gateway's default 16 MiB segment, 4 MiB).

#![warn(missing_docs)]

pub mod erasure;
pub mod merkle;
pub mod store;

/// A BLAKE3 hash.
pub type Hash = [u8; 32];

pub use erasure::{Coding, CodingError};
pub use merkle::{MerkleTree, Proof, LEAF_SIZE_BYTES};
pub use store::{FragmentStore, StoreError};
