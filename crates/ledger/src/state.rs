//! Ledger state and the block transition function.

use crate::{
    admission::{
        check_admit, committee_votes, read_roles, write_roles, CheckedAdmission, NO_ROLES,
    },
    codec::{Reader, Writer},
    lthash::LtHash,
    objects::{
        dec_bucket, dec_object, enc_bucket, enc_object, gateway_key_suffix, object_key_suffix,
        split_object_key, validate_bucket_name, Bucket, ObjectRecord,
    },
    registry,
    tx::{
        validate_name, validate_node, Roles, SignedTx, TxKind, MAX_ADDRESSES,
        MAX_ADDRESS_SIZE_BYTES, MAX_CONFIG_KEY_SIZE_BYTES, MAX_CONFIG_VALUE_SIZE_BYTES,
        MAX_NAME_SIZE_BYTES, MAX_ZONE_SIZE_BYTES,
    },
    versions::{check_newer, Tombstone, WriteVersion, TOMBSTONE_RETENTION_BLOCKS},
    zones::{endpoint_of, override_message, Managed, Zone},
    AccountId, BlockError, Hash, NodeId, StateError, TxError, MAX_TXS_PER_BLOCK,
    MAX_TX_VALIDITY_BLOCKS, NONCE_WINDOW,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Longest chain id in a genesis.
pub const MAX_CHAIN_ID_SIZE_BYTES: usize = 64;

/// An account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Name.
    pub name: String,
    /// Highest accepted nonce (0 = none yet).
    pub nonce_max: u64,
    /// Bit i set: nonce `nonce_max - i` was used.
    pub nonce_window: u64,
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Operator account.
    pub operator: AccountId,
    /// Failure zone.
    pub zone: String,
    /// Roles granted by admission (none while pending); every rule reads these.
    pub roles: Roles,
    /// Advertised addresses.
    pub addresses: Vec<String>,
    /// Capacity granted by admission (0 while pending); placement weighs by this.
    pub capacity_bytes: u64,
    /// Roles the operator asked for at registration.
    pub requested_roles: Roles,
    /// Capacity the operator asked for at registration.
    pub requested_capacity_bytes: u64,
    /// Admissions so far (0 = pending); approvals name it, so each is single-use.
    pub admissions: u64,
    /// Stake.
    pub stake: u64,
    /// Height of registration.
    pub registered_height: u64,
    /// Block time (ms) of the last registration or heartbeat; health reads only this
    /// ([`crate::registry::is_healthy`]). Genesis nodes are stamped by the first block.
    pub last_seen_ms: u64,
    /// Sequence of the last heartbeat.
    pub last_heartbeat_seq: u64,
    /// Bytes of fragments placed on this node by live manifests.
    pub used_bytes: u64,
}

/// A node as listed in genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecordInit {
    /// Operator account (must be a genesis account).
    pub operator: AccountId,
    /// Failure zone.
    pub zone: String,
    /// Roles.
    pub roles: Roles,
    /// Advertised addresses.
    pub addresses: Vec<String>,
    /// Advertised capacity.
    pub capacity_bytes: u64,
    /// Stake.
    pub stake: u64,
}

/// A versioned configuration entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// Value.
    pub value: String,
    /// Version (1 for the first write).
    pub version: u64,
    /// Writer.
    pub set_by: AccountId,
    /// Height of the write.
    pub set_height: u64,
}

/// The chain's starting point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Chain id.
    pub chain_id: String,
    /// Accounts.
    pub accounts: Vec<(AccountId, String)>,
    /// Nodes.
    pub nodes: Vec<(NodeId, NodeRecordInit)>,
}

/// What applying a block did, one event per transaction, in block order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Event {
    /// A new account.
    AccountRegistered {
        /// Account id.
        account: AccountId,
        /// Account name.
        name: String,
    },
    /// A new node (pending until admitted).
    NodeRegistered {
        /// Node id.
        node: NodeId,
        /// Operator account.
        operator: AccountId,
    },
    /// The committee granted a node roles and capacity.
    NodeAdmitted {
        /// Node id.
        node: NodeId,
        /// Granted roles.
        roles: Roles,
        /// Granted capacity.
        capacity_bytes: u64,
    },
    /// An accepted heartbeat.
    Heartbeat {
        /// Node id.
        node: NodeId,
        /// Sequence.
        seq: u64,
    },
    /// A config write.
    ConfigChanged {
        /// Key.
        key: String,
        /// New version.
        version: u64,
    },
    /// A new bucket.
    BucketCreated {
        /// Bucket name.
        bucket: String,
        /// Owner.
        owner: AccountId,
    },
    /// A bucket was deleted.
    BucketDeleted {
        /// Bucket name.
        bucket: String,
    },
    /// An object manifest was written (created or replaced).
    ObjectPut {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// True if it replaced an existing object.
        replaced: bool,
    },
    /// An object was deleted (or a delete of an absent key left its tombstone).
    ObjectDeleted {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// True if an object was removed.
        existed: bool,
    },
    /// A gateway authorization was granted or revoked.
    GatewayAuthorization {
        /// Owner account.
        owner: AccountId,
        /// Gateway account.
        gateway: AccountId,
        /// Granted (true) or revoked.
        allowed: bool,
    },
    /// A zone was created or its static records changed.
    ZoneUpdated {
        /// Zone apex.
        origin: String,
        /// New zone version (SOA serial).
        version: u64,
    },
    /// A managed name was bound.
    ManagedNameBound {
        /// Zone apex.
        origin: String,
        /// The name.
        name: String,
    },
    /// A plan (or override) made a new generation current.
    DnsPlanned {
        /// Zone apex.
        origin: String,
        /// The name.
        name: String,
        /// The new generation.
        generation: u64,
        /// Committee override.
        overridden: bool,
    },
    /// Every endpoint of a managed name is unhealthy; its records are kept (fail static).
    /// Raised once per outage at the end of a block, after the per-transaction events.
    DnsAllUnhealthy {
        /// Zone apex.
        origin: String,
        /// The name.
        name: String,
        /// The kept generation.
        generation: u64,
    },
    /// A transaction that failed a stateful rule (skipped, not applied).
    TxRejected {
        /// Transaction hash.
        hash: Hash,
        /// Reason.
        error: TxError,
    },
}

/// Result of applying a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Events in order.
    pub events: Vec<Event>,
    /// One result per transaction.
    pub receipts: Vec<Result<(), TxError>>,
    /// State root after the block.
    pub state_root: Hash,
}

const T_META: u8 = 0;
const T_ACCOUNT: u8 = 1;
const T_NODE: u8 = 2;
const T_CONFIG: u8 = 3;
const T_BUCKET: u8 = 4;
const T_OBJECT: u8 = 5;
const T_GATEWAY: u8 = 6;
const T_ZONE: u8 = 7;
const T_COMMITTEE: u8 = 8;
const T_TOMBSTONE: u8 = 9;

/// The ledger state: accounts, nodes, config, height (equality ignores dirty-key tracking).
#[derive(Clone, Debug)]
pub struct State {
    chain_id: String,
    height: u64,
    /// Proposer timestamp (ms) of the last applied block (0 at genesis); never decreases.
    time_ms: u64,
    accounts: BTreeMap<AccountId, Account>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    config: BTreeMap<String, ConfigEntry>,
    buckets: BTreeMap<String, Bucket>,
    /// Keyed by [`object_key_suffix`], so one bucket's objects are contiguous and key-sorted.
    objects: BTreeMap<Vec<u8>, ObjectRecord>,
    /// (owner, gateway) pairs.
    gateways: BTreeSet<(AccountId, AccountId)>,
    /// DNS zones by origin.
    zones: BTreeMap<String, Zone>,
    /// The nodes forming the current committee (the genesis validators until rotation).
    committee: BTreeSet<NodeId>,
    /// Deleted objects' versions, keyed like `objects`.
    tombstones: BTreeMap<Vec<u8>, Tombstone>,
    /// (height, object key) of every tombstone, for pruning in order; derived, not an entry.
    tombstone_heights: BTreeSet<(u64, Vec<u8>)>,
    dirty: BTreeSet<Vec<u8>>,
    /// Encodings of entries touched since the last root update, as they were before (`None` =
    /// absent); folded into `acc` at the end of each block.
    touched: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    acc: LtHash,
    root: Hash,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.chain_id == other.chain_id
            && self.height == other.height
            && self.time_ms == other.time_ms
            && self.accounts == other.accounts
            && self.nodes == other.nodes
            && self.config == other.config
            && self.buckets == other.buckets
            && self.objects == other.objects
            && self.gateways == other.gateways
            && self.zones == other.zones
            && self.committee == other.committee
            && self.tombstones == other.tombstones
            && self.root == other.root
    }
}
impl Eq for State {}

fn key(table: u8, id: &[u8]) -> Vec<u8> {
    let mut k = vec![table];
    k.extend_from_slice(id);
    k
}

fn corrupt(reason: impl Into<String>) -> StateError {
    StateError::Corrupt {
        reason: reason.into(),
    }
}

fn corrupt_entry(what: &str) -> impl Fn(TxError) -> StateError + '_ {
    move |e| corrupt(format!("{what}: {e}"))
}

fn enc_account(a: &Account) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(&a.name);
    w.u64(a.nonce_max);
    w.u64(a.nonce_window);
    w.0
}

fn dec_account(b: &[u8]) -> Result<Account, TxError> {
    let mut r = Reader::new(b);
    let a = Account {
        name: r.str(MAX_NAME_SIZE_BYTES)?,
        nonce_max: r.u64()?,
        nonce_window: r.u64()?,
    };
    r.finish()?;
    Ok(a)
}

fn enc_node(n: &NodeRecord) -> Vec<u8> {
    let mut w = Writer::default();
    w.fixed(&n.operator);
    w.str(&n.zone);
    write_roles(&mut w, &n.roles);
    w.len(n.addresses.len());
    for a in &n.addresses {
        w.str(a);
    }
    for v in [
        n.capacity_bytes,
        n.stake,
        n.registered_height,
        n.last_seen_ms,
        n.last_heartbeat_seq,
        n.used_bytes,
    ] {
        w.u64(v);
    }
    write_roles(&mut w, &n.requested_roles);
    w.u64(n.requested_capacity_bytes);
    w.u64(n.admissions);
    w.0
}

fn dec_node(b: &[u8]) -> Result<NodeRecord, TxError> {
    let mut r = Reader::new(b);
    let operator = r.fixed::<32>()?;
    let zone = r.str(MAX_ZONE_SIZE_BYTES)?;
    let roles = read_roles(&mut r)?;
    let count = r.len(MAX_ADDRESSES)?;
    let mut addresses = Vec::with_capacity(count);
    for _ in 0..count {
        addresses.push(r.str(MAX_ADDRESS_SIZE_BYTES)?);
    }
    let n = NodeRecord {
        operator,
        zone,
        roles,
        addresses,
        capacity_bytes: r.u64()?,
        stake: r.u64()?,
        registered_height: r.u64()?,
        last_seen_ms: r.u64()?,
        last_heartbeat_seq: r.u64()?,
        used_bytes: r.u64()?,
        requested_roles: read_roles(&mut r)?,
        requested_capacity_bytes: r.u64()?,
        admissions: r.u64()?,
    };
    r.finish()?;
    Ok(n)
}

fn enc_config(c: &ConfigEntry) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(&c.value);
    w.u64(c.version);
    w.fixed(&c.set_by);
    w.u64(c.set_height);
    w.0
}

fn dec_config(b: &[u8]) -> Result<ConfigEntry, TxError> {
    let mut r = Reader::new(b);
    let c = ConfigEntry {
        value: r.str(MAX_CONFIG_VALUE_SIZE_BYTES)?,
        version: r.u64()?,
        set_by: r.fixed::<32>()?,
        set_height: r.u64()?,
    };
    r.finish()?;
    Ok(c)
}

fn enc_meta(chain_id: &str, height: u64, time_ms: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(chain_id);
    w.u64(height);
    w.u64(time_ms);
    w.0
}

fn dec_meta(b: &[u8]) -> Result<(String, u64, u64), TxError> {
    let mut r = Reader::new(b);
    let chain_id = r.str(MAX_CHAIN_ID_SIZE_BYTES)?;
    let height = r.u64()?;
    let time_ms = r.u64()?;
    r.finish()?;
    Ok((chain_id, height, time_ms))
}

/// Checks a nonce against the sliding window; returns the updated (max, window).
pub fn check_nonce(account: &Account, nonce: u64) -> Result<(u64, u64), TxError> {
    if nonce == 0 {
        return Err(TxError::InvalidField {
            field: "nonce",
            reason: "nonces start at 1".into(),
        });
    }
    if nonce > account.nonce_max {
        let shift = nonce - account.nonce_max;
        let window = if shift >= u64::from(u64::BITS) {
            0
        } else {
            account.nonce_window << shift
        };
        return Ok((nonce, window | 1));
    }
    let age = account.nonce_max - nonce;
    if age >= NONCE_WINDOW {
        return Err(TxError::NonceTooOld {
            nonce,
            min: account.nonce_max.saturating_sub(NONCE_WINDOW - 1),
        });
    }
    let bit = 1u64 << age;
    if account.nonce_window & bit != 0 {
        return Err(TxError::NonceReplayed { nonce });
    }
    Ok((account.nonce_max, account.nonce_window | bit))
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

/// What a rule's check hands its apply.
enum Rule {
    /// Nothing beyond the nonce.
    Plain,
    /// A checked admission.
    Admit(CheckedAdmission),
    /// An object write or delete newer than the current version.
    Write(WriteVersion),
    /// The zone a DNS transaction produces, computed once.
    Zone((String, Zone, Event)),
}

/// A transaction that passed its stateful checks.
struct Checked {
    nonce: (u64, u64),
    rule: Rule,
}

impl State {
    fn empty(chain_id: String) -> Self {
        Self {
            chain_id,
            height: 0,
            time_ms: 0,
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            config: BTreeMap::new(),
            buckets: BTreeMap::new(),
            objects: BTreeMap::new(),
            gateways: BTreeSet::new(),
            zones: BTreeMap::new(),
            committee: BTreeSet::new(),
            tombstones: BTreeMap::new(),
            tombstone_heights: BTreeSet::new(),
            dirty: BTreeSet::new(),
            touched: BTreeMap::new(),
            acc: LtHash::new(),
            root: [0; 32],
        }
    }

    /// State at height 0 from a genesis description (every field is validated like a tx's).
    pub fn genesis(g: &Genesis) -> Result<Self, TxError> {
        if g.chain_id.is_empty() || g.chain_id.len() > MAX_CHAIN_ID_SIZE_BYTES {
            return Err(TxError::InvalidField {
                field: "chain_id",
                reason: format!(
                    "length is {} bytes, must be 1..={MAX_CHAIN_ID_SIZE_BYTES}",
                    g.chain_id.len()
                ),
            });
        }
        let mut s = Self::empty(g.chain_id.clone());
        for (id, name) in &g.accounts {
            validate_name(name)?;
            match s.accounts.get(id) {
                // The same account listed twice (e.g. as an account and as a node operator).
                Some(a) if a.name == *name => continue,
                Some(a) => {
                    return Err(TxError::InvalidField {
                        field: "accounts",
                        reason: format!(
                            "one key is listed with two names ({:?} and {name:?})",
                            a.name
                        ),
                    })
                }
                None => {}
            }
            s.accounts.insert(
                *id,
                Account {
                    name: name.clone(),
                    nonce_max: 0,
                    nonce_window: 0,
                },
            );
            s.dirty.insert(key(T_ACCOUNT, id));
        }
        for (id, n) in &g.nodes {
            validate_node(&n.zone, &n.roles, &n.addresses)?;
            if !s.accounts.contains_key(&n.operator) {
                return Err(TxError::UnknownAccount);
            }
            if s.nodes.contains_key(id) {
                return Err(TxError::NodeExists);
            }
            s.nodes.insert(
                *id,
                // Genesis admits its own nodes: the grant is what they list.
                NodeRecord {
                    operator: n.operator,
                    zone: n.zone.clone(),
                    roles: n.roles.clone(),
                    addresses: n.addresses.clone(),
                    capacity_bytes: n.capacity_bytes,
                    requested_roles: n.roles.clone(),
                    requested_capacity_bytes: n.capacity_bytes,
                    admissions: 1,
                    stake: n.stake,
                    registered_height: 0,
                    last_seen_ms: 0,
                    last_heartbeat_seq: 0,
                    used_bytes: 0,
                },
            );
            s.dirty.insert(key(T_NODE, id));
            if n.roles.validator {
                s.committee.insert(*id);
                s.dirty.insert(key(T_COMMITTEE, id));
            }
        }
        s.dirty.insert(vec![T_META]);
        s.reset_root();
        Ok(s)
    }

    /// Height of the last applied block (0 = genesis).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Finalized block time (ms): the proposer timestamp of the last applied block, 0 at
    /// genesis. The ledger's only notion of time; it never decreases.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }
    /// Chain id from the genesis.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    /// Commitment to the whole state and height (cached, recomputed per block).
    pub fn state_root(&self) -> Hash {
        self.root
    }
    /// One account.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }
    /// All accounts, sorted by id.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &Account)> {
        self.accounts.iter()
    }
    /// One node.
    pub fn node(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }
    /// All nodes, sorted by id.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &NodeRecord)> {
        self.nodes.iter()
    }
    /// One config entry.
    pub fn config(&self, key: &str) -> Option<&ConfigEntry> {
        self.config.get(key)
    }
    /// One bucket.
    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets.get(name)
    }
    /// All buckets, sorted by name.
    pub fn buckets(&self) -> impl Iterator<Item = (&String, &Bucket)> {
        self.buckets.iter()
    }
    /// One object.
    pub fn object(&self, bucket: &str, key: &str) -> Option<&ObjectRecord> {
        self.objects.get(&object_key_suffix(bucket, key))
    }
    /// A bucket's objects whose keys start with `prefix`, in key (byte) order.
    pub fn objects_with_prefix<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a ObjectRecord)> + 'a {
        let start = object_key_suffix(bucket, prefix);
        let skip = 1 + bucket.len();
        self.objects
            .range(start.clone()..)
            .take_while(move |(k, _)| k.starts_with(&start))
            .filter_map(move |(k, o)| std::str::from_utf8(&k[skip..]).ok().map(|key| (key, o)))
    }
    /// Objects of `bucket` whose keys start with `prefix` and sort after `after`, in key order.
    pub fn objects_after<'a>(
        &'a self,
        bucket: &'a str,
        prefix: &'a str,
        after: &str,
    ) -> impl Iterator<Item = (&'a str, &'a ObjectRecord)> + 'a {
        let start = object_key_suffix(bucket, prefix);
        let from = object_key_suffix(bucket, after);
        let skip = 1 + bucket.len();
        let lower = if from > start {
            std::ops::Bound::Excluded(from)
        } else {
            std::ops::Bound::Included(start.clone())
        };
        self.objects
            .range((lower, std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(&start))
            .filter_map(move |(k, o)| std::str::from_utf8(&k[skip..]).ok().map(|key| (key, o)))
    }

    /// True if `owner` authorized `gateway` to act for it.
    pub fn gateway_authorized(&self, owner: &AccountId, gateway: &AccountId) -> bool {
        self.gateways.contains(&(*owner, *gateway))
    }
    /// The zone at `origin`.
    pub fn zone(&self, origin: &str) -> Option<&Zone> {
        self.zones.get(origin)
    }

    /// All zones, sorted by origin.
    pub fn zones(&self) -> impl Iterator<Item = (&String, &Zone)> {
        self.zones.iter()
    }

    /// The current committee's node ids, sorted.
    pub fn committee(&self) -> impl Iterator<Item = &NodeId> {
        self.committee.iter()
    }

    /// The current committee's registered records.
    pub(crate) fn committee_records(&self) -> Vec<(&NodeId, &NodeRecord)> {
        self.committee
            .iter()
            .filter_map(|id| self.nodes.get(id).map(|n| (id, n)))
            .collect()
    }

    /// True if `account` operates a node of the current committee.
    pub fn is_committee_operator(&self, account: &AccountId) -> bool {
        self.committee_records()
            .iter()
            .any(|(_, n)| n.operator == *account)
    }

    /// The tombstone a delete left on an object key, if still kept.
    pub fn tombstone(&self, bucket: &str, key: &str) -> Option<&Tombstone> {
        self.tombstones.get(&object_key_suffix(bucket, key))
    }

    /// All config entries, sorted by key.
    pub fn configs(&self) -> impl Iterator<Item = (&String, &ConfigEntry)> {
        self.config.iter()
    }

    /// Every entry as canonical (key, value) bytes, sorted by key; keys start with a table byte.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out =
            Vec::with_capacity(1 + self.accounts.len() + self.nodes.len() + self.config.len());
        out.push((
            vec![T_META],
            enc_meta(&self.chain_id, self.height, self.time_ms),
        ));
        out.extend(
            self.accounts
                .iter()
                .map(|(id, a)| (key(T_ACCOUNT, id), enc_account(a))),
        );
        out.extend(
            self.nodes
                .iter()
                .map(|(id, n)| (key(T_NODE, id), enc_node(n))),
        );
        out.extend(
            self.config
                .iter()
                .map(|(k, c)| (key(T_CONFIG, k.as_bytes()), enc_config(c))),
        );
        out.extend(
            self.buckets
                .iter()
                .map(|(b, v)| (key(T_BUCKET, b.as_bytes()), enc_bucket(v))),
        );
        out.extend(
            self.objects
                .iter()
                .map(|(k, o)| (key(T_OBJECT, k), enc_object(o))),
        );
        out.extend(
            self.gateways
                .iter()
                .map(|(o, g)| (key(T_GATEWAY, &gateway_key_suffix(o, g)), Vec::new())),
        );
        out.extend(
            self.zones
                .iter()
                .map(|(o, z)| (key(T_ZONE, o.as_bytes()), z.encode())),
        );
        out.extend(
            self.committee
                .iter()
                .map(|id| (key(T_COMMITTEE, id), Vec::new())),
        );
        out.extend(
            self.tombstones
                .iter()
                .map(|(k, t)| (key(T_TOMBSTONE, k), t.encode())),
        );
        debug_assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "entries sorted");
        out
    }

    fn entry(&self, k: &[u8]) -> Option<Vec<u8>> {
        let (table, id) = k.split_first()?;
        match *table {
            T_META => Some(enc_meta(&self.chain_id, self.height, self.time_ms)),
            T_ACCOUNT => self
                .accounts
                .get(<&AccountId>::try_from(id).ok()?)
                .map(enc_account),
            T_NODE => self.nodes.get(<&NodeId>::try_from(id).ok()?).map(enc_node),
            T_CONFIG => self
                .config
                .get(std::str::from_utf8(id).ok()?)
                .map(enc_config),
            T_BUCKET => self
                .buckets
                .get(std::str::from_utf8(id).ok()?)
                .map(enc_bucket),
            T_OBJECT => self.objects.get(id).map(enc_object),
            T_GATEWAY => {
                let (o, g) = id.split_at_checked(32)?;
                let pair = (o.try_into().ok()?, g.try_into().ok()?);
                self.gateways.contains(&pair).then(Vec::new)
            }
            T_ZONE => self
                .zones
                .get(std::str::from_utf8(id).ok()?)
                .map(Zone::encode),
            T_COMMITTEE => self
                .committee
                .contains(<&NodeId>::try_from(id).ok()?)
                .then(Vec::new),
            T_TOMBSTONE => self.tombstones.get(id).map(Tombstone::encode),
            _ => None,
        }
    }

    /// Entries changed since the last call (`None` = deleted), sorted by key; always includes
    /// the height entry after genesis or a block.
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let v = self.entry(&k);
                (k, v)
            })
            .collect()
    }

    /// Rebuilds a state from [`State::entries`] (e.g. loaded from disk); same root as the original.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, StateError> {
        let mut s = Self::empty(String::new());
        let mut meta = false;
        for (k, v) in entries {
            let Some((table, id)) = k.split_first() else {
                return Err(corrupt("empty key"));
            };
            let duplicate = match *table {
                T_META => {
                    if !id.is_empty() {
                        return Err(corrupt("height key has a suffix"));
                    }
                    let (chain_id, height, time_ms) =
                        dec_meta(&v).map_err(corrupt_entry("height entry"))?;
                    if height == u64::MAX {
                        return Err(corrupt("height is at its maximum"));
                    }
                    s.chain_id = chain_id;
                    s.height = height;
                    s.time_ms = time_ms;
                    std::mem::replace(&mut meta, true)
                }
                T_ACCOUNT => {
                    let id: AccountId = id
                        .try_into()
                        .map_err(|_| corrupt("account key is not 32 bytes"))?;
                    let a = dec_account(&v).map_err(corrupt_entry("account entry"))?;
                    s.accounts.insert(id, a).is_some()
                }
                T_NODE => {
                    let id: NodeId = id
                        .try_into()
                        .map_err(|_| corrupt("node key is not 32 bytes"))?;
                    let n = dec_node(&v).map_err(corrupt_entry("node entry"))?;
                    s.nodes.insert(id, n).is_some()
                }
                T_CONFIG => {
                    if id.is_empty() || id.len() > MAX_CONFIG_KEY_SIZE_BYTES {
                        return Err(corrupt("config key length out of bounds"));
                    }
                    let k =
                        std::str::from_utf8(id).map_err(|_| corrupt("config key is not UTF-8"))?;
                    let c = dec_config(&v).map_err(corrupt_entry("config entry"))?;
                    s.config.insert(k.to_string(), c).is_some()
                }
                T_BUCKET => {
                    let name =
                        std::str::from_utf8(id).map_err(|_| corrupt("bucket name is not UTF-8"))?;
                    validate_bucket_name(name).map_err(corrupt_entry("bucket key"))?;
                    let b = dec_bucket(&v).map_err(corrupt_entry("bucket entry"))?;
                    s.buckets.insert(name.to_string(), b).is_some()
                }
                T_OBJECT => {
                    split_object_key(id).ok_or_else(|| corrupt("object key is malformed"))?;
                    let o = dec_object(&v).map_err(corrupt_entry("object entry"))?;
                    s.objects.insert(id.to_vec(), o).is_some()
                }
                T_GATEWAY => {
                    if id.len() != 64 || !v.is_empty() {
                        return Err(corrupt("gateway entry is malformed"));
                    }
                    let (o, g) = id.split_at(32);
                    let pair = (
                        o.try_into().expect("32 bytes"),
                        g.try_into().expect("32 bytes"),
                    );
                    !s.gateways.insert(pair)
                }
                T_ZONE => {
                    let origin =
                        std::str::from_utf8(id).map_err(|_| corrupt("zone name is not UTF-8"))?;
                    crate::dns::validate_name(origin)
                        .map_err(|e| corrupt(format!("zone key: {e}")))?;
                    let z = Zone::decode(&v).map_err(corrupt_entry("zone entry"))?;
                    s.zones.insert(origin.to_string(), z).is_some()
                }
                T_COMMITTEE => {
                    let id: NodeId = id
                        .try_into()
                        .map_err(|_| corrupt("committee key is not 32 bytes"))?;
                    if !v.is_empty() {
                        return Err(corrupt("committee entry has a value"));
                    }
                    !s.committee.insert(id)
                }
                T_TOMBSTONE => {
                    split_object_key(id).ok_or_else(|| corrupt("tombstone key is malformed"))?;
                    let t = Tombstone::decode(&v).map_err(corrupt_entry("tombstone entry"))?;
                    s.tombstone_heights.insert((t.height, id.to_vec()));
                    s.tombstones.insert(id.to_vec(), t).is_some()
                }
                other => return Err(corrupt(format!("unknown table {other}"))),
            };
            if duplicate {
                return Err(corrupt("duplicate key"));
            }
        }
        if !meta {
            return Err(corrupt("missing height entry"));
        }
        s.reset_root();
        Ok(s)
    }

    /// Recomputes the accumulator from every entry, O(entries); only at genesis and load.
    fn reset_root(&mut self) {
        let mut acc = LtHash::new();
        for (k, v) in self.entries() {
            acc.insert(&k, &v);
        }
        self.acc = acc;
        self.touched.clear();
        self.root = self.acc.checksum();
    }

    /// Records `k`'s current encoding before it changes; the first call per block wins.
    fn touch(&mut self, k: Vec<u8>) {
        if !self.touched.contains_key(&k) {
            let old = self.entry(&k);
            self.touched.insert(k.clone(), old);
        }
        self.dirty.insert(k);
    }

    /// Folds the touched entries into the accumulator, O(touched).
    fn update_root(&mut self) {
        for (k, old) in std::mem::take(&mut self.touched) {
            let new = self.entry(&k);
            if old == new {
                continue;
            }
            if let Some(old) = old {
                self.acc.remove(&k, &old);
            }
            if let Some(new) = new {
                self.acc.insert(&k, &new);
            }
        }
        self.root = self.acc.checksum();
        debug_assert!(
            self.entries().len() > 4096 || {
                let mut full = LtHash::new();
                for (k, v) in self.entries() {
                    full.insert(&k, &v);
                }
                full == self.acc
            },
            "incremental state root diverged from a full recomputation"
        );
    }

    /// Stateful checks of one transaction against the current state, changing nothing; the
    /// mempool calls it after [`SignedTx::decode_and_verify`]. Same rules as block application.
    pub fn check_tx(&self, tx: &SignedTx) -> Result<(), TxError> {
        self.check_stateful(tx, self.height.saturating_add(1))
            .map(|_| ())
    }

    /// Returns the signer's (nonce_max, nonce_window) after accepting `stx` at `height`, and
    /// the checked value of rules whose apply needs one.
    fn check_stateful(&self, stx: &SignedTx, height: u64) -> Result<Checked, TxError> {
        const FRESH: Account = Account {
            name: String::new(),
            nonce_max: 0,
            nonce_window: 0,
        };
        let tx = &stx.tx;
        check_validity(tx.valid_until, height)?;
        let account = match (&tx.kind, self.accounts.get(&tx.signer)) {
            (TxKind::RegisterAccount { .. }, Some(_)) => return Err(TxError::AccountExists),
            (TxKind::RegisterAccount { .. }, None) => &FRESH,
            (_, None) => return Err(TxError::UnknownAccount),
            (_, Some(a)) => a,
        };
        let nonce = check_nonce(account, tx.nonce)?;
        let mut rule = Rule::Plain;
        match &tx.kind {
            TxKind::RegisterAccount { .. } => {}
            TxKind::AdmitNode {
                node,
                roles,
                capacity_bytes,
                approvals,
            } => {
                rule = Rule::Admit(check_admit(self, node, roles, *capacity_bytes, approvals)?);
            }
            TxKind::RegisterNode { node, .. } => {
                if self.nodes.contains_key(node) {
                    return Err(TxError::NodeExists);
                }
            }
            TxKind::Heartbeat { node, seq } => {
                let n = self.nodes.get(node).ok_or(TxError::UnknownNode)?;
                if n.operator != tx.signer {
                    return Err(TxError::NotNodeOperator);
                }
                if *seq <= n.last_heartbeat_seq {
                    return Err(TxError::StaleHeartbeat {
                        seq: *seq,
                        last: n.last_heartbeat_seq,
                    });
                }
            }
            TxKind::ConfigSet {
                key,
                expected_version,
                ..
            } => {
                let current = self.config.get(key).map_or(0, |c| c.version);
                if current != *expected_version {
                    return Err(TxError::ConfigVersionMismatch {
                        expected: *expected_version,
                        current,
                    });
                }
                if current == u64::MAX {
                    return Err(TxError::InvalidField {
                        field: "expected_version",
                        reason: "the entry's version space is exhausted; use a new key".into(),
                    });
                }
            }
            TxKind::CreateBucket { owner, bucket, .. } => {
                self.check_acting(owner, &tx.signer)?;
                if self.buckets.contains_key(bucket) {
                    return Err(TxError::BucketExists);
                }
            }
            TxKind::DeleteBucket { owner, bucket } => {
                let b = self.owned_bucket(owner, &tx.signer, bucket)?;
                if b.object_count > 0 {
                    return Err(TxError::BucketNotEmpty {
                        objects: b.object_count,
                    });
                }
            }
            TxKind::PutObject {
                owner,
                bucket,
                key,
                manifest,
                if_absent,
            } => {
                let b = self.owned_bucket(owner, &tx.signer, bucket)?;
                let slots = usize::from(b.data_shards) + usize::from(b.parity_shards);
                if manifest.placement.len() != slots {
                    return Err(TxError::InvalidPlacement {
                        reason: format!(
                            "{} nodes for a bucket coded RS({}, {})",
                            manifest.placement.len(),
                            b.data_shards,
                            b.parity_shards
                        ),
                    });
                }
                crate::placement::validate(self, b.data_shards, manifest)?;
                let k = object_key_suffix(bucket, key);
                if *if_absent && self.objects.contains_key(&k) {
                    return Err(TxError::ObjectExists);
                }
                let version = WriteVersion {
                    request_ms: manifest.modified_ms,
                    tx_hash: stx.hash(),
                };
                check_newer(self.current_version(&k), version)?;
                rule = Rule::Write(version);
            }
            TxKind::DeleteObject {
                owner,
                bucket,
                key,
                request_ms,
            } => {
                self.owned_bucket(owner, &tx.signer, bucket)?;
                let version = WriteVersion {
                    request_ms: *request_ms,
                    tx_hash: stx.hash(),
                };
                check_newer(
                    self.current_version(&object_key_suffix(bucket, key)),
                    version,
                )?;
                rule = Rule::Write(version);
            }
            TxKind::AuthorizeGateway { .. } => {}
            TxKind::ZoneUpdate { .. }
            | TxKind::ManageName { .. }
            | TxKind::DnsPlan { .. }
            | TxKind::DnsOverride { .. } => {
                rule = Rule::Zone(self.next_zone(tx, height)?);
            }
        }
        Ok(Checked { nonce, rule })
    }

    /// The version of the object at `k`, or of the delete that removed it.
    fn current_version(&self, k: &[u8]) -> Option<WriteVersion> {
        self.objects
            .get(k)
            .map(|o| WriteVersion {
                request_ms: o.manifest.modified_ms,
                tx_hash: o.tx_hash,
            })
            .or_else(|| self.tombstones.get(k).map(|t| t.version))
    }

    /// The signer may act for `owner`: it is the owner or a gateway the owner authorized.
    fn check_acting(&self, owner: &AccountId, signer: &AccountId) -> Result<(), TxError> {
        if owner == signer || self.gateways.contains(&(*owner, *signer)) {
            Ok(())
        } else {
            Err(TxError::NotAuthorized)
        }
    }

    fn owned_bucket(
        &self,
        owner: &AccountId,
        signer: &AccountId,
        bucket: &str,
    ) -> Result<&Bucket, TxError> {
        self.check_acting(owner, signer)?;
        let b = self.buckets.get(bucket).ok_or(TxError::NoSuchBucket)?;
        if b.owner != *owner {
            return Err(TxError::NotAuthorized);
        }
        Ok(b)
    }

    /// Adds (or, with `remove`, subtracts) an object's fragment bytes to its placed nodes.
    fn account_usage(&mut self, record: &ObjectRecord, data_shards: u8, remove: bool) {
        let per_node = record.manifest.bytes_per_node(data_shards);
        for n in &record.manifest.placement {
            if self.nodes.contains_key(n) {
                self.touch(key(T_NODE, n));
                let rec = self.nodes.get_mut(n).expect("checked above");
                rec.used_bytes = if remove {
                    rec.used_bytes.saturating_sub(per_node)
                } else {
                    rec.used_bytes.saturating_add(per_node)
                };
            }
        }
    }

    fn apply_tx(&mut self, stx: &SignedTx, height: u64) -> Result<Event, TxError> {
        let Checked {
            nonce: (nonce_max, nonce_window),
            rule,
        } = self.check_stateful(stx, height)?;
        let tx = &stx.tx;
        self.touch(key(T_ACCOUNT, &tx.signer));
        let account = self.accounts.entry(tx.signer).or_insert_with(|| Account {
            name: String::new(),
            nonce_max: 0,
            nonce_window: 0,
        });
        account.nonce_max = nonce_max;
        account.nonce_window = nonce_window;
        Ok(match &tx.kind {
            TxKind::RegisterAccount { name } => {
                account.name = name.clone();
                Event::AccountRegistered {
                    account: tx.signer,
                    name: name.clone(),
                }
            }
            TxKind::RegisterNode {
                node,
                zone,
                roles,
                addresses,
                capacity_bytes,
                stake,
                ..
            } => {
                self.touch(key(T_NODE, node));
                // Pending: nothing is granted until the committee admits it.
                self.nodes.insert(
                    *node,
                    NodeRecord {
                        operator: tx.signer,
                        zone: zone.clone(),
                        roles: NO_ROLES,
                        addresses: addresses.clone(),
                        capacity_bytes: 0,
                        requested_roles: roles.clone(),
                        requested_capacity_bytes: *capacity_bytes,
                        admissions: 0,
                        stake: *stake,
                        registered_height: height,
                        last_seen_ms: self.time_ms,
                        last_heartbeat_seq: 0,
                        used_bytes: 0,
                    },
                );
                Event::NodeRegistered {
                    node: *node,
                    operator: tx.signer,
                }
            }
            TxKind::AdmitNode { .. } => {
                let Rule::Admit(admission) = rule else {
                    return Err(TxError::Malformed {
                        reason: "admission was not checked",
                    });
                };
                self.apply_admission(admission)
            }
            TxKind::Heartbeat { node, seq } => {
                self.touch(key(T_NODE, node));
                let n = self
                    .nodes
                    .get_mut(node)
                    .expect("check_stateful found the node");
                n.last_heartbeat_seq = *seq;
                n.last_seen_ms = self.time_ms;
                Event::Heartbeat {
                    node: *node,
                    seq: *seq,
                }
            }
            TxKind::ConfigSet {
                key: k,
                value,
                expected_version,
            } => {
                // check_stateful ruled out u64::MAX.
                let version = expected_version + 1;
                self.touch(key(T_CONFIG, k.as_bytes()));
                self.config.insert(
                    k.clone(),
                    ConfigEntry {
                        value: value.clone(),
                        version,
                        set_by: tx.signer,
                        set_height: height,
                    },
                );
                Event::ConfigChanged {
                    key: k.clone(),
                    version,
                }
            }
            TxKind::CreateBucket {
                owner,
                bucket,
                acl,
                data_shards,
                parity_shards,
            } => {
                self.touch(key(T_BUCKET, bucket.as_bytes()));
                self.buckets.insert(
                    bucket.clone(),
                    Bucket {
                        owner: *owner,
                        acl: *acl,
                        data_shards: *data_shards,
                        parity_shards: *parity_shards,
                        created_height: height,
                        object_count: 0,
                    },
                );
                Event::BucketCreated {
                    bucket: bucket.clone(),
                    owner: *owner,
                }
            }
            TxKind::DeleteBucket { bucket, .. } => {
                self.touch(key(T_BUCKET, bucket.as_bytes()));
                self.buckets.remove(bucket);
                Event::BucketDeleted {
                    bucket: bucket.clone(),
                }
            }
            TxKind::PutObject {
                bucket,
                key: object,
                manifest,
                ..
            } => {
                let k = object_key_suffix(bucket, object);
                let Some(data_shards) = self.buckets.get(bucket).map(|b| b.data_shards) else {
                    return Err(TxError::NoSuchBucket);
                };
                let Rule::Write(version) = rule else {
                    return Err(TxError::Malformed {
                        reason: "write order was not checked",
                    });
                };
                self.touch(key(T_OBJECT, &k));
                self.touch(key(T_BUCKET, bucket.as_bytes()));
                self.remove_tombstone(&k);
                let record = ObjectRecord {
                    manifest: manifest.clone(),
                    put_by: tx.signer,
                    put_height: height,
                    tx_hash: version.tx_hash,
                };
                self.account_usage(&record, data_shards, false);
                let old = self.objects.insert(k, record);
                let replaced = old.is_some();
                match old {
                    Some(old) => self.account_usage(&old, data_shards, true),
                    None => {
                        if let Some(b) = self.buckets.get_mut(bucket) {
                            b.object_count += 1;
                        }
                    }
                }
                Event::ObjectPut {
                    bucket: bucket.clone(),
                    key: object.clone(),
                    replaced,
                }
            }
            TxKind::DeleteObject {
                bucket,
                key: object,
                ..
            } => {
                let k = object_key_suffix(bucket, object);
                let Rule::Write(version) = rule else {
                    return Err(TxError::Malformed {
                        reason: "write order was not checked",
                    });
                };
                self.touch(key(T_OBJECT, &k));
                self.touch(key(T_BUCKET, bucket.as_bytes()));
                self.remove_tombstone(&k);
                self.touch(key(T_TOMBSTONE, &k));
                self.tombstone_heights.insert((height, k.clone()));
                self.tombstones
                    .insert(k.clone(), Tombstone { version, height });
                let old = self.objects.remove(&k);
                let existed = old.is_some();
                if let (Some(old), Some(b)) = (old, self.buckets.get_mut(bucket)) {
                    b.object_count = b.object_count.saturating_sub(1);
                    let data_shards = b.data_shards;
                    self.account_usage(&old, data_shards, true);
                }
                Event::ObjectDeleted {
                    bucket: bucket.clone(),
                    key: object.clone(),
                    existed,
                }
            }
            TxKind::AuthorizeGateway { gateway, allowed } => {
                let pair = (tx.signer, *gateway);
                self.touch(key(T_GATEWAY, &gateway_key_suffix(&pair.0, &pair.1)));
                if *allowed {
                    self.gateways.insert(pair);
                } else {
                    self.gateways.remove(&pair);
                }
                Event::GatewayAuthorization {
                    owner: tx.signer,
                    gateway: *gateway,
                    allowed: *allowed,
                }
            }
            TxKind::ZoneUpdate { .. }
            | TxKind::ManageName { .. }
            | TxKind::DnsPlan { .. }
            | TxKind::DnsOverride { .. } => {
                let Rule::Zone((origin, zone, event)) = rule else {
                    return Err(TxError::Malformed {
                        reason: "zone change was not checked",
                    });
                };
                self.touch(key(T_ZONE, origin.as_bytes()));
                self.zones.insert(origin, zone);
                event
            }
        })
    }

    /// The zone a DNS transaction produces at `height`, with its event; changes nothing.
    fn next_zone(&self, tx: &crate::Tx, height: u64) -> Result<(String, Zone, Event), TxError> {
        match &tx.kind {
            TxKind::ZoneUpdate {
                origin,
                expected_version,
                upserts,
                deletes,
            } => {
                let current = self.zones.get(origin);
                let version = current.map_or(0, |z| z.version);
                if version != *expected_version {
                    return Err(TxError::ZoneVersionMismatch {
                        expected: *expected_version,
                        current: version,
                    });
                }
                let base = match current {
                    Some(z) if z.owner != tx.signer => return Err(TxError::NotAuthorized),
                    Some(z) => z.clone(),
                    None => {
                        if let Some(other) = self.zones.keys().find(|o| {
                            crate::zones::in_zone(o, origin) || crate::zones::in_zone(origin, o)
                        }) {
                            return Err(TxError::ZoneOverlap {
                                other: other.clone(),
                            });
                        }
                        Zone {
                            owner: tx.signer,
                            version: 0,
                            sets: Vec::new(),
                            managed: BTreeMap::new(),
                        }
                    }
                };
                let zone = base.updated(origin, upserts, deletes)?;
                let event = Event::ZoneUpdated {
                    origin: origin.clone(),
                    version: zone.version,
                };
                Ok((origin.clone(), zone, event))
            }
            TxKind::ManageName {
                origin,
                name,
                ttl_secs,
                role,
                endpoints,
            } => {
                let mut zone = self.zones.get(origin).ok_or(TxError::NoSuchZone)?.clone();
                if zone.owner != tx.signer {
                    return Err(TxError::NotAuthorized);
                }
                if zone.managed.contains_key(name) {
                    return Err(TxError::ManagedNameExists);
                }
                if zone.managed.len() >= crate::zones::MAX_MANAGED_PER_ZONE {
                    return Err(TxError::InvalidField {
                        field: "name",
                        reason: format!(
                            "a zone holds at most {} managed names",
                            crate::zones::MAX_MANAGED_PER_ZONE
                        ),
                    });
                }
                if zone
                    .sets
                    .iter()
                    .any(|s| s.name == *name && matches!(s.records[0].type_code(), 1 | 5 | 28))
                {
                    return Err(TxError::InvalidField {
                        field: "name",
                        reason: format!(
                            "{name} has static A/AAAA/CNAME records; delete them first"
                        ),
                    });
                }
                self.check_endpoints(*role, endpoints)?;
                let state = crate::dns::ManagedName::create(endpoints.clone(), height, tx.signer)
                    .map_err(|error| TxError::PlanRejected { error })?;
                zone.managed.insert(
                    name.clone(),
                    Managed {
                        role: *role,
                        ttl_secs: *ttl_secs,
                        state,
                        alerting: false,
                    },
                );
                zone.version = zone.version.saturating_add(1);
                let event = Event::ManagedNameBound {
                    origin: origin.clone(),
                    name: name.clone(),
                };
                Ok((origin.clone(), zone, event))
            }
            TxKind::DnsPlan { origin, name, plan } => {
                if !self.is_committee_operator(&tx.signer) {
                    return Err(TxError::NotValidator);
                }
                self.planned_zone(tx, origin, name, plan, height, false)
            }
            TxKind::DnsOverride {
                origin,
                name,
                plan,
                approvals,
            } => {
                let message = override_message(origin, name, plan);
                let (votes, needed) = committee_votes(self, &message, approvals);
                if self.committee.is_empty() || votes < needed {
                    return Err(TxError::OverrideQuorum { votes, needed });
                }
                self.planned_zone(tx, origin, name, plan, height, true)
            }
            _ => unreachable!("next_zone is only called for DNS transactions"),
        }
    }

    /// Every endpoint must be offered by a registered node of `role`.
    fn check_endpoints(
        &self,
        role: crate::zones::ManagedRole,
        endpoints: &[crate::dns::Endpoint],
    ) -> Result<(), TxError> {
        for e in endpoints {
            let offered = self
                .nodes
                .values()
                .filter_map(|n| endpoint_of(n, role))
                .any(|o| o.address == e.address);
            if !offered {
                return Err(TxError::UnknownEndpoint {
                    address: crate::dns::format_address(&e.address),
                });
            }
        }
        Ok(())
    }

    fn planned_zone(
        &self,
        tx: &crate::Tx,
        origin: &str,
        name: &str,
        plan: &crate::dns::Plan,
        height: u64,
        overridden: bool,
    ) -> Result<(String, Zone, Event), TxError> {
        let mut zone = self.zones.get(origin).ok_or(TxError::NoSuchZone)?.clone();
        let managed = zone
            .managed
            .get_mut(name)
            .ok_or(TxError::NoSuchManagedName)?;
        self.check_endpoints(managed.role, &plan.endpoints)?;
        let role = managed.role;
        let healthy = |e: &crate::dns::Endpoint| {
            self.nodes.values().any(|n| {
                endpoint_of(n, role).is_some_and(|o| o.address == e.address)
                    && registry::is_healthy_at(n, self.time_ms)
            })
        };
        managed
            .state
            .apply_plan(plan, height, tx.signer, healthy, overridden)
            .map_err(|error| TxError::PlanRejected { error })?;
        let generation = managed.state.current.number;
        zone.version = zone.version.saturating_add(1);
        let event = Event::DnsPlanned {
            origin: origin.to_string(),
            name: name.to_string(),
            generation,
            overridden,
        };
        Ok((origin.to_string(), zone, event))
    }

    /// Raises [`Event::DnsAllUnhealthy`] once when every endpoint of a managed name becomes
    /// unhealthy, and clears the alert when one recovers; records are never changed here.
    /// Moves block time forward (a proposer clock behind its parent's never moves it back) and,
    /// at the first block, stamps genesis nodes as seen then.
    fn advance_time(&mut self, height: u64, time_ms: u64) {
        // The meta entry (height, time) is recorded as it was before this block changes it.
        self.touch(vec![T_META]);
        self.time_ms = self.time_ms.max(time_ms);
        if height == 1 {
            let genesis: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.last_seen_ms == 0)
                .map(|(id, _)| *id)
                .collect();
            for id in genesis {
                self.touch(key(T_NODE, &id));
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.last_seen_ms = self.time_ms;
                }
            }
        }
    }

    fn dns_health(&mut self, events: &mut Vec<Event>) {
        let now_ms = self.time_ms;
        let mut changes = Vec::new();
        for (origin, zone) in &self.zones {
            for (name, m) in &zone.managed {
                let any_healthy = m.state.current.endpoints.iter().any(|e| {
                    self.nodes.values().any(|n| {
                        endpoint_of(n, m.role).is_some_and(|o| o.address == e.address)
                            && registry::is_healthy_at(n, now_ms)
                    })
                });
                if any_healthy == m.alerting {
                    changes.push((origin.clone(), name.clone(), !any_healthy));
                }
            }
        }
        for (origin, name, alerting) in changes {
            self.touch(key(T_ZONE, origin.as_bytes()));
            let zone = self.zones.get_mut(&origin).expect("listed above");
            let m = zone.managed.get_mut(&name).expect("listed above");
            m.alerting = alerting;
            if alerting {
                events.push(Event::DnsAllUnhealthy {
                    origin,
                    name,
                    generation: m.state.current.number,
                });
            }
        }
    }

    fn apply_admission(&mut self, a: CheckedAdmission) -> Event {
        self.touch(key(T_NODE, &a.node));
        if let Some(n) = self.nodes.get_mut(&a.node) {
            n.roles = a.roles.clone();
            n.capacity_bytes = a.capacity_bytes;
            n.admissions = n.admissions.saturating_add(1);
        }
        Event::NodeAdmitted {
            node: a.node,
            roles: a.roles,
            capacity_bytes: a.capacity_bytes,
        }
    }

    fn remove_tombstone(&mut self, k: &[u8]) {
        if let Some(t) = self.tombstones.get(k) {
            let height = t.height;
            self.touch(key(T_TOMBSTONE, k));
            self.tombstones.remove(k);
            self.tombstone_heights.remove(&(height, k.to_vec()));
        }
    }

    /// Drops tombstones older than [`TOMBSTONE_RETENTION_BLOCKS`], oldest first.
    fn prune_tombstones(&mut self, height: u64) {
        let Some(cutoff) = height.checked_sub(TOMBSTONE_RETENTION_BLOCKS) else {
            return;
        };
        while let Some((h, k)) = self.tombstone_heights.first().cloned() {
            if h >= cutoff {
                break;
            }
            self.remove_tombstone(&k);
        }
    }

    /// Validates the block statelessly (count, each tx decode_and_verify) without changing state.
    pub fn validate_block_txs<B: AsRef<[u8]>>(txs: &[B]) -> Result<Vec<SignedTx>, BlockError> {
        if txs.len() > MAX_TXS_PER_BLOCK {
            return Err(BlockError::TooManyTxs {
                count: txs.len(),
                max: MAX_TXS_PER_BLOCK,
            });
        }
        txs.iter()
            .enumerate()
            .map(|(index, b)| {
                SignedTx::decode_and_verify(b.as_ref())
                    .map_err(|error| BlockError::BadTx { index, error })
            })
            .collect()
    }

    /// Applies a finalized block of encoded txs at `height` (must be `height() + 1`) whose
    /// proposer timestamp is `time_ms`; a stateless-invalid tx fails the block with the state
    /// unchanged.
    pub fn apply_block<B: AsRef<[u8]>>(
        &mut self,
        height: u64,
        time_ms: u64,
        txs: &[B],
    ) -> Result<BlockOutcome, BlockError> {
        self.check_height(height)?;
        let txs = Self::validate_block_txs(txs)?;
        self.apply_verified_block(height, time_ms, &txs)
    }

    fn check_height(&self, height: u64) -> Result<(), BlockError> {
        // from_entries refuses u64::MAX and blocks only add one, so this cannot overflow.
        let expected = self.height + 1;
        if height != expected {
            return Err(BlockError::WrongHeight {
                expected,
                got: height,
            });
        }
        Ok(())
    }

    /// Like [`State::apply_block`] for txs whose signatures the caller already verified (e.g.
    /// via a cache); fields are re-validated here, signatures are not.
    pub fn apply_verified_block(
        &mut self,
        height: u64,
        time_ms: u64,
        txs: &[SignedTx],
    ) -> Result<BlockOutcome, BlockError> {
        self.check_height(height)?;
        if txs.len() > MAX_TXS_PER_BLOCK {
            return Err(BlockError::TooManyTxs {
                count: txs.len(),
                max: MAX_TXS_PER_BLOCK,
            });
        }
        for (index, tx) in txs.iter().enumerate() {
            tx.tx
                .validate()
                .map_err(|error| BlockError::BadTx { index, error })?;
        }
        self.advance_time(height, time_ms);
        let mut events = Vec::with_capacity(txs.len());
        let mut receipts = Vec::with_capacity(txs.len());
        for tx in txs {
            match self.apply_tx(tx, height) {
                Ok(event) => {
                    events.push(event);
                    receipts.push(Ok(()));
                }
                Err(error) => {
                    events.push(Event::TxRejected {
                        hash: tx.hash(),
                        error: error.clone(),
                    });
                    receipts.push(Err(error));
                }
            }
        }
        self.dns_health(&mut events);
        self.prune_tombstones(height);
        self.touch(vec![T_META]);
        self.height = height;
        self.update_root();
        Ok(BlockOutcome {
            events,
            receipts,
            state_root: self.root,
        })
    }
}
