//! Node admission: a registration proves possession of the node key, and only a quorum of the
//! current committee grants roles and capacity.
//!
//! Rule (invariant 10): `RegisterNode` records a *pending* node with the roles and capacity its
//! operator asks for, and grants nothing. Placement, DNS endpoints, fragment access and the
//! committee all read the granted fields ([`crate::NodeRecord::roles`],
//! [`crate::NodeRecord::capacity_bytes`]), so a self-registered node has no effect until an
//! `AdmitNode` signed by a quorum ([`crate::zones::quorum`]) of committee operators grants a
//! subset of what was asked. A new admission replaces the old grant (so a `storage` node can
//! become a `gateway` only through a new admission), and each approval names the node's
//! admission count, so an old approval cannot be replayed to restore a revoked grant.
//!
//! Why governance rather than a bond: Cairn has no balances or token yet, and the committee
//! already holds the override quorum for DNS; reusing that machinery keeps one trust root
//! until committee rotation (issue 16) and audits (issue 12) add economic weight.

use crate::{
    codec::{Reader, Writer},
    state::NodeRecord,
    tx::{Roles, Tx},
    zones::MAX_APPROVALS,
    AccountId, NodeId, State, TxError,
};
use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::BTreeSet;

/// Domain separation of a registration's proof of possession.
pub const POSSESSION_DOMAIN: &[u8] = b"cairn/node-possession/v1\0";
/// Domain separation of an admission approval.
pub const ADMIT_DOMAIN: &[u8] = b"cairn/node-admit/v1\0";

/// The message a node key signs to prove its operator holds it: the operator account and every
/// registered field, so a registration cannot be re-targeted to another operator or address.
pub fn possession_message(
    operator: &AccountId,
    node: &NodeId,
    zone: &str,
    roles: &Roles,
    addresses: &[String],
    capacity_bytes: u64,
    stake: u64,
) -> Vec<u8> {
    let mut w = Writer(POSSESSION_DOMAIN.to_vec());
    w.fixed(operator);
    w.fixed(node);
    w.str(zone);
    write_roles(&mut w, roles);
    w.len(addresses.len());
    for a in addresses {
        w.str(a);
    }
    w.u64(capacity_bytes);
    w.u64(stake);
    w.0
}

/// Checks a `RegisterNode`'s proof of possession (stateless).
pub(crate) fn verify_possession(tx: &Tx, node: &NodeId, possession: &[u8]) -> Result<(), TxError> {
    let crate::TxKind::RegisterNode {
        zone,
        roles,
        addresses,
        capacity_bytes,
        stake,
        ..
    } = &tx.kind
    else {
        return Ok(());
    };
    let message = possession_message(
        &tx.signer,
        node,
        zone,
        roles,
        addresses,
        *capacity_bytes,
        *stake,
    );
    if verify(node, &message, possession) {
        Ok(())
    } else {
        Err(TxError::NoPossessionProof)
    }
}

/// The message committee operators sign to admit `node` with `roles` and `capacity_bytes`;
/// `admissions` is the node's count of earlier admissions, so approvals are single-use.
pub fn admit_message(
    chain_id: &str,
    node: &NodeId,
    roles: &Roles,
    capacity_bytes: u64,
    admissions: u64,
) -> Vec<u8> {
    let mut w = Writer(ADMIT_DOMAIN.to_vec());
    w.str(chain_id);
    w.fixed(node);
    write_roles(&mut w, roles);
    w.u64(capacity_bytes);
    w.u64(admissions);
    w.0
}

fn verify(key: &[u8; 32], message: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(sig) else {
        return false;
    };
    VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(message, &Signature::from_bytes(&sig)))
        .is_ok()
}

/// Committee members whose operators signed `message` validly, and the quorum needed.
pub(crate) fn committee_votes(
    state: &State,
    message: &[u8],
    approvals: &[(AccountId, Vec<u8>)],
) -> (usize, usize) {
    let approvers: BTreeSet<AccountId> = approvals
        .iter()
        .filter(|(who, sig)| verify(who, message, sig))
        .map(|(who, _)| *who)
        .collect();
    let members = state.committee_records();
    let votes = members
        .iter()
        .filter(|(_, n)| approvers.contains(&n.operator))
        .count();
    (votes, crate::zones::quorum(members.len().max(1)))
}

/// An admission that passed every check: the node's record with the grant applied, which
/// `rules::nodes` writes as is.
#[derive(Debug)]
pub(crate) struct CheckedAdmission {
    pub(crate) node: NodeId,
    pub(crate) record: NodeRecord,
}

fn subset(granted: &Roles, requested: &Roles) -> bool {
    (!granted.validator || requested.validator)
        && (!granted.storage || requested.storage)
        && (!granted.gateway || requested.gateway)
        && (!granted.cache || requested.cache)
}

/// Checks an `AdmitNode` against the state: the node exists, the grant is within its request,
/// and a committee quorum approved exactly this grant at the node's current admission count.
pub(crate) fn check_admit(
    state: &State,
    node: &NodeId,
    roles: &Roles,
    capacity_bytes: u64,
    approvals: &[(AccountId, Vec<u8>)],
) -> Result<CheckedAdmission, TxError> {
    let rec: &NodeRecord = state.node(node).ok_or(TxError::UnknownNode)?;
    if !subset(roles, &rec.requested_roles) || capacity_bytes > rec.requested_capacity_bytes {
        return Err(TxError::InvalidField {
            field: "roles",
            reason: format!(
                "the grant exceeds the node's request (requested capacity {} bytes); the operator must register the roles and capacity first",
                rec.requested_capacity_bytes
            ),
        });
    }
    let message = admit_message(
        state.chain_id(),
        node,
        roles,
        capacity_bytes,
        rec.admissions,
    );
    let (votes, needed) = committee_votes(state, &message, approvals);
    if votes < needed {
        return Err(TxError::AdmissionQuorum { votes, needed });
    }
    // A new admission replaces the old grant; the count makes every approval single-use.
    Ok(CheckedAdmission {
        node: *node,
        record: NodeRecord {
            roles: roles.clone(),
            capacity_bytes,
            admissions: rec.admissions.saturating_add(1),
            ..rec.clone()
        },
    })
}

/// The roles a pending registration holds: none.
pub(crate) const NO_ROLES: Roles = Roles {
    validator: false,
    storage: false,
    gateway: false,
    cache: false,
};

/// True if the node registered but was never admitted (it holds no role and no capacity).
pub fn is_pending(rec: &NodeRecord) -> bool {
    rec.admissions == 0
}

// Canonical encoding of roles and committee approvals (shared by node and DNS transactions).

/// Writes roles as four bools (validator, storage, gateway, cache).
pub(crate) fn write_roles(w: &mut Writer, roles: &Roles) {
    for r in [roles.validator, roles.storage, roles.gateway, roles.cache] {
        w.bool(r);
    }
}

/// Reads what [`write_roles`] wrote.
pub(crate) fn read_roles(r: &mut Reader<'_>) -> Result<Roles, TxError> {
    Ok(Roles {
        validator: r.bool()?,
        storage: r.bool()?,
        gateway: r.bool()?,
        cache: r.bool()?,
    })
}

pub(crate) fn write_approvals(w: &mut Writer, approvals: &[(AccountId, Vec<u8>)]) {
    w.len(approvals.len());
    for (who, sig) in approvals {
        w.fixed(who);
        w.bytes(sig);
    }
}

pub(crate) fn read_approvals(r: &mut Reader<'_>) -> Result<Vec<(AccountId, Vec<u8>)>, TxError> {
    let n = r.len(MAX_APPROVALS)?;
    let mut approvals = Vec::with_capacity(n);
    for _ in 0..n {
        let who = r.fixed::<32>()?;
        approvals.push((who, r.bytes(64)?.to_vec()));
    }
    Ok(approvals)
}

pub(crate) fn check_approvals(approvals: &[(AccountId, Vec<u8>)]) -> Result<(), TxError> {
    if approvals.iter().any(|(_, sig)| sig.len() != 64) {
        return Err(TxError::InvalidField {
            field: "approvals",
            reason: "a signature is 64 bytes".into(),
        });
    }
    Ok(())
}
