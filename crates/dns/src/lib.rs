//! `cairn-dns`: Cairn's DNS edge.
//!
//! What it is, so far: RFC 1035 master-file import and export ([`zonefile`]) over the ledger's
//! record sets (`cairn_ledger::dns`), so `cairn dns import/export` and the differential tests
//! against Knot can share one parser.
//!
//! Contract: [`zonefile::parse`] either returns a zone that passes the ledger's
//! `validate_zone` or an error naming the offending line; it never panics on any input
//! (property-tested). [`zonefile::write`] output parses back to the same record sets.
//!
//! Limits: `zonefile::MAX_ZONE_FILE_SIZE_BYTES`; no `$INCLUDE`/`$GENERATE`; class IN only.
//! Not built yet (issue #4): the authoritative server (hickory-server over immutable
//! snapshots), AXFR/IXFR/NOTIFY, planners and the zone transactions.

#![warn(missing_docs)]

pub mod answer;
pub mod server;
pub mod tcp;
pub mod wire;
pub mod zonefile;
