//! Any packet through the UDP and TCP answer paths of a snapshot of a zone with every kind of
//! record: no panic, the id echoed, UDP answers within the payload limit, and zone transfers
//! for anything that parses as AXFR/IXFR.
#![no_main]

use cairn_dns::{answer::Snapshot, server::transfer, wire};
use cairn_ledger::zones::Zone;
use libfuzzer_sys::fuzz_target;
use std::{collections::BTreeMap, sync::OnceLock};

const ZONE: &str = r#"
$ORIGIN example.test.
$TTL 300
@     IN SOA ns1 admin 1 3600 600 86400 60
@     IN NS  ns1
@     IN MX  10 mail
@     IN CAA 0 issue "ca.example"
ns1   IN A   192.0.2.53
mail  IN A   192.0.2.25
www   IN A   192.0.2.10
www   IN AAAA 2001:db8::10
alias IN CNAME www
c1    IN CNAME alias
loop1 IN CNAME loop2
loop2 IN CNAME loop1
_s._tcp IN SRV 1 2 3 www
*.w   IN A   192.0.2.99
*.w   IN TXT "wild" "card"
a.b.c IN TXT "deep"
"#;

fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let (origin, sets) = cairn_dns::zonefile::parse(ZONE, "example.test").expect("zone");
        let zone = Zone {
            owner: [0; 32],
            version: 0,
            sets: vec![],
            managed: BTreeMap::new(),
        }
        .updated(&origin, &sets, &[])
        .expect("valid");
        let zones = BTreeMap::from([(origin, zone)]);
        Snapshot::build(1, zones.iter())
    })
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    for udp in [true, false] {
        if let Some(r) = snap.respond(data, udp) {
            assert!(r.len() >= 12);
            assert_eq!(&r[..2], &data[..2]);
            if udp {
                if let Ok(q) = wire::parse_query(data) {
                    let limit = q.edns.map_or(512, |e| e.udp_size.min(1232)) as usize;
                    assert!(r.len() <= limit.max(q.question_end + 11), "{} > {limit}", r.len());
                }
            }
        }
    }
    if let Ok(q) = wire::parse_query(data) {
        if q.qtype == 252 || q.qtype == 251 {
            for m in transfer(snap, data, &q) {
                assert!(m.len() >= 12);
            }
        }
    }
});
