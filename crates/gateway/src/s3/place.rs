//! Where fragments go: the seed of each placement, the placement itself, and the coding a new
//! bucket gets from the admitted storage nodes, and the failure domains an upload's quorum
//! must survive. Kept apart so placement rules change here only.

use super::*;
use cairn_ledger::{objects::fragment_size_bytes, NodeId};
use std::sync::atomic::Ordering;

/// Where one object's fragments go, with the failure domains read in the same snapshot.
#[derive(Clone, Debug)]
pub(super) struct Placed {
    /// Slot i's node.
    pub nodes: Vec<NodeId>,
    /// Slot i's failure domain, numbered by the first slot in that domain (as
    /// [`UploadConfig::fragment_domains`] wants it).
    pub domains: [u8; 64],
}

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
    ) -> S3Result<Placed> {
        let candidates = placement::candidates(s, |id| s.node(id).map_or(0, |n| n.used_bytes));
        let segment = size_hint.min(self.cfg.segment_size_bytes as u64);
        let domain = placement::failure_domain(s);
        let nodes = placement::place(
            &candidates,
            seed,
            usize::from(coding.data),
            usize::from(coding.parity),
            fragment_size_bytes(segment, coding.data),
            domain,
        )
        .map_err(|e| unavailable(format!("cannot place this object's fragments: {e}")))?;
        // Slots fail together when their nodes share the cluster's failure domain.
        let of_slot = placement::domains_of(s, domain, &nodes);
        let mut domains = crate::pipeline::DISTINCT_DOMAINS;
        for (i, d) in of_slot.iter().enumerate().take(64) {
            let first = of_slot.iter().position(|x| x == d).unwrap_or(i);
            domains[i] = first as u8;
        }
        Ok(Placed { nodes, domains })
    }

    /// Upload parameters for `coding` on `placed`: the write quorum must survive losing any
    /// one of its failure domains.
    pub(super) fn upload_config(&self, coding: Coding, placed: &Placed) -> UploadConfig {
        UploadConfig {
            coding,
            segment_size_bytes: self.cfg.segment_size_bytes,
            write_quorum: (usize::from(coding.data) + self.cfg.write_quorum_extra)
                .min(coding.total()),
            fragment_domains: placed.domains,
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
