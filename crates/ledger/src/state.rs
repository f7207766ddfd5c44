//! Ledger state and the block transition function.

use crate::{
    codec::{Reader, Writer},
    tx::{Roles, SignedTx, TxKind},
    AccountId, BlockError, Hash, NodeId, TxError, MAX_TXS_PER_BLOCK, NONCE_WINDOW,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

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
    /// Roles.
    pub roles: Roles,
    /// Advertised addresses.
    pub addresses: Vec<String>,
    /// Advertised capacity.
    pub capacity_bytes: u64,
    /// Stake.
    pub stake: u64,
    /// Height of registration.
    pub registered_height: u64,
    /// Height of the last heartbeat (0 = none).
    pub last_heartbeat_height: u64,
    /// Sequence of the last heartbeat.
    pub last_heartbeat_seq: u64,
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

/// What applying a block did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Event {
    /// A new account.
    AccountRegistered {
        /// Id.
        account: AccountId,
    },
    /// A new node.
    NodeRegistered {
        /// Id.
        node: NodeId,
    },
    /// A heartbeat.
    Heartbeat {
        /// Id.
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
    /// A transaction that failed a stateful rule (skipped, not applied).
    TxRejected {
        /// Transaction hash.
        hash: Hash,
        /// Reason.
        error: String,
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

/// The ledger state: accounts, nodes, config, height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    chain_id: String,
    height: u64,
    accounts: BTreeMap<AccountId, Account>,
    nodes: BTreeMap<NodeId, NodeRecord>,
    config: BTreeMap<String, ConfigEntry>,
    dirty: BTreeSet<Vec<u8>>,
    root: Hash,
}

fn key(table: u8, id: &[u8]) -> Vec<u8> {
    let mut k = vec![table];
    k.extend_from_slice(id);
    k
}

fn corrupt(reason: &'static str) -> TxError {
    TxError::Malformed { reason }
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
        name: r.str(1024)?,
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
    for r in [
        n.roles.validator,
        n.roles.storage,
        n.roles.gateway,
        n.roles.cache,
    ] {
        w.bool(r);
    }
    w.u64(n.addresses.len() as u64);
    for a in &n.addresses {
        w.str(a);
    }
    for v in [
        n.capacity_bytes,
        n.stake,
        n.registered_height,
        n.last_heartbeat_height,
        n.last_heartbeat_seq,
    ] {
        w.u64(v);
    }
    w.0
}

fn dec_node(b: &[u8]) -> Result<NodeRecord, TxError> {
    let mut r = Reader::new(b);
    let operator = r.fixed::<32>()?;
    let zone = r.str(1024)?;
    let roles = Roles {
        validator: r.bool()?,
        storage: r.bool()?,
        gateway: r.bool()?,
        cache: r.bool()?,
    };
    let count = r.u64()?;
    if count > 64 {
        return Err(corrupt("too many addresses"));
    }
    let mut addresses = Vec::new();
    for _ in 0..count {
        addresses.push(r.str(1024)?);
    }
    let n = NodeRecord {
        operator,
        zone,
        roles,
        addresses,
        capacity_bytes: r.u64()?,
        stake: r.u64()?,
        registered_height: r.u64()?,
        last_heartbeat_height: r.u64()?,
        last_heartbeat_seq: r.u64()?,
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
        value: r.str(1 << 20)?,
        version: r.u64()?,
        set_by: r.fixed::<32>()?,
        set_height: r.u64()?,
    };
    r.finish()?;
    Ok(c)
}

fn enc_meta(chain_id: &str, height: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(chain_id);
    w.u64(height);
    w.0
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
        let window = if shift >= 64 {
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

impl State {
    /// State at height 0 from a genesis description.
    pub fn genesis(g: &Genesis) -> Result<Self, TxError> {
        let mut s = Self {
            chain_id: g.chain_id.clone(),
            height: 0,
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            config: BTreeMap::new(),
            dirty: BTreeSet::new(),
            root: [0; 32],
        };
        if g.chain_id.is_empty() || g.chain_id.len() > 64 {
            return Err(TxError::InvalidField {
                field: "chain_id",
                reason: "length must be 1..=64 bytes".into(),
            });
        }
        for (id, name) in &g.accounts {
            if s.accounts.contains_key(id) {
                continue; // An operator listed as both account and node operator.
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
            if !s.accounts.contains_key(&n.operator) {
                return Err(TxError::UnknownAccount);
            }
            if s.nodes.contains_key(id) {
                return Err(TxError::NodeExists);
            }
            s.nodes.insert(
                *id,
                NodeRecord {
                    operator: n.operator,
                    zone: n.zone.clone(),
                    roles: n.roles.clone(),
                    addresses: n.addresses.clone(),
                    capacity_bytes: n.capacity_bytes,
                    stake: n.stake,
                    registered_height: 0,
                    last_heartbeat_height: 0,
                    last_heartbeat_seq: 0,
                },
            );
            s.dirty.insert(key(T_NODE, id));
        }
        s.dirty.insert(vec![T_META]);
        s.root = s.compute_root();
        Ok(s)
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.height
    }
    /// Chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }
    /// Commitment to the whole state (cached, recomputed per block).
    pub fn state_root(&self) -> Hash {
        self.root
    }
    /// One account.
    pub fn account(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }
    /// All accounts.
    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &Account)> {
        self.accounts.iter()
    }
    /// One node.
    pub fn node(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }
    /// All nodes.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &NodeRecord)> {
        self.nodes.iter()
    }
    /// One config entry.
    pub fn config(&self, key: &str) -> Option<&ConfigEntry> {
        self.config.get(key)
    }
    /// All config entries.
    pub fn configs(&self) -> impl Iterator<Item = (&String, &ConfigEntry)> {
        self.config.iter()
    }

    /// Every entry in canonical form, sorted by key.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![(vec![T_META], enc_meta(&self.chain_id, self.height))];
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
        out
    }

    fn entry(&self, k: &[u8]) -> Option<Vec<u8>> {
        let (table, id) = k.split_first()?;
        match *table {
            T_META => Some(enc_meta(&self.chain_id, self.height)),
            T_ACCOUNT => self
                .accounts
                .get(<&AccountId>::try_from(id).ok()?)
                .map(enc_account),
            T_NODE => self.nodes.get(<&NodeId>::try_from(id).ok()?).map(enc_node),
            T_CONFIG => self
                .config
                .get(std::str::from_utf8(id).ok()?)
                .map(enc_config),
            _ => None,
        }
    }

    /// Entries changed since the last call (`None` = deleted).
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

    /// Rebuilds state from [`State::entries`] (e.g. loaded from disk).
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, TxError> {
        let mut s = Self {
            chain_id: String::new(),
            height: 0,
            accounts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            config: BTreeMap::new(),
            dirty: BTreeSet::new(),
            root: [0; 32],
        };
        let mut meta = false;
        for (k, v) in entries {
            let Some((table, id)) = k.split_first() else {
                return Err(corrupt("empty key"));
            };
            match *table {
                T_META => {
                    let mut r = Reader::new(&v);
                    s.chain_id = r.str(1024)?;
                    s.height = r.u64()?;
                    r.finish()?;
                    meta = true;
                }
                T_ACCOUNT => {
                    let id: AccountId = id.try_into().map_err(|_| corrupt("account key"))?;
                    s.accounts.insert(id, dec_account(&v)?);
                }
                T_NODE => {
                    let id: NodeId = id.try_into().map_err(|_| corrupt("node key"))?;
                    s.nodes.insert(id, dec_node(&v)?);
                }
                T_CONFIG => {
                    let k = std::str::from_utf8(id).map_err(|_| corrupt("config key"))?;
                    s.config.insert(k.to_string(), dec_config(&v)?);
                }
                _ => return Err(corrupt("unknown table")),
            }
        }
        if !meta {
            return Err(corrupt("missing height entry"));
        }
        s.root = s.compute_root();
        Ok(s)
    }

    fn compute_root(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(b"cairn/state/v1\0");
        for (k, v) in self.entries() {
            h.update(&(k.len() as u32).to_le_bytes());
            h.update(&k);
            h.update(&(v.len() as u32).to_le_bytes());
            h.update(&v);
        }
        *h.finalize().as_bytes()
    }

    /// Stateful checks of one transaction against the current state (no change).
    pub fn check_tx(&self, tx: &SignedTx) -> Result<(), TxError> {
        self.clone_free_check(tx)
    }

    fn clone_free_check(&self, stx: &SignedTx) -> Result<(), TxError> {
        let tx = &stx.tx;
        let nonce_account;
        let account = match (&tx.kind, self.accounts.get(&tx.signer)) {
            (TxKind::RegisterAccount { .. }, Some(_)) => return Err(TxError::AccountExists),
            (TxKind::RegisterAccount { .. }, None) => {
                nonce_account = Account {
                    name: String::new(),
                    nonce_max: 0,
                    nonce_window: 0,
                };
                &nonce_account
            }
            (_, None) => return Err(TxError::UnknownAccount),
            (_, Some(a)) => a,
        };
        check_nonce(account, tx.nonce)?;
        match &tx.kind {
            TxKind::RegisterAccount { .. } => Ok(()),
            TxKind::RegisterNode { node, .. } => {
                if self.nodes.contains_key(node) {
                    Err(TxError::NodeExists)
                } else {
                    Ok(())
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
                Ok(())
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
                Ok(())
            }
        }
    }

    fn apply_tx(&mut self, stx: &SignedTx, height: u64) -> Result<Event, TxError> {
        self.clone_free_check(stx)?;
        let tx = &stx.tx;
        let account = self.accounts.entry(tx.signer).or_insert_with(|| Account {
            name: String::new(),
            nonce_max: 0,
            nonce_window: 0,
        });
        let (max, window) = check_nonce(account, tx.nonce).expect("checked above");
        account.nonce_max = max;
        account.nonce_window = window;
        self.dirty.insert(key(T_ACCOUNT, &tx.signer));
        Ok(match &tx.kind {
            TxKind::RegisterAccount { name } => {
                account.name = name.clone();
                Event::AccountRegistered { account: tx.signer }
            }
            TxKind::RegisterNode {
                node,
                zone,
                roles,
                addresses,
                capacity_bytes,
                stake,
            } => {
                self.nodes.insert(
                    *node,
                    NodeRecord {
                        operator: tx.signer,
                        zone: zone.clone(),
                        roles: roles.clone(),
                        addresses: addresses.clone(),
                        capacity_bytes: *capacity_bytes,
                        stake: *stake,
                        registered_height: height,
                        last_heartbeat_height: 0,
                        last_heartbeat_seq: 0,
                    },
                );
                self.dirty.insert(key(T_NODE, node));
                Event::NodeRegistered { node: *node }
            }
            TxKind::Heartbeat { node, seq } => {
                let n = self.nodes.get_mut(node).expect("checked above");
                n.last_heartbeat_seq = *seq;
                n.last_heartbeat_height = height;
                self.dirty.insert(key(T_NODE, node));
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
                let version = expected_version + 1;
                self.config.insert(
                    k.clone(),
                    ConfigEntry {
                        value: value.clone(),
                        version,
                        set_by: tx.signer,
                        set_height: height,
                    },
                );
                self.dirty.insert(key(T_CONFIG, k.as_bytes()));
                Event::ConfigChanged {
                    key: k.clone(),
                    version,
                }
            }
        })
    }

    /// Stateless validation of a block's transactions (count, decode, fields, signatures).
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

    /// Validates then applies a block of encoded transactions at `height`.
    pub fn apply_block<B: AsRef<[u8]>>(
        &mut self,
        height: u64,
        txs: &[B],
    ) -> Result<BlockOutcome, BlockError> {
        let txs = Self::validate_block_txs(txs)?;
        self.apply_verified_block(height, &txs)
    }

    /// Applies transactions the caller already validated statelessly (e.g. via a signature
    /// cache). Stateful failures skip the transaction and produce a rejected receipt.
    pub fn apply_verified_block(
        &mut self,
        height: u64,
        txs: &[SignedTx],
    ) -> Result<BlockOutcome, BlockError> {
        if height != self.height + 1 {
            return Err(BlockError::WrongHeight {
                expected: self.height + 1,
                got: height,
            });
        }
        if txs.len() > MAX_TXS_PER_BLOCK {
            return Err(BlockError::TooManyTxs {
                count: txs.len(),
                max: MAX_TXS_PER_BLOCK,
            });
        }
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
                        error: error.to_string(),
                    });
                    receipts.push(Err(error));
                }
            }
        }
        self.height = height;
        self.dirty.insert(vec![T_META]);
        self.root = self.compute_root();
        Ok(BlockOutcome {
            events,
            receipts,
            state_root: self.root,
        })
    }
}
