//! DNS: `ZoneUpdate` (owner-signed, compare-and-set on the zone version), `ManageName` (binds
//! a name to registered endpoints), `DnsPlan` (committee operators) and `DnsOverride`
//! (committee quorum). Each computes the whole next zone once in check; apply stores it.

use crate::{
    admission::committee_votes,
    dns::{format_address, Endpoint, ManagedName, Plan, RecordSet},
    registry,
    state::{key, Event, State, T_ZONE},
    zones::{
        endpoint_of, in_zone, override_message, Managed, ManagedRole, Zone, MAX_MANAGED_PER_ZONE,
    },
    AccountId, TxError,
};
use std::collections::BTreeMap;

/// The zone a DNS transaction produces, with its event.
pub(crate) struct Change {
    origin: String,
    zone: Zone,
    event: Event,
}

/// `ZoneUpdate`: creates a zone that overlaps no other, or changes one the signer owns at the
/// expected version.
pub(super) fn check_zone_update(
    state: &State,
    signer: &AccountId,
    origin: &str,
    expected_version: u64,
    upserts: &[RecordSet],
    deletes: &[(String, u16)],
) -> Result<Change, TxError> {
    let current = state.zones.get(origin);
    let version = current.map_or(0, |z| z.version);
    if version != expected_version {
        return Err(TxError::ZoneVersionMismatch {
            expected: expected_version,
            current: version,
        });
    }
    let base = match current {
        Some(z) if z.owner != *signer => return Err(TxError::NotAuthorized),
        Some(z) => z.clone(),
        None => {
            if let Some(other) = state
                .zones
                .keys()
                .find(|o| in_zone(o, origin) || in_zone(origin, o))
            {
                return Err(TxError::ZoneOverlap {
                    other: other.clone(),
                });
            }
            Zone {
                owner: *signer,
                version: 0,
                sets: Vec::new(),
                managed: BTreeMap::new(),
            }
        }
    };
    let zone = base.updated(origin, upserts, deletes)?;
    let event = Event::ZoneUpdated {
        origin: origin.to_string(),
        version: zone.version,
    };
    Ok(Change {
        origin: origin.to_string(),
        zone,
        event,
    })
}

/// `ManageName`: the zone owner binds a new name, not shadowed by static address records, to
/// endpoints registered nodes of `role` offer.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_manage_name(
    state: &State,
    signer: &AccountId,
    origin: &str,
    name: &str,
    ttl_secs: u32,
    role: ManagedRole,
    endpoints: &[Endpoint],
    height: u64,
) -> Result<Change, TxError> {
    let mut zone = state.zones.get(origin).ok_or(TxError::NoSuchZone)?.clone();
    if zone.owner != *signer {
        return Err(TxError::NotAuthorized);
    }
    if zone.managed.contains_key(name) {
        return Err(TxError::ManagedNameExists);
    }
    if zone.managed.len() >= MAX_MANAGED_PER_ZONE {
        return Err(TxError::InvalidField {
            field: "name",
            reason: format!("a zone holds at most {MAX_MANAGED_PER_ZONE} managed names"),
        });
    }
    if zone
        .sets
        .iter()
        .any(|s| s.name == name && matches!(s.records[0].type_code(), 1 | 5 | 28))
    {
        return Err(TxError::InvalidField {
            field: "name",
            reason: format!("{name} has static A/AAAA/CNAME records; delete them first"),
        });
    }
    check_endpoints(state, role, endpoints)?;
    let managed = ManagedName::create(endpoints.to_vec(), height, *signer)
        .map_err(|error| TxError::PlanRejected { error })?;
    zone.managed.insert(
        name.to_string(),
        Managed {
            role,
            ttl_secs,
            state: managed,
            alerting: false,
        },
    );
    zone.version = zone.version.saturating_add(1);
    let event = Event::ManagedNameBound {
        origin: origin.to_string(),
        name: name.to_string(),
    };
    Ok(Change {
        origin: origin.to_string(),
        zone,
        event,
    })
}

/// `DnsPlan`: from an operator of the current committee.
pub(super) fn check_plan(
    state: &State,
    signer: &AccountId,
    origin: &str,
    name: &str,
    plan: &Plan,
    height: u64,
) -> Result<Change, TxError> {
    if !state.is_committee_operator(signer) {
        return Err(TxError::NotValidator);
    }
    planned_zone(state, signer, origin, name, plan, height, false)
}

/// `DnsOverride`: approved by a quorum of the current committee.
pub(super) fn check_override(
    state: &State,
    signer: &AccountId,
    origin: &str,
    name: &str,
    plan: &Plan,
    approvals: &[(AccountId, Vec<u8>)],
    height: u64,
) -> Result<Change, TxError> {
    let message = override_message(origin, name, plan);
    let (votes, needed) = committee_votes(state, &message, approvals);
    if state.committee.is_empty() || votes < needed {
        return Err(TxError::OverrideQuorum { votes, needed });
    }
    planned_zone(state, signer, origin, name, plan, height, true)
}

/// Every endpoint must be offered by a registered node of `role`.
fn check_endpoints(
    state: &State,
    role: ManagedRole,
    endpoints: &[Endpoint],
) -> Result<(), TxError> {
    for e in endpoints {
        let offered = state
            .nodes
            .values()
            .filter_map(|n| endpoint_of(n, role))
            .any(|o| o.address == e.address);
        if !offered {
            return Err(TxError::UnknownEndpoint {
                address: format_address(&e.address),
            });
        }
    }
    Ok(())
}

/// The zone with `plan` applied to its managed name `name` ([`ManagedName::apply_plan`]).
fn planned_zone(
    state: &State,
    signer: &AccountId,
    origin: &str,
    name: &str,
    plan: &Plan,
    height: u64,
    overridden: bool,
) -> Result<Change, TxError> {
    let mut zone = state.zones.get(origin).ok_or(TxError::NoSuchZone)?.clone();
    let managed = zone
        .managed
        .get_mut(name)
        .ok_or(TxError::NoSuchManagedName)?;
    check_endpoints(state, managed.role, &plan.endpoints)?;
    let role = managed.role;
    let healthy = |e: &Endpoint| {
        state.nodes.values().any(|n| {
            endpoint_of(n, role).is_some_and(|o| o.address == e.address)
                && registry::is_healthy_at(n, state.time_ms)
        })
    };
    managed
        .state
        .apply_plan(plan, height, *signer, healthy, overridden)
        .map_err(|error| TxError::PlanRejected { error })?;
    let generation = managed.state.current.number;
    zone.version = zone.version.saturating_add(1);
    let event = Event::DnsPlanned {
        origin: origin.to_string(),
        name: name.to_string(),
        generation,
        overridden,
    };
    Ok(Change {
        origin: origin.to_string(),
        zone,
        event,
    })
}

/// Stores the zone a checked DNS transaction produced.
pub(super) fn apply(state: &mut State, change: Change) -> Event {
    let Change {
        origin,
        zone,
        event,
    } = change;
    state.touch(key(T_ZONE, origin.as_bytes()));
    state.zones.insert(origin, zone);
    event
}
