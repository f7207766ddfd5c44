//! The answer path on a real zone file: RCODEs and sections for each kind of question, the
//! prepared fast path equal byte for byte to the full lookup (any letter case, with and
//! without EDNS), truncation, and no panic on any packet.

use cairn_dns::{
    answer::Snapshot,
    wire::{parse_query, rcode},
    zonefile,
};
use cairn_ledger::zones::Zone;
use proptest::prelude::*;
use std::collections::BTreeMap;

const ZONE: &str = r#"
$ORIGIN example.test.
$TTL 300
@       IN SOA ns1 admin ( 1 3600 600 86400 60 )
        IN NS  ns1
        IN NS  ns2
        IN A   192.0.2.1
        IN MX  10 mail
        IN TXT "v=spf1 -all"
ns1     IN A   192.0.2.53
ns2     IN A   192.0.2.54
www     IN A   192.0.2.10
        IN A   192.0.2.11
        IN AAAA 2001:db8::10
alias   IN CNAME www
chain1  IN CNAME chain2
chain2  IN CNAME alias
out     IN CNAME target.elsewhere.invalid.
loop1   IN CNAME loop2
loop2   IN CNAME loop1
dangling IN CNAME missing
mail    IN A   192.0.2.25
_sip._tcp IN SRV 10 60 5060 sip
sip     IN A   192.0.2.60
@       IN CAA 0 issue "ca.example"
*.wild  IN A   192.0.2.99
        IN TXT "wild"
a.b.c   IN A   192.0.2.77
big     IN TXT "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "1123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "2123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "3123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "4123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
        IN TXT "5123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
"#;

fn snapshot() -> Snapshot {
    let (origin, sets) = zonefile::parse(ZONE, "example.test").expect("zone parses");
    let zone = Zone {
        owner: [1; 32],
        version: 0,
        sets: vec![],
        managed: BTreeMap::new(),
    }
    .updated(&origin, &sets, &[])
    .expect("zone is valid");
    let zones = BTreeMap::from([(origin, zone)]);
    Snapshot::build(9, zones.iter())
}

fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut b = vec![
        0xAB,
        0xCD,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ];
    for l in name.split('.').filter(|l| !l.is_empty()) {
        b.push(l.len() as u8);
        b.extend_from_slice(l.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        b.extend_from_slice(&[0, 0, 41]);
        b.extend_from_slice(&size.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    b
}

/// (rcode, aa, tc, answer count, authority count)
fn summary(msg: &[u8]) -> (u16, bool, bool, u16, u16) {
    (
        u16::from(msg[3] & 0x0f),
        msg[2] & 0x04 != 0,
        msg[2] & 0x02 != 0,
        u16::from_be_bytes([msg[6], msg[7]]),
        u16::from_be_bytes([msg[8], msg[9]]),
    )
}

fn ask(s: &Snapshot, name: &str, qtype: u16) -> (u16, bool, bool, u16, u16) {
    summary(&s.respond(&query(name, qtype, Some(1232)), true).unwrap())
}

#[test]
fn each_kind_of_question_gets_the_right_sections() {
    let s = snapshot();
    let ok = rcode::NOERROR;
    assert_eq!(ask(&s, "www.example.test", 1), (ok, true, false, 2, 0));
    assert_eq!(ask(&s, "WWW.Example.Test", 28), (ok, true, false, 1, 0));
    // NODATA: SOA in authority.
    assert_eq!(ask(&s, "www.example.test", 15), (ok, true, false, 0, 1));
    // NXDOMAIN: SOA in authority.
    assert_eq!(
        ask(&s, "nope.example.test", 1),
        (rcode::NXDOMAIN, true, false, 0, 1)
    );
    // CNAME chain of three inside the zone ends at www's two A records.
    assert_eq!(ask(&s, "chain1.example.test", 1), (ok, true, false, 5, 0));
    // Out-of-zone target: just the CNAME.
    assert_eq!(ask(&s, "out.example.test", 1), (ok, true, false, 1, 0));
    // Dangling in-zone target: the CNAME and NXDOMAIN (RFC 6604).
    assert_eq!(
        ask(&s, "dangling.example.test", 1),
        (rcode::NXDOMAIN, true, false, 1, 1)
    );
    // A loop stops.
    let (rc, _, _, an, _) = ask(&s, "loop1.example.test", 1);
    assert_eq!((rc, an), (ok, 2));
    // Wildcards: one label and two labels below, and the ENT rule.
    assert_eq!(ask(&s, "x.wild.example.test", 1), (ok, true, false, 1, 0));
    assert_eq!(
        ask(&s, "y.x.wild.example.test", 16),
        (ok, true, false, 1, 0)
    );
    assert_eq!(ask(&s, "x.wild.example.test", 28), (ok, true, false, 0, 1));
    // b.c is an empty non-terminal: NODATA, not NXDOMAIN.
    assert_eq!(ask(&s, "b.c.example.test", 1), (ok, true, false, 0, 1));
    assert_eq!(ask(&s, "c.example.test", 1), (ok, true, false, 0, 1));
    // Outside every zone: REFUSED, not authoritative.
    assert_eq!(
        ask(&s, "example.org", 1),
        (rcode::REFUSED, false, false, 0, 0)
    );
    // Apex types.
    assert_eq!(ask(&s, "example.test", 2), (ok, true, false, 2, 0));
    assert_eq!(ask(&s, "example.test", 257), (ok, true, false, 1, 0));
    assert_eq!(
        ask(&s, "_sip._tcp.example.test", 33),
        (ok, true, false, 1, 0)
    );
    // Unknown type at an existing name: NODATA.
    assert_eq!(ask(&s, "www.example.test", 99), (ok, true, false, 0, 1));
}

#[test]
fn soa_serial_is_the_zone_version() {
    let s = snapshot();
    let msg = s.respond(&query("example.test", 6, None), true).unwrap();
    // The single answer's rdata ends with serial..minimum (5 x 4 bytes).
    let n = msg.len();
    assert_eq!(&msg[n - 20..n - 16], &1u32.to_be_bytes(), "zone version 1");
}

#[test]
fn large_answers_truncate_over_udp_and_not_over_tcp() {
    let s = snapshot();
    let classic = s
        .respond(&query("big.example.test", 16, None), true)
        .unwrap();
    assert_eq!(summary(&classic), (0, true, true, 0, 0));
    assert!(classic.len() <= 512);
    let edns = s
        .respond(&query("big.example.test", 16, Some(4096)), true)
        .unwrap();
    assert_eq!(summary(&edns), (0, true, false, 6, 0));
    let tcp = s
        .respond(&query("big.example.test", 16, None), false)
        .unwrap();
    assert_eq!(summary(&tcp), (0, true, false, 6, 0));
}

#[test]
fn bad_packets_get_formerr_notimp_badvers_or_silence() {
    let s = snapshot();
    assert_eq!(s.respond(&[0; 5], true), None);
    let mut two_questions = query("www.example.test", 1, None);
    two_questions[5] = 2;
    assert_eq!(
        summary(&s.respond(&two_questions, true).unwrap()).0,
        rcode::FORMERR
    );
    let mut update = query("www.example.test", 1, None);
    update[2] = 5 << 3;
    assert_eq!(summary(&s.respond(&update, true).unwrap()).0, rcode::NOTIMP);
    let mut v1 = query("www.example.test", 1, Some(1232));
    let n = v1.len();
    v1[n - 5] = 1; // EDNS version 1
    let r = s.respond(&v1, true).unwrap();
    assert_eq!(parse_query(&v1).unwrap().edns.unwrap().version, 1);
    // BADVERS = 16: low 4 bits 0 in the header, high bits 1 in the OPT.
    assert_eq!(r[3] & 0x0f, 0);
    assert_eq!(r[r.len() - 6], 1);
    // Class CH: REFUSED.
    let mut ch = query("www.example.test", 16, None);
    let n = ch.len();
    ch[n - 1] = 3;
    assert_eq!(summary(&s.respond(&ch, true).unwrap()).0, rcode::REFUSED);
}

proptest! {
    /// The prepared fast path gives exactly the bytes of the full lookup, whatever the case.
    #[test]
    fn prepared_answers_equal_full_lookups(
        idx in 0usize..64,
        t in prop::sample::select(vec![1u16, 2, 5, 6, 15, 16, 28, 33, 257, 99]),
        upper in prop::collection::vec(any::<bool>(), 64),
        edns in prop::option::of(512u16..4096),
    ) {
        let s = snapshot();
        let mut names: Vec<&String> = s.zones["example.test"].names.keys().collect();
        names.sort();
        let name = names[idx % names.len()];
        let mixed: String = name
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
            .collect();
        let q = query(&mixed, t, edns);
        let parsed = parse_query(&q).unwrap();
        let fast = s.respond(&q, true).unwrap();
        let max = usize::from(edns.map_or(512, |e| e.min(1232)));
        let slow = s.respond_slow(&q, &parsed, max);
        prop_assert_eq!(fast, slow);
    }

    /// No packet panics the answer path, and every answer echoes the id.
    #[test]
    fn any_packet_is_safe(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let s = snapshot();
        if let Some(r) = s.respond(&bytes, true) {
            prop_assert!(r.len() >= 12);
            prop_assert_eq!(&r[..2], &bytes[..2]);
        }
        let _ = s.respond(&bytes, false);
    }
}
