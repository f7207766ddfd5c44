//! Canonical (key, value) encoding of every state entry: one table byte then the id as the
//! key, a strict [`crate::codec`] encoding as the value. [`State::entries`] and
//! [`State::from_entries`] round-trip with the identical root; decoding refuses anything
//! non-canonical with [`StateError::Corrupt`].

use super::{Account, ConfigEntry, NodeRecord, State, MAX_CHAIN_ID_SIZE_BYTES};
use crate::{
    admission::{read_roles, write_roles},
    audit::{self, AuditParams, Round},
    codec::{Reader, Writer},
    objects::{
        dec_bucket, dec_object, enc_bucket, enc_object, gateway_key_suffix, split_object_key,
        validate_bucket_name,
    },
    tx::{
        MAX_ADDRESSES, MAX_ADDRESS_SIZE_BYTES, MAX_CONFIG_KEY_SIZE_BYTES,
        MAX_CONFIG_VALUE_SIZE_BYTES, MAX_NAME_SIZE_BYTES, MAX_ZONE_SIZE_BYTES,
    },
    versions::Tombstone,
    zones::Zone,
    AccountId, NodeId, StateError, TxError,
};

pub(crate) const T_META: u8 = 0;
pub(crate) const T_ACCOUNT: u8 = 1;
pub(crate) const T_NODE: u8 = 2;
pub(crate) const T_CONFIG: u8 = 3;
pub(crate) const T_BUCKET: u8 = 4;
pub(crate) const T_OBJECT: u8 = 5;
pub(crate) const T_GATEWAY: u8 = 6;
pub(crate) const T_ZONE: u8 = 7;
pub(crate) const T_COMMITTEE: u8 = 8;
pub(crate) const T_TOMBSTONE: u8 = 9;
/// Audit parameters and the open round (one entry, empty id).
pub(crate) const T_AUDIT: u8 = 10;
/// One node's challenges in the open round.
pub(crate) const T_AUDIT_OPEN: u8 = 11;
/// One node's audit record.
pub(crate) const T_AUDIT_RECORD: u8 = 12;

/// The entry key of `id` in `table`.
pub(crate) fn key(table: u8, id: &[u8]) -> Vec<u8> {
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

fn enc_audit(params: &AuditParams, round: Option<&Round>) -> Vec<u8> {
    let mut w = Writer::default();
    params.write(&mut w);
    match round {
        None => w.u8(0),
        Some(r) => {
            w.u8(1);
            w.u64(r.number);
            w.u64(r.opened_height);
            w.fixed(&r.seed);
            w.bool(r.judged);
        }
    }
    w.0
}

fn dec_audit(b: &[u8]) -> Result<(AuditParams, Option<Round>), TxError> {
    let mut r = Reader::new(b);
    let params = AuditParams::read(&mut r)?;
    let round = match r.u8()? {
        0 => None,
        1 => Some(Round {
            number: r.u64()?,
            opened_height: r.u64()?,
            seed: r.fixed::<32>()?,
            judged: r.bool()?,
        }),
        _ => {
            return Err(TxError::Malformed {
                reason: "round tag",
            })
        }
    };
    r.finish()?;
    Ok((params, round))
}

fn encoded<T>(v: &T, write: fn(&mut Writer, &T)) -> Vec<u8> {
    let mut w = Writer::default();
    write(&mut w, v);
    w.0
}

fn decoded<T>(b: &[u8], read: fn(&mut Reader<'_>) -> Result<T, TxError>) -> Result<T, TxError> {
    let mut r = Reader::new(b);
    let v = read(&mut r)?;
    r.finish()?;
    Ok(v)
}

impl State {
    /// How many entries [`State::entries`] would return, without encoding any.
    pub fn entry_count(&self) -> usize {
        1 + self.accounts.len()
            + self.nodes.len()
            + self.config.len()
            + self.buckets.len()
            + self.objects.len()
            + self.gateways.len()
            + self.zones.len()
            + self.committee.len()
            + self.tombstones.len()
            + 1
            + self.audit_open.len()
            + self.audit_records.len()
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
        out.push((
            vec![T_AUDIT],
            enc_audit(&self.audit_params, self.audit_round.as_ref()),
        ));
        out.extend(
            self.audit_open
                .iter()
                .map(|(id, r)| (key(T_AUDIT_OPEN, id), encoded(r, audit::write_round))),
        );
        out.extend(
            self.audit_records
                .iter()
                .map(|(id, r)| (key(T_AUDIT_RECORD, id), encoded(r, audit::write_record))),
        );
        debug_assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "entries sorted");
        debug_assert_eq!(out.len(), self.entry_count());
        out
    }

    pub(super) fn entry(&self, k: &[u8]) -> Option<Vec<u8>> {
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
            T_AUDIT => id
                .is_empty()
                .then(|| enc_audit(&self.audit_params, self.audit_round.as_ref())),
            T_AUDIT_OPEN => self
                .audit_open
                .get(<&NodeId>::try_from(id).ok()?)
                .map(|r| encoded(r, audit::write_round)),
            T_AUDIT_RECORD => self
                .audit_records
                .get(<&NodeId>::try_from(id).ok()?)
                .map(|r| encoded(r, audit::write_record)),
            _ => None,
        }
    }

    /// Rebuilds a state from [`State::entries`] (e.g. loaded from disk); same root as the original.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, StateError> {
        let mut s = Self::empty(String::new());
        let mut meta = false;
        let mut audit_entry = false;
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
                    let pair = match id.split_at_checked(32) {
                        Some((o, g)) if v.is_empty() => {
                            (AccountId::try_from(o), AccountId::try_from(g))
                        }
                        _ => return Err(corrupt("gateway entry is malformed")),
                    };
                    let (Ok(owner), Ok(gateway)) = pair else {
                        return Err(corrupt("gateway entry is malformed"));
                    };
                    !s.gateways.insert((owner, gateway))
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
                T_AUDIT => {
                    if !id.is_empty() {
                        return Err(corrupt("audit key has a suffix"));
                    }
                    let (params, round) = dec_audit(&v).map_err(corrupt_entry("audit entry"))?;
                    s.audit_params = params;
                    s.audit_round = round;
                    std::mem::replace(&mut audit_entry, true)
                }
                T_AUDIT_OPEN => {
                    let id: NodeId = id
                        .try_into()
                        .map_err(|_| corrupt("audit round key is not 32 bytes"))?;
                    let r = decoded(&v, audit::read_round)
                        .map_err(corrupt_entry("audit round entry"))?;
                    s.audit_open.insert(id, r).is_some()
                }
                T_AUDIT_RECORD => {
                    let id: NodeId = id
                        .try_into()
                        .map_err(|_| corrupt("audit record key is not 32 bytes"))?;
                    let r = decoded(&v, audit::read_record)
                        .map_err(corrupt_entry("audit record entry"))?;
                    s.audit_records.insert(id, r).is_some()
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
        if !audit_entry {
            return Err(corrupt("missing audit entry"));
        }
        s.reset_root();
        Ok(s)
    }
}
