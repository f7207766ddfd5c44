//! `cairn-gateway`: the S3 gateway.
//!
//! What it is: the s3s 0.14 service ([`s3::Gateway`]) with its key store and access hooks
//! ([`keys`]), over the streaming, erasure-coded upload pipeline and the verified, hedged
//! download pipeline ([`pipeline`]). It is generic over [`s3::Ledger`] (finalized state and
//! transaction commit) and [`pipeline::FragmentTransport`], so it runs against real nodes or,
//! in unit tests, local stores.
//!
//! Contract: a write is acknowledged only after every segment reached its write quorum of
//! durable fragments and its manifest transaction is finalized; a download only ever returns
//! bytes rebuilt from fragments that matched the manifest's Merkle roots; reads never depend
//! on consensus making progress; no S3 secret leaves the gateway's key store.
//!
//! Limits: one manifest describes at most `MAX_MANIFEST_SEGMENTS` segments; an upload holds
//! about three segments and two segments' fragments in memory, a read about three segments;
//! multipart uploads in progress live in memory only (lost on restart). See docs/S3.md.

#![warn(missing_docs)]

pub mod keys;
pub mod pipeline;
pub mod s3;

pub use pipeline::{
    read_range, read_segment, upload, DownloadError, FragmentTransport, TransportError,
    UploadConfig, UploadError,
};
