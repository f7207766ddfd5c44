//! Nodes: `RegisterNode` records a pending node, `AdmitNode` grants roles and capacity on a
//! committee quorum ([`crate::admission`] holds that rule), `Heartbeat` marks a node seen.

use crate::{
    admission::{self, NO_ROLES},
    audit::AuditRecord,
    state::{key, Event, NodeRecord, State, T_AUDIT_RECORD, T_NODE},
    tx::Roles,
    AccountId, NodeId, TxError,
};

/// A checked node change: the node's whole record after the transaction.
pub(crate) enum Change {
    /// A new pending node.
    Registered { node: NodeId, record: NodeRecord },
    /// A node with its new grant, and its audit record cleared of strikes and `faulty` if it
    /// had one (a re-admission is the committee's decision to trust it again).
    Admitted {
        node: NodeId,
        record: NodeRecord,
        audit: Option<AuditRecord>,
    },
    /// A node with its new heartbeat.
    Heartbeat {
        node: NodeId,
        seq: u64,
        record: NodeRecord,
    },
}

/// What a registration asks for.
pub(super) struct Request<'a> {
    pub(super) zone: &'a str,
    pub(super) roles: &'a Roles,
    pub(super) addresses: &'a [String],
    pub(super) capacity_bytes: u64,
    pub(super) stake: u64,
}

/// `RegisterNode`: the node id is new. The possession proof is checked statelessly.
pub(super) fn check_register(
    state: &State,
    signer: &AccountId,
    node: &NodeId,
    request: Request<'_>,
    height: u64,
) -> Result<Change, TxError> {
    if state.nodes.contains_key(node) {
        return Err(TxError::NodeExists);
    }
    // Pending: nothing is granted until the committee admits it.
    let record = NodeRecord {
        operator: *signer,
        zone: request.zone.to_string(),
        roles: NO_ROLES,
        addresses: request.addresses.to_vec(),
        capacity_bytes: 0,
        requested_roles: request.roles.clone(),
        requested_capacity_bytes: request.capacity_bytes,
        admissions: 0,
        stake: request.stake,
        registered_height: height,
        last_seen_ms: state.time_ms,
        last_heartbeat_seq: 0,
        used_bytes: 0,
    };
    Ok(Change::Registered {
        node: *node,
        record,
    })
}

/// `AdmitNode`: see [`admission::check_admit`].
pub(super) fn check_admit(
    state: &State,
    node: &NodeId,
    roles: &Roles,
    capacity_bytes: u64,
    approvals: &[(AccountId, Vec<u8>)],
) -> Result<Change, TxError> {
    let admitted = admission::check_admit(state, node, roles, capacity_bytes, approvals)?;
    let audit = state.audit_records.get(node).map(|r| AuditRecord {
        strikes: 0,
        faulty: false,
        ..r.clone()
    });
    Ok(Change::Admitted {
        node: admitted.node,
        record: admitted.record,
        audit,
    })
}

/// `Heartbeat`: from the node's operator, with a sequence above the last accepted one.
pub(super) fn check_heartbeat(
    state: &State,
    signer: &AccountId,
    node: &NodeId,
    seq: u64,
) -> Result<Change, TxError> {
    let n = state.nodes.get(node).ok_or(TxError::UnknownNode)?;
    if n.operator != *signer {
        return Err(TxError::NotNodeOperator);
    }
    if seq <= n.last_heartbeat_seq {
        return Err(TxError::StaleHeartbeat {
            seq,
            last: n.last_heartbeat_seq,
        });
    }
    Ok(Change::Heartbeat {
        node: *node,
        seq,
        record: NodeRecord {
            last_heartbeat_seq: seq,
            last_seen_ms: state.time_ms,
            ..n.clone()
        },
    })
}

/// Writes a checked node change.
pub(super) fn apply(state: &mut State, change: Change) -> Event {
    let (node, record, event) = match change {
        Change::Registered { node, record } => {
            let event = Event::NodeRegistered {
                node,
                operator: record.operator,
            };
            (node, record, event)
        }
        Change::Admitted {
            node,
            record,
            audit,
        } => {
            if let Some(audit) = audit {
                state.touch(key(T_AUDIT_RECORD, &node));
                state.audit_records.insert(node, audit);
            }
            let event = Event::NodeAdmitted {
                node,
                roles: record.roles.clone(),
                capacity_bytes: record.capacity_bytes,
            };
            (node, record, event)
        }
        Change::Heartbeat { node, seq, record } => (node, record, Event::Heartbeat { node, seq }),
    };
    state.touch(key(T_NODE, &node));
    state.nodes.insert(node, record);
    event
}
