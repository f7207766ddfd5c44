//! The fragment protocol's contract: [`FragmentTransport`] (what the gateway pipeline needs
//! from any way of moving fragments) and its error, [`TransportError`]. The HTTP
//! implementation is [`crate::client::HttpTransport`]; the server side is [`crate::server`].

use bytes::Bytes;
use cairn_ledger::{Hash, NodeId};
use std::future::Future;
use thiserror::Error;

/// Moves fragments to and from storage nodes; `put` returns once the fragment is durable.
pub trait FragmentTransport: Send + Sync {
    /// Stores `data` (whose Merkle root is `root`) on `node`.
    fn put(
        &self,
        node: NodeId,
        root: Hash,
        data: Bytes,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Fetches the fragment `root` from `node` (unverified: the pipeline verifies).
    fn get(
        &self,
        node: NodeId,
        root: Hash,
    ) -> impl Future<Output = Result<Bytes, TransportError>> + Send;
    /// Resolves after `ms` milliseconds: a read sends its hedged requests when it fires, an
    /// upload stops waiting for late pushes. The default resolves at once (hedged requests go
    /// out with the first k; uploads keep only the pushes already done at quorum).
    fn hedge_delay(&self, ms: u64) -> impl Future<Output = ()> + Send {
        let _ = ms;
        async {}
    }
    /// Tells `node` that the fragment `root` it served did not match its root, so it re-verifies
    /// its copy and reports the loss on the ledger (best effort: errors are ignored). The
    /// default does nothing.
    fn report_corrupt(&self, node: NodeId, root: Hash) -> impl Future<Output = ()> + Send {
        let _ = (node, root);
        async {}
    }
    /// Milliseconds on the clock [`Self::hedge_delay`] counts in, from an arbitrary epoch; the
    /// pipeline sizes an upload's grace with it. The default is the process's monotonic clock.
    fn now_ms(&self) -> u64 {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A failed transfer to or from one node (the pipeline tolerates up to m of them).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("fragment transfer failed: {0}")]
pub struct TransportError(pub String);

/// Lower-case hex of `bytes` (ids and roots in headers, paths and messages).
pub fn hex(bytes: &[u8]) -> String {
    const_hex::encode(bytes)
}

/// Parses hex of any even length (no `0x` prefix).
pub fn unhex_vec(s: &str) -> Option<Vec<u8>> {
    const_hex::decode(s).ok()
}

/// Parses exactly `2 * N` hex characters (no `0x` prefix).
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    const_hex::decode_to_array(s).ok()
}
