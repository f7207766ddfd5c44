//! Fragment placement: a deterministic function of the finalized node registry.
//!
//! [`place`] picks `count` distinct storage nodes for one segment's fragments:
//! - spread as evenly as the zones allow (water-filling: each slot goes to the zone with the
//!   fewest slots so far that still has unused eligible nodes, ties in a seeded zone order), so
//!   RS(4, 8) over three zones of four or more nodes puts exactly four fragments in each;
//! - within a zone, weighted by free capacity (sampling without replacement, the draw taken
//!   from BLAKE3 of the seed), so fuller nodes receive less;
//! - skipping nodes that are not storage nodes, are unhealthy ([`candidates`]), or lack room.
//!
//! The output interleaves zones (fragment 0 in one zone, 1 in the next, ...), so the first k
//! fragments (the data fragments) also land in different zones. The same candidates, seed and
//! count always give the same placement, whatever order the candidates come in. Manifests
//! record the result, so later registry changes never move data silently.

use crate::{state::State, Hash, NodeId};
use std::collections::BTreeMap;
use thiserror::Error;

/// Default health window: a node is healthy if it registered or heartbeated this recently.
pub const DEFAULT_HEALTHY_WITHIN_BLOCKS: u64 = 600;

/// One eligible node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: NodeId,
    /// Failure zone.
    pub zone: String,
    /// Free capacity (the sampling weight).
    pub free_bytes: u64,
}

/// Why no placement exists.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PlacementError {
    /// Fewer eligible nodes than fragments.
    #[error("only {eligible} healthy storage nodes have room for a {fragment_bytes}-byte fragment, {needed} are needed; add storage nodes or wait for unhealthy ones to return")]
    NotEnoughNodes {
        /// Eligible nodes.
        eligible: usize,
        /// Fragments to place.
        needed: usize,
        /// Size of each fragment.
        fragment_bytes: u64,
    },
}

/// True if `node` registered or heartbeated within `window_blocks` of `height`.
pub fn is_healthy(
    last_heartbeat_height: u64,
    registered_height: u64,
    height: u64,
    window_blocks: u64,
) -> bool {
    last_heartbeat_height
        .max(registered_height)
        .saturating_add(window_blocks)
        >= height
}

/// Healthy storage nodes of `state` with their free capacity (`used_bytes` per node, 0 if
/// absent), sorted by id.
pub fn candidates(
    state: &State,
    window_blocks: u64,
    used_bytes: impl Fn(&NodeId) -> u64,
) -> Vec<Candidate> {
    state
        .nodes()
        .filter(|(_, n)| n.roles.storage)
        .filter(|(_, n)| {
            is_healthy(
                n.last_heartbeat_height,
                n.registered_height,
                state.height(),
                window_blocks,
            )
        })
        .map(|(id, n)| Candidate {
            id: *id,
            zone: n.zone.clone(),
            free_bytes: n.capacity_bytes.saturating_sub(used_bytes(id)),
        })
        .collect()
}

fn draw(seed: &Hash, zone: &str, index: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn/placement/v1\0");
    h.update(seed);
    h.update(&(zone.len() as u64).to_le_bytes());
    h.update(zone.as_bytes());
    h.update(&index.to_le_bytes());
    let out = h.finalize();
    u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Picks `count` distinct nodes for fragments of `fragment_bytes` each (see module docs).
pub fn place(
    candidates: &[Candidate],
    seed: &Hash,
    count: usize,
    fragment_bytes: u64,
) -> Result<Vec<NodeId>, PlacementError> {
    // Group eligible nodes by zone, each zone sorted by id so input order never matters.
    let mut zones: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates
        .iter()
        .filter(|c| c.free_bytes >= fragment_bytes.max(1))
    {
        zones.entry(c.zone.as_str()).or_default().push(c);
    }
    let eligible: usize = zones.values().map(Vec::len).sum();
    if eligible < count {
        return Err(PlacementError::NotEnoughNodes {
            eligible,
            needed: count,
            fragment_bytes,
        });
    }
    for members in zones.values_mut() {
        members.sort_by_key(|c| c.id);
        members.dedup_by_key(|c| c.id);
    }
    // Zone order for tie-breaking, seeded so the extra slots rotate between objects.
    let mut order: Vec<&str> = zones.keys().copied().collect();
    order.sort_by_key(|z| (draw(seed, z, u64::MAX), *z));

    // Water-filling quotas.
    let mut quota: BTreeMap<&str, usize> = order.iter().map(|z| (*z, 0)).collect();
    for _ in 0..count {
        let zone = order
            .iter()
            .filter(|z| quota[**z] < zones[**z].len())
            .min_by_key(|z| quota[**z])
            .copied();
        // eligible >= count guarantees a zone with spare nodes (counting distinct ids).
        let Some(zone) = zone else {
            return Err(PlacementError::NotEnoughNodes {
                eligible: zones.values().map(Vec::len).sum(),
                needed: count,
                fragment_bytes,
            });
        };
        *quota.get_mut(zone).expect("zone present") += 1;
    }

    // Weighted sampling without replacement inside each zone.
    let mut picks: Vec<Vec<NodeId>> = Vec::with_capacity(order.len());
    for zone in &order {
        let mut pool: Vec<&Candidate> = zones[zone].clone();
        let mut chosen = Vec::with_capacity(quota[zone]);
        for j in 0..quota[zone] as u64 {
            let total: u128 = pool.iter().map(|c| c.free_bytes as u128).sum();
            let mut r = (draw(seed, zone, j) as u128) % total;
            let mut index = pool.len() - 1;
            for (i, c) in pool.iter().enumerate() {
                if r < c.free_bytes as u128 {
                    index = i;
                    break;
                }
                r -= c.free_bytes as u128;
            }
            chosen.push(pool.remove(index).id);
        }
        picks.push(chosen);
    }

    // Interleave zones so consecutive fragments sit in different zones.
    let mut out = Vec::with_capacity(count);
    let mut round = 0;
    while out.len() < count {
        for p in &picks {
            if let Some(id) = p.get(round) {
                out.push(*id);
            }
        }
        round += 1;
    }
    debug_assert_eq!(out.len(), count);
    debug_assert!({
        let mut s = out.clone();
        s.sort();
        s.windows(2).all(|w| w[0] != w[1])
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(i: u8, zone: &str, free: u64) -> Candidate {
        Candidate {
            id: [i; 32],
            zone: zone.into(),
            free_bytes: free,
        }
    }

    fn zone_counts(c: &[Candidate], placed: &[NodeId]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for id in placed {
            let z = &c.iter().find(|c| c.id == *id).unwrap().zone;
            *m.entry(z.clone()).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn twelve_fragments_over_three_zones_of_four() {
        let c: Vec<_> = (0..12)
            .map(|i| cand(i, ["z1", "z2", "z3"][i as usize % 3], 1 << 30))
            .collect();
        let placed = place(&c, &[1; 32], 12, 1 << 20).unwrap();
        assert_eq!(placed.len(), 12);
        assert!(zone_counts(&c, &placed).values().all(|n| *n == 4));
        // Consecutive fragments (and so the 4 data fragments) are in different zones.
        let z = |id: &NodeId| c.iter().find(|c| c.id == *id).unwrap().zone.clone();
        for w in placed.windows(2).take(3) {
            assert_ne!(z(&w[0]), z(&w[1]));
        }
    }

    #[test]
    fn uneven_zones_fill_evenly_then_spill() {
        // Zone sizes 8, 2, 2: the small zones give all they have.
        let mut c: Vec<_> = (0..8).map(|i| cand(i, "big", 1 << 30)).collect();
        c.extend((8..10).map(|i| cand(i, "s1", 1 << 30)));
        c.extend((10..12).map(|i| cand(i, "s2", 1 << 30)));
        let counts = zone_counts(&c, &place(&c, &[2; 32], 12, 1).unwrap());
        assert_eq!(counts["big"], 8);
        assert_eq!(counts["s1"], 2);
        assert_eq!(counts["s2"], 2);
    }

    #[test]
    fn not_enough_nodes_or_room_is_an_error() {
        let c: Vec<_> = (0..12)
            .map(|i| cand(i, "z", if i < 3 { 10 } else { 1 << 30 }))
            .collect();
        assert_eq!(
            place(&c, &[0; 32], 12, 100),
            Err(PlacementError::NotEnoughNodes {
                eligible: 9,
                needed: 12,
                fragment_bytes: 100
            })
        );
        let placed = place(&c, &[0; 32], 9, 100).unwrap();
        assert!(
            placed.iter().all(|id| id[0] >= 3),
            "nodes without room skipped"
        );
    }

    #[test]
    fn free_capacity_weights_the_choice() {
        // One zone of 4: node 0 has 7x the free space of each other node; place 1 fragment.
        let c = vec![
            cand(0, "z", 7_000),
            cand(1, "z", 1_000),
            cand(2, "z", 1_000),
            cand(3, "z", 1_000),
        ];
        let hits = (0..2000u32)
            .filter(|s| {
                let seed = *blake3::hash(&s.to_le_bytes()).as_bytes();
                place(&c, &seed, 1, 1).unwrap()[0] == [0; 32]
            })
            .count();
        // Expected 0.7 of 2000 = 1400; a uniform choice would give 500.
        assert!(
            (1300..1500).contains(&hits),
            "heavy node chosen {hits} times"
        );
    }

    #[test]
    fn unhealthy_and_non_storage_nodes_are_not_candidates() {
        assert!(is_healthy(0, 0, 600, 600));
        assert!(!is_healthy(0, 0, 601, 600));
        assert!(is_healthy(550, 0, 1000, 600));
        assert!(is_healthy(0, 900, 1000, 600));
    }

    proptest! {
        #[test]
        fn placement_is_valid_deterministic_and_order_free(
            sizes in proptest::collection::vec(1usize..6, 1..5),
            count in 1usize..14,
            seed in any::<[u8; 32]>(),
            rot in any::<usize>(),
        ) {
            let mut c = Vec::new();
            let mut id = 0u8;
            for (z, n) in sizes.iter().enumerate() {
                for _ in 0..*n {
                    c.push(cand(id, &format!("z{z}"), 1_000 + id as u64 * 37));
                    id += 1;
                }
            }
            let result = place(&c, &seed, count, 1);
            if c.len() < count {
                prop_assert!(result.is_err());
                return Ok(());
            }
            let placed = result.unwrap();
            prop_assert_eq!(placed.len(), count);
            let mut sorted = placed.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), count, "distinct");
            // Even spread: a zone may hold more than another only if the other is exhausted.
            let counts = zone_counts(&c, &placed);
            for (za, na) in &counts {
                for (z, size) in sizes.iter().enumerate() {
                    let zb = format!("z{z}");
                    let nb = counts.get(&zb).copied().unwrap_or(0);
                    prop_assert!(*na <= nb + 1 || nb == *size, "{za}={na} vs {zb}={nb}");
                }
            }
            let mut shuffled = c.clone();
            let len = shuffled.len();
            shuffled.rotate_left(rot % len);
            prop_assert_eq!(place(&shuffled, &seed, count, 1).unwrap(), placed);
        }
    }
}
