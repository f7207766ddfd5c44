//! The stateful rules, one file per transaction family, each holding that family's check and
//! apply together: [`accounts`] (the signer's nonce for every transaction, `RegisterAccount`,
//! `ConfigSet`), [`nodes`] (`RegisterNode`, `AdmitNode`, `Heartbeat`), [`buckets`]
//! (`CreateBucket`, `DeleteBucket`, `AuthorizeGateway`), [`objects`] (`PutObject`,
//! `DeleteObject` with versions and tombstones), [`dns`] (`ZoneUpdate`, `ManageName`,
//! `DnsPlan`, `DnsOverride`) and [`audits`] (`AuditProof`, `FragmentLost`, and the rounds'
//! opening and judging at the end of each block).
//!
//! Contract: [`check`] reads the state, changes nothing, and returns a [`Checked`] value that
//! holds every record the transaction writes, computed once (full new records, not deltas);
//! [`apply`] only writes them, so it cannot fail and never looks up again what check found.
//! Block application runs `check` then `apply` for each transaction in turn, so nothing
//! changes the state between the two.

mod accounts;
pub(crate) mod audits;
mod buckets;
mod dns;
mod nodes;
mod objects;

pub use accounts::check_nonce;

use crate::{
    state::{key, Account, Event, State, T_ACCOUNT},
    tx::{SignedTx, TxKind},
    AccountId, TxError, MAX_TX_VALIDITY_BLOCKS,
};

/// One family's checked change.
pub(crate) enum Change {
    /// Accounts and config.
    Account(accounts::Change),
    /// Node registry.
    Node(nodes::Change),
    /// Buckets and gateway authorizations.
    Bucket(buckets::Change),
    /// Objects.
    Object(objects::Change),
    /// DNS zones.
    Dns(dns::Change),
    /// Audit proofs and lost fragments.
    Audit(audits::Change),
}

/// A transaction that passed its stateful checks, with everything its apply writes.
pub(crate) struct Checked {
    signer: AccountId,
    /// The signer's account after this transaction (nonce window advanced).
    account: Account,
    change: Change,
}

/// Refuses a transaction applying after its `valid_until`, or whose `valid_until` lies more
/// than [`MAX_TX_VALIDITY_BLOCKS`] past `height` (so nothing can float for long).
pub fn check_validity(valid_until: u64, height: u64) -> Result<(), TxError> {
    if height > valid_until {
        return Err(TxError::Expired {
            valid_until,
            height,
        });
    }
    if valid_until - height > MAX_TX_VALIDITY_BLOCKS {
        return Err(TxError::ValidityTooLong {
            valid_until,
            max: height.saturating_add(MAX_TX_VALIDITY_BLOCKS),
        });
    }
    Ok(())
}

/// Every stateful rule for `stx` applying at `height`, in a fixed order (validity, signer
/// account and nonce, then the family's rule); changes nothing.
pub(crate) fn check(state: &State, stx: &SignedTx, height: u64) -> Result<Checked, TxError> {
    let tx = &stx.tx;
    check_validity(tx.valid_until, height)?;
    let account = accounts::check_signer(state, tx)?;
    let signer = &tx.signer;
    let change = match &tx.kind {
        TxKind::RegisterAccount { name } => Change::Account(accounts::register(signer, name)),
        TxKind::ConfigSet {
            key,
            value,
            expected_version,
        } => Change::Account(accounts::check_config(
            state,
            signer,
            key,
            value,
            *expected_version,
            height,
        )?),
        TxKind::RegisterNode {
            node,
            zone,
            roles,
            addresses,
            capacity_bytes,
            stake,
            ..
        } => Change::Node(nodes::check_register(
            state,
            signer,
            node,
            nodes::Request {
                zone,
                roles,
                addresses,
                capacity_bytes: *capacity_bytes,
                stake: *stake,
            },
            height,
        )?),
        TxKind::AdmitNode {
            node,
            roles,
            capacity_bytes,
            approvals,
        } => Change::Node(nodes::check_admit(
            state,
            node,
            roles,
            *capacity_bytes,
            approvals,
        )?),
        TxKind::Heartbeat { node, seq } => {
            Change::Node(nodes::check_heartbeat(state, signer, node, *seq)?)
        }
        TxKind::CreateBucket {
            owner,
            bucket,
            acl,
            data_shards,
            parity_shards,
        } => Change::Bucket(buckets::check_create(
            state,
            signer,
            owner,
            bucket,
            *acl,
            (*data_shards, *parity_shards),
            height,
        )?),
        TxKind::DeleteBucket { owner, bucket } => {
            Change::Bucket(buckets::check_delete(state, signer, owner, bucket)?)
        }
        TxKind::AuthorizeGateway { gateway, allowed } => {
            Change::Bucket(buckets::authorize(signer, gateway, *allowed))
        }
        TxKind::PutObject {
            owner,
            bucket,
            key,
            manifest,
            if_absent,
        } => Change::Object(objects::check_put(
            state, stx, owner, bucket, key, manifest, *if_absent, height,
        )?),
        TxKind::DeleteObject {
            owner,
            bucket,
            key,
            request_ms,
        } => Change::Object(objects::check_delete(
            state,
            stx,
            owner,
            bucket,
            key,
            *request_ms,
            height,
        )?),
        TxKind::ZoneUpdate {
            origin,
            expected_version,
            upserts,
            deletes,
        } => Change::Dns(dns::check_zone_update(
            state,
            signer,
            origin,
            *expected_version,
            upserts,
            deletes,
        )?),
        TxKind::ManageName {
            origin,
            name,
            ttl_secs,
            role,
            endpoints,
        } => Change::Dns(dns::check_manage_name(
            state, signer, origin, name, *ttl_secs, *role, endpoints, height,
        )?),
        TxKind::DnsPlan { origin, name, plan } => {
            Change::Dns(dns::check_plan(state, signer, origin, name, plan, height)?)
        }
        TxKind::DnsOverride {
            origin,
            name,
            plan,
            approvals,
        } => Change::Dns(dns::check_override(
            state, signer, origin, name, plan, approvals, height,
        )?),
        TxKind::AuditProof(proof) => {
            Change::Audit(audits::check_proof(state, signer, proof, height)?)
        }
        TxKind::FragmentLost(lost) => Change::Audit(audits::check_lost(state, signer, lost)?),
    };
    Ok(Checked {
        signer: *signer,
        account,
        change,
    })
}

/// Writes a checked transaction and returns its event; infallible by construction.
pub(crate) fn apply(state: &mut State, checked: Checked) -> Event {
    let Checked {
        signer,
        account,
        change,
    } = checked;
    state.touch(key(T_ACCOUNT, &signer));
    state.accounts.insert(signer, account);
    match change {
        Change::Account(c) => accounts::apply(state, c),
        Change::Node(c) => nodes::apply(state, c),
        Change::Bucket(c) => buckets::apply(state, c),
        Change::Object(c) => objects::apply(state, c),
        Change::Dns(c) => dns::apply(state, c),
        Change::Audit(c) => audits::apply(state, c),
    }
}
