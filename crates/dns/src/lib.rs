//! `cairn-dns`: Cairn's authoritative DNS.
//!
//! What it is: RFC 1035 master files <-> ledger record sets ([`zonefile`]); a strict, bounded
//! wire parser and encoder ([`wire`]); the answer logic over an immutable [`answer::Snapshot`]
//! of finalized zones, with every positive and negative answer pre-encoded per snapshot
//! ([`answer`]); UDP worker threads, zone transfers, NOTIFY and the per-client rate limit
//! ([`server`]), batched with `recvmmsg`/`sendmmsg` on Linux ([`mmsg`]); and TCP (queries,
//! AXFR, IXFR) on our own accept loop behind a connection gate with per-IP caps and idle
//! eviction ([`tcp`], [`gate`]). `hickory-server` is used only when the UDP benchmark compares
//! its path with ours. With the default `services` feature (which brings in `cairn-chain`), also
//! the services a node runs: the publisher, which serves finalized zones and swaps the snapshot
//! and sends NOTIFY when a finalized block changes a zone ([`publisher`]), and the planner every
//! validator runs to keep managed names pointed at healthy gateways ([`planner`]). Both hand
//! their loops to the caller as futures; the node registers them as its named workers.
//!
//! Contract: answers come only from the snapshot current when the query arrived (snapshots are
//! swapped whole); NXDOMAIN and NODATA carry the zone's SOA; names outside every zone get
//! REFUSED; malformed input gets FORMERR, NOTIMP or BADVERS, or silence when not even a header
//! can be read, and never a panic (property-tested and fuzzed, `fuzz/`). The pre-encoded fast
//! path answers exactly like a full lookup (property-tested). [`zonefile::parse`] returns a
//! zone that passes the ledger's `validate_zone` or an error naming the line. The publisher and
//! the planner only read finalized state (`cairn_chain::Shared`); a plan takes effect only
//! through the ledger's compare-and-set.
//!
//! Limits: class IN only; SOA NS A AAAA CNAME TXT MX SRV CAA; no DNSSEC, no additional-section
//! glue; IXFR answers with the whole zone; `zonefile::MAX_ZONE_FILE_SIZE_BYTES`, no
//! `$INCLUDE`/`$GENERATE`; the rate limiter is a fixed table of
//! [`server::RATE_TABLE_SLOTS`] buckets, so clients that collide share one budget. Without the
//! `services` feature (the fuzz targets) there is no publisher or planner.

#![warn(missing_docs)]

pub mod answer;
pub mod gate;
#[cfg(target_os = "linux")]
pub mod mmsg;
#[cfg(feature = "services")]
pub mod planner;
#[cfg(feature = "services")]
pub mod publisher;
pub mod server;
pub mod tcp;
pub mod wire;
pub mod zonefile;
