//! Where fragments go: the seed of each placement, the placement itself, and the coding a new
//! bucket gets from the admitted storage nodes, and the failure domains an upload's quorum
//! must survive. Kept apart so placement rules change here only.

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
        let candidates = placement::candidates(s, |id| s.node(id).map_or(0, |n| n.used_bytes));
        let segment = size_hint.min(self.cfg.segment_size_bytes as u64);
        placement::place(
            &candidates,
            seed,
            usize::from(coding.data),
            usize::from(coding.parity),
            fragment_size_bytes(segment, coding.data),
            placement::failure_domain(s),
        )
        .map_err(|e| unavailable(format!("cannot place this object's fragments: {e}")))
    }

    /// Upload parameters for `coding` on `placed`: slots fail together when their nodes share
    /// the cluster's failure domain, and the write quorum must survive losing one.
    pub(super) fn upload_config(&self, coding: Coding, placed: &[NodeId]) -> UploadConfig {
        let domains = self
            .ledger
            .read(|s| placement::domains_of(s, placement::failure_domain(s), placed));
        let mut fragment_domains = crate::pipeline::DISTINCT_DOMAINS;
        for (i, d) in domains.iter().enumerate().take(64) {
            let first = domains.iter().position(|x| x == d).unwrap_or(i);
            fragment_domains[i] = first as u8;
        }
        UploadConfig {
            coding,
            segment_size_bytes: self.cfg.segment_size_bytes,
            write_quorum: (usize::from(coding.data) + self.cfg.write_quorum_extra)
                .min(coding.total()),
            fragment_domains,
        }
    }

    /// The coding of a new bucket: the one `requested`, if the network has that many storage
    /// nodes, else the default for the admitted count. Admitted, not healthy: a node that is
    /// down for a while must not change the coding new buckets get (placement degrades).
    pub(super) fn bucket_coding(&self, s: &State, requested: Option<Coding>) -> S3Result<Coding> {
        let nodes = cairn_ledger::registry::count(s, cairn_ledger::registry::Role::Storage);
        match requested {
            Some(c) if c.total() > nodes => Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                format!(
                    "RS({}, {}) needs {} storage nodes but the network has {nodes}",
                    c.data,
                    c.parity,
                    c.total()
                ),
            )),
            Some(c) => Ok(c),
            None => default_coding(nodes).ok_or_else(|| {
                unavailable(format!(
                    "need at least 2 admitted storage nodes, found {nodes}"
                ))
            }),
        }
    }
}
