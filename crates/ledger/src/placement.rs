//! Fragment placement: a deterministic function of the finalized node registry, and the
//! ledger rule every manifest's placement must pass.
//!
//! Durability target: a segment's *stored* fragments survive the loss of any one failure
//! domain with at least k left. The domain is the zone when the admitted storage nodes span
//! two or more zones, and the single node otherwise ([`failure_domain`]); the topology, not
//! current health, decides it, so losing a zone never silently lowers the target.
//!
//! [`place`] assigns the k + m fragment slots of an object to healthy storage nodes
//! ([`candidates`]):
//! - one fragment per node whenever enough nodes have room; with fewer, the fewest fragments
//!   per node that still meet the target (degraded placement: writes keep working with nodes
//!   or a whole zone down, and repair spreads fragments out later);
//! - spread as evenly as the zones allow (water-filling: each slot goes to the zone with the
//!   fewest slots so far that still has room, ties in a seeded zone order), never more than m
//!   slots in one domain, so RS(4, 8) over three zones of four puts exactly four in each;
//! - within a zone, nodes are ordered by weighted sampling without replacement on free
//!   capacity (the draw taken from BLAKE3 of the seed) and filled round-robin in that order,
//!   so fuller nodes receive less.
//!
//! The output interleaves zones (fragment 0 in one zone, 1 in the next, ...), so the first k
//! fragments (the data fragments) also land in different zones. The same candidates, seed and
//! count always give the same placement, whatever order the candidates come in. Manifests
//! record the result, so later registry changes never move data silently.
//!
//! [`validate`] is the ledger's check of a manifest against the state: every placed node is an
//! admitted storage node, every node marked as holding a stored fragment is healthy
//! ([`crate::registry::is_healthy`]), and every segment's stored fragments meet the target.
//! A gateway that placed badly (all fragments in one zone, on dead nodes) is refused.

use crate::{
    objects::{ObjectManifest, Segment},
    registry::{self, Role},
    state::State,
    Hash, NodeId, TxError,
};
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

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

/// What one failure takes away, for the durability target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureDomain {
    /// A whole zone (clusters whose storage nodes span two or more zones).
    Zone,
    /// One node (single-zone clusters).
    Node,
}

/// Why no placement exists, or why a placement misses the durability target.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PlacementError {
    /// No healthy storage node has room for even one fragment.
    #[error("no healthy storage node has room for a {fragment_bytes}-byte fragment; add storage nodes or wait for unhealthy ones to return")]
    NoNodes {
        /// Size of each fragment.
        fragment_bytes: u64,
    },
    /// The healthy nodes with room cannot hold k + m fragments with at most m per domain.
    #[error("cannot place RS({k}, {m}) so that losing any one {domain} leaves {k} fragments: {healthy_nodes} healthy storage nodes with room in {healthy_zones} zones; bring nodes or zones back, or use a bucket coded with more parity")]
    Durability {
        /// k.
        k: usize,
        /// m.
        m: usize,
        /// "zone" or "node".
        domain: &'static str,
        /// Healthy storage nodes with room.
        healthy_nodes: usize,
        /// Zones among them.
        healthy_zones: usize,
    },
}

impl FailureDomain {
    fn name(self) -> &'static str {
        match self {
            Self::Zone => "zone",
            Self::Node => "node",
        }
    }
}

/// The cluster's failure domain: zones if the admitted storage nodes (healthy or not) span two
/// or more zones, else nodes.
pub fn failure_domain(state: &State) -> FailureDomain {
    let mut zones = state
        .nodes()
        .filter(|(_, n)| registry::has_role(n, Role::Storage))
        .map(|(_, n)| n.zone.as_str());
    match zones.next() {
        Some(first) if zones.any(|z| z != first) => FailureDomain::Zone,
        _ => FailureDomain::Node,
    }
}

/// Healthy storage nodes of `state` with their free capacity (`used_bytes` per node, 0 if
/// absent), sorted by id.
pub fn candidates(state: &State, used_bytes: impl Fn(&NodeId) -> u64) -> Vec<Candidate> {
    registry::endpoints(state, Role::Storage)
        .map(|(id, n)| Candidate {
            id: *id,
            zone: n.zone.clone(),
            free_bytes: n.capacity_bytes.saturating_sub(used_bytes(id)),
        })
        .collect()
}

/// True if the fragments whose bit is set in `stored_mask` (fragment i held in domain
/// `domains[i]`) leave at least `k` after losing any one domain.
pub fn survives_domain_loss<D: Ord>(k: usize, domains: &[D], stored_mask: u64) -> bool {
    let mut per: BTreeMap<&D, usize> = BTreeMap::new();
    let mut stored = 0usize;
    for (i, d) in domains.iter().enumerate().take(64) {
        if stored_mask >> i & 1 == 1 {
            *per.entry(d).or_default() += 1;
            stored += 1;
        }
    }
    let worst = per.values().copied().max().unwrap_or(0);
    stored >= k && stored - worst >= k
}

/// The failure domain of each placed node under `domain` (its zone, or its id).
pub fn domains_of(state: &State, domain: FailureDomain, placement: &[NodeId]) -> Vec<Vec<u8>> {
    placement
        .iter()
        .map(|id| match (domain, state.node(id)) {
            (FailureDomain::Zone, Some(n)) => n.zone.as_bytes().to_vec(),
            _ => id.to_vec(),
        })
        .collect()
}

/// The ledger rule for a manifest of a bucket coded with `data_shards` = k (module docs).
pub fn validate(state: &State, data_shards: u8, manifest: &ObjectManifest) -> Result<(), TxError> {
    check(state, data_shards, &manifest.placement, &manifest.segments)
}

/// For a manifest built from existing fragments (a copy, a completed multipart upload): clears
/// the stored bit of every fragment on a node that is no longer healthy (left for repair),
/// then applies [`validate`]'s rule, so the caller knows before committing.
pub fn refresh(
    state: &State,
    data_shards: u8,
    placement: &[NodeId],
    segments: &mut [Segment],
) -> Result<(), TxError> {
    for (slot, id) in placement.iter().enumerate().take(64) {
        if !registry::is_storage_endpoint(state, id) {
            for seg in segments.iter_mut() {
                seg.stored_mask &= !(1u64 << slot);
            }
        }
    }
    check(state, data_shards, placement, segments)
}

fn check(
    state: &State,
    data_shards: u8,
    placement: &[NodeId],
    segments: &[Segment],
) -> Result<(), TxError> {
    let invalid = |reason: String| TxError::InvalidPlacement { reason };
    for id in placement {
        match state.node(id) {
            Some(n) if registry::has_role(n, Role::Storage) => {}
            _ => {
                return Err(invalid(
                    "a placed node is not an admitted storage node".into(),
                ))
            }
        }
    }
    let k = usize::from(data_shards);
    let domain = failure_domain(state);
    let domains = domains_of(state, domain, placement);
    let mut checked = BTreeSet::new();
    for (i, seg) in segments.iter().enumerate() {
        if !checked.insert(seg.stored_mask) {
            continue;
        }
        for (slot, id) in placement.iter().enumerate().take(64) {
            let healthy = registry::is_storage_endpoint(state, id);
            if seg.stored_mask >> slot & 1 == 1 && !healthy {
                return Err(invalid(format!(
                    "segment {i} marks fragment {slot} as stored on a node that is not healthy \
                     (or that audits marked faulty)"
                )));
            }
        }
        if !survives_domain_loss(k, &domains, seg.stored_mask) {
            return Err(invalid(format!(
                "segment {i}: losing one {} would leave fewer than k = {k} stored fragments",
                domain.name()
            )));
        }
    }
    Ok(())
}

fn draw(seed: &Hash, zone: &str, index: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn/placement/v1\0");
    h.update(seed);
    h.update(&(zone.len() as u64).to_le_bytes());
    h.update(zone.as_bytes());
    h.update(&index.to_le_bytes());
    let out = h.finalize();
    let mut word = [0u8; 8];
    word.copy_from_slice(&out.as_bytes()[..8]);
    u64::from_le_bytes(word)
}

/// One zone's nodes in seeded, capacity-weighted order, each with how many fragments fit.
fn weighted_order<'a>(seed: &Hash, zone: &str, mut pool: Vec<&'a Candidate>) -> Vec<&'a Candidate> {
    let mut out = Vec::with_capacity(pool.len());
    let mut j = 0u64;
    while !pool.is_empty() {
        let total: u128 = pool.iter().map(|c| c.free_bytes as u128).sum();
        let mut r = (draw(seed, zone, j) as u128) % total.max(1);
        let mut index = pool.len() - 1;
        for (i, c) in pool.iter().enumerate() {
            if r < c.free_bytes as u128 {
                index = i;
                break;
            }
            r -= c.free_bytes as u128;
        }
        out.push(pool.remove(index));
        j += 1;
    }
    out
}

/// Assigns `k + m` fragment slots of `fragment_bytes` each to `candidates` (module docs).
pub fn place(
    candidates: &[Candidate],
    seed: &Hash,
    k: usize,
    m: usize,
    fragment_bytes: u64,
    domain: FailureDomain,
) -> Result<Vec<NodeId>, PlacementError> {
    let count = k + m;
    let fragment_bytes = fragment_bytes.max(1);
    // Group nodes with room by zone, each zone sorted by id so input order never matters.
    let mut zones: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in candidates.iter().filter(|c| c.free_bytes >= fragment_bytes) {
        zones.entry(c.zone.as_str()).or_default().push(c);
    }
    for members in zones.values_mut() {
        members.sort_by_key(|c| c.id);
        members.dedup_by_key(|c| c.id);
    }
    let healthy_nodes: usize = zones.values().map(Vec::len).sum();
    if healthy_nodes == 0 {
        return Err(PlacementError::NoNodes { fragment_bytes });
    }
    let durability = PlacementError::Durability {
        k,
        m,
        domain: domain.name(),
        healthy_nodes,
        healthy_zones: zones.len(),
    };
    // Most fragments one node may take with `per_node` allowed, and one zone in total.
    let node_room = |c: &Candidate, per_node: usize| -> usize {
        let fits = usize::try_from(c.free_bytes / fragment_bytes).unwrap_or(usize::MAX);
        let cap = match domain {
            FailureDomain::Node => per_node.min(m),
            FailureDomain::Zone => per_node,
        };
        fits.min(cap)
    };
    let zone_room = |members: &[&Candidate], per_node: usize| -> usize {
        let sum: usize = members.iter().map(|c| node_room(c, per_node)).sum();
        match domain {
            FailureDomain::Zone => sum.min(m),
            FailureDomain::Node => sum,
        }
    };
    // The fewest fragments per node that fit every slot (1 whenever enough nodes have room).
    let per_node = (1..=count)
        .find(|r| zones.values().map(|z| zone_room(z, *r)).sum::<usize>() >= count)
        .ok_or(durability.clone())?;

    // Zone order for tie-breaking, seeded so the extra slots rotate between objects.
    let mut order: Vec<&str> = zones.keys().copied().collect();
    order.sort_by_key(|z| (draw(seed, z, u64::MAX), *z));
    // Water-filling quotas.
    let room: BTreeMap<&str, usize> = zones
        .iter()
        .map(|(z, members)| (*z, zone_room(members, per_node)))
        .collect();
    let mut quota: BTreeMap<&str, usize> = order.iter().map(|z| (*z, 0)).collect();
    for _ in 0..count {
        let zone = order
            .iter()
            .filter(|z| quota[**z] < room[**z])
            .min_by_key(|z| quota[**z])
            .copied()
            .ok_or(durability.clone())?;
        if let Some(q) = quota.get_mut(zone) {
            *q += 1;
        }
    }
    // Inside each zone: weighted order, then round-robin up to each node's room.
    let mut picks: Vec<Vec<NodeId>> = Vec::with_capacity(order.len());
    for zone in &order {
        let ordered = weighted_order(seed, zone, zones[zone].clone());
        let mut chosen = Vec::with_capacity(quota[zone]);
        'fill: for round in 0..per_node {
            for c in &ordered {
                if chosen.len() == quota[zone] {
                    break 'fill;
                }
                if node_room(c, per_node) > round {
                    chosen.push(c.id);
                }
            }
        }
        picks.push(chosen);
    }
    // Interleave zones so consecutive fragments sit in different zones.
    let mut out = Vec::with_capacity(count);
    let mut round = 0;
    while out.len() < count && round < count {
        for p in &picks {
            if let Some(id) = p.get(round) {
                out.push(*id);
            }
        }
        round += 1;
    }
    if out.len() != count {
        return Err(durability);
    }
    let by_id: BTreeMap<NodeId, &str> =
        candidates.iter().map(|c| (c.id, c.zone.as_str())).collect();
    let domains: Vec<Vec<u8>> = out
        .iter()
        .map(|id| match domain {
            FailureDomain::Zone => by_id.get(id).map_or(id.to_vec(), |z| z.as_bytes().to_vec()),
            FailureDomain::Node => id.to_vec(),
        })
        .collect();
    let all = if count >= 64 {
        u64::MAX
    } else {
        (1u64 << count) - 1
    };
    if !survives_domain_loss(k, &domains, all) {
        return Err(durability);
    }
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

    fn zone_of(c: &[Candidate], id: &NodeId) -> String {
        c.iter().find(|c| c.id == *id).unwrap().zone.clone()
    }

    fn zone_counts(c: &[Candidate], placed: &[NodeId]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for id in placed {
            *m.entry(zone_of(c, id)).or_insert(0) += 1;
        }
        m
    }

    fn node_counts(placed: &[NodeId]) -> BTreeMap<NodeId, usize> {
        let mut m = BTreeMap::new();
        for id in placed {
            *m.entry(*id).or_insert(0) += 1;
        }
        m
    }

    fn three_zones(nodes: u8) -> Vec<Candidate> {
        (0..nodes)
            .map(|i| cand(i, ["z1", "z2", "z3"][i as usize % 3], 1 << 30))
            .collect()
    }

    const Z: FailureDomain = FailureDomain::Zone;
    const N: FailureDomain = FailureDomain::Node;

    #[test]
    fn twelve_fragments_over_three_zones_of_four() {
        let c = three_zones(12);
        let placed = place(&c, &[1; 32], 4, 8, 1 << 20, Z).unwrap();
        assert_eq!(placed.len(), 12);
        assert!(zone_counts(&c, &placed).values().all(|n| *n == 4));
        assert!(node_counts(&placed).values().all(|n| *n == 1), "distinct");
        // Consecutive fragments (and so the 4 data fragments) are in different zones.
        for w in placed.windows(2).take(3) {
            assert_ne!(zone_of(&c, &w[0]), zone_of(&c, &w[1]));
        }
    }

    #[test]
    fn uneven_zones_fill_evenly_then_spill() {
        // Zone sizes 8, 2, 2: the small zones give all they have.
        let mut c: Vec<_> = (0..8).map(|i| cand(i, "big", 1 << 30)).collect();
        c.extend((8..10).map(|i| cand(i, "s1", 1 << 30)));
        c.extend((10..12).map(|i| cand(i, "s2", 1 << 30)));
        let counts = zone_counts(&c, &place(&c, &[2; 32], 4, 8, 1, Z).unwrap());
        assert_eq!(counts["big"], 8);
        assert_eq!(counts["s1"], 2);
        assert_eq!(counts["s2"], 2);
    }

    #[test]
    fn one_node_down_doubles_up_one_node_in_zone_spread() {
        let c = three_zones(11);
        let placed = place(&c, &[3; 32], 4, 8, 1, Z).unwrap();
        assert_eq!(placed.len(), 12);
        let per_node = node_counts(&placed);
        assert_eq!(per_node.len(), 11, "every healthy node used");
        assert_eq!(per_node.values().filter(|n| **n == 2).count(), 1);
        assert!(zone_counts(&c, &placed).values().all(|n| *n <= 8));
        let zones: Vec<String> = placed.iter().map(|id| zone_of(&c, id)).collect();
        assert!(survives_domain_loss(4, &zones, 0xfff));
    }

    #[test]
    fn a_whole_zone_down_places_on_the_other_two() {
        let c: Vec<_> = three_zones(12)
            .into_iter()
            .filter(|c| c.zone != "z3")
            .collect();
        let placed = place(&c, &[4; 32], 4, 8, 1, Z).unwrap();
        let counts = zone_counts(&c, &placed);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![6, 6]);
        assert!(node_counts(&placed).values().all(|n| (1..=2).contains(n)));
        // Two zones down: one zone can never keep k after losing it.
        let one: Vec<_> = c.into_iter().filter(|c| c.zone == "z1").collect();
        assert!(matches!(
            place(&one, &[4; 32], 4, 8, 1, Z),
            Err(PlacementError::Durability {
                healthy_zones: 1,
                ..
            })
        ));
    }

    #[test]
    fn single_zone_clusters_survive_a_node_loss() {
        let c: Vec<_> = (0..3).map(|i| cand(i, "z", 1 << 30)).collect();
        let placed = place(&c, &[5; 32], 4, 8, 1, N).unwrap();
        assert!(node_counts(&placed).values().all(|n| *n == 4));
        // One node cannot: losing it loses everything.
        assert!(place(&c[..1], &[5; 32], 4, 8, 1, N).is_err());
        // RS(4, 2) on 5 nodes: at most 2 per node, so 6 slots fit (2 + 1 + 1 + 1 + 1).
        let c: Vec<_> = (0..5).map(|i| cand(i, "z", 1 << 30)).collect();
        let placed = place(&c, &[6; 32], 4, 2, 1, N).unwrap();
        assert!(node_counts(&placed).values().all(|n| *n == 1 || *n == 2));
        assert!(survives_domain_loss(4, &placed, 0b11_1111));
    }

    #[test]
    fn not_enough_room_is_an_error() {
        let c: Vec<_> = (0..12)
            .map(|i| cand(i, "z", if i < 3 { 10 } else { 1 << 30 }))
            .collect();
        let placed = place(&c, &[0; 32], 4, 5, 100, N).unwrap();
        assert!(
            placed.iter().all(|id| id[0] >= 3),
            "nodes without room skipped"
        );
        assert_eq!(
            place(&c[..3], &[0; 32], 4, 8, 100, N),
            Err(PlacementError::NoNodes {
                fragment_bytes: 100
            })
        );
        // Room for one fragment each on 3 nodes: no way to double up.
        let small: Vec<_> = (0..3).map(|i| cand(i, "z", 150)).collect();
        assert!(matches!(
            place(&small, &[0; 32], 1, 3, 100, N),
            Err(PlacementError::Durability { .. })
        ));
    }

    #[test]
    fn free_capacity_weights_the_choice() {
        // One zone of 4: node 0 has 7x the free space of each other node; the first slot.
        let c = vec![
            cand(0, "z", 7_000),
            cand(1, "z", 1_000),
            cand(2, "z", 1_000),
            cand(3, "z", 1_000),
        ];
        let hits = (0..2000u32)
            .filter(|s| {
                let seed = *blake3::hash(&s.to_le_bytes()).as_bytes();
                place(&c, &seed, 1, 1, 1, N).unwrap()[0] == [0; 32]
            })
            .count();
        // Expected 0.7 of 2000 = 1400; a uniform choice would give 500.
        assert!(
            (1300..1500).contains(&hits),
            "heavy node chosen {hits} times"
        );
    }

    #[test]
    fn survival_counts_only_stored_fragments() {
        let d = ["a", "a", "b", "b", "c", "c"];
        assert!(survives_domain_loss(4, &d, 0b11_1111));
        assert!(
            !survives_domain_loss(4, &d, 0b01_1111),
            "5 stored, losing a leaves 3"
        );
        assert!(!survives_domain_loss(1, &d, 0), "nothing stored");
        assert!(!survives_domain_loss(1, &["a"; 4], 0b1111), "one domain");
    }

    proptest! {
        #[test]
        fn placement_meets_the_target_is_deterministic_and_order_free(
            sizes in proptest::collection::vec(1usize..6, 1..5),
            k in 1usize..6,
            m in 1usize..9,
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
            let domain = if sizes.len() > 1 { Z } else { N };
            let count = k + m;
            let Ok(placed) = place(&c, &seed, k, m, 1, domain) else {
                // Failing is allowed only when the target is out of reach: zones cannot hold
                // k + m at m each, or single-zone nodes cannot at m each.
                let reachable = match domain {
                    Z => sizes.len() * m >= count,
                    N => c.len() * m >= count && c.len() >= 2,
                };
                prop_assert!(!reachable, "a reachable target was refused");
                return Ok(());
            };
            prop_assert_eq!(placed.len(), count);
            let doms: Vec<String> = placed
                .iter()
                .map(|id| if domain == Z { zone_of(&c, id) } else { format!("{id:?}") })
                .collect();
            let all = (1u64 << count) - 1;
            prop_assert!(survives_domain_loss(k, &doms, all));
            // Distinct whenever there are enough nodes and the zone caps allow it.
            if c.len() >= count && domain == N {
                prop_assert!(node_counts(&placed).values().all(|n| *n == 1), "distinct");
            }
            let mut shuffled = c.clone();
            let len = shuffled.len();
            shuffled.rotate_left(rot % len);
            prop_assert_eq!(place(&shuffled, &seed, k, m, 1, domain).unwrap(), placed);
        }
    }
}
