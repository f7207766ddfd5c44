//! Zones and managed names as ledger state: the stateful half of the DNS rules in [`crate::dns`].
//!
//! A [`Zone`] belongs to the account that created it. Only that account changes its static
//! record sets ([`crate::TxKind::ZoneUpdate`], compare-and-set on the zone version) and binds
//! managed names ([`crate::TxKind::ManageName`]). Every change that alters what the zone
//! serves bumps [`Zone::version`], which DNS servers publish as the SOA serial.
//!
//! A managed name's endpoints come from the node registry: for [`ManagedRole::Gateway`], the
//! IP of each gateway node's S3 address ([`crate::registry::Service::S3`]). Plans
//! ([`crate::TxKind::DnsPlan`]) come from validators; committee overrides
//! ([`crate::TxKind::DnsOverride`]) carry approvals of a 2f+1 quorum of validator nodes.
//! Health is the registry's one rule ([`crate::registry::is_healthy`]).
//!
//! Limits: [`MAX_MANAGED_PER_ZONE`], [`MAX_APPROVALS`], and the zone limits of [`crate::dns`].
//! A zone may not overlap (contain or sit inside) another zone.

use crate::{
    codec::{Reader, Writer},
    dns::{
        read_managed, read_set, validate_zone, write_managed, write_set, Endpoint, ManagedName,
        Plan, RData, RecordError, RecordSet, MAX_DNS_NAME_SIZE_BYTES, MAX_RECORDS_PER_ZONE,
    },
    AccountId, NodeRecord, TxError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most managed names in one zone.
pub const MAX_MANAGED_PER_ZONE: usize = 16;
/// Most approvals an override carries.
pub const MAX_APPROVALS: usize = 64;
/// Weight a planner gives each healthy endpoint.
pub const DEFAULT_ENDPOINT_WEIGHT: u32 = 100;
/// Domain separation prefix of an override approval signature.
pub const OVERRIDE_DOMAIN: &[u8] = b"cairn/dns-override/v1\0";

/// What a managed name points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ManagedRole {
    /// The S3 gateways (A/AAAA of each gateway node's S3 address).
    Gateway,
}

/// A managed name bound in a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Managed {
    /// Role whose healthy nodes it points at.
    pub role: ManagedRole,
    /// TTL of its A/AAAA records.
    pub ttl_secs: u32,
    /// Generations.
    pub state: ManagedName,
    /// True while every current endpoint is unhealthy (fail-static alert raised).
    pub alerting: bool,
}

/// A zone on the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Owner account (signs every change).
    pub owner: AccountId,
    /// Starts at 1; +1 on every change of what the zone serves (the SOA serial).
    pub version: u64,
    /// Static record sets, sorted by (name, type code).
    pub sets: Vec<RecordSet>,
    /// Managed names by owner name.
    pub managed: BTreeMap<String, Managed>,
}

fn set_key(s: &RecordSet) -> (&str, u16) {
    (
        s.name.as_str(),
        s.records.first().map_or(0, RData::type_code),
    )
}

impl Zone {
    /// The zone after upserting `upserts` and deleting `deletes` (name, type code), fully
    /// validated, with the version bumped; `self` is unchanged.
    pub fn updated(
        &self,
        origin: &str,
        upserts: &[RecordSet],
        deletes: &[(String, u16)],
    ) -> Result<Zone, TxError> {
        let mut sets: BTreeMap<(String, u16), RecordSet> = self
            .sets
            .iter()
            .map(|s| ((s.name.clone(), set_key(s).1), s.clone()))
            .collect();
        for (name, t) in deletes {
            if sets.remove(&(name.clone(), *t)).is_none() {
                return Err(invalid_zone(
                    origin,
                    format!("no type-{t} set at {name} to delete"),
                ));
            }
        }
        for s in upserts {
            let (n, t) = set_key(s);
            sets.insert((n.to_string(), t), s.clone());
        }
        let sets: Vec<RecordSet> = sets.into_values().collect();
        validate_zone(origin, &sets).map_err(|error| TxError::InvalidZone { error })?;
        for s in &sets {
            if self.managed.contains_key(&s.name) && matches!(set_key(s).1, 1 | 5 | 28) {
                return Err(invalid_zone(
                    origin,
                    format!(
                        "{} is a managed name; its A/AAAA/CNAME come from planners",
                        s.name
                    ),
                ));
            }
        }
        Ok(Zone {
            owner: self.owner,
            version: self.version.saturating_add(1),
            sets,
            managed: self.managed.clone(),
        })
    }

    /// Every record set the zone serves: the static sets plus each managed name's current
    /// A and AAAA sets, sorted by (name, type code).
    pub fn served_sets(&self) -> Vec<RecordSet> {
        let mut out = self.sets.clone();
        for (name, m) in &self.managed {
            let mut v4 = Vec::new();
            let mut v6 = Vec::new();
            for e in &m.state.current.endpoints {
                if let Ok(a) = <[u8; 4]>::try_from(e.address.as_slice()) {
                    v4.push(RData::A(a));
                } else if let Ok(a) = <[u8; 16]>::try_from(e.address.as_slice()) {
                    v6.push(RData::Aaaa(a));
                }
            }
            for records in [v4, v6] {
                if !records.is_empty() {
                    out.push(RecordSet {
                        name: name.clone(),
                        ttl_secs: m.ttl_secs,
                        records,
                    });
                }
            }
        }
        out.sort_by(|a, b| set_key(a).cmp(&set_key(b)));
        out
    }

    /// Canonical bytes (persisted state).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.fixed(&self.owner);
        w.u64(self.version);
        w.len(self.sets.len());
        for s in &self.sets {
            write_set(&mut w, s);
        }
        w.len(self.managed.len());
        for (name, m) in &self.managed {
            w.str(name);
            w.u8(match m.role {
                ManagedRole::Gateway => 0,
            });
            w.fixed(&m.ttl_secs.to_le_bytes());
            write_managed(&mut w, &m.state);
            w.bool(m.alerting);
        }
        w.0
    }

    /// Decodes [`Zone::encode`] (bounded, strict).
    pub fn decode(bytes: &[u8]) -> Result<Zone, TxError> {
        let mut r = Reader::new(bytes);
        let owner = r.fixed::<32>()?;
        let version = r.u64()?;
        let n = r.len(MAX_RECORDS_PER_ZONE)?;
        let mut sets = Vec::with_capacity(n);
        for _ in 0..n {
            sets.push(read_set(&mut r)?);
        }
        let n = r.len(MAX_MANAGED_PER_ZONE)?;
        let mut managed = BTreeMap::new();
        for _ in 0..n {
            let name = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
            let role = read_role(&mut r)?;
            let ttl_secs = u32::from_le_bytes(r.fixed::<4>()?);
            let state = read_managed(&mut r)?;
            let alerting = r.bool()?;
            managed.insert(
                name,
                Managed {
                    role,
                    ttl_secs,
                    state,
                    alerting,
                },
            );
        }
        r.finish()?;
        Ok(Zone {
            owner,
            version,
            sets,
            managed,
        })
    }
}

/// Decodes a [`ManagedRole`] tag.
pub fn read_role(r: &mut Reader<'_>) -> Result<ManagedRole, TxError> {
    match r.u8()? {
        0 => Ok(ManagedRole::Gateway),
        _ => Err(TxError::Malformed {
            reason: "unknown managed-name role",
        }),
    }
}

/// Encodes a [`ManagedRole`] tag.
pub fn write_role(w: &mut Writer, role: ManagedRole) {
    w.u8(match role {
        ManagedRole::Gateway => 0,
    });
}

fn invalid_zone(origin: &str, reason: String) -> TxError {
    TxError::InvalidZone {
        error: RecordError::Zone {
            zone: origin.to_string(),
            reason,
        },
    }
}

/// True if `name` is `origin` or below it.
pub fn in_zone(name: &str, origin: &str) -> bool {
    name == origin
        || (name.len() > origin.len()
            && name.ends_with(origin)
            && name.as_bytes()[name.len() - origin.len() - 1] == b'.')
}

/// The endpoint a node offers for `role`, if it has that role and a usable address.
pub fn endpoint_of(node: &NodeRecord, role: ManagedRole) -> Option<Endpoint> {
    match role {
        ManagedRole::Gateway if node.roles.gateway => {}
        ManagedRole::Gateway => return None,
    }
    let addr = crate::registry::address(node, crate::registry::Service::S3)?;
    let address = match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    Some(Endpoint {
        address,
        weight: DEFAULT_ENDPOINT_WEIGHT,
    })
}

/// The message validators sign to approve an override of `plan` for `name` in `origin`.
pub fn override_message(origin: &str, name: &str, plan: &Plan) -> Vec<u8> {
    let mut w = Writer(OVERRIDE_DOMAIN.to_vec());
    w.str(origin);
    w.str(name);
    crate::dns::write_plan(&mut w, plan);
    w.0
}

/// Votes needed for a committee quorum of `validators` nodes: n - f, f = (n - 1) / 3.
pub fn quorum(validators: usize) -> usize {
    validators - validators.saturating_sub(1) / 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::Endpoint;

    fn zone() -> Zone {
        let empty = Zone {
            owner: [7; 32],
            version: 0,
            sets: vec![],
            managed: BTreeMap::new(),
        };
        empty
            .updated(
                "example.test",
                &crate::dns::minimal_apex("example.test"),
                &[],
            )
            .unwrap()
    }

    #[test]
    fn update_validates_and_bumps_the_version() {
        let z = zone();
        assert_eq!(z.version, 1);
        let www = RecordSet {
            name: "www.example.test".into(),
            ttl_secs: 60,
            records: vec![RData::A([192, 0, 2, 1])],
        };
        let z2 = z
            .updated("example.test", std::slice::from_ref(&www), &[])
            .unwrap();
        assert_eq!(z2.version, 2);
        assert!(z2.sets.contains(&www));
        // A CNAME beside the A is refused, and the zone is untouched.
        let cname = RecordSet {
            name: "www.example.test".into(),
            ttl_secs: 60,
            records: vec![RData::Cname("example.test".into())],
        };
        assert!(matches!(
            z2.updated("example.test", &[cname], &[]),
            Err(TxError::InvalidZone { .. })
        ));
        // Deleting what is not there is an error; deleting the SOA breaks the zone.
        assert!(z2
            .updated("example.test", &[], &[("nope.example.test".into(), 1)])
            .is_err());
        assert!(z2
            .updated("example.test", &[], &[("example.test".into(), 6)])
            .is_err());
        let z3 = z2
            .updated("example.test", &[], &[("www.example.test".into(), 1)])
            .unwrap();
        assert!(!z3.sets.contains(&www));
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut z = zone();
        let state = ManagedName::create(
            vec![Endpoint {
                address: vec![127, 0, 1, 1],
                weight: 100,
            }],
            5,
            [1; 32],
        )
        .unwrap();
        z.managed.insert(
            "s3.example.test".into(),
            Managed {
                role: ManagedRole::Gateway,
                ttl_secs: 30,
                state,
                alerting: true,
            },
        );
        let bytes = z.encode();
        assert_eq!(Zone::decode(&bytes).unwrap(), z);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Zone::decode(&longer).is_err());
        for cut in 0..bytes.len() {
            assert!(Zone::decode(&bytes[..cut]).is_err());
        }
        let served = z.served_sets();
        assert!(served
            .iter()
            .any(|s| s.name == "s3.example.test" && s.records == vec![RData::A([127, 0, 1, 1])]));
    }

    #[test]
    fn quorum_is_two_f_plus_one() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(11), 8);
        assert_eq!(quorum(12), 9);
    }
}
