//! Running nodes: one per process (`cairn node`) or many in one process (`cairn devnet`).

use crate::{
    admin::{self, Admin},
    config::{account_key, hex, node_id, NodeConfig},
    net,
    tasks::{serving, FnWorker, ShutdownReport, Stop, TaskSet, Worker, WorkerError},
};
use cairn_chain::{
    engine::{self, Config as ChainConfig, FinalizerStopped},
    mempool::SigCache,
    store::RedbStore,
    Node, Nonces,
};
use cairn_dns::{publisher::Publisher, server::Stats as DnsStats};
use cairn_storage::store::DEFAULT_MAX_CONCURRENT_WRITES;
use commonware_runtime::{tokio::Context, Handle, Metrics, Supervisor};
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};
use tokio::sync::watch;

/// Signature-cache capacity per process.
pub const SIG_CACHE_CAPACITY: usize = 500_000;
/// Default interval between a node's heartbeat transactions (the ledger's health window,
/// `registry::HEALTH_WINDOW_MS`, spans several).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = cairn_ledger::registry::HEARTBEAT_INTERVAL_MS;

/// Errors starting a node process.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listen address is already in use.
    #[error("{what} address {addr} is already in use: {source}; stop the other process or change the port")]
    PortTaken {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The node's files could not be prepared.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The chain failed to start.
    #[error(transparent)]
    Start(#[from] engine::StartError),
    /// The node's configuration is inconsistent.
    #[error("{0}")]
    Config(String),
    /// The node's key is not listed in genesis.
    #[error("node key {0} is not in genesis; add it under [[nodes]] in genesis.toml")]
    NotInGenesis(String),
}

/// Fails with a clear error if `addr` cannot be bound right now.
pub fn check_port(what: &'static str, addr: SocketAddr) -> Result<(), RunError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| RunError::PortTaken { what, addr, source })
}

/// A started node with its admin API.
pub struct Running {
    /// Node name from genesis.
    pub name: String,
    /// Admin API address.
    pub admin: SocketAddr,
    /// p2p address.
    pub p2p: SocketAddr,
    /// The chain node.
    pub node: Node,
    /// The node's workers (dropping the set asks every worker to stop).
    pub tasks: TaskSet,
}

impl Running {
    /// Stops the workers in order within `timeout`, then the chain's own tasks.
    pub async fn shutdown(self, timeout: Duration) -> ShutdownReport {
        let report = self.tasks.shutdown(timeout).await;
        self.node.abort();
        report
    }
}

/// Watches the chain's finalizer: fails (critical) when it stops, since the node's state then
/// no longer advances.
pub fn finalizer_worker(mut exit: watch::Receiver<Option<FinalizerStopped>>) -> impl Worker {
    FnWorker::new("finalizer", true, move |mut stop: Stop| async move {
        tokio::select! {
            stopped = exit.wait_for(Option::is_some) => Err(WorkerError::Fatal(match stopped {
                Ok(reason) => reason.as_ref().map(ToString::to_string).unwrap_or_default(),
                Err(_) => "the finalizer task ended without a reason (aborted)".into(),
            })),
            () = stop.requested() => Ok(()),
        }
    })
}

/// Registers the DNS publisher's loops as workers: `dns-udp-hickory` in benchmark mode, then
/// `dns-tcp` (accept loop) and `dns-snapshots` (the updater), both critical. Returns its
/// counters.
fn start_dns_workers(tasks: &mut TaskSet, publisher: Publisher) -> Arc<DnsStats> {
    if let Some(udp) = publisher.hickory_udp {
        tasks.start(FnWorker::new("dns-udp-hickory", false, |_| async move {
            udp.await.map_err(|e| WorkerError::Fatal(e.to_string()))
        }));
    }
    tasks.start(serving("dns-tcp", true, publisher.tcp));
    tasks.start(serving("dns-snapshots", true, publisher.snapshots));
    publisher.stats
}

/// Watches the p2p network task (which dies if, e.g., its listener cannot bind).
fn p2p_worker(network: Handle<()>) -> impl Worker {
    FnWorker::new("p2p", true, move |mut stop: Stop| async move {
        tokio::select! {
            ended = network => Err(WorkerError::Fatal(match ended {
                Ok(()) => "p2p network stopped".into(),
                Err(e) => format!("p2p network stopped: {e}"),
            })),
            () = stop.requested() => Ok(()),
        }
    })
}

/// Starts one node (p2p, chain, admin API, heartbeats) inside a commonware tokio runtime.
pub async fn start_node(
    context: &Context,
    cfg: &NodeConfig,
    partition_prefix: &str,
    sig_cache: Arc<SigCache>,
) -> Result<Running, RunError> {
    let genesis = &cfg.genesis;
    let id = node_id(&cfg.key);
    let entry = genesis
        .nodes
        .iter()
        .find(|n| crate::config::hex32(&n.public_key) == Some(id))
        .ok_or_else(|| RunError::NotInGenesis(hex(&id)))?;
    check_port("p2p", cfg.file.p2p_listen)?;
    if let Some(s3cfg) = &cfg.file.s3 {
        check_port("S3", s3cfg.listen)?;
    }
    let storage = entry.roles.iter().any(|r| r == "storage");
    let fragment_listener = match (storage, cfg.file.fragment_listen) {
        (true, Some(addr)) => Some(cairn_storage::server::bind(addr).await.map_err(|source| {
            RunError::PortTaken {
                what: "fragment",
                addr,
                source,
            }
        })?),
        (true, None) => {
            return Err(RunError::Config(format!(
                "storage node {} has no fragment_listen in node.toml; add `fragment_listen = \"IP:PORT\"` and the same fragment_address to its genesis entry",
                entry.name
            )))
        }
        (false, Some(_)) => {
            return Err(RunError::Config(format!(
                "node {} has fragment_listen but not the storage role; remove it",
                entry.name
            )))
        }
        (false, None) => None,
    };
    let listener =
        admin::bind(cfg.file.admin_listen)
            .await
            .map_err(|source| RunError::PortTaken {
                what: "admin",
                addr: cfg.file.admin_listen,
                source,
            })?;
    std::fs::create_dir_all(&cfg.file.data_dir).map_err(|source| RunError::Io {
        path: cfg.file.data_dir.display().to_string(),
        source,
    })?;
    let store = RedbStore::open(&cfg.file.data_dir.join("state.redb"))
        .map_err(engine::StartError::Store)?;
    let ctx = context
        .child("node")
        .with_attribute("name", entry.name.clone());
    let (channels, oracle, network) = net::start(&ctx, &cfg.key, cfg.file.p2p_listen, genesis);
    let committee = genesis.committee();
    let mut chain_cfg = ChainConfig::new(
        &genesis.chain_id,
        committee.clone(),
        partition_prefix.to_string(),
    );
    let tuning = &cfg.file.tuning;
    if let Some(v) = tuning.empty_block_interval_ms {
        chain_cfg.empty_block_interval_ms = v;
    }
    if let Some(v) = tuning.leader_timeout_ms {
        chain_cfg.leader_timeout_ms = v;
    }
    if let Some(v) = tuning.mempool_max_txs {
        chain_cfg.mempool_max_txs = v.max(1);
    }
    let ledger_genesis = genesis
        .to_ledger()
        .expect("genesis validated when the config was loaded");
    let node = engine::start(
        ctx.child("chain"),
        chain_cfg,
        cfg.key.clone(),
        &ledger_genesis,
        Box::new(store),
        sig_cache,
        channels,
        oracle.clone(),
        oracle,
    )
    .await?;
    // Start order is dependency order: shutdown runs in reverse, listeners before the chain.
    let mut tasks = TaskSet::new();
    let health = tasks.health();
    tasks.start(finalizer_worker(node.finalizer_exit.clone()));
    tasks.start(p2p_worker(network));
    let metrics_ctx = ctx.child("admin");
    let mut audit_store = None;
    if let Some(listener) = fragment_listener {
        let dir = cfg.file.data_dir.join("fragments");
        let store = cairn_storage::FragmentStore::open(&dir, DEFAULT_MAX_CONCURRENT_WRITES)
            .map_err(|e| RunError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let shared = node.shared.clone();
        let suspects = Arc::new(cairn_storage::prover::Suspects::default());
        audit_store = Some((store.clone(), suspects.clone()));
        let server = cairn_storage::server::FragmentServer::new(
            id,
            store,
            Box::new(move |method, requester| {
                shared.with_state(|s| cairn_storage::auth::authorize(s, method, requester))
            }),
            cairn_storage::server::Limits::default(),
        )
        .with_suspects(suspects);
        tasks.start(serving(
            "fragments",
            true,
            cairn_storage::server::serve(listener, Arc::new(server)),
        ));
    }
    let dns_stats = Arc::new(std::sync::OnceLock::new());
    let audit_stats = Arc::new(std::sync::OnceLock::new());
    let admin = Arc::new(Admin {
        name: entry.name.clone(),
        chain_id: genesis.chain_id.clone(),
        node_id: hex(&id),
        committee: committee.iter().map(|k| k.to_string()).collect(),
        shared: node.shared.clone(),
        blocks: node.blocks.clone(),
        metrics: Box::new(move || metrics_ctx.encode()),
        health: health.clone(),
        dns_stats: dns_stats.clone(),
        audit_stats: audit_stats.clone(),
    });
    tasks.start(serving("admin", true, admin::serve(listener, admin)));
    let nonces = Arc::new(Nonces::new(id));
    if let Some((store, suspects)) = audit_store {
        let chain = Arc::new(crate::audit::NodeChain::new(
            node.shared.clone(),
            nonces.clone(),
            &cfg.key,
        ));
        let rate = tuning
            .scrub_bytes_per_sec
            .unwrap_or(crate::audit::DEFAULT_SCRUB_BYTES_PER_SEC);
        let clocks = (ctx.child("prover"), ctx.child("scrubber"));
        let stats =
            crate::audit::start_workers(&mut tasks, clocks, chain, id, store, suspects, rate);
        // Set once: one prover per node.
        let _ = audit_stats.set(stats);
    }
    if let Some(s3cfg) = &cfg.file.s3 {
        if !entry.roles.iter().any(|r| r == "gateway") {
            return Err(RunError::Config(format!(
                "node {} has an [s3] section but not the gateway role",
                entry.name
            )));
        }
        let keys = crate::s3::load_keys(&s3cfg.keys).map_err(RunError::Config)?;
        let listener =
            crate::s3::bind(s3cfg.listen)
                .await
                .map_err(|source| RunError::PortTaken {
                    what: "S3",
                    addr: s3cfg.listen,
                    source,
                })?;
        let ledger = Arc::new(cairn_gateway::commit::ChainLedger::new(
            node.shared.clone(),
            node.blocks.clone(),
            account_key(&cfg.key),
            nonces.clone(),
        ));
        let mut gw = cairn_gateway::s3::GatewayConfig::default();
        if let Some(v) = s3cfg.segment_size_bytes {
            gw.segment_size_bytes = v;
        }
        let domain = s3cfg.domain.clone();
        tasks.start(serving("s3", true, async move {
            crate::s3::serve(listener, ledger, keys, &domain, gw).await
        }));
    }
    if let Some(dns) = &cfg.file.dns {
        check_port("DNS", dns.listen)?;
        let mut server_cfg = cairn_dns::server::ServerConfig {
            notify: dns.notify.clone(),
            ..Default::default()
        };
        if let Some(v) = dns.rate_limit_qps {
            server_cfg.rate_limit_qps = v;
        }
        if let Some(v) = dns.udp_threads {
            server_cfg.udp_threads = v.clamp(1, 64);
        }
        let publisher = cairn_dns::publisher::start(node.shared.clone(), dns.listen, server_cfg)
            .await
            .map_err(|source| RunError::PortTaken {
                what: "DNS",
                addr: dns.listen,
                source,
            })?;
        // Set once: this is the only DNS server this node starts.
        let _ = dns_stats.set(start_dns_workers(&mut tasks, publisher));
    }
    if entry.roles.iter().any(|r| r == "validator") {
        // Not critical: any validator plans, and this one still votes without its planner.
        tasks.start(serving(
            "planner",
            false,
            cairn_dns::planner::run(
                ctx.child("planner"),
                node.shared.clone(),
                account_key(&cfg.key),
                nonces.clone(),
            ),
        ));
    }
    let interval_ms = tuning
        .heartbeat_interval_ms
        .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS);
    if interval_ms > 0 {
        let (shared, key) = (node.shared.clone(), cfg.key.clone());
        tasks.start(FnWorker::new("heartbeats", true, move |stop| {
            crate::heartbeat::run(
                shared,
                key,
                nonces,
                Duration::from_millis(interval_ms),
                health,
                stop,
            )
        }));
    }
    Ok(Running {
        name: entry.name.clone(),
        admin: cfg.file.admin_listen,
        p2p: cfg.file.p2p_listen,
        node,
        tasks,
    })
}

/// Loads every node config under a devnet directory, in name order.
pub fn devnet_configs(dir: &Path) -> Result<Vec<NodeConfig>, String> {
    let nodes_dir = dir.join("nodes");
    let mut entries: Vec<_> = std::fs::read_dir(&nodes_dir)
        .map_err(|e| format!("cannot read {}: {e}", nodes_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("node.toml"))
        .filter(|p| p.exists())
        .collect();
    entries.sort();
    entries
        .iter()
        .map(|p| NodeConfig::load(p).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::WorkerState;

    async fn finalizer_state(health: &crate::tasks::Health) -> (WorkerState, Option<String>) {
        for _ in 0..200 {
            let w = health.report().workers.remove(0);
            if w.state == WorkerState::Failed {
                return (w.state, w.reason);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let w = health.report().workers.remove(0);
        (w.state, w.reason)
    }

    #[tokio::test]
    async fn a_stopped_finalizer_makes_the_node_unhealthy() {
        let (tx, rx) = watch::channel(None);
        let mut set = TaskSet::new();
        let health = set.health();
        set.start(finalizer_worker(rx));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(health.healthy(), "unhealthy while the finalizer runs");
        tx.send(Some(FinalizerStopped::Apply {
            height: 5,
            reason: "state root mismatch".into(),
        }))
        .unwrap();
        let (state, reason) = finalizer_state(&health).await;
        assert_eq!(state, WorkerState::Failed);
        assert_eq!(
            reason.as_deref(),
            Some("cannot apply finalized block 5: state root mismatch")
        );
        assert!(!health.healthy());
        let (failed_ok, failed) = crate::admin::health_json(&health);
        assert!(!failed_ok);
        assert_eq!(failed, ["finalizer"]);

        // An aborted finalizer (its sender dropped without a reason) counts as well.
        let (tx, rx) = watch::channel(None);
        let mut set = TaskSet::new();
        let health = set.health();
        set.start(finalizer_worker(rx));
        drop(tx);
        let (state, reason) = finalizer_state(&health).await;
        assert_eq!(state, WorkerState::Failed);
        assert!(reason.unwrap_or_default().contains("aborted"));
        assert_eq!(
            crate::admin::health_json(&health),
            (false, vec!["finalizer".to_string()])
        );
    }
}
