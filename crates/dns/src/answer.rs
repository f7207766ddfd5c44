//! Authoritative answers from an immutable [`Snapshot`] of finalized zones.
//!
//! Lookup follows RFC 1034 section 4.3.2 for a server that holds whole zones and no
//! delegations below the apex: exact match, CNAME chains inside the zone (at most
//! [`MAX_CNAME_CHAIN`] links, loops stopped), empty non-terminals (NODATA), wildcards
//! (RFC 4592: synthesized from `*.<closest encloser>` only when the name does not exist), and
//! NXDOMAIN/NODATA with the zone's SOA in the authority section, its TTL capped at the SOA
//! minimum (RFC 2308). Names outside every zone get REFUSED.
//!
//! Every answer for an existing (name, type) is encoded once per snapshot
//! ([`Snapshot::prepared`]); the server only copies the client's header and question in front
//! of it. That is the fast path that lets one node answer as fast as Knot.

use crate::wire::{self, qtype, rcode, Encoder, Query, Rr, Section};
use cairn_ledger::{
    dns::{RData, RecordSet},
    zones::Zone,
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

/// Longest CNAME chain followed inside a zone.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Record types answered from the prepared table.
pub const PREPARED_TYPES: [u16; 9] = [1, 2, 5, 6, 15, 16, 28, 33, 257];

/// One zone, indexed for lookups.
#[derive(Debug)]
pub struct ZoneSnap {
    /// Apex, lower-case, no final dot.
    pub origin: String,
    /// SOA serial (the ledger zone version, modulo 2^32; RFC 1982 arithmetic).
    pub serial: u32,
    /// SOA TTL.
    pub soa_ttl: u32,
    /// SOA data (serial patched in on encoding).
    pub soa: RData,
    /// Record sets by owner name.
    pub names: HashMap<String, Vec<RecordSet>>,
    /// Names that own nothing but have descendants.
    pub empty_non_terminals: HashSet<String>,
    /// Every served set in canonical (name, type) order, SOA first: what AXFR sends.
    pub ordered: Vec<RecordSet>,
}

impl ZoneSnap {
    /// Indexes the sets a ledger zone serves.
    pub fn new(origin: &str, zone: &Zone) -> Option<Self> {
        let sets = zone.served_sets();
        let soa_set = sets
            .iter()
            .find(|s| s.name == origin && matches!(s.records.first(), Some(RData::Soa { .. })))?;
        let soa = soa_set.records[0].clone();
        let soa_ttl = soa_set.ttl_secs;
        let mut names: HashMap<String, Vec<RecordSet>> = HashMap::new();
        let mut ent = HashSet::new();
        for s in &sets {
            names.entry(s.name.clone()).or_default().push(s.clone());
        }
        for name in names.keys() {
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if parent.len() < origin.len() {
                    break;
                }
                if !names.contains_key(parent) {
                    ent.insert(parent.to_string());
                }
                rest = parent;
            }
        }
        let mut ordered: Vec<RecordSet> = Vec::with_capacity(sets.len());
        ordered.push(soa_set.clone());
        ordered.extend(sets.iter().filter(|s| !std::ptr::eq(*s, soa_set)).cloned());
        Some(Self {
            origin: origin.to_string(),
            serial: zone.version as u32,
            soa_ttl,
            soa,
            names,
            empty_non_terminals: ent,
            ordered,
        })
    }

    fn negative_ttl(&self) -> u32 {
        match self.soa {
            RData::Soa { minimum, .. } => self.soa_ttl.min(minimum),
            _ => self.soa_ttl,
        }
    }

    fn set(&self, name: &str, t: u16) -> Option<&RecordSet> {
        self.names
            .get(name)?
            .iter()
            .find(|s| s.records.first().is_some_and(|r| r.type_code() == t))
    }

    fn exists(&self, name: &str) -> bool {
        self.names.contains_key(name) || self.empty_non_terminals.contains(name)
    }

    /// The wildcard set source for a name that does not exist, if any (RFC 4592 4.1).
    fn wildcard_for(&self, name: &str) -> Option<String> {
        let mut rest = name;
        while let Some((_, parent)) = rest.split_once('.') {
            if self.exists(parent) {
                let w = format!("*.{parent}");
                return self.names.contains_key(&w).then_some(w);
            }
            if parent == self.origin {
                return None;
            }
            rest = parent;
        }
        None
    }
}

/// An answer before encoding: records in order, by section.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    /// RCODE.
    pub rcode: u16,
    /// Authoritative (false only for REFUSED).
    pub aa: bool,
    /// (owner as asked or as chained, set) in the answer section.
    pub answer: Vec<(String, &'a RecordSet)>,
    /// True if the authority section carries the zone SOA (negative answers).
    pub soa: bool,
}

/// All zones at one finalized height.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Finalized height it was built from.
    pub height: u64,
    /// Zones by origin.
    pub zones: BTreeMap<String, ZoneSnap>,
    /// Encoded answer tails (everything after the question, without OPT) and their section
    /// counts, by (lower-case qname, qtype).
    pub prepared: HashMap<(String, u16), Prepared>,
}

/// A pre-encoded answer.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Header byte 3 (RCODE) and AA flag as encoded.
    pub rcode: u16,
    /// Answer, authority and additional counts (before OPT).
    pub counts: [u16; 3],
    /// The records, encoded with compression pointers relative to a question of this qname.
    pub tail: Vec<u8>,
}

impl Snapshot {
    /// Builds a snapshot of every zone in `zones` at `height`, preparing every positive and
    /// NODATA answer of every existing name.
    pub fn build<'a>(height: u64, zones: impl Iterator<Item = (&'a String, &'a Zone)>) -> Self {
        let mut s = Snapshot {
            height,
            ..Default::default()
        };
        for (origin, zone) in zones {
            if let Some(z) = ZoneSnap::new(origin, zone) {
                s.zones.insert(origin.clone(), z);
            }
        }
        let mut prepared = HashMap::new();
        for z in s.zones.values() {
            for name in z.names.keys().chain(z.empty_non_terminals.iter()) {
                if name.starts_with("*.") {
                    continue; // asked literally it is fine, but synthesized owners differ
                }
                for t in PREPARED_TYPES {
                    let q = synthetic_query(name, t);
                    let Ok(parsed) = wire::parse_query(&q) else {
                        continue;
                    };
                    let msg = s.respond_slow(&q, &parsed, usize::MAX);
                    let counts = [
                        u16::from_be_bytes([msg[6], msg[7]]),
                        u16::from_be_bytes([msg[8], msg[9]]),
                        u16::from_be_bytes([msg[10], msg[11]]),
                    ];
                    prepared.insert(
                        (name.clone(), t),
                        Prepared {
                            rcode: u16::from(msg[3] & 0x0f),
                            counts,
                            tail: msg[parsed.question_end..].to_vec(),
                        },
                    );
                }
            }
        }
        s.prepared = prepared;
        s
    }

    /// The zone holding `name` (longest matching origin).
    pub fn zone_of(&self, name: &str) -> Option<&ZoneSnap> {
        let mut rest = name;
        loop {
            if let Some(z) = self.zones.get(rest) {
                return Some(z);
            }
            rest = rest.split_once('.')?.1;
        }
    }

    /// Looks `qname`/`qt` up (qname lower-case).
    pub fn lookup(&self, qname: &str, qt: u16) -> Answer<'_> {
        let Some(z) = self.zone_of(qname) else {
            return Answer {
                rcode: rcode::REFUSED,
                aa: false,
                answer: vec![],
                soa: false,
            };
        };
        let mut answer = Vec::new();
        let mut name = qname.to_string();
        let mut seen = HashSet::new();
        for _ in 0..=MAX_CNAME_CHAIN {
            if !seen.insert(name.clone()) {
                break; // a CNAME loop: stop after each name once
            }
            let source = if z.names.contains_key(&name) {
                name.clone()
            } else if z.empty_non_terminals.contains(&name) {
                return Answer {
                    rcode: rcode::NOERROR,
                    aa: true,
                    answer,
                    soa: true,
                };
            } else if let Some(w) = z.wildcard_for(&name) {
                w
            } else {
                return Answer {
                    rcode: rcode::NXDOMAIN,
                    aa: true,
                    answer,
                    soa: true,
                };
            };
            let sets = &z.names[&source];
            if qt == qtype::ANY {
                for s in sets {
                    answer.push((name.clone(), s));
                }
                return Answer {
                    rcode: rcode::NOERROR,
                    aa: true,
                    answer,
                    soa: false,
                };
            }
            if let Some(s) = z.set(&source, qt) {
                answer.push((name.clone(), s));
                return Answer {
                    rcode: rcode::NOERROR,
                    aa: true,
                    answer,
                    soa: false,
                };
            }
            let Some(cname) = z.set(&source, qtype::CNAME) else {
                return Answer {
                    rcode: rcode::NOERROR,
                    aa: true,
                    answer,
                    soa: true,
                };
            };
            answer.push((name.clone(), cname));
            let RData::Cname(target) = &cname.records[0] else {
                unreachable!("a CNAME set holds CNAME records")
            };
            if !cairn_ledger::zones::in_zone(target, &z.origin) {
                break; // the chain leaves the zone: the resolver continues it
            }
            name = target.clone();
        }
        Answer {
            rcode: rcode::NOERROR,
            aa: true,
            answer,
            soa: false,
        }
    }

    /// Encodes the full answer to a parsed query without the prepared table. `max_size` is
    /// the payload limit (UDP); over it the response is truncated with TC set.
    pub fn respond_slow(&self, packet: &[u8], q: &Query, max_size: usize) -> Vec<u8> {
        if q.qclass != 1 && q.qclass != 255 {
            return finish_refused(packet, q);
        }
        let a = self.lookup(&q.qname, q.qtype);
        let mut e = Encoder::new(packet, q, a.rcode, a.aa);
        for (owner, set) in &a.answer {
            let z = self.zone_of(owner);
            for r in &set.records {
                if let (RData::Soa { .. }, Some(z)) = (r, z) {
                    e.soa(Section::Answer, owner, set.ttl_secs, r, z.serial);
                } else {
                    e.rr(
                        Section::Answer,
                        &Rr {
                            name: owner,
                            ttl: set.ttl_secs,
                            rdata: r,
                        },
                    );
                }
            }
        }
        if a.soa {
            if let Some(z) = self.zone_of(&q.qname) {
                e.soa(
                    Section::Authority,
                    &z.origin,
                    z.negative_ttl(),
                    &z.soa,
                    z.serial,
                );
            }
        }
        finish(e, q, a.rcode, max_size)
    }

    /// Answers one query packet: FORMERR/NOTIMP for bad packets, `None` for packets that get
    /// no answer, the prepared answer when there is one, the full lookup otherwise.
    pub fn respond(&self, packet: &[u8], udp: bool) -> Option<Vec<u8>> {
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(wire::QueryError::Drop) => return None,
            Err(wire::QueryError::FormErr { id }) => {
                return Some(Encoder::bare(id, 0, rcode::FORMERR))
            }
            Err(wire::QueryError::NotImp { id, opcode }) => {
                return Some(Encoder::bare(id, opcode, rcode::NOTIMP))
            }
        };
        let max_size = if udp {
            usize::from(q.edns.map_or(wire::CLASSIC_UDP_PAYLOAD_BYTES, |e| {
                e.udp_size.min(wire::MAX_UDP_PAYLOAD_BYTES)
            }))
        } else {
            usize::from(u16::MAX)
        };
        if let Some(e) = q.edns {
            if e.version != 0 {
                let enc = Encoder::new(packet, &q, rcode::BADVERS & 0x0f, false);
                return Some(finish(enc, &q, rcode::BADVERS, max_size));
            }
        }
        if q.opcode == wire::opcode::NOTIFY {
            // We are never a secondary: acknowledge nothing, refuse politely.
            return Some(finish_refused(packet, &q));
        }
        if q.qtype == qtype::AXFR || q.qtype == qtype::IXFR {
            if udp {
                // RFC 5936 4.2: AXFR over UDP is not supported; IXFR over UDP (RFC 1995) may
                // be answered with a TC so the client retries over TCP.
                let enc = Encoder::new(packet, &q, rcode::NOERROR, true);
                let msg = finish(enc, &q, rcode::NOERROR, max_size);
                let opt = if q.edns.is_some() { 11 } else { 0 };
                if q.qtype == qtype::IXFR {
                    return Some(wire::truncate(msg, q.question_end, opt));
                }
                let mut m = Encoder::new(packet, &q, rcode::FORMERR, false);
                if q.edns.is_some() {
                    m.opt(rcode::FORMERR);
                }
                return Some(m.finish());
            }
            return None; // TCP transfers are handled by the server's transfer path
        }
        if q.qclass == 1 {
            if let Some(p) = self.prepared.get(&(q.qname.clone(), q.qtype)) {
                return Some(assemble(packet, &q, p, max_size));
            }
        }
        Some(self.respond_slow(packet, &q, max_size))
    }
}

fn finish_refused(packet: &[u8], q: &Query) -> Vec<u8> {
    let e = Encoder::new(packet, q, rcode::REFUSED, false);
    finish(e, q, rcode::REFUSED, usize::MAX)
}

/// Adds OPT if the query had EDNS, and truncates over `max_size`.
fn finish(mut e: Encoder, q: &Query, rc: u16, max_size: usize) -> Vec<u8> {
    let opt = if q.edns.is_some() {
        e.opt(rc);
        11
    } else {
        0
    };
    let msg = e.finish();
    if msg.len() > max_size {
        wire::truncate(msg, q.question_end, opt)
    } else {
        msg
    }
}

/// Copies the client's header and question, then the prepared records (and OPT).
fn assemble(packet: &[u8], q: &Query, p: &Prepared, max_size: usize) -> Vec<u8> {
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let mut out = Vec::with_capacity(q.question_end + p.tail.len() + opt_len);
    out.extend_from_slice(&packet[..q.question_end]);
    out[2] = 0x80 | (q.opcode << 3) | 0x04 | u8::from(q.rd);
    out[3] = (u8::from(q.cd) << 4) | (p.rcode & 0x0f) as u8;
    out[6..8].copy_from_slice(&p.counts[0].to_be_bytes());
    out[8..10].copy_from_slice(&p.counts[1].to_be_bytes());
    out[10..12].copy_from_slice(&(p.counts[2] + u16::from(opt_len > 0)).to_be_bytes());
    out.extend_from_slice(&p.tail);
    if opt_len > 0 {
        out.push(0);
        out.extend_from_slice(&qtype::OPT.to_be_bytes());
        out.extend_from_slice(&wire::MAX_UDP_PAYLOAD_BYTES.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    if out.len() > max_size {
        wire::truncate(out, q.question_end, opt_len)
    } else {
        out
    }
}

/// A query packet for (name, type) without EDNS, used to prepare answers.
fn synthetic_query(name: &str, t: u16) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.').filter(|l| !l.is_empty()) {
        b.push(l.len() as u8);
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&t.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b
}

/// A snapshot shared by server tasks; replaced atomically when a block finalizes.
pub type Shared = Arc<arc_swap::ArcSwap<Snapshot>>;
