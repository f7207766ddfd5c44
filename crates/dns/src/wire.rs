//! DNS wire format (RFC 1035 section 4, RFC 6891 EDNS0): a strict, bounded query parser and
//! a response encoder with name compression, for the record types the ledger stores.
//!
//! The parser never panics and never allocates more than the packet: it reads the header,
//! exactly one question (no compression pointers, as RFC 1035 queries carry none) and, in the
//! additional section, at most one OPT record. Anything else is a [`QueryError`] that maps to
//! the RCODE the server sends back (or to silence, for packets that are not queries).

use cairn_ledger::dns::RData;
use std::collections::HashMap;

/// Largest query accepted (UDP or one TCP message); larger ones get FORMERR.
pub const MAX_QUERY_SIZE_BYTES: usize = 4096;
/// Largest UDP payload this server sends with EDNS0 (the DNS flag day 2020 value).
pub const MAX_UDP_PAYLOAD_BYTES: u16 = 1232;
/// UDP payload without EDNS0.
pub const CLASSIC_UDP_PAYLOAD_BYTES: u16 = 512;
/// Header size.
pub const HEADER_SIZE_BYTES: usize = 12;

/// Response codes.
pub mod rcode {
    /// No error.
    pub const NOERROR: u16 = 0;
    /// Format error.
    pub const FORMERR: u16 = 1;
    /// Server failure.
    pub const SERVFAIL: u16 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u16 = 3;
    /// Not implemented.
    pub const NOTIMP: u16 = 4;
    /// Refused.
    pub const REFUSED: u16 = 5;
    /// Not authoritative (RFC 2136 / 8945).
    pub const NOTAUTH: u16 = 9;
    /// Bad EDNS version (extended RCODE 16).
    pub const BADVERS: u16 = 16;
}

/// Record types with special handling.
pub mod qtype {
    /// A.
    pub const A: u16 = 1;
    /// NS.
    pub const NS: u16 = 2;
    /// CNAME.
    pub const CNAME: u16 = 5;
    /// SOA.
    pub const SOA: u16 = 6;
    /// AAAA.
    pub const AAAA: u16 = 28;
    /// OPT pseudo-record.
    pub const OPT: u16 = 41;
    /// IXFR.
    pub const IXFR: u16 = 251;
    /// AXFR.
    pub const AXFR: u16 = 252;
    /// ANY.
    pub const ANY: u16 = 255;
}

/// Opcodes.
pub mod opcode {
    /// Standard query.
    pub const QUERY: u8 = 0;
    /// Zone change notification (RFC 1996).
    pub const NOTIFY: u8 = 4;
}

/// EDNS0 parameters of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size (at least 512).
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
}

/// A parsed query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Opcode.
    pub opcode: u8,
    /// Recursion desired (echoed).
    pub rd: bool,
    /// CD bit (echoed).
    pub cd: bool,
    /// The question's name, lower-cased, in presentation form without the final dot ("" =
    /// root).
    pub qname: String,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// Byte length of header plus question (what a response copies verbatim).
    pub question_end: usize,
    /// EDNS0, if the query had an OPT record.
    pub edns: Option<Edns>,
}

/// Why a packet is not an answerable query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// Not worth an answer (shorter than a header, or a response): drop it.
    Drop,
    /// Malformed: answer FORMERR with this id (and the question, if `question_end` > 0).
    FormErr {
        /// Message id.
        id: u16,
    },
    /// An opcode this server does not implement.
    NotImp {
        /// Message id.
        id: u16,
        /// The opcode.
        opcode: u8,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads an uncompressed name at `at`; returns (lower-case presentation, end offset).
fn read_plain_name(b: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    loop {
        let len = usize::from(*b.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointers and extended labels are not valid here
        }
        wire_len += len + 1;
        if wire_len > 254 {
            return None;
        }
        let label = b.get(at..at + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &c in label {
            // Bytes outside printable ASCII (and dots inside labels) cannot match any ledger
            // name; keep them distinct but harmless with an escape.
            if c.is_ascii_graphic() && c != b'.' && c != b'\\' {
                name.push(c.to_ascii_lowercase() as char);
            } else {
                name.push_str(&format!("\\{c:03}"));
            }
        }
        at += len;
    }
    Some((name, at))
}

/// Skips one resource record at `at` (owner may end in a compression pointer).
fn skip_rr(b: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *b.get(at)?;
        if len & 0xC0 == 0xC0 {
            at += 2;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    let rdlen = usize::from(be16(b, at + 8)?);
    let end = at + 10 + rdlen;
    (end <= b.len()).then_some(end)
}

/// Parses a query packet (see the module doc for what is accepted).
pub fn parse_query(b: &[u8]) -> Result<Query, QueryError> {
    if b.len() < HEADER_SIZE_BYTES {
        return Err(QueryError::Drop);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    if b[2] & 0x80 != 0 {
        return Err(QueryError::Drop); // a response: never answer it (reflection loops)
    }
    let form = QueryError::FormErr { id };
    if b.len() > MAX_QUERY_SIZE_BYTES {
        return Err(form);
    }
    let opcode = (b[2] >> 3) & 0x0f;
    let rd = b[2] & 0x01 != 0;
    let cd = b[3] & 0x10 != 0;
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let ns = u16::from_be_bytes([b[8], b[9]]);
    let ar = u16::from_be_bytes([b[10], b[11]]);
    if opcode != opcode::QUERY && opcode != opcode::NOTIFY {
        return Err(QueryError::NotImp { id, opcode });
    }
    if qd != 1 || (opcode == opcode::QUERY && (an != 0 || ns > 1)) || ar > 1 {
        return Err(form);
    }
    let (qname, at) = read_plain_name(b, HEADER_SIZE_BYTES).ok_or(form.clone())?;
    let qtype = be16(b, at).ok_or(form.clone())?;
    let qclass = be16(b, at + 2).ok_or(form.clone())?;
    let question_end = at + 4;
    let mut edns = None;
    let mut pos = question_end;
    if ns == 1 && opcode == opcode::QUERY {
        // Only IXFR carries an authority record (the client's SOA, RFC 1995); skip it.
        if qtype != qtype::IXFR {
            return Err(form);
        }
        pos = skip_rr(b, pos).ok_or(form.clone())?;
    }
    if opcode == opcode::NOTIFY {
        // A NOTIFY may carry an answer SOA; we only acknowledge it, so skip the rest.
        pos = b.len();
    }
    if ar == 1 && opcode == opcode::QUERY {
        // The OPT owner must be the root name (a single zero byte).
        if b.get(pos) != Some(&0) {
            return Err(form);
        }
        let rtype = be16(b, pos + 1).ok_or(form.clone())?;
        let class = be16(b, pos + 3).ok_or(form.clone())?;
        let ext = b.get(pos + 5..pos + 9).ok_or(form.clone())?;
        let rdlen = usize::from(be16(b, pos + 9).ok_or(form.clone())?);
        if rtype != qtype::OPT || b.len() < pos + 11 + rdlen {
            return Err(form);
        }
        edns = Some(Edns {
            udp_size: class.max(CLASSIC_UDP_PAYLOAD_BYTES),
            version: ext[1],
            dnssec_ok: ext[2] & 0x80 != 0,
        });
        pos += 11 + rdlen;
    }
    if pos != b.len() {
        return Err(form);
    }
    Ok(Query {
        id,
        opcode,
        rd,
        cd,
        qname,
        qtype,
        qclass,
        question_end,
        edns,
    })
}

/// One resource record to encode.
#[derive(Clone, Debug)]
pub struct Rr<'a> {
    /// Owner name, lower-case presentation without the final dot.
    pub name: &'a str,
    /// TTL.
    pub ttl: u32,
    /// Data.
    pub rdata: &'a RData,
}

/// Builds one response message, compressing names against everything written before.
pub struct Encoder {
    buf: Vec<u8>,
    names: HashMap<String, u16>,
    counts: [u16; 3],
}

/// Which section an RR goes to.
#[derive(Clone, Copy, Debug)]
pub enum Section {
    /// Answer.
    Answer = 0,
    /// Authority.
    Authority = 1,
    /// Additional.
    Additional = 2,
}

impl Encoder {
    /// Starts a response to `query` whose header and question are `packet[..question_end]`
    /// (copied verbatim, so the question keeps the client's letter case).
    pub fn new(packet: &[u8], query: &Query, rcode: u16, aa: bool) -> Self {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(&packet[..query.question_end]);
        buf[2] = 0x80 | (query.opcode << 3) | u8::from(aa) << 2 | u8::from(query.rd);
        buf[3] = (u8::from(query.cd) << 4) | (rcode & 0x0f) as u8;
        buf[6..12].fill(0);
        let mut names = HashMap::new();
        if !query.qname.is_empty() {
            names.insert(query.qname.clone(), HEADER_SIZE_BYTES as u16);
        }
        Self {
            buf,
            names,
            counts: [0; 3],
        }
    }

    /// A header-only response (FORMERR/NOTIMP for unparseable queries).
    pub fn bare(id: u16, opcode: u8, rcode: u16) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE_BYTES];
        b[0..2].copy_from_slice(&id.to_be_bytes());
        b[2] = 0x80 | (opcode & 0x0f) << 3;
        b[3] = (rcode & 0x0f) as u8;
        b
    }

    fn name(&mut self, name: &str, compress: bool) {
        let mut rest = name;
        loop {
            if rest.is_empty() {
                self.buf.push(0);
                return;
            }
            if compress {
                if let Some(&off) = self.names.get(rest) {
                    self.buf.extend_from_slice(&(0xC000 | off).to_be_bytes());
                    return;
                }
            }
            let here = self.buf.len();
            if here < 0x3FFF {
                self.names.entry(rest.to_string()).or_insert(here as u16);
            }
            let (label, tail) = rest.split_once('.').unwrap_or((rest, ""));
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label.as_bytes());
            rest = tail;
        }
    }

    /// Appends a record to `section` (answer, then authority, then additional, in order).
    pub fn rr(&mut self, section: Section, rr: &Rr<'_>) {
        self.name(rr.name, true);
        self.buf
            .extend_from_slice(&rr.rdata.type_code().to_be_bytes());
        self.buf.extend_from_slice(&1u16.to_be_bytes());
        self.buf.extend_from_slice(&rr.ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.rdata(rr.rdata, 0);
        let len = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
        self.counts[section as usize] += 1;
    }

    /// Appends an SOA record with `serial`.
    pub fn soa(&mut self, section: Section, name: &str, ttl: u32, soa: &RData, serial: u32) {
        let start = self.buf.len();
        self.rr(
            section,
            &Rr {
                name,
                ttl,
                rdata: soa,
            },
        );
        // The SOA rdata ends with serial, refresh, retry, expire, minimum: rdata() wrote a
        // zero serial 20 bytes from the end; patch it.
        let end = self.buf.len();
        debug_assert!(end - start > 20);
        self.buf[end - 20..end - 16].copy_from_slice(&serial.to_be_bytes());
    }

    fn rdata(&mut self, r: &RData, serial: u32) {
        match r {
            RData::Soa {
                mname,
                rname,
                refresh,
                retry,
                expire,
                minimum,
            } => {
                self.name(mname, true);
                self.name(rname, true);
                for v in [serial, *refresh, *retry, *expire, *minimum] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
            }
            RData::Ns(h) | RData::Cname(h) => self.name(h, true),
            RData::A(a) => self.buf.extend_from_slice(a),
            RData::Aaaa(a) => self.buf.extend_from_slice(a),
            RData::Txt(strings) => {
                for s in strings {
                    self.buf.push(s.len() as u8);
                    self.buf.extend_from_slice(s.as_bytes());
                }
            }
            RData::Mx {
                preference,
                exchange,
            } => {
                self.buf.extend_from_slice(&preference.to_be_bytes());
                self.name(exchange, true);
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                for v in [priority, weight, port] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
                // RFC 2782: SRV targets are never compressed.
                self.name(target, false);
            }
            RData::Caa { flags, tag, value } => {
                self.buf.push(*flags);
                self.buf.push(tag.len() as u8);
                self.buf.extend_from_slice(tag.as_bytes());
                self.buf.extend_from_slice(value.as_bytes());
            }
        }
    }

    /// Appends an OPT record advertising our payload size (and the extended RCODE bits).
    pub fn opt(&mut self, rcode: u16) {
        self.buf.push(0);
        self.buf.extend_from_slice(&qtype::OPT.to_be_bytes());
        self.buf
            .extend_from_slice(&MAX_UDP_PAYLOAD_BYTES.to_be_bytes());
        self.buf.push((rcode >> 4) as u8);
        self.buf.extend_from_slice(&[0, 0, 0, 0, 0]);
        self.counts[Section::Additional as usize] += 1;
    }

    /// Current size.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if nothing but the header and question was written.
    pub fn is_empty(&self) -> bool {
        self.counts == [0; 3]
    }

    /// Finishes the message.
    pub fn finish(mut self) -> Vec<u8> {
        for (i, c) in self.counts.iter().enumerate() {
            self.buf[6 + 2 * i..8 + 2 * i].copy_from_slice(&c.to_be_bytes());
        }
        self.buf
    }
}

/// Sets the TC bit and drops every record, keeping header, question and (if `opt_len` > 0)
/// the trailing OPT record of `opt_len` bytes.
pub fn truncate(mut msg: Vec<u8>, question_end: usize, opt_len: usize) -> Vec<u8> {
    let opt = msg[msg.len() - opt_len..].to_vec();
    msg.truncate(question_end);
    msg.extend_from_slice(&opt);
    msg[2] |= 0x02;
    msg[6..10].fill(0);
    msg[10..12].copy_from_slice(&u16::from(opt_len > 0).to_be_bytes());
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            b.push(l.len() as u8);
            b.extend_from_slice(l.as_bytes());
        }
        b.push(0);
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            b.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        }
        b
    }

    #[test]
    fn parses_a_query_with_edns_and_lowercases_the_name() {
        let q = parse_query(&query("WwW.Example.TEST", 1, true)).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qname, "www.example.test");
        assert_eq!(q.qtype, 1);
        assert!(q.rd);
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
    }

    #[test]
    fn rejects_malformed_queries_with_the_right_outcome() {
        assert_eq!(parse_query(&[1, 2, 3]), Err(QueryError::Drop));
        let mut resp = query("a.test", 1, false);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp), Err(QueryError::Drop));
        let mut two = query("a.test", 1, false);
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(QueryError::FormErr { id: 0x1234 }));
        let mut trailing = query("a.test", 1, false);
        trailing.push(0);
        assert_eq!(
            parse_query(&trailing),
            Err(QueryError::FormErr { id: 0x1234 })
        );
        let mut update = query("a.test", 1, false);
        update[2] = 5 << 3;
        assert_eq!(
            parse_query(&update),
            Err(QueryError::NotImp {
                id: 0x1234,
                opcode: 5
            })
        );
        let mut pointer = query("a.test", 1, false);
        pointer[12] = 0xC0;
        assert_eq!(
            parse_query(&pointer),
            Err(QueryError::FormErr { id: 0x1234 })
        );
        let big = vec![0u8; MAX_QUERY_SIZE_BYTES + 1];
        assert!(matches!(parse_query(&big), Err(QueryError::FormErr { .. })));
    }

    #[test]
    fn encodes_with_compression_and_patches_the_soa_serial() {
        let pkt = query("www.example.test", 1, false);
        let q = parse_query(&pkt).unwrap();
        let mut e = Encoder::new(&pkt, &q, rcode::NOERROR, true);
        let a = RData::A([192, 0, 2, 1]);
        e.rr(
            Section::Answer,
            &Rr {
                name: "www.example.test",
                ttl: 60,
                rdata: &a,
            },
        );
        let soa = RData::Soa {
            mname: "ns1.example.test".into(),
            rname: "admin.example.test".into(),
            refresh: 1,
            retry: 2,
            expire: 3,
            minimum: 4,
        };
        e.soa(Section::Authority, "example.test", 60, &soa, 77);
        let msg = e.finish();
        // Answer owner is a pointer to the question name.
        assert_eq!(&msg[q.question_end..q.question_end + 2], &[0xC0, 12]);
        assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), 1);
        assert_eq!(u16::from_be_bytes([msg[8], msg[9]]), 1);
        assert_eq!(msg[2] & 0x84, 0x84, "QR and AA set");
        let n = msg.len();
        assert_eq!(&msg[n - 20..n - 16], &77u32.to_be_bytes());
        assert_eq!(&msg[n - 4..], &4u32.to_be_bytes());
        let t = truncate(msg, q.question_end, 0);
        assert_eq!(t.len(), q.question_end);
        assert_eq!(t[2] & 0x02, 0x02);
    }
}
