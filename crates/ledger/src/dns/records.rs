//! Zones and record sets: the supported record types, bounded names, TTLs and sizes, and the
//! zone rules ([`validate_zone`]: one SOA and at least one NS at the apex, CNAME exclusivity).

use crate::{
    codec::{Reader, Writer},
    TxError,
};
use serde::{Deserialize, Serialize};

/// Longest domain name in presentation form without the final dot (RFC 1035: 255 octets
/// on the wire).
pub const MAX_DNS_NAME_SIZE_BYTES: usize = 253;
/// Longest label.
pub const MAX_LABEL_SIZE_BYTES: usize = 63;
/// Shortest TTL a record set may have.
pub const MIN_TTL_SECS: u32 = 5;
/// Longest TTL (one week).
pub const MAX_TTL_SECS: u32 = 604_800;
/// Most records in one set.
pub const MAX_RECORDS_PER_SET: usize = 64;
/// Most records in one zone.
pub const MAX_RECORDS_PER_ZONE: usize = 10_000;
/// Longest TXT character-string (RFC 1035).
pub const MAX_TXT_STRING_SIZE_BYTES: usize = 255;
/// Most TXT character-strings in one record.
pub const MAX_TXT_STRINGS: usize = 16;

/// Record data of the supported types.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RData {
    /// Start of authority (zone apex only).
    Soa {
        /// Primary name server.
        mname: String,
        /// Responsible mailbox, as a name.
        rname: String,
        /// Refresh interval (s).
        refresh: u32,
        /// Retry interval (s).
        retry: u32,
        /// Expiry (s).
        expire: u32,
        /// Negative-caching TTL (s).
        minimum: u32,
    },
    /// Name server.
    Ns(String),
    /// IPv4 address.
    A([u8; 4]),
    /// IPv6 address.
    Aaaa([u8; 16]),
    /// Alias (the only set at its name).
    Cname(String),
    /// Text: one or more character-strings.
    Txt(Vec<String>),
    /// Mail exchanger.
    Mx {
        /// Preference (lower first).
        preference: u16,
        /// Exchange host.
        exchange: String,
    },
    /// Service location.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: String,
    },
    /// Certification authority authorization.
    Caa {
        /// Flags (0 or 128).
        flags: u8,
        /// Property tag (issue, issuewild, iodef, ...).
        tag: String,
        /// Property value.
        value: String,
    },
}

impl RData {
    /// The record type's code (RFC 1035 and successors).
    pub fn type_code(&self) -> u16 {
        match self {
            RData::Soa { .. } => 6,
            RData::Ns(_) => 2,
            RData::A(_) => 1,
            RData::Aaaa(_) => 28,
            RData::Cname(_) => 5,
            RData::Txt(_) => 16,
            RData::Mx { .. } => 15,
            RData::Srv { .. } => 33,
            RData::Caa { .. } => 257,
        }
    }

    /// The record type's mnemonic.
    pub fn type_name(&self) -> &'static str {
        match self {
            RData::Soa { .. } => "SOA",
            RData::Ns(_) => "NS",
            RData::A(_) => "A",
            RData::Aaaa(_) => "AAAA",
            RData::Cname(_) => "CNAME",
            RData::Txt(_) => "TXT",
            RData::Mx { .. } => "MX",
            RData::Srv { .. } => "SRV",
            RData::Caa { .. } => "CAA",
        }
    }
}

/// All records of one name and type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordSet {
    /// Owner name: lower-case, no final dot, inside the zone.
    pub name: String,
    /// TTL in seconds.
    pub ttl_secs: u32,
    /// Records, all of one type, no duplicates.
    pub records: Vec<RData>,
}

/// Why a zone or record set is invalid; the message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum RecordError {
    /// A malformed domain name.
    #[error("bad name {name:?}: {reason}")]
    Name {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A malformed record set.
    #[error("bad {rtype} set at {name:?}: {reason}")]
    Set {
        /// Owner name.
        name: String,
        /// Type mnemonic.
        rtype: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A zone-level rule (apex records, CNAME exclusivity, size).
    #[error("bad zone {zone:?}: {reason}")]
    Zone {
        /// Zone origin.
        zone: String,
        /// What is wrong.
        reason: String,
    },
}

/// Checks a domain name: lower-case LDH labels of 1..=63 bytes (a leading `*` label and
/// `_`-prefixed labels allowed), at most 253 bytes, no final dot.
pub fn validate_name(name: &str) -> Result<(), RecordError> {
    let bad = |reason: &str| {
        Err(RecordError::Name {
            name: name.chars().take(80).collect(),
            reason: reason.into(),
        })
    };
    if name.is_empty() || name.len() > MAX_DNS_NAME_SIZE_BYTES {
        return bad("a name is 1..=253 bytes");
    }
    if name.ends_with('.') {
        return bad("write names without the final dot");
    }
    for (i, label) in name.split('.').enumerate() {
        if label.is_empty() || label.len() > MAX_LABEL_SIZE_BYTES {
            return bad("every label is 1..=63 bytes");
        }
        if label == "*" {
            if i != 0 {
                return bad("a wildcard `*` may only be the first label");
            }
            continue;
        }
        let body = label.strip_prefix('_').unwrap_or(label);
        if body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("labels use a-z, 0-9 and '-' (lower-case), optionally after one '_'");
        }
        if body.starts_with('-') || body.ends_with('-') {
            return bad("a label neither starts nor ends with '-'");
        }
    }
    Ok(())
}

fn in_zone(name: &str, origin: &str) -> bool {
    name == origin
        || (name.len() > origin.len()
            && name.ends_with(origin)
            && name.as_bytes()[name.len() - origin.len() - 1] == b'.')
}

/// Checks one record set of zone `origin`.
pub fn validate_set(origin: &str, set: &RecordSet) -> Result<(), RecordError> {
    validate_name(&set.name)?;
    let rtype = set.records.first().map_or("(empty)", RData::type_name);
    let bad = |reason: String| {
        Err(RecordError::Set {
            name: set.name.clone(),
            rtype,
            reason,
        })
    };
    if !in_zone(&set.name, origin) {
        return bad(format!("the name is outside zone {origin}"));
    }
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&set.ttl_secs) {
        return bad(format!(
            "TTL must be {MIN_TTL_SECS}..={MAX_TTL_SECS} seconds"
        ));
    }
    if set.records.is_empty() || set.records.len() > MAX_RECORDS_PER_SET {
        return bad(format!("a set holds 1..={MAX_RECORDS_PER_SET} records"));
    }
    for (i, r) in set.records.iter().enumerate() {
        if r.type_name() != rtype {
            return bad(format!(
                "record {i} is {}; a set holds one type",
                r.type_name()
            ));
        }
        if set.records[..i].contains(r) {
            return bad(format!("record {i} is a duplicate"));
        }
        let host_ok = |h: &str| validate_name(h).map_err(|e| e.to_string());
        let checked = match r {
            RData::Soa { mname, rname, .. } => {
                if set.name != origin {
                    return bad("SOA belongs at the zone apex only".into());
                }
                host_ok(mname).and(host_ok(rname))
            }
            RData::Ns(h) | RData::Cname(h) => host_ok(h),
            RData::Mx { exchange, .. } => host_ok(exchange),
            RData::Srv { target, .. } => host_ok(target),
            RData::Txt(strings) => {
                if strings.is_empty() || strings.len() > MAX_TXT_STRINGS {
                    Err(format!("a TXT record holds 1..={MAX_TXT_STRINGS} strings"))
                } else if strings.iter().any(|t| t.len() > MAX_TXT_STRING_SIZE_BYTES) {
                    Err(format!(
                        "TXT strings are at most {MAX_TXT_STRING_SIZE_BYTES} bytes"
                    ))
                } else {
                    Ok(())
                }
            }
            RData::Caa { flags, tag, value } => {
                if *flags != 0 && *flags != 128 {
                    Err("CAA flags are 0 or 128".into())
                } else if tag.is_empty()
                    || tag.len() > 15
                    || !tag.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    Err("a CAA tag is 1..=15 letters or digits".into())
                } else if value.len() > MAX_TXT_STRING_SIZE_BYTES {
                    Err("a CAA value is at most 255 bytes".into())
                } else {
                    Ok(())
                }
            }
            RData::A(_) | RData::Aaaa(_) => Ok(()),
        };
        if let Err(reason) = checked {
            return bad(format!("record {i}: {reason}"));
        }
    }
    if rtype == "CNAME" && set.records.len() != 1 {
        return bad("a CNAME set holds exactly one record".into());
    }
    if rtype == "SOA" && set.records.len() != 1 {
        return bad("a zone has exactly one SOA record".into());
    }
    Ok(())
}

/// The smallest valid apex for `origin`: an SOA naming `ns1.<origin>` and
/// `hostmaster.<origin>` (refresh 3600, retry 600, expire 86400, minimum 60) and one NS
/// `ns1.<origin>`, both with TTL 300; what a new zone starts from in tests and tools.
pub fn minimal_apex(origin: &str) -> Vec<RecordSet> {
    vec![
        RecordSet {
            name: origin.into(),
            ttl_secs: 300,
            records: vec![RData::Soa {
                mname: format!("ns1.{origin}"),
                rname: format!("hostmaster.{origin}"),
                refresh: 3600,
                retry: 600,
                expire: 86_400,
                minimum: 60,
            }],
        },
        RecordSet {
            name: origin.into(),
            ttl_secs: 300,
            records: vec![RData::Ns(format!("ns1.{origin}"))],
        },
    ]
}

/// Checks a whole zone: every set valid, one set per (name, type), exactly one SOA and at
/// least one NS at the apex, no CNAME at the apex or beside other types (RFC 1034 3.6.2),
/// at most [`MAX_RECORDS_PER_ZONE`] records.
pub fn validate_zone(origin: &str, sets: &[RecordSet]) -> Result<(), RecordError> {
    validate_name(origin)?;
    let bad = |reason: String| {
        Err(RecordError::Zone {
            zone: origin.to_string(),
            reason,
        })
    };
    let total: usize = sets.iter().map(|s| s.records.len()).sum();
    if total > MAX_RECORDS_PER_ZONE {
        return bad(format!(
            "{total} records; a zone holds at most {MAX_RECORDS_PER_ZONE}"
        ));
    }
    let mut seen = std::collections::BTreeMap::<(&str, &str), ()>::new();
    for set in sets {
        validate_set(origin, set)?;
        let rtype = set.records[0].type_name();
        if seen.insert((set.name.as_str(), rtype), ()).is_some() {
            return bad(format!("two {rtype} sets at {}; merge them", set.name));
        }
    }
    let at = |name: &str, rtype: &str| seen.contains_key(&(name, rtype));
    if !at(origin, "SOA") {
        return bad("the apex needs one SOA record".into());
    }
    if !at(origin, "NS") {
        return bad("the apex needs at least one NS record".into());
    }
    for set in sets {
        if set.records[0].type_name() != "CNAME" {
            continue;
        }
        if set.name == origin {
            return bad("no CNAME at the zone apex (it must hold SOA and NS)".into());
        }
        let others = seen
            .keys()
            .filter(|(n, t)| *n == set.name && *t != "CNAME")
            .count();
        if others > 0 {
            return bad(format!(
                "{} has a CNAME and other records; a CNAME must be alone at its name",
                set.name
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Canonical encoding (transactions and persisted state)

/// Record type code of a mnemonic, for the supported types.
pub fn type_code(mnemonic: &str) -> Option<u16> {
    Some(match mnemonic.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "CAA" => 257,
        _ => return None,
    })
}

/// One-byte tag per type: the low byte of the type code, except CAA (257, whose low byte would
/// clash with A) which is 0.
fn write_rdata(w: &mut Writer, r: &RData) {
    w.u8(match r {
        RData::Caa { .. } => 0,
        other => other.type_code().to_be_bytes()[1],
    });
    match r {
        RData::Soa {
            mname,
            rname,
            refresh,
            retry,
            expire,
            minimum,
        } => {
            w.str(mname);
            w.str(rname);
            for v in [refresh, retry, expire, minimum] {
                w.fixed(&v.to_le_bytes());
            }
        }
        RData::Ns(h) | RData::Cname(h) => w.str(h),
        RData::A(a) => w.fixed(a),
        RData::Aaaa(a) => w.fixed(a),
        RData::Txt(t) => {
            w.len(t.len());
            for s in t {
                w.str(s);
            }
        }
        RData::Mx {
            preference,
            exchange,
        } => {
            w.fixed(&preference.to_le_bytes());
            w.str(exchange);
        }
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            for v in [priority, weight, port] {
                w.fixed(&v.to_le_bytes());
            }
            w.str(target);
        }
        RData::Caa { flags, tag, value } => {
            w.u8(*flags);
            w.str(tag);
            w.str(value);
        }
    }
}

fn read_rdata(r: &mut Reader<'_>) -> Result<RData, TxError> {
    let name = |r: &mut Reader<'_>| r.str(MAX_DNS_NAME_SIZE_BYTES);
    let u16_ = |r: &mut Reader<'_>| r.fixed::<2>().map(u16::from_le_bytes);
    let u32_ = |r: &mut Reader<'_>| r.fixed::<4>().map(u32::from_le_bytes);
    Ok(match r.u8()? {
        6 => RData::Soa {
            mname: name(r)?,
            rname: name(r)?,
            refresh: u32_(r)?,
            retry: u32_(r)?,
            expire: u32_(r)?,
            minimum: u32_(r)?,
        },
        2 => RData::Ns(name(r)?),
        5 => RData::Cname(name(r)?),
        1 => RData::A(r.fixed::<4>()?),
        28 => RData::Aaaa(r.fixed::<16>()?),
        16 => {
            let n = r.len(MAX_TXT_STRINGS)?;
            let mut t = Vec::with_capacity(n);
            for _ in 0..n {
                t.push(r.str(MAX_TXT_STRING_SIZE_BYTES)?);
            }
            RData::Txt(t)
        }
        15 => RData::Mx {
            preference: u16_(r)?,
            exchange: name(r)?,
        },
        33 => RData::Srv {
            priority: u16_(r)?,
            weight: u16_(r)?,
            port: u16_(r)?,
            target: name(r)?,
        },
        0 => RData::Caa {
            flags: r.u8()?,
            tag: r.str(15)?,
            value: r.str(MAX_TXT_STRING_SIZE_BYTES)?,
        },
        _ => {
            return Err(TxError::Malformed {
                reason: "unknown DNS record type",
            })
        }
    })
}

/// Encodes a record set.
pub fn write_set(w: &mut Writer, set: &RecordSet) {
    w.str(&set.name);
    w.fixed(&set.ttl_secs.to_le_bytes());
    w.len(set.records.len());
    for r in &set.records {
        write_rdata(w, r);
    }
}

/// Decodes a record set (bounded; not validated).
pub fn read_set(r: &mut Reader<'_>) -> Result<RecordSet, TxError> {
    let name = r.str(MAX_DNS_NAME_SIZE_BYTES)?;
    let ttl_secs = u32::from_le_bytes(r.fixed::<4>()?);
    let n = r.len(MAX_RECORDS_PER_SET)?;
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        records.push(read_rdata(r)?);
    }
    Ok(RecordSet {
        name,
        ttl_secs,
        records,
    })
}
