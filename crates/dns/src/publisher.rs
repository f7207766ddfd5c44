//! The publisher: serves finalized zones from a node. It builds the answer [`Snapshot`] from
//! `cairn_chain::Shared`'s finalized state, binds the UDP and TCP servers, rebuilds and swaps
//! the snapshot when a finalized block changes any zone version, and NOTIFYs the configured
//! secondaries of each changed zone.
//!
//! Contract: the server only ever reads finalized state, and a snapshot is swapped in whole.
//! [`start`] binds and starts the UDP threads itself; the long-running loops come back as
//! futures in [`Publisher`] so the caller runs them as its named workers (this crate has no
//! worker abstraction of its own).

use crate::{
    answer::{self, Snapshot},
    server::{self, RateLimiter, ServerConfig, Stats},
};
use cairn_chain::Shared;
use cairn_ledger::State;
use std::{collections::BTreeMap, future::Future, net::SocketAddr, pin::Pin, sync::Arc};

/// A boxed, sendable loop the caller runs as a worker.
pub type Loop<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a publisher loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    /// hickory's UDP server (benchmark mode only) ended with an error.
    #[error("hickory UDP server stopped: {0}")]
    HickoryUdpStopped(#[source] hickory_server::net::NetError),
}

/// A bound authoritative server: its live snapshot and counters, and the loops to run.
pub struct Publisher {
    /// The snapshot answers come from, swapped whole by `snapshots`.
    pub snapshot: answer::Shared,
    /// The server's counters.
    pub stats: Arc<Stats>,
    /// In benchmark mode (`CAIRN_BENCH_DNS_UDP=hickory`) only, hickory's UDP server.
    pub hickory_udp: Option<Loop<Result<(), PublisherError>>>,
    /// The TCP accept loop; never returns.
    pub tcp: Loop<()>,
    /// The snapshot updater (rebuild, swap, NOTIFY); returns only when finality stops.
    pub snapshots: Loop<()>,
}

/// Binds the authoritative server on `listen` (UDP and TCP) over `shared`'s finalized state.
/// The UDP answer path runs on its own OS threads, started here; the rest is in the result.
pub async fn start(
    shared: Arc<Shared>,
    listen: SocketAddr,
    cfg: ServerConfig,
) -> std::io::Result<Publisher> {
    let initial = build(&shared);
    let snapshot: answer::Shared = Arc::new(arc_swap::ArcSwap::from_pointee(initial));
    let stats = Arc::new(Stats::default());
    let tcp = crate::tcp::bind(listen)?;
    let mut hickory_udp: Option<Loop<Result<(), PublisherError>>> = None;
    if std::env::var("CAIRN_BENCH_DNS_UDP").as_deref() == Ok("hickory") {
        // Only for scripts/bench-dns, to measure hickory's own UDP path in the same run.
        tracing::warn!("DNS over UDP served by hickory-server: benchmark mode, no rate limit");
        let mut udp_server = crate::tcp::hickory_server(snapshot.clone(), stats.clone());
        udp_server.register_socket(tokio::net::UdpSocket::bind(listen).await?);
        hickory_udp = Some(Box::pin(async move {
            udp_server
                .block_until_done()
                .await
                .map_err(PublisherError::HickoryUdpStopped)
        }));
    } else {
        server::spawn_udp(
            server::bind_udp(listen, cfg.udp_threads)?,
            snapshot.clone(),
            Arc::new(RateLimiter::new(cfg.rate_limit_qps)),
            stats.clone(),
        );
    }
    let tcp = Box::pin(crate::tcp::serve(
        tcp,
        snapshot.clone(),
        stats.clone(),
        crate::tcp::TcpLimits {
            idle_timeout_ms: cfg.tcp_idle_timeout_ms,
            ..Default::default()
        },
    ));
    let snapshots = Box::pin(update_snapshots(shared, snapshot.clone(), cfg.notify));
    Ok(Publisher {
        snapshot,
        stats,
        hickory_udp,
        tcp,
        snapshots,
    })
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
