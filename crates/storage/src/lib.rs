//! `cairn-storage`: everything about fragments, on disk and on the wire.
//!
//! What it is: erasure coding of segments into fragments ([`erasure`], `reed-solomon-simd`,
//! default RS(4, 8)), a BLAKE3 Merkle tree over 4 KiB leaves of each fragment whose root is the
//! fragment's address and the value manifests record ([`merkle`], defined in cairn-ledger so that
//! the ledger can verify audit proofs), a durable on-disk fragment
//! store ([`store`]), and the fragment protocol between nodes: its contract
//! ([`protocol::FragmentTransport`], which the gateway pipeline is generic over), request
//! authentication ([`auth`]: roles from finalized ledger state, fresh single-use ed25519
//! tickets bound to method, target, root and body length), the HTTP server of a storage node
//! ([`server`]) and the HTTP client a gateway pushes and fetches with ([`client`]). [`conn`] is
//! the HTTP/1 connection hygiene the fragment listener shares with the node's S3 and admin
//! listeners. The node only wires these up: it passes ledger reads in as closures
//! ([`server::Authorizer`], [`client::AddressBook`]), so this crate needs neither the chain
//! nor the node.
//!
//! Contract:
//! - A fragment is only ever stored under, and returned for, the root its content hashes to;
//!   reads re-verify, so bit rot surfaces as an error, never as wrong bytes (the fragment
//!   server skips that re-hash on GET: the requesting gateway verifies every fragment).
//! - A write is atomic and durable when `put` returns (temp file, fsync, rename, dir fsync).
//! - Any k of a segment's k + m fragments rebuild it byte for byte.
//! - The fragment server moves a fragment only for a gateway node's valid, fresh, unreplayed
//!   ticket naming this node; every refusal is a typed error with an HTTP status and code.
//!
//! Limits: [`store::MAX_FRAGMENT_SIZE_BYTES`] per fragment, a bounded number of concurrent
//! writes per store, at most [`erasure::MAX_DATA_SHARDS`] + [`erasure::MAX_PARITY_SHARDS`]
//! fragments per segment. Whole fragments are read into memory (at k = 4, a fragment of the
//! largest, 32 MiB, segment is 8 MiB; of the gateway's default 16 MiB segment, 4 MiB). The
//! fragment server caps connections ([`server::MAX_CONNECTIONS`], per IP
//! [`server::MAX_CONNECTIONS_PER_IP`]) and body bytes in flight
//! ([`server::MAX_INFLIGHT_BODY_BYTES`], reserved before a body byte is read), and remembers
//! at most [`auth::MAX_REPLAY_ENTRIES`] tickets.

#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod conn;
pub mod erasure;
pub use cairn_ledger::merkle;
pub mod protocol;
pub mod prover;
pub mod server;
pub mod store;

/// A BLAKE3 hash.
pub type Hash = [u8; 32];

pub use erasure::{Coding, CodingError};
pub use merkle::{MerkleTree, Proof, LEAF_SIZE_BYTES};
pub use protocol::{FragmentTransport, TransportError};
pub use store::{FragmentStore, StoreError};
