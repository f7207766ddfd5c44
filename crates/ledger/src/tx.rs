//! Transactions: kinds, canonical encoding, stateless validation and signatures.

use crate::{
    admission::{check_approvals, read_approvals, read_roles, write_approvals, write_roles},
    codec::{Reader, Writer},
    dns::{
        read_plan, read_set, type_code, validate_name as validate_dns_name, validate_plan_fields,
        validate_set, write_plan, write_set, Endpoint, Plan, RecordError, RecordSet,
        MAX_DNS_NAME_SIZE_BYTES, MAX_RECORDS_PER_ZONE, MAX_TTL_SECS, MIN_TTL_SECS,
    },
    objects::{
        read_acl, validate_bucket_name, validate_coding, validate_object_key, write_acl, Acl,
        ObjectManifest, MAX_BUCKET_NAME_SIZE_BYTES, MAX_CONTENT_TYPE_SIZE_BYTES, MAX_DATA_SHARDS,
        MAX_ETAG_SIZE_BYTES, MAX_MANIFEST_ROOTS, MAX_MANIFEST_SEGMENTS, MAX_METADATA_ENTRIES,
        MAX_METADATA_SIZE_BYTES, MAX_OBJECT_KEY_SIZE_BYTES, MAX_PARITY_SHARDS,
    },
    zones::{in_zone, read_role, write_role, ManagedRole},
    AccountId, Hash, NodeId, TxError,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Largest encoded signed transaction (sized for a 4 GiB object's manifest).
pub const MAX_TX_SIZE_BYTES: usize = 64 * 1024;
/// Longest account name.
pub const MAX_NAME_SIZE_BYTES: usize = 64;
/// Longest zone name.
pub const MAX_ZONE_SIZE_BYTES: usize = 32;
/// Most advertised addresses per node.
pub const MAX_ADDRESSES: usize = 8;
/// Longest advertised address.
pub const MAX_ADDRESS_SIZE_BYTES: usize = 64;
/// Longest config key.
pub const MAX_CONFIG_KEY_SIZE_BYTES: usize = 128;
/// Longest config value.
pub const MAX_CONFIG_VALUE_SIZE_BYTES: usize = 2048;
// Every transaction that passes `Tx::validate` encodes within MAX_TX_SIZE_BYTES (the largest
// is a ConfigSet: signer, nonce, tag, key, value, expected_version, signature).
const _: () = assert!(
    32 + 8 + 8 + 1 + (4 + MAX_CONFIG_KEY_SIZE_BYTES) + (4 + MAX_CONFIG_VALUE_SIZE_BYTES) + 8 + 64
        <= MAX_TX_SIZE_BYTES
);
const _: () = assert!(
    32 + 8
        + 8
        + 1
        + 32
        + (4 + MAX_ZONE_SIZE_BYTES)
        + 4
        + 4
        + MAX_ADDRESSES * (4 + MAX_ADDRESS_SIZE_BYTES)
        + 8
        + 8
        + (4 + 64)
        + 64
        <= MAX_TX_SIZE_BYTES
);

// The largest PutObject: header, owner, bucket, key, the largest manifest, flag, signature.
const MAX_FRAGMENTS: usize = MAX_DATA_SHARDS as usize + MAX_PARITY_SHARDS as usize;
const _: () = assert!(
    32 + 8
        + 8
        + 1
        + 32
        + (4 + MAX_BUCKET_NAME_SIZE_BYTES)
        + (4 + MAX_OBJECT_KEY_SIZE_BYTES)
        + 8
        + (4 + MAX_ETAG_SIZE_BYTES)
        + (4 + MAX_CONTENT_TYPE_SIZE_BYTES)
        + 4
        + MAX_METADATA_ENTRIES * 8
        + MAX_METADATA_SIZE_BYTES
        + 4
        + MAX_FRAGMENTS * 32
        + 4
        + MAX_MANIFEST_SEGMENTS * (8 + 4 + 8)
        + MAX_MANIFEST_ROOTS * 32
        + 1
        + 64
        <= MAX_TX_SIZE_BYTES
);

/// Domain separation prefix of the signed message.
pub const SIGNING_DOMAIN: &[u8] = b"cairn/tx/v1\0";

/// Roles a node offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles {
    /// May sit on the BFT committee.
    pub validator: bool,
    /// Stores fragments.
    pub storage: bool,
    /// Serves S3.
    pub gateway: bool,
    /// Edge cache.
    pub cache: bool,
}

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    /// The signer registers itself as an account.
    RegisterAccount {
        /// Account name, `[a-z0-9-]`, 1..=64 bytes.
        name: String,
    },
    /// The signer registers a node it operates; the node stays pending (no roles, no
    /// capacity) until an [`TxKind::AdmitNode`] grants them.
    RegisterNode {
        /// Node p2p public key.
        node: NodeId,
        /// Failure zone, `[a-z0-9-]`, 1..=32 bytes.
        zone: String,
        /// Requested roles (at least one); granted only by admission.
        roles: Roles,
        /// Advertised socket addresses.
        addresses: Vec<String>,
        /// Requested storage capacity; granted only by admission.
        capacity_bytes: u64,
        /// Stake.
        stake: u64,
        /// Proof of possession: the node key's signature over
        /// [`crate::admission::possession_message`] (64 bytes).
        possession: Vec<u8>,
    },
    /// The committee grants a registered node roles and capacity (a quorum of committee
    /// operators sign [`crate::admission::admit_message`]); replaces any earlier grant.
    AdmitNode {
        /// The node.
        node: NodeId,
        /// Granted roles (a subset of the requested ones; none = suspend).
        roles: Roles,
        /// Granted capacity (at most the requested capacity).
        capacity_bytes: u64,
        /// (committee operator account, ed25519 signature over the admission message).
        approvals: Vec<(AccountId, Vec<u8>)>,
    },
    /// Liveness signal of a node, signed by its operator.
    Heartbeat {
        /// Node id.
        node: NodeId,
        /// Strictly increasing per node.
        seq: u64,
    },
    /// Versioned configuration entry, compare-and-set on `expected_version`.
    ConfigSet {
        /// Key, `[a-zA-Z0-9._/-]`, 1..=128 bytes.
        key: String,
        /// Value, at most 2048 bytes.
        value: String,
        /// Current version the writer expects (0 = absent).
        expected_version: u64,
    },
    /// Creates a bucket owned by `owner` (the signer, or a gateway it authorized).
    CreateBucket {
        /// Owner account.
        owner: AccountId,
        /// Bucket name (S3 rules).
        bucket: String,
        /// Read access.
        acl: Acl,
        /// k of the bucket's RS(k, m).
        data_shards: u8,
        /// m of the bucket's RS(k, m).
        parity_shards: u8,
    },
    /// Deletes an empty bucket.
    DeleteBucket {
        /// Owner account.
        owner: AccountId,
        /// Bucket name.
        bucket: String,
    },
    /// Creates or replaces an object's manifest.
    PutObject {
        /// Owner account (must own the bucket).
        owner: AccountId,
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// What was stored where.
        manifest: ObjectManifest,
        /// Conditional write (`If-None-Match: *`): rejected if the key exists.
        if_absent: bool,
    },
    /// Deletes an object.
    DeleteObject {
        /// Owner account.
        owner: AccountId,
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// The gateway's request time; an older delete never removes a newer object.
        request_ms: u64,
    },
    /// The signer lets `gateway` act for it (or revokes that when `allowed` is false).
    AuthorizeGateway {
        /// Gateway account.
        gateway: AccountId,
        /// Grant or revoke.
        allowed: bool,
    },
    /// Creates a zone (`expected_version` 0; the signer becomes its owner) or changes its
    /// static record sets (the owner, compare-and-set on the zone version).
    ZoneUpdate {
        /// Zone apex, lower-case, no final dot.
        origin: String,
        /// The zone version the writer read (0 = create).
        expected_version: u64,
        /// Record sets to create or replace, keyed by (name, type).
        upserts: Vec<RecordSet>,
        /// (name, type code) of sets to delete.
        deletes: Vec<(String, u16)>,
    },
    /// The zone owner binds a managed name whose A/AAAA records planners maintain.
    ManageName {
        /// Zone apex.
        origin: String,
        /// Owner name inside the zone.
        name: String,
        /// TTL of the managed records.
        ttl_secs: u32,
        /// Which nodes it points at.
        role: ManagedRole,
        /// Generation 1 (non-empty; each must be a node of the role).
        endpoints: Vec<Endpoint>,
    },
    /// A validator's plan for a managed name (compare-and-set on the generation).
    DnsPlan {
        /// Zone apex.
        origin: String,
        /// Managed name.
        name: String,
        /// The plan.
        plan: Plan,
    },
    /// A plan that may exceed velocity and pacing, approved by a validator quorum.
    DnsOverride {
        /// Zone apex.
        origin: String,
        /// Managed name.
        name: String,
        /// The plan (never empty).
        plan: Plan,
        /// (validator operator account, ed25519 signature over [`crate::zones::override_message`]).
        approvals: Vec<(AccountId, Vec<u8>)>,
    },
    /// A storage node's answers to its audit challenges (signed by its operator).
    AuditProof(crate::audit::AuditProof),
    /// A storage node reports that it lost one of its fragments (signed by its operator).
    FragmentLost(crate::audit::FragmentLost),
}

/// An unsigned transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tx {
    /// Signing account.
    pub signer: AccountId,
    /// Anti-replay nonce (see [`crate::NONCE_WINDOW`]).
    pub nonce: u64,
    /// Last height at which the transaction may apply; refused after it, and refused when more
    /// than [`crate::MAX_TX_VALIDITY_BLOCKS`] ahead of the applying height.
    pub valid_until: u64,
    /// Operation.
    pub kind: TxKind,
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTx {
    /// Body.
    pub tx: Tx,
    /// ed25519 signature over `SIGNING_DOMAIN || tx.encode()`.
    pub signature: [u8; 64],
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn check_charset(
    field: &'static str,
    v: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
) -> Result<(), TxError> {
    if v.is_empty() || v.len() > max {
        return Err(invalid(
            field,
            format!("length is {} bytes, must be 1..={max}", v.len()),
        ));
    }
    if let Some(c) = v.chars().find(|c| !ok(*c)) {
        return Err(invalid(field, format!("character {c:?} is not allowed")));
    }
    Ok(())
}

fn lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// Checks an account name: 1..=[`MAX_NAME_SIZE_BYTES`] bytes of `[a-z0-9-]`.
pub(crate) fn validate_name(name: &str) -> Result<(), TxError> {
    check_charset("name", name, MAX_NAME_SIZE_BYTES, lower)
}

/// Checks the fields a node registration carries (transaction or genesis).
pub(crate) fn validate_node(
    zone: &str,
    roles: &Roles,
    addresses: &[String],
) -> Result<(), TxError> {
    check_charset("zone", zone, MAX_ZONE_SIZE_BYTES, lower)?;
    if !(roles.validator || roles.storage || roles.gateway || roles.cache) {
        return Err(invalid("roles", "at least one role is required"));
    }
    if addresses.is_empty() || addresses.len() > MAX_ADDRESSES {
        return Err(invalid(
            "addresses",
            format!("{} given, must be 1..={MAX_ADDRESSES}", addresses.len()),
        ));
    }
    for a in addresses {
        if a.len() > MAX_ADDRESS_SIZE_BYTES {
            return Err(invalid(
                "addresses",
                format!("{a:?} is longer than {MAX_ADDRESS_SIZE_BYTES} bytes"),
            ));
        }
        a.parse::<std::net::SocketAddr>()
            .map_err(|_| invalid("addresses", format!("{a:?} is not ip:port")))?;
    }
    Ok(())
}

fn check_managed_name(origin: &str, name: &str) -> Result<(), TxError> {
    let zone = |error: RecordError| TxError::InvalidZone { error };
    validate_dns_name(origin).map_err(zone)?;
    validate_dns_name(name).map_err(zone)?;
    if !in_zone(name, origin) || name.starts_with('*') {
        return Err(invalid(
            "name",
            format!("{name} is not a plain name inside zone {origin}"),
        ));
    }
    Ok(())
}

impl Tx {
    /// Canonical bytes of the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.write(&mut w);
        w.0
    }

    fn write(&self, w: &mut Writer) {
        w.fixed(&self.signer);
        w.u64(self.nonce);
        w.u64(self.valid_until);
        match &self.kind {
            TxKind::RegisterAccount { name } => {
                w.u8(0);
                w.str(name);
            }
            TxKind::RegisterNode {
                node,
                zone,
                roles,
                addresses,
                capacity_bytes,
                stake,
                possession,
            } => {
                w.u8(1);
                w.fixed(node);
                w.str(zone);
                write_roles(w, roles);
                w.len(addresses.len());
                for a in addresses {
                    w.str(a);
                }
                w.u64(*capacity_bytes);
                w.u64(*stake);
                w.bytes(possession);
            }
            TxKind::Heartbeat { node, seq } => {
                w.u8(2);
                w.fixed(node);
                w.u64(*seq);
            }
            TxKind::ConfigSet {
                key,
                value,
                expected_version,
            } => {
                w.u8(3);
                w.str(key);
                w.str(value);
                w.u64(*expected_version);
            }
            TxKind::CreateBucket {
                owner,
                bucket,
                acl,
                data_shards,
                parity_shards,
            } => {
                w.u8(4);
                w.fixed(owner);
                w.str(bucket);
                write_acl(w, *acl);
                w.u8(*data_shards);
                w.u8(*parity_shards);
            }
            TxKind::DeleteBucket { owner, bucket } => {
                w.u8(5);
                w.fixed(owner);
                w.str(bucket);
            }
            TxKind::PutObject {
                owner,
                bucket,
                key,
                manifest,
                if_absent,
            } => {
                w.u8(6);
                w.fixed(owner);
                w.str(bucket);
                w.str(key);
                manifest.write(w);
                w.bool(*if_absent);
            }
            TxKind::DeleteObject {
                owner,
                bucket,
                key,
                request_ms,
            } => {
                w.u8(7);
                w.fixed(owner);
                w.str(bucket);
                w.str(key);
                w.u64(*request_ms);
            }
            TxKind::AuthorizeGateway { gateway, allowed } => {
                w.u8(8);
                w.fixed(gateway);
                w.bool(*allowed);
            }
            TxKind::ZoneUpdate {
                origin,
                expected_version,
                upserts,
                deletes,
            } => {
                w.u8(9);
                w.str(origin);
                w.u64(*expected_version);
                w.len(upserts.len());
                for set in upserts {
                    write_set(w, set);
                }
                w.len(deletes.len());
                for (name, t) in deletes {
                    w.str(name);
                    w.fixed(&t.to_le_bytes());
                }
            }
            TxKind::ManageName {
                origin,
                name,
                ttl_secs,
                role,
                endpoints,
            } => {
                w.u8(10);
                w.str(origin);
                w.str(name);
                w.fixed(&ttl_secs.to_le_bytes());
                write_role(w, *role);
                // An endpoint list encodes like a plan's.
                write_plan(
                    w,
                    &Plan {
                        generation: 1,
                        base_generation: 0,
                        endpoints: endpoints.clone(),
                        evidence_height: 0,
                        reason: String::new(),
                    },
                );
            }
            TxKind::DnsPlan { origin, name, plan } => {
                w.u8(11);
                w.str(origin);
                w.str(name);
                write_plan(w, plan);
            }
            TxKind::DnsOverride {
                origin,
                name,
                plan,
                approvals,
            } => {
                w.u8(12);
                w.str(origin);
                w.str(name);
                write_plan(w, plan);
                write_approvals(w, approvals);
            }
            TxKind::AdmitNode {
                node,
                roles,
                capacity_bytes,
                approvals,
            } => {
                w.u8(13);
                w.fixed(node);
                write_roles(w, roles);
                w.u64(*capacity_bytes);
                write_approvals(w, approvals);
            }
            TxKind::AuditProof(p) => {
                w.u8(14);
                p.write(w);
            }
            TxKind::FragmentLost(l) => {
                w.u8(15);
                l.write(w);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let signer = r.fixed::<32>()?;
        let nonce = r.u64()?;
        let valid_until = r.u64()?;
        let kind = match r.u8()? {
            0 => TxKind::RegisterAccount {
                name: r.str(MAX_NAME_SIZE_BYTES)?,
            },
            1 => {
                let node = r.fixed::<32>()?;
                let zone = r.str(MAX_ZONE_SIZE_BYTES)?;
                let roles = read_roles(r)?;
                let count = r.len(MAX_ADDRESSES)?;
                let mut addresses = Vec::with_capacity(count);
                for _ in 0..count {
                    addresses.push(r.str(MAX_ADDRESS_SIZE_BYTES)?);
                }
                TxKind::RegisterNode {
                    node,
                    zone,
                    roles,
                    addresses,
                    capacity_bytes: r.u64()?,
                    stake: r.u64()?,
                    possession: r.bytes(64)?.to_vec(),
                }
            }
            2 => TxKind::Heartbeat {
                node: r.fixed::<32>()?,
                seq: r.u64()?,
            },
            3 => TxKind::ConfigSet {
                key: r.str(MAX_CONFIG_KEY_SIZE_BYTES)?,
                value: r.str(MAX_CONFIG_VALUE_SIZE_BYTES)?,
                expected_version: r.u64()?,
            },
            4 => TxKind::CreateBucket {
                owner: r.fixed::<32>()?,
                bucket: r.str(MAX_BUCKET_NAME_SIZE_BYTES)?,
                acl: read_acl(r)?,
                data_shards: r.u8()?,
                parity_shards: r.u8()?,
            },
            5 => TxKind::DeleteBucket {
                owner: r.fixed::<32>()?,
                bucket: r.str(MAX_BUCKET_NAME_SIZE_BYTES)?,
            },
            6 => TxKind::PutObject {
                owner: r.fixed::<32>()?,
                bucket: r.str(MAX_BUCKET_NAME_SIZE_BYTES)?,
                key: r.str(MAX_OBJECT_KEY_SIZE_BYTES)?,
                manifest: ObjectManifest::read(r)?,
                if_absent: r.bool()?,
            },
            7 => TxKind::DeleteObject {
                owner: r.fixed::<32>()?,
                bucket: r.str(MAX_BUCKET_NAME_SIZE_BYTES)?,
                key: r.str(MAX_OBJECT_KEY_SIZE_BYTES)?,
                request_ms: r.u64()?,
            },
            8 => TxKind::AuthorizeGateway {
                gateway: r.fixed::<32>()?,
                allowed: r.bool()?,
            },
            9 => {
                let origin = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
                let expected_version = r.u64()?;
                let n = r.len(MAX_RECORDS_PER_ZONE)?;
                let mut upserts = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    upserts.push(read_set(r)?);
                }
                let n = r.len(MAX_RECORDS_PER_ZONE)?;
                let mut deletes = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let name = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
                    deletes.push((name, u16::from_le_bytes(r.fixed::<2>()?)));
                }
                TxKind::ZoneUpdate {
                    origin,
                    expected_version,
                    upserts,
                    deletes,
                }
            }
            10 => {
                let origin = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
                let name = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
                let ttl_secs = u32::from_le_bytes(r.fixed::<4>()?);
                let role = read_role(r)?;
                let plan = read_plan(r)?;
                TxKind::ManageName {
                    origin,
                    name,
                    ttl_secs,
                    role,
                    endpoints: plan.endpoints,
                }
            }
            11 => TxKind::DnsPlan {
                origin: r.str(MAX_DNS_NAME_SIZE_BYTES)?,
                name: r.str(MAX_DNS_NAME_SIZE_BYTES)?,
                plan: read_plan(r)?,
            },
            12 => {
                let origin = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
                let name = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
                let plan = read_plan(r)?;
                TxKind::DnsOverride {
                    origin,
                    name,
                    plan,
                    approvals: read_approvals(r)?,
                }
            }
            13 => TxKind::AdmitNode {
                node: r.fixed::<32>()?,
                roles: read_roles(r)?,
                capacity_bytes: r.u64()?,
                approvals: read_approvals(r)?,
            },
            14 => TxKind::AuditProof(crate::audit::AuditProof::read(r)?),
            15 => TxKind::FragmentLost(crate::audit::FragmentLost::read(r)?),
            _ => {
                return Err(TxError::Malformed {
                    reason: "unknown transaction kind",
                })
            }
        };
        Ok(Self {
            signer,
            nonce,
            valid_until,
            kind,
        })
    }

    fn signing_message(&self) -> Vec<u8> {
        let mut w = Writer(SIGNING_DOMAIN.to_vec());
        self.write(&mut w);
        w.0
    }

    /// Signs the body with `key` (which should be the signer's key).
    pub fn sign(self, key: &SigningKey) -> SignedTx {
        let signature = key.sign(&self.signing_message()).to_bytes();
        SignedTx {
            tx: self,
            signature,
        }
    }

    /// Field checks that need no state (all bounds, charsets, addresses, roles, nonce >= 1).
    pub fn validate(&self) -> Result<(), TxError> {
        if self.nonce == 0 {
            return Err(invalid("nonce", "nonces start at 1"));
        }
        if self.valid_until == 0 {
            return Err(invalid(
                "valid_until",
                "must be a height >= 1; use the finalized height plus a validity window",
            ));
        }
        match &self.kind {
            TxKind::RegisterAccount { name } => validate_name(name),
            TxKind::RegisterNode {
                zone,
                roles,
                addresses,
                possession,
                ..
            } => {
                validate_node(zone, roles, addresses)?;
                if possession.len() != 64 {
                    return Err(invalid("possession", "a signature is 64 bytes"));
                }
                Ok(())
            }
            TxKind::AdmitNode { approvals, .. } => check_approvals(approvals),
            TxKind::Heartbeat { .. } => Ok(()),
            TxKind::ConfigSet { key, value, .. } => {
                check_charset("key", key, MAX_CONFIG_KEY_SIZE_BYTES, |c| {
                    c.is_ascii_alphanumeric() || "._/-".contains(c)
                })?;
                if value.len() > MAX_CONFIG_VALUE_SIZE_BYTES {
                    return Err(invalid(
                        "value",
                        format!(
                            "{} bytes, must be at most {MAX_CONFIG_VALUE_SIZE_BYTES}",
                            value.len()
                        ),
                    ));
                }
                Ok(())
            }
            TxKind::CreateBucket {
                bucket,
                data_shards,
                parity_shards,
                ..
            } => {
                validate_bucket_name(bucket)?;
                validate_coding(*data_shards, *parity_shards)
            }
            TxKind::DeleteBucket { bucket, .. } => validate_bucket_name(bucket),
            TxKind::PutObject {
                bucket,
                key,
                manifest,
                ..
            } => {
                validate_bucket_name(bucket)?;
                validate_object_key(key)?;
                manifest.validate()
            }
            TxKind::DeleteObject { bucket, key, .. } => {
                validate_bucket_name(bucket)?;
                validate_object_key(key)
            }
            TxKind::AuthorizeGateway { gateway, .. } => {
                if *gateway == self.signer {
                    return Err(invalid("gateway", "an account cannot authorize itself"));
                }
                Ok(())
            }
            TxKind::ZoneUpdate {
                origin,
                upserts,
                deletes,
                ..
            } => {
                let zone = |error: RecordError| TxError::InvalidZone { error };
                validate_dns_name(origin).map_err(zone)?;
                if upserts.is_empty() && deletes.is_empty() {
                    return Err(invalid("upserts", "nothing to change"));
                }
                for set in upserts {
                    validate_set(origin, set).map_err(zone)?;
                }
                for (name, t) in deletes {
                    validate_dns_name(name).map_err(zone)?;
                    if !["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA", "SRV", "CAA"]
                        .iter()
                        .any(|m| type_code(m) == Some(*t))
                    {
                        return Err(invalid("deletes", format!("type {t} is not supported")));
                    }
                }
                Ok(())
            }
            TxKind::ManageName {
                origin,
                name,
                ttl_secs,
                endpoints,
                ..
            } => {
                check_managed_name(origin, name)?;
                if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(ttl_secs) {
                    return Err(invalid(
                        "ttl_secs",
                        format!("must be {MIN_TTL_SECS}..={MAX_TTL_SECS}"),
                    ));
                }
                validate_plan_fields(&Plan {
                    generation: 1,
                    base_generation: 0,
                    endpoints: endpoints.clone(),
                    evidence_height: 0,
                    reason: String::new(),
                })
                .map_err(|error| TxError::PlanRejected { error })
            }
            TxKind::DnsPlan { origin, name, plan } => {
                check_managed_name(origin, name)?;
                validate_plan_fields(plan).map_err(|error| TxError::PlanRejected { error })
            }
            TxKind::DnsOverride {
                origin,
                name,
                plan,
                approvals,
            } => {
                check_managed_name(origin, name)?;
                validate_plan_fields(plan).map_err(|error| TxError::PlanRejected { error })?;
                check_approvals(approvals)
            }
            TxKind::AuditProof(p) => p.validate(),
            TxKind::FragmentLost(l) => l.validate(),
        }
    }
}

impl SignedTx {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.tx.write(&mut w);
        w.fixed(&self.signature);
        w.0
    }

    /// Strict canonical decode: bounded lengths, known tags, bools 0/1, UTF-8, no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        if bytes.len() > MAX_TX_SIZE_BYTES {
            return Err(TxError::Oversize {
                size_bytes: bytes.len(),
                max_bytes: MAX_TX_SIZE_BYTES,
            });
        }
        let mut r = Reader::new(bytes);
        let tx = Tx::read(&mut r)?;
        let signature = r.fixed::<64>()?;
        r.finish()?;
        Ok(Self { tx, signature })
    }

    /// Checks the signature (`verify_strict`) against the signer key, and a node
    /// registration's proof of possession against the node key.
    pub fn verify_signature(&self) -> Result<(), TxError> {
        let key = VerifyingKey::from_bytes(&self.tx.signer).map_err(|_| TxError::BadSignature)?;
        key.verify_strict(
            &self.tx.signing_message(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| TxError::BadSignature)?;
        if let TxKind::RegisterNode {
            node, possession, ..
        } = &self.tx.kind
        {
            crate::admission::verify_possession(&self.tx, node, possession)?;
        }
        Ok(())
    }

    /// Decode, field checks and signature: everything that needs no state.
    pub fn decode_and_verify(bytes: &[u8]) -> Result<Self, TxError> {
        let tx = Self::decode(bytes)?;
        tx.tx.validate()?;
        tx.verify_signature()?;
        Ok(tx)
    }

    /// blake3 of the canonical bytes.
    pub fn hash(&self) -> Hash {
        *blake3::hash(&self.encode()).as_bytes()
    }
}
