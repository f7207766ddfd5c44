//! Running nodes: one per process (`cairn node`) or many in one process (`cairn devnet`).

use crate::{
    admin::{self, Admin},
    config::{account_key, hex, node_id, NodeConfig},
    net,
};
use cairn_chain::{
    engine::{self, Config as ChainConfig},
    mempool::SigCache,
    store::RedbStore,
    Node, Nonces, Shared,
};
use cairn_ledger::{Tx, TxKind};
use cairn_storage::store::DEFAULT_MAX_CONCURRENT_WRITES;
use commonware_cryptography::ed25519;
use commonware_runtime::{tokio::Context, Clock, Metrics, Supervisor};
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

/// Signature-cache capacity per process.
pub const SIG_CACHE_CAPACITY: usize = 500_000;
/// Default interval between a node's heartbeat transactions (the ledger's health window,
/// `registry::HEALTH_WINDOW_MS`, spans several).
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = cairn_ledger::registry::HEARTBEAT_INTERVAL_MS;
/// Blocks a heartbeat stays valid: a late heartbeat says nothing about now.
pub const HEARTBEAT_VALIDITY_BLOCKS: u64 = 20;

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
        (true, Some(addr)) => Some(crate::fragments::bind(addr).await.map_err(|source| {
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
    let (channels, oracle, _net) = net::start(&ctx, &cfg.key, cfg.file.p2p_listen, genesis);
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
    let metrics_ctx = ctx.child("admin");
    if let Some(listener) = fragment_listener {
        let dir = cfg.file.data_dir.join("fragments");
        let store = cairn_storage::FragmentStore::open(&dir, DEFAULT_MAX_CONCURRENT_WRITES)
            .map_err(|e| RunError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let shared = node.shared.clone();
        let server = crate::fragments::FragmentServer::new(
            id,
            store,
            Box::new(move |method, requester| {
                shared.with_state(|s| crate::fragment_auth::authorize(s, method, requester))
            }),
            crate::fragments::Limits::default(),
        );
        tokio::spawn(crate::fragments::serve(listener, Arc::new(server)));
    }
    let admin = Arc::new(Admin {
        name: entry.name.clone(),
        chain_id: genesis.chain_id.clone(),
        node_id: hex(&id),
        committee: committee.iter().map(|k| k.to_string()).collect(),
        shared: node.shared.clone(),
        blocks: node.blocks.clone(),
        metrics: Box::new(move || metrics_ctx.encode()),
    });
    tokio::spawn(admin::serve(listener, admin));
    let nonces = Arc::new(Nonces::new(id));
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
        let ledger = Arc::new(crate::s3::NodeLedger::new(
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
        tokio::spawn(async move { crate::s3::serve(listener, ledger, keys, &domain, gw).await });
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
        crate::dns::start_server(node.shared.clone(), dns.listen, server_cfg)
            .await
            .map_err(|source| RunError::PortTaken {
                what: "DNS",
                addr: dns.listen,
                source,
            })?;
    }
    if entry.roles.iter().any(|r| r == "validator") {
        tokio::spawn(cairn_chain::planner::run(
            ctx.child("planner"),
            node.shared.clone(),
            account_key(&cfg.key),
            nonces.clone(),
        ));
    }
    let interval_ms = tuning
        .heartbeat_interval_ms
        .unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS);
    if interval_ms > 0 {
        tokio::spawn(heartbeats(
            ctx.child("heartbeat"),
            node.shared.clone(),
            cfg.key.clone(),
            nonces,
            Duration::from_millis(interval_ms),
        ));
    }
    Ok(Running {
        name: entry.name.clone(),
        admin: cfg.file.admin_listen,
        p2p: cfg.file.p2p_listen,
        node,
    })
}

/// Periodically submits a heartbeat for this node (one outstanding at a time).
async fn heartbeats(
    context: Context,
    shared: Arc<Shared>,
    key: ed25519::PrivateKey,
    nonces: Arc<Nonces>,
    interval: Duration,
) {
    let id = node_id(&key);
    let signing = account_key(&key);
    let mut outstanding: Option<[u8; 32]> = None;
    loop {
        context.sleep(interval).await;
        if let Some(hash) = outstanding {
            if shared.tx_status(&hash) == cairn_chain::TxStatus::Pending {
                continue;
            }
        }
        let Some((nonce, seq)) = shared.with_state(|s| {
            let node = s.node(&id)?;
            Some((nonces.next(s)?, node.last_heartbeat_seq + 1))
        }) else {
            continue;
        };
        let tx = Tx {
            signer: id,
            nonce,
            valid_until: shared.finalized_height() + HEARTBEAT_VALIDITY_BLOCKS,
            kind: TxKind::Heartbeat { node: id, seq },
        }
        .sign(&signing);
        outstanding = shared.submit(tx.encode().into()).ok();
    }
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
