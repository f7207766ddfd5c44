//! `cairn devnet`'s storage self-check: one object's worth of fragments through the real path.
//!
//! It places a 1 MiB segment over the healthy storage nodes of finalized state
//! (`placement::place`), erasure-codes it, pushes every fragment over authenticated HTTP to
//! each node's fragment store, then reads it back through the verified k-of-n download path and
//! compares the bytes. It writes no manifest: the fragments stay unreferenced (garbage that
//! repair-time collection will remove).

use crate::{admin::HEALTH_WINDOW_BLOCKS, fragments::HttpTransport};
use bytes::Bytes;
use cairn_chain::Shared;
use cairn_gateway::{read_range, upload, UploadConfig};
use cairn_ledger::{objects::fragment_size_bytes, placement, NodeId};
use cairn_storage::Coding;
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use std::{collections::HashMap, net::SocketAddr, time::Instant};

/// Size of the self-check segment.
pub const SELF_CHECK_SIZE_BYTES: usize = 1 << 20;
/// Per-request timeout of the self-check transport.
const TIMEOUT_MS: u64 = 10_000;

/// The coding the self-check uses for `nodes` storage nodes: RS(4, 8) from 12 nodes, else about
/// a third data and the rest parity.
pub fn coding_for(nodes: usize) -> Option<Coding> {
    if nodes >= 12 {
        return Some(Coding::DEFAULT);
    }
    if nodes < 2 {
        return None;
    }
    let data = (nodes / 3).max(1) as u8;
    Some(Coding {
        data,
        parity: nodes as u8 - data,
    })
}

/// Runs the check signing as `key` (a registered node); returns a one-line report.
pub async fn run(shared: &Shared, key: SigningKey) -> Result<String, String> {
    let (candidates, addresses) = shared.with_state(|s| {
        let c = placement::candidates(s, HEALTH_WINDOW_BLOCKS, |id| {
            s.node(id).map_or(0, |n| n.used_bytes)
        });
        // addresses[1] is the node's API address (see config.rs, genesis).
        let a: HashMap<NodeId, SocketAddr> = s
            .nodes()
            .filter_map(|(id, n)| Some((*id, n.addresses.get(1)?.parse().ok()?)))
            .collect();
        (c, a)
    });
    let coding = coding_for(candidates.len()).ok_or_else(|| {
        format!(
            "needs at least 2 healthy storage nodes, found {}",
            candidates.len()
        )
    })?;
    let data: Vec<u8> = {
        let mut out = vec![0u8; SELF_CHECK_SIZE_BYTES];
        let seed = format!("cairn self-check {}", shared.finalized_height());
        blake3::Hasher::new()
            .update(seed.as_bytes())
            .finalize_xof()
            .fill(&mut out);
        out
    };
    let seed = *blake3::hash(&data).as_bytes();
    let fragment_bytes = fragment_size_bytes(data.len() as u64, coding.data);
    let placed = placement::place(&candidates, &seed, coding.total(), fragment_bytes)
        .map_err(|e| e.to_string())?;
    let zones: std::collections::BTreeSet<&str> = candidates
        .iter()
        .filter(|c| placed.contains(&c.id))
        .map(|c| c.zone.as_str())
        .collect();
    let transport = HttpTransport::new(key, addresses, TIMEOUT_MS);
    let cfg = UploadConfig {
        coding,
        segment_size_bytes: SELF_CHECK_SIZE_BYTES,
        write_quorum: coding.total(),
    };
    let started = Instant::now();
    let body = futures::stream::iter([Ok::<_, String>(Bytes::from(data.clone()))]);
    let segments = upload(&transport, &cfg, &placed, body)
        .await
        .map_err(|e| e.to_string())?;
    let write_ms = started.elapsed().as_millis();
    let started = Instant::now();
    let mut read = Vec::with_capacity(data.len());
    let mut stream = std::pin::pin!(read_range(
        &transport,
        coding,
        &placed,
        &segments,
        0,
        data.len() as u64,
        0
    )
    .map_err(|e| e.to_string())?);
    while let Some(part) = stream.next().await {
        read.extend_from_slice(&part.map_err(|e| e.to_string())?);
    }
    let read_ms = started.elapsed().as_millis();
    if read != data {
        return Err("read-back bytes differ from what was written".into());
    }
    Ok(format!(
        "storage self-check: RS({}, {}) 1 MiB over {} nodes in {} zones, write {write_ms} ms, verified read {read_ms} ms",
        coding.data,
        coding.parity,
        placed.len(),
        zones.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_scales_with_nodes() {
        assert_eq!(coding_for(12), Some(Coding::DEFAULT));
        assert_eq!(coding_for(4), Some(Coding { data: 1, parity: 3 }));
        assert_eq!(coding_for(6), Some(Coding { data: 2, parity: 4 }));
        assert_eq!(coding_for(1), None);
    }

    #[test]
    fn node_key_and_account_key_agree() {
        use commonware_cryptography::Signer as _;
        // Fragment requests are signed with the dalek form of the node's p2p key; the server
        // looks the signer up by node id, so both must be the same public key.
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(7);
        assert_eq!(
            crate::config::account_key(&key).verifying_key().to_bytes(),
            crate::config::node_id(&key)
        );
    }
}
