//! `cairn-gateway`: the S3 gateway.
//!
//! What it is: the s3s 0.14 service ([`s3::Gateway`]) with its key store and access hooks
//! ([`keys`]), over the streaming, erasure-coded upload pipeline and the verified, hedged
//! download pipeline ([`pipeline`]). It is generic over [`s3::Ledger`] (finalized state and
//! transaction commit) and [`FragmentTransport`] (the fragment protocol's contract, defined in
//! `cairn_storage::protocol` and re-exported here), so it runs against real nodes or,
//! in tests, an in-process ledger and in-memory fragments (`tests/s3_handlers` drives every
//! operation group through the s3s service, SigV4 included).
//!
//! Layout: [`s3`] holds the gateway, its config and access checks, and one file per operation
//! group (`bucket`, `put`, `get`, `copy`, `delete`, `list`, `multipart`), plus `conditions`
//! (RFC 9110 preconditions; refusing headers Cairn does not implement) and `place` (fragment
//! placement). [`error`] is the one typed mapping from every failure to its S3 code.
//!
//! Contract: a write is acknowledged only after every segment reached its write quorum of
//! durable fragments and its manifest transaction is finalized; a download only ever returns
//! bytes rebuilt from fragments that matched the manifest's Merkle roots; reads never depend
//! on consensus making progress; no S3 secret leaves the gateway's key store.
//!
//! Limits: one manifest describes at most `MAX_MANIFEST_SEGMENTS` segments; an upload holds
//! about three segments and two segments' fragments in memory, a read about three segments;
//! multipart uploads in progress live in memory only (lost on restart); a request header for a
//! feature Cairn does not implement (SSE, object lock, tagging, grants, a per-object ACL) is
//! refused, never ignored. See docs/S3.md.

#![warn(missing_docs)]

pub mod commit;
pub mod error;
pub mod keys;
pub mod pipeline;
pub mod s3;

pub use pipeline::{
    read_range, read_segment, upload, DownloadError, FragmentTransport, TransportError,
    UploadConfig, UploadError,
};
