//! Where fragments go: the seed of each placement, the placement itself, and the coding a new
//! bucket gets from the healthy storage nodes. Kept apart so placement rules change here only.

use super::*;
use cairn_ledger::{objects::fragment_size_bytes, NodeId};
use std::sync::atomic::Ordering;

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    pub(super) fn seed(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        for p in parts {
            h.update(&(p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.update(
            &self
                .seed_counter
                .fetch_add(1, Ordering::Relaxed)
                .to_le_bytes(),
        );
        h.update(&now_ms().to_le_bytes());
        *h.finalize().as_bytes()
    }

    pub(super) fn place(
        &self,
        s: &State,
        coding: Coding,
        seed: &[u8; 32],
        size_hint: u64,
    ) -> S3Result<Vec<NodeId>> {
        let candidates = placement::candidates(s, self.cfg.health_window_blocks, |id| {
            s.node(id).map_or(0, |n| n.used_bytes)
        });
        let segment = size_hint.min(self.cfg.segment_size_bytes as u64);
        placement::place(
            &candidates,
            seed,
            coding.total(),
            fragment_size_bytes(segment, coding.data),
        )
        .map_err(|e| {
            unavailable(format!(
                "cannot place RS({}, {}) fragments: {e}",
                coding.data, coding.parity
            ))
        })
    }

    /// The coding of a new bucket: the one `requested`, if enough storage nodes are healthy,
    /// else the default for the healthy count.
    pub(super) fn bucket_coding(&self, s: &State, requested: Option<Coding>) -> S3Result<Coding> {
        let healthy = placement::candidates(s, self.cfg.health_window_blocks, |_| 0).len();
        match requested {
            Some(c) if c.total() > healthy => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!(
                    "RS({}, {}) needs {} storage nodes but {healthy} are healthy",
                    c.data,
                    c.parity,
                    c.total()
                ),
            )),
            Some(c) => Ok(c),
            None => default_coding(healthy).ok_or_else(|| {
                unavailable(format!(
                    "need at least 2 healthy storage nodes, found {healthy}"
                ))
            }),
        }
    }
}
