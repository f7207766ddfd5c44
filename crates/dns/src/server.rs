//! The authoritative server's UDP side and helpers: UDP worker threads, zone transfer
//! messages (AXFR and IXFR, sent over TCP by [`crate::tcp`]), NOTIFY to secondaries, and a
//! bounded per-client rate limit.
//!
//! Every answer comes from the [`Snapshot`] current when the query arrived; snapshots are
//! immutable and swapped atomically ([`answer::Shared`]), so a query never sees half a block.
//!
//! Limits: [`ServerConfig`] bounds TCP idle time; messages are bounded by the wire limits; the rate
//! limiter's memory is a fixed table ([`RATE_TABLE_SLOTS`]) whatever the number of clients.
//! IXFR is answered with the whole zone (RFC 1995 section 4 allows it) or, when the client is
//! current, with the single SOA.

use crate::{
    answer::{self, Snapshot},
    wire::{self, qtype, rcode, Encoder, Query, Rr, Section},
};
use cairn_ledger::dns::RData;
use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// Slots of the rate limiter's table (clients hash into them; collisions share a budget).
pub const RATE_TABLE_SLOTS: usize = 65_536;
/// Largest AXFR message body before a new message starts.
pub const MAX_AXFR_MESSAGE_BYTES: usize = 16 * 1024;

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP worker threads (each its own SO_REUSEPORT socket).
    pub udp_threads: usize,
    /// Answers per second per client address (IPv4 /32, IPv6 /64); 0 = no limit.
    pub rate_limit_qps: u32,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout_ms: u64,
    /// Secondaries to NOTIFY when a zone's serial changes.
    pub notify: Vec<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            udp_threads: 2,
            rate_limit_qps: 10_000,
            tcp_idle_timeout_ms: 10_000,
            notify: Vec::new(),
        }
    }
}

/// Per-client token buckets in a fixed table: one second of budget, refilled continuously.
pub struct RateLimiter {
    qps: u64,
    /// Per slot: (tokens << 32 | last refill in ms, truncated). Packed so one CAS updates both.
    slots: Vec<AtomicU64>,
    epoch: Instant,
}

impl RateLimiter {
    /// A limiter of `qps` answers per second per client (0 = unlimited).
    pub fn new(qps: u32) -> Self {
        Self {
            qps: u64::from(qps),
            slots: if qps == 0 {
                Vec::new()
            } else {
                (0..RATE_TABLE_SLOTS).map(|_| AtomicU64::new(0)).collect()
            },
            epoch: Instant::now(),
        }
    }

    fn slot(ip: IpAddr) -> usize {
        let key: u64 = match ip {
            IpAddr::V4(v4) => u64::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64, // one budget per /64
        };
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize % RATE_TABLE_SLOTS
    }

    /// True if `ip` may get another answer now.
    pub fn allow(&self, ip: IpAddr) -> bool {
        if self.qps == 0 {
            return true;
        }
        // Bit 31 marks a slot as in use, so an empty bucket stamped at ms 0 is not mistaken
        // for a fresh slot; timestamps wrap every 2^31 ms (~24 days), which can only
        // under-refill a bucket idle for exactly that long.
        const IN_USE: u64 = 1 << 31;
        const TIME_MASK: u64 = IN_USE - 1;
        let now_ms = (self.epoch.elapsed().as_millis() as u64) & TIME_MASK;
        let slot = &self.slots[Self::slot(ip)];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let (tokens, last) = (cur >> 32, cur & TIME_MASK);
            let refilled = if cur & IN_USE == 0 {
                self.qps
            } else {
                let elapsed_ms = now_ms.wrapping_sub(last) & TIME_MASK;
                (tokens + elapsed_ms * self.qps / 1000).min(self.qps)
            };
            if refilled == 0 {
                return false;
            }
            let next = ((refilled - 1) << 32) | IN_USE | now_ms;
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// Counters the admin API exports on `/metrics` (see [`Stats::prometheus`]).
#[derive(Default, Debug)]
pub struct Stats {
    /// UDP queries answered.
    pub udp_answers: AtomicU64,
    /// UDP queries the rate limit caught: dropped, or answered truncated to move the client
    /// to TCP.
    pub rate_limited: AtomicU64,
    /// TCP messages answered.
    pub tcp_answers: AtomicU64,
    /// Zone transfers sent.
    pub transfers: AtomicU64,
}

impl Stats {
    /// The counters in the Prometheus text format, one `cairn_dns_*_total` counter each.
    pub fn prometheus(&self) -> String {
        let counters = [
            ("udp_answers", "UDP queries answered.", &self.udp_answers),
            (
                "rate_limited",
                "UDP queries the rate limit dropped or truncated.",
                &self.rate_limited,
            ),
            ("tcp_answers", "TCP messages answered.", &self.tcp_answers),
            ("transfers", "Zone transfers sent.", &self.transfers),
        ];
        let mut out = String::new();
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            out.push_str(&format!(
                "# HELP cairn_dns_{name}_total {help}\n# TYPE cairn_dns_{name}_total counter\ncairn_dns_{name}_total {value}\n"
            ));
        }
        out
    }
}

/// Binds `threads` UDP sockets to `addr` with SO_REUSEPORT (the kernel spreads clients).
pub fn bind_udp(addr: SocketAddr, threads: usize) -> std::io::Result<Vec<UdpSocket>> {
    (0..threads.max(1))
        .map(|_| {
            let domain = socket2::Domain::for_address(addr);
            let s = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
            s.set_reuse_port(true)?;
            s.set_recv_buffer_size(4 << 20)?;
            s.bind(&addr.into())?;
            Ok(s.into())
        })
        .collect()
}

/// Runs one blocking UDP worker per socket on its own OS thread, forever.
pub fn spawn_udp(
    sockets: Vec<UdpSocket>,
    snapshot: answer::Shared,
    limiter: Arc<RateLimiter>,
    stats: Arc<Stats>,
) {
    for (i, socket) in sockets.into_iter().enumerate() {
        let snapshot = snapshot.clone();
        let limiter = limiter.clone();
        let stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || udp_worker(socket, snapshot, limiter, stats))
            .expect("spawn a DNS UDP thread");
    }
}

/// Per-worker state of the UDP answer path, shared by the batched and the portable loops.
struct UdpAnswerer {
    snapshot: answer::Shared,
    limiter: Arc<RateLimiter>,
    stats: Arc<Stats>,
    slip: u32,
}

impl UdpAnswerer {
    /// The datagram to send back to `peer` for `packet`, if any.
    fn answer(&mut self, packet: &[u8], peer: IpAddr) -> Option<Vec<u8>> {
        if !self.limiter.allow(peer) {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            // RRL "slip": every other limited query gets an empty TC answer, so a real client
            // behind a busy address can retry over TCP; the rest are dropped.
            self.slip = self.slip.wrapping_add(1);
            if !self.slip.is_multiple_of(2) {
                return None;
            }
            let q = wire::parse_query(packet).ok()?;
            let e = Encoder::new(packet, &q, rcode::NOERROR, false);
            return Some(wire::truncate(e.finish(), q.question_end, 0));
        }
        let reply = self.snapshot.load().respond(packet, true)?;
        self.stats.udp_answers.fetch_add(1, Ordering::Relaxed);
        Some(reply)
    }
}

fn udp_worker(
    socket: UdpSocket,
    snapshot: answer::Shared,
    limiter: Arc<RateLimiter>,
    stats: Arc<Stats>,
) {
    let mut answerer = UdpAnswerer {
        snapshot,
        limiter,
        stats,
        slip: 0,
    };
    #[cfg(target_os = "linux")]
    crate::mmsg::serve(&socket, |packet, peer| answerer.answer(packet, peer));
    #[cfg(not(target_os = "linux"))]
    {
        let mut buf = [0u8; wire::MAX_QUERY_SIZE_BYTES + 1];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = answerer.answer(&buf[..n], peer.ip()) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    }
}

/// The messages of a zone transfer for `q` (AXFR, or IXFR answered as a full transfer or a
/// single SOA when the client is current). Not authoritative for the name: NOTAUTH.
pub fn transfer(snap: &Snapshot, packet: &[u8], q: &Query) -> Vec<Vec<u8>> {
    let Some(z) = snap.zones.get(&q.qname) else {
        let e = Encoder::new(packet, q, rcode::NOTAUTH, false);
        return vec![e.finish()];
    };
    let soa_ttl = z.soa_ttl;
    let new_message = || Encoder::new(packet, q, rcode::NOERROR, true);
    if q.qtype == qtype::IXFR {
        if let Some(client) = ixfr_client_serial(packet, q) {
            // RFC 1982: the client is current unless our serial is greater.
            let ahead = z.serial.wrapping_sub(client) as i32 > 0;
            if !ahead {
                let mut e = new_message();
                e.soa(Section::Answer, &z.origin, soa_ttl, &z.soa, z.serial);
                return vec![e.finish()];
            }
        }
    }
    let mut out = Vec::new();
    let mut e = new_message();
    e.soa(Section::Answer, &z.origin, soa_ttl, &z.soa, z.serial);
    for set in z.ordered.iter().skip(1) {
        for r in &set.records {
            if e.len() > MAX_AXFR_MESSAGE_BYTES {
                out.push(std::mem::replace(&mut e, new_message()).finish());
            }
            e.rr(
                Section::Answer,
                &Rr {
                    name: &set.name,
                    ttl: set.ttl_secs,
                    rdata: r,
                },
            );
        }
    }
    e.soa(Section::Answer, &z.origin, soa_ttl, &z.soa, z.serial);
    out.push(e.finish());
    out
}

/// The serial of the SOA in an IXFR query's authority section.
fn ixfr_client_serial(packet: &[u8], q: &Query) -> Option<u32> {
    let mut at = q.question_end;
    // Owner: a pointer or labels.
    loop {
        let len = *packet.get(at)?;
        if len & 0xC0 == 0xC0 {
            at += 2;
            break;
        }
        at += 1 + usize::from(len);
        if len == 0 {
            break;
        }
    }
    let rtype = u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]);
    let rdlen = usize::from(u16::from_be_bytes([
        *packet.get(at + 8)?,
        *packet.get(at + 9)?,
    ]));
    let rdata = packet.get(at + 10..at + 10 + rdlen)?;
    if rtype != qtype::SOA || rdlen < 20 {
        return None;
    }
    Some(u32::from_be_bytes(
        rdata[rdlen - 20..rdlen - 16].try_into().ok()?,
    ))
}

/// A NOTIFY (RFC 1996) for `origin` with its current SOA, id `id`.
pub fn notify_message(id: u16, origin: &str, soa: &RData, soa_ttl: u32, serial: u32) -> Vec<u8> {
    let mut q = vec![0u8; 12];
    q[0..2].copy_from_slice(&id.to_be_bytes());
    q[2] = wire::opcode::NOTIFY << 3 | 0x04;
    q[5] = 1;
    for l in origin.split('.').filter(|l| !l.is_empty()) {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype::SOA.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    let parsed = Query {
        id,
        opcode: wire::opcode::NOTIFY,
        rd: false,
        cd: false,
        qname: origin.to_string(),
        qtype: qtype::SOA,
        qclass: 1,
        question_end: q.len(),
        edns: None,
    };
    let mut e = Encoder::new(&q, &parsed, rcode::NOERROR, true);
    e.soa(Section::Answer, origin, soa_ttl, soa, serial);
    let mut msg = e.finish();
    msg[2] &= 0x7F; // a request, not a response
    msg
}

/// Sends NOTIFY for `origin` to every target, retrying each up to 3 times 1 s apart until it
/// answers with the same id. Returns the targets that acknowledged.
pub async fn send_notify(
    targets: &[SocketAddr],
    origin: &str,
    soa: &RData,
    soa_ttl: u32,
    serial: u32,
) -> Vec<SocketAddr> {
    let mut acked = Vec::new();
    for target in targets {
        let bind: SocketAddr = if target.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            continue;
        };
        let id = (serial as u16) ^ 0x5A5A;
        let msg = notify_message(id, origin, soa, soa_ttl, serial);
        for _ in 0..3 {
            if sock.send_to(&msg, target).await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            let got = tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await;
            if let Ok(Ok((n, from))) = got {
                if from == *target && n >= 12 && buf[..2] == id.to_be_bytes() {
                    acked.push(*target);
                    break;
                }
            }
        }
    }
    acked
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_are_prometheus_counters() {
        let stats = Stats::default();
        stats.udp_answers.store(7, Ordering::Relaxed);
        stats.transfers.store(2, Ordering::Relaxed);
        let text = stats.prometheus();
        for line in [
            "# TYPE cairn_dns_udp_answers_total counter",
            "cairn_dns_udp_answers_total 7",
            "cairn_dns_rate_limited_total 0",
            "cairn_dns_tcp_answers_total 0",
            "cairn_dns_transfers_total 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    use super::*;

    #[test]
    fn rate_limit_allows_the_budget_then_refuses() {
        let l = RateLimiter::new(100);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..1000).filter(|_| l.allow(ip)).count();
        // One second of budget, plus what refills while the loop runs (well under 1 s).
        assert!((100..200).contains(&allowed), "allowed {allowed}");
        // Another client has its own budget.
        assert!(l.allow("192.0.2.2".parse().unwrap()));
        assert!(RateLimiter::new(0).allow(ip));
        std::thread::sleep(Duration::from_millis(100));
        assert!(l.allow(ip), "refills over time");
    }

    #[test]
    fn notify_is_a_request_carrying_the_soa() {
        let soa = RData::Soa {
            mname: "ns1.example.test".into(),
            rname: "admin.example.test".into(),
            refresh: 1,
            retry: 2,
            expire: 3,
            minimum: 4,
        };
        let m = notify_message(7, "example.test", &soa, 60, 42);
        assert_eq!(m[2] & 0x80, 0, "QR clear");
        assert_eq!((m[2] >> 3) & 0x0f, wire::opcode::NOTIFY);
        assert_eq!(u16::from_be_bytes([m[6], m[7]]), 1);
        let n = m.len();
        assert_eq!(&m[n - 20..n - 16], &42u32.to_be_bytes());
        let q = wire::parse_query(&m).unwrap();
        assert_eq!(q.qname, "example.test");
    }
}
