//! Any text through the master-file parser: no panic; a zone that parses is valid on the ledger,
//! answers queries, and writes back to text that parses to the same record sets.
#![no_main]

use cairn_dns::{answer::Snapshot, zonefile};
use cairn_ledger::zones::Zone;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok((origin, sets)) = zonefile::parse(&text, "example.test") else {
        return;
    };
    let zone = Zone {
        owner: [0; 32],
        version: 0,
        sets: vec![],
        managed: BTreeMap::new(),
    }
    .updated(&origin, &sets, &[])
    .expect("a parsed zone is valid on the ledger");
    let zones = BTreeMap::from([(origin.clone(), zone)]);
    let snap = Snapshot::build(1, zones.iter());
    let written = zonefile::write(&origin, &sets, 1);
    let (o2, again) = zonefile::parse(&written, &origin).expect("written zone parses");
    assert_eq!(o2, origin);
    let key = |s: &cairn_ledger::dns::RecordSet| (s.name.clone(), s.records[0].type_code());
    let mut a = sets.clone();
    let mut b = again;
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a, b);
    let _ = snap.respond(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1], true);
});
