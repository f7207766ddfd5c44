//! The node's DNS services: the authoritative server over finalized zones, NOTIFY to
//! configured secondaries, and the admin API's DNS views. The planner that keeps managed
//! names pointed at healthy nodes is `cairn_chain::planner`, runtime-generic so it also runs
//! in the deterministic simulator.
//!
//! The server only ever reads finalized state: a worker rebuilds the [`Snapshot`] when a block
//! changes any zone version and swaps it in atomically.

use crate::tasks::{serving, FnWorker, TaskSet, WorkerError};
use cairn_chain::Shared;
use cairn_dns::{
    answer::{self, Snapshot},
    server::{self, RateLimiter, ServerConfig, Stats},
};
use cairn_ledger::State;
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc};

/// Binds the authoritative server on `listen` (UDP and TCP) and starts its workers in
/// `tasks`: `dns-tcp` (accept loop), `dns-snapshots` (the updater), both critical, and in
/// benchmark mode `dns-udp-hickory`. The UDP answer path runs on its own OS threads.
pub async fn start_server(
    shared: Arc<Shared>,
    listen: SocketAddr,
    cfg: ServerConfig,
    tasks: &mut TaskSet,
) -> std::io::Result<(answer::Shared, Arc<Stats>)> {
    let initial = build(&shared);
    let snapshot: answer::Shared = Arc::new(arc_swap::ArcSwap::from_pointee(initial));
    let stats = Arc::new(Stats::default());
    let tcp = cairn_dns::tcp::bind(listen)?;
    if std::env::var("CAIRN_BENCH_DNS_UDP").as_deref() == Ok("hickory") {
        // Only for scripts/bench-dns, to measure hickory's own UDP path in the same run.
        tracing::warn!("DNS over UDP served by hickory-server: benchmark mode, no rate limit");
        let mut udp_server = cairn_dns::tcp::hickory_server(snapshot.clone(), stats.clone());
        udp_server.register_socket(tokio::net::UdpSocket::bind(listen).await?);
        tasks.start(FnWorker::new("dns-udp-hickory", false, |_| async move {
            udp_server
                .block_until_done()
                .await
                .map_err(|e| WorkerError::Fatal(format!("hickory UDP server stopped: {e}")))
        }));
    } else {
        server::spawn_udp(
            server::bind_udp(listen, cfg.udp_threads)?,
            snapshot.clone(),
            Arc::new(RateLimiter::new(cfg.rate_limit_qps)),
            stats.clone(),
        );
    }
    tasks.start(serving(
        "dns-tcp",
        true,
        cairn_dns::tcp::serve(
            tcp,
            snapshot.clone(),
            stats.clone(),
            cairn_dns::tcp::TcpLimits {
                idle_timeout_ms: cfg.tcp_idle_timeout_ms,
                ..Default::default()
            },
        ),
    ));
    tasks.start(serving(
        "dns-snapshots",
        true,
        update_snapshots(shared, snapshot.clone(), cfg.notify),
    ));
    Ok((snapshot, stats))
}

fn versions(state: &State) -> BTreeMap<String, u64> {
    state.zones().map(|(o, z)| (o.clone(), z.version)).collect()
}

fn build(shared: &Shared) -> Snapshot {
    let (height, zones) = shared.with_state(|s| {
        (
            s.height(),
            s.zones()
                .map(|(o, z)| (o.clone(), z.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    });
    Snapshot::build(height, zones.iter())
}

/// Rebuilds and swaps the snapshot whenever a finalized block changes a zone's version, then
/// NOTIFYs the secondaries of each changed zone.
async fn update_snapshots(shared: Arc<Shared>, snapshot: answer::Shared, notify: Vec<SocketAddr>) {
    let mut finalized = shared.subscribe();
    let mut seen = shared.with_state(versions);
    while finalized.changed().await.is_ok() {
        let now = shared.with_state(versions);
        if now == seen {
            continue;
        }
        let snap = build(&shared);
        let changed: Vec<String> = now
            .iter()
            .filter(|(o, v)| seen.get(*o) != Some(v))
            .map(|(o, _)| o.clone())
            .collect();
        snapshot.store(Arc::new(snap));
        seen = now;
        if notify.is_empty() {
            continue;
        }
        let snap = snapshot.load_full();
        for origin in changed {
            if let Some(z) = snap.zones.get(&origin) {
                let (soa, ttl, serial) = (z.soa.clone(), z.soa_ttl, z.serial);
                let targets = notify.clone();
                tokio::spawn(async move {
                    let acked = server::send_notify(&targets, &origin, &soa, ttl, serial).await;
                    tracing::debug!(%origin, serial, acked = acked.len(), "NOTIFY sent");
                });
            }
        }
    }
}

/// `GET /dns/zones`: every zone with its version, owner and managed names.
pub fn zones_json(state: &State) -> serde_json::Value {
    let zones: Vec<_> = state
        .zones()
        .map(|(origin, z)| {
            serde_json::json!({
                "origin": origin,
                "version": z.version,
                "owner": crate::config::hex(&z.owner),
                "record_sets": z.sets.len(),
                "managed": z.managed.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({"height": state.height(), "zones": zones})
}

/// `GET /dns/zones/{origin}`: the zone as a master file (static and managed records, SOA
/// serial = version), or `None` if there is no such zone.
pub fn zone_json(state: &State, origin: &str) -> Option<serde_json::Value> {
    let z = state.zone(origin)?;
    let managed: serde_json::Map<_, _> = z
        .managed
        .iter()
        .map(|(name, m)| {
            (
                name.clone(),
                serde_json::json!({
                    "generation": m.state.current.number,
                    "endpoints": m.state.current.endpoints.iter().map(|e| cairn_ledger::dns::format_address(&e.address)).collect::<Vec<_>>(),
                    "alerting": m.alerting,
                    "ttl_secs": m.ttl_secs,
                }),
            )
        })
        .collect();
    Some(serde_json::json!({
        "origin": origin,
        "version": z.version,
        "owner": crate::config::hex(&z.owner),
        "static_zonefile": cairn_dns::zonefile::write(origin, &z.sets, z.version as u32),
        "zonefile": cairn_dns::zonefile::write(origin, &z.served_sets(), z.version as u32),
        "managed": managed,
    }))
}

/// `GET /dns/history/{name}`: every kept generation of a managed name, newest first.
pub fn history_json(state: &State, name: &str) -> Option<serde_json::Value> {
    let (origin, m) = state
        .zones()
        .find_map(|(o, z)| Some((o.clone(), z.managed.get(name)?)))?;
    let gens: Vec<_> = std::iter::once(&m.state.current)
        .chain(m.state.history.iter().rev())
        .map(|g| {
            serde_json::json!({
                "generation": g.number,
                "height": g.height,
                "planner": crate::config::hex(&g.planner),
                "evidence_height": g.evidence_height,
                "overridden": g.overridden,
                "reason": g.reason,
                "endpoints": g.endpoints.iter().map(|e| cairn_ledger::dns::format_address(&e.address)).collect::<Vec<_>>(),
                "active": g.number == m.state.current.number,
                "last_known_good": g.number == m.state.last_known_good,
            })
        })
        .collect();
    Some(serde_json::json!({
        "name": name,
        "zone": origin,
        "alerting": m.alerting,
        "generations": gens,
    }))
}
