//! The node registry's shared rules: typed addresses, the one health rule, and endpoints.
//!
//! Health is judged in milliseconds of *finalized block time* ([`State::time_ms`], the
//! proposer timestamp of the last applied block, never a local clock): a node is healthy while
//! its last sign of life (registration or heartbeat, stamped with the time of the block that
//! carried it) is at most [`HEALTH_WINDOW_MS`] old. DNS endpoints, placement, the ledger's own
//! placement check, the admin API and the CLI all call [`is_healthy`], so they never disagree.
//! Genesis nodes count as seen at the first block's time.
//!
//! Addresses: a record advertises up to [`crate::MAX_ADDRESSES`] `ip:port` strings in the
//! fixed order of [`Service`]; read them with [`address`], never by position.

use crate::{state::State, NodeId, NodeRecord};
use std::net::SocketAddr;

/// How long a node stays healthy after its last heartbeat or registration (block time).
pub const HEALTH_WINDOW_MS: u64 = 15_000;

/// Heartbeat period nodes use; several fit in [`HEALTH_WINDOW_MS`] so one lost heartbeat (or a
/// slow block) never flips a node's health.
pub const HEARTBEAT_INTERVAL_MS: u64 = 2_000;
const _: () = assert!(HEALTH_WINDOW_MS >= 5 * HEARTBEAT_INTERVAL_MS);

/// A service a node advertises; its discriminant is its position in the record's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Node-to-node consensus and gossip.
    P2p = 0,
    /// The admin API (status, workers, metrics, transaction submission).
    Admin = 1,
    /// The S3 endpoint (gateways); DNS managed names resolve to its IP.
    S3 = 2,
    /// The fragment protocol listener (storage nodes).
    Fragments = 3,
}

impl Service {
    /// Every service, in address order.
    pub const ALL: [Service; 4] = [Self::P2p, Self::Admin, Self::S3, Self::Fragments];

    /// Lower-case name, as in config files and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Self::P2p => "p2p",
            Self::Admin => "admin",
            Self::S3 => "s3",
            Self::Fragments => "fragments",
        }
    }
}

/// The socket address `node` advertises for `service`, if any (validated at registration).
pub fn address(node: &NodeRecord, service: Service) -> Option<SocketAddr> {
    node.addresses.get(service as usize)?.parse().ok()
}

/// True if `node`'s last sign of life is at most [`HEALTH_WINDOW_MS`] before `now_ms`.
pub fn is_healthy_at(node: &NodeRecord, now_ms: u64) -> bool {
    node.last_seen_ms.saturating_add(HEALTH_WINDOW_MS) >= now_ms
}

/// True if `node` is healthy at the state's finalized block time.
pub fn is_healthy(state: &State, node: &NodeRecord) -> bool {
    is_healthy_at(node, state.time_ms())
}

/// A role a node can be admitted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Stores fragments.
    Storage,
    /// Serves S3 and signs object transactions.
    Gateway,
    /// May sit on the committee.
    Validator,
}

/// True if `node` was granted `role` (pending nodes have none).
pub fn has_role(node: &NodeRecord, role: Role) -> bool {
    match role {
        Role::Storage => node.roles.storage,
        Role::Gateway => node.roles.gateway,
        Role::Validator => node.roles.validator,
    }
}

/// Nodes granted `role`, healthy or not.
pub fn count(state: &State, role: Role) -> usize {
    state.nodes().filter(|(_, n)| has_role(n, role)).count()
}

/// True if `id` may hold fragments now: an admitted storage node, healthy, not faulty.
pub fn is_storage_endpoint(state: &State, id: &NodeId) -> bool {
    state
        .node(id)
        .is_some_and(|n| has_role(n, Role::Storage) && is_healthy(state, n) && !state.is_faulty(id))
}

/// Healthy nodes granted `role`, in id order: the one query every service uses. A storage
/// node that audits marked faulty is never a storage endpoint.
pub fn endpoints(state: &State, role: Role) -> impl Iterator<Item = (&NodeId, &NodeRecord)> {
    let now_ms = state.time_ms();
    state.nodes().filter(move |(id, n)| {
        has_role(n, role)
            && is_healthy_at(n, now_ms)
            && !(role == Role::Storage && state.is_faulty(id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Roles;

    fn node(last_seen_ms: u64) -> NodeRecord {
        NodeRecord {
            operator: [1; 32],
            zone: "z1".into(),
            roles: Roles {
                storage: true,
                gateway: false,
                validator: false,
                cache: false,
            },
            addresses: vec!["10.0.0.1:1".into(), "10.0.0.1:2".into()],
            capacity_bytes: 1,
            requested_roles: Roles {
                storage: true,
                gateway: false,
                validator: false,
                cache: false,
            },
            requested_capacity_bytes: 1,
            admissions: 1,
            stake: 0,
            registered_height: 0,
            last_seen_ms,
            last_heartbeat_seq: 0,
            used_bytes: 0,
        }
    }

    #[test]
    fn health_window_is_inclusive_and_in_milliseconds() {
        let n = node(1_000);
        assert!(is_healthy_at(&n, 1_000));
        assert!(is_healthy_at(&n, 1_000 + HEALTH_WINDOW_MS));
        assert!(!is_healthy_at(&n, 1_001 + HEALTH_WINDOW_MS));
        // A clock behind the record never underflows into "unhealthy".
        assert!(is_healthy_at(&n, 0));
        assert!(is_healthy_at(&node(u64::MAX), u64::MAX));
    }

    #[test]
    fn addresses_are_read_by_service() {
        let n = node(0);
        assert_eq!(
            address(&n, Service::P2p),
            Some("10.0.0.1:1".parse().unwrap())
        );
        assert_eq!(
            address(&n, Service::Admin),
            Some("10.0.0.1:2".parse().unwrap())
        );
        assert_eq!(address(&n, Service::S3), None);
        assert_eq!(Service::ALL.map(|s| s as usize), [0, 1, 2, 3]);
    }
}
