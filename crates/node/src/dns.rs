//! The node's DNS services: the authoritative server over finalized zones, NOTIFY to
//! configured secondaries, and (on validators) the planner that keeps managed names pointed at
//! healthy nodes.
//!
//! The server only ever reads finalized state: a task rebuilds the [`Snapshot`] when a block
//! changes any zone version and swaps it in atomically. The planner only submits
//! transactions; whether a plan takes effect is decided by the ledger's compare-and-set, so a
//! slow or duplicated planner can waste a transaction but never roll a name back.

use crate::s3::Nonces;
use cairn_chain::Shared;
use cairn_dns::{
    answer::{self, Snapshot},
    server::{self, RateLimiter, ServerConfig, Stats},
};
use cairn_ledger::{
    dns::{next_plan, MIN_PLAN_INTERVAL_BLOCKS},
    zones::{endpoint_of, node_healthy},
    State, Tx, TxKind,
};
use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

/// Extra blocks each validator (by rank) waits after a plan becomes allowed, so usually one
/// planner submits and the others see the new generation instead of racing.
pub const PLANNER_STAGGER_BLOCKS: u64 = 2;
/// How often a planner looks at the finalized state.
pub const PLANNER_POLL_MS: u64 = 250;

/// Starts the authoritative server on `listen` (UDP and TCP) and the snapshot updater.
pub async fn start_server(
    shared: Arc<Shared>,
    listen: SocketAddr,
    cfg: ServerConfig,
) -> std::io::Result<(answer::Shared, Arc<Stats>)> {
    let initial = build(&shared);
    let snapshot: answer::Shared = Arc::new(arc_swap::ArcSwap::from_pointee(initial));
    let stats = Arc::new(Stats::default());
    let sockets = server::bind_udp(listen, cfg.udp_threads)?;
    let tcp = tokio::net::TcpListener::bind(listen).await?;
    server::spawn_udp(
        sockets,
        snapshot.clone(),
        Arc::new(RateLimiter::new(cfg.rate_limit_qps)),
        stats.clone(),
    );
    let mut tcp_server = cairn_dns::tcp::serve(
        tcp,
        snapshot.clone(),
        stats.clone(),
        Duration::from_millis(cfg.tcp_idle_timeout_ms),
    );
    tokio::spawn(async move {
        if let Err(e) = tcp_server.block_until_done().await {
            tracing::error!("DNS TCP server stopped: {e}");
        }
    });
    tokio::spawn(update_snapshots(shared, snapshot.clone(), cfg.notify));
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

/// The plans this validator would submit now: for each managed name, [`next_plan`] from the
/// nodes healthy at the current height, once this validator's stagger has passed.
pub fn plans_due(state: &State, me: &[u8; 32]) -> Vec<TxKind> {
    let mut validators: Vec<&[u8; 32]> = state
        .nodes()
        .filter(|(_, n)| n.roles.validator)
        .map(|(id, _)| id)
        .collect();
    validators.sort();
    let Some(rank) = validators.iter().position(|v| *v == me) else {
        return Vec::new();
    };
    let height = state.height();
    let mut out = Vec::new();
    for (origin, zone) in state.zones() {
        for (name, m) in &zone.managed {
            let wait = MIN_PLAN_INTERVAL_BLOCKS + rank as u64 * PLANNER_STAGGER_BLOCKS;
            if height + 1 < m.state.current.height + wait {
                continue;
            }
            let mut healthy: Vec<_> = state
                .nodes()
                .filter(|(_, n)| node_healthy(n, height))
                .filter_map(|(_, n)| endpoint_of(n, m.role))
                .collect();
            healthy.sort();
            healthy.dedup_by(|a, b| a.address == b.address);
            if let Some(plan) = next_plan(&m.state, &healthy, height, height + 1) {
                out.push(TxKind::DnsPlan {
                    origin: origin.clone(),
                    name: name.clone(),
                    plan,
                });
            }
        }
    }
    out
}

/// Runs this validator's planner forever: at most one outstanding plan per managed name.
pub async fn planner(shared: Arc<Shared>, key: ed25519_dalek::SigningKey, nonces: Arc<Nonces>) {
    let me = key.verifying_key().to_bytes();
    let mut outstanding: BTreeMap<(String, String), [u8; 32]> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(PLANNER_POLL_MS)).await;
        outstanding.retain(|_, h| shared.tx_status(h) == cairn_chain::TxStatus::Pending);
        let due = shared.with_state(|s| {
            plans_due(s, &me)
                .into_iter()
                .filter(|kind| match kind {
                    TxKind::DnsPlan { origin, name, .. } => {
                        !outstanding.contains_key(&(origin.clone(), name.clone()))
                    }
                    _ => false,
                })
                .filter_map(|kind| Some((kind, nonces.next(s)?)))
                .collect::<Vec<_>>()
        });
        for (kind, nonce) in due {
            let TxKind::DnsPlan { origin, name, .. } = &kind else {
                continue;
            };
            let k = (origin.clone(), name.clone());
            let tx = Tx {
                signer: me,
                nonce,
                kind,
            }
            .sign(&key);
            match shared.submit(tx.encode().into()) {
                Ok(hash) => {
                    tracing::info!(origin = %k.0, name = %k.1, "planner submitted a plan");
                    outstanding.insert(k, hash);
                }
                Err(e) => tracing::warn!("planner could not submit: {e}"),
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
