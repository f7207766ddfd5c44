//! `cairn-gateway`: the data path behind the S3 gateway.
//!
//! What it is: the streaming, erasure-coded upload pipeline and the verified, hedged download
//! pipeline ([`pipeline`]), generic over a [`pipeline::FragmentTransport`] so they run against
//! real storage nodes or, in unit tests, local stores.
//!
//! Contract: an upload succeeds only if every segment reached its write quorum of durable
//! fragments; a download only ever returns bytes rebuilt from fragments that matched the
//! manifest's Merkle roots; reads never depend on consensus making progress.
//!
//! Limits: one manifest describes at most `MAX_MANIFEST_SEGMENTS` segments; an upload holds one
//! segment and its fragments in memory. Not built yet: the network transport, the S3 protocol
//! layer (s3s 0.14), SigV4 and the gateway's local key store.

#![warn(missing_docs)]

pub mod keys;
pub mod pipeline;
pub mod s3;

pub use pipeline::{
    read_range, read_segment, upload, DownloadError, FragmentTransport, TransportError,
    UploadConfig, UploadError,
};
