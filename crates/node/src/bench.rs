//! `cairn bench chain`: finalized transactions per second and submit-to-finality latency on an
//! in-process devnet (the same node code as `cairn devnet`, real sockets on loopback).
//!
//! Method: register `accounts` accounts, pre-sign every transaction (so signing is not
//! measured), then submit at `rate` tx/s round-robin across all nodes for `duration_secs`, and
//! time each transaction from submit to the moment node 0 applies the finalized block holding it.

use crate::{config::account_key, devnet, run};
use cairn_chain::mempool::SigCache;
use cairn_ledger::{Tx, TxKind};
use commonware_cryptography::{ed25519, Signer as _};
use commonware_runtime::Runner as _;
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

/// Arguments of `cairn bench chain`.
#[derive(clap::Args, Clone, Debug)]
pub struct ChainArgs {
    /// Nodes in the devnet.
    #[arg(long, default_value_t = 12)]
    pub nodes: usize,
    /// Committee size.
    #[arg(long, default_value_t = 11)]
    pub validators: usize,
    /// Zones.
    #[arg(long, default_value_t = 3)]
    pub zones: usize,
    /// Measured submission window.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Offered load in transactions per second.
    #[arg(long, default_value_t = 6000)]
    pub rate: u64,
    /// Distinct signing accounts.
    #[arg(long, default_value_t = 256)]
    pub accounts: usize,
    /// Async runtime worker threads (the devnet's default is 2, one per core here).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,
    /// First p2p port of the bench devnet.
    #[arg(long, default_value_t = 17100)]
    pub base_port: u16,
}

/// The `p` quantile (0..=1) of `sorted` (nearest rank; zero when empty).
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs the benchmark and prints its figures.
pub fn chain(args: ChainArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("cairn-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    devnet::ensure_layout(
        &dir,
        &devnet::Layout {
            nodes: args.nodes,
            zones: args.zones,
            validators: args.validators,
            gateways: args.nodes,
            base_port: args.base_port,
            chain_id: "cairn-bench".into(),
        },
        devnet::Keys::Deterministic,
    )?;
    let configs = run::devnet_configs(&dir)?;
    let storage = dir.join("storage");
    let cfg = commonware_runtime::tokio::Config::new()
        .with_storage_directory(storage)
        .with_worker_threads(args.worker_threads as usize)
        .with_tcp_nodelay(Some(true));
    let result = commonware_runtime::tokio::Runner::new(cfg).start(|context| async move {
        let sig_cache = Arc::new(SigCache::new(run::SIG_CACHE_CAPACITY));
        let mut nodes = Vec::new();
        for (i, cfg) in configs.iter().enumerate() {
            let mut cfg = cfg.clone();
            cfg.file.tuning.heartbeat_interval_ms = Some(0);
            let r = run::start_node(&context, &cfg, &format!("n{i:02}"), sig_cache.clone())
                .await
                .map_err(|e| e.to_string())?;
            nodes.push(r);
        }
        let shared: Vec<_> = nodes.iter().map(|r| r.node.shared.clone()).collect();
        let wait_until = |cond: Box<dyn Fn() -> bool + Send>, limit: Duration| async move {
            let start = Instant::now();
            while !cond() {
                if start.elapsed() > limit {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            true
        };
        let s0 = shared[0].clone();
        if !wait_until(
            Box::new(move || s0.finalized_height() >= 1),
            Duration::from_secs(60),
        )
        .await
        {
            return Err("devnet did not finalize a block within 60 s".to_string());
        }
        // Register the accounts.
        let keys: Vec<_> = (0..args.accounts)
            .map(|i| account_key(&ed25519::PrivateKey::from_seed(5_000_000 + i as u64)))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let tx = Tx {
                signer: key.verifying_key().to_bytes(),
                nonce: 1,
                valid_until: shared[0].finalized_height() + cairn_ledger::MAX_TX_VALIDITY_BLOCKS,
                kind: TxKind::RegisterAccount {
                    name: format!("bench-{i}"),
                },
            }
            .sign(key);
            shared[i % shared.len()]
                .submit(tx.encode().into())
                .map_err(|e| e.to_string())?;
        }
        let s0 = shared[0].clone();
        let ids: Vec<_> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
        if !wait_until(
            Box::new(move || s0.with_state(|s| ids.iter().all(|id| s.account(id).is_some()))),
            Duration::from_secs(60),
        )
        .await
        {
            return Err("bench accounts were not registered within 60 s".to_string());
        }
        // Pre-sign the load.
        let total = (args.rate * args.duration_secs) as usize;
        let valid_until = shared[0].finalized_height() + cairn_ledger::MAX_TX_VALIDITY_BLOCKS;
        let txs: Vec<(bytes::Bytes, [u8; 32])> = (0..total)
            .map(|i| {
                let a = i % keys.len();
                let nonce = 2 + (i / keys.len()) as u64;
                let tx = Tx {
                    signer: keys[a].verifying_key().to_bytes(),
                    nonce,
                    valid_until,
                    kind: TxKind::ConfigSet {
                        key: format!("bench/{a}/{nonce}"),
                        value: "v".into(),
                        expected_version: 0,
                    },
                }
                .sign(&keys[a]);
                let bytes = bytes::Bytes::from(tx.encode());
                let hash = cairn_chain::shared::tx_hash(&bytes);
                (bytes, hash)
            })
            .collect();
        let mut feed = shared[0].subscribe_blocks();
        let start_height = shared[0].finalized_height();
        let submitted: Arc<commonware_utils::sync::Mutex<HashMap<[u8; 32], Instant>>> =
            Arc::default();
        let submitter = {
            let shared = shared.clone();
            let submitted = submitted.clone();
            let rate = args.rate;
            tokio::spawn(async move {
                let start = Instant::now();
                let mut busy = 0u64;
                let tick = Duration::from_millis(5);
                let mut sent = 0usize;
                let mut rr = 0usize;
                while sent < txs.len() {
                    let due =
                        ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(txs.len());
                    while sent < due {
                        let (bytes, hash) = &txs[sent];
                        submitted.lock().insert(*hash, Instant::now());
                        if shared[rr % shared.len()].submit(bytes.clone()).is_err() {
                            busy += 1;
                            submitted.lock().remove(hash);
                        }
                        rr += 1;
                        sent += 1;
                    }
                    tokio::time::sleep(tick).await;
                }
                (start.elapsed(), busy)
            })
        };
        let mut latencies = Vec::with_capacity(total);
        let mut first_final: Option<Instant> = None;
        let mut last_final = Instant::now();
        let mut blocks = 0u64;
        let mut block_delays = Vec::new();
        let mut rejected = 0u64;
        let deadline = Instant::now() + Duration::from_secs(args.duration_secs + 30);
        let mut submit_done: Option<(Duration, u64)> = None;
        let mut submitter = Some(submitter);
        loop {
            if let Some(handle) = submitter.as_ref() {
                if handle.is_finished() {
                    submit_done = Some(submitter.take().unwrap().await.map_err(|e| e.to_string())?);
                }
            }
            let expected = total - submit_done.map(|(_, b)| b as usize).unwrap_or(0);
            if submit_done.is_some() && latencies.len() >= expected {
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            let block = match tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
                Ok(Ok(block)) => block,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    return Err(format!("bench reader lagged by {n} blocks"));
                }
                Ok(Err(_)) => return Err("block feed closed".into()),
                Err(_) => continue,
            };
            blocks += 1;
            let now = Instant::now();
            // Proposal to finality at node 0 (block timestamps are the leader's wall clock).
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            if !block.tx_hashes.is_empty() {
                block_delays.push(Duration::from_millis(
                    now_ms.saturating_sub(block.summary.timestamp_ms),
                ));
            }
            let map = submitted.lock();
            for (hash, receipt) in block.tx_hashes.iter().zip(block.receipts.iter()) {
                if let Some(t) = map.get(hash) {
                    latencies.push(now - *t);
                    first_final.get_or_insert(now);
                    last_final = now;
                    if receipt.is_err() {
                        rejected += 1;
                    }
                }
            }
        }
        let (submit_elapsed, busy) = submit_done.unwrap_or((Duration::ZERO, 0));
        let end_height = shared[0].finalized_height();
        let common = shared
            .iter()
            .map(|s| s.finalized_height())
            .min()
            .unwrap_or(0);
        let roots: Vec<_> = shared.iter().map(|s| (common, s.root_at(common))).collect();
        for r in &nodes {
            r.node.abort();
        }
        latencies.sort();
        block_delays.sort();
        let window = first_final
            .map(|f| last_final.duration_since(f))
            .unwrap_or_default()
            .max(Duration::from_millis(1));
        Ok((
            latencies,
            block_delays,
            window,
            blocks,
            rejected,
            busy,
            submit_elapsed,
            start_height,
            end_height,
            roots,
        ))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (latencies, block_delays, window, blocks, rejected, busy, submit_elapsed, h0, h1, roots) =
        result?;
    let finalized = latencies.len();
    let tps = finalized as f64 / window.as_secs_f64();
    println!(
        "bench chain: {} nodes, committee {}, offered {} tx/s for {} s",
        args.nodes, args.validators, args.rate, args.duration_secs
    );
    println!(
        "  submitted            {} (refused busy: {busy}) in {:.1} s",
        (args.rate * args.duration_secs) - busy,
        submit_elapsed.as_secs_f64()
    );
    println!("  finalized            {finalized} txs in {blocks} blocks (heights {h0}..{h1}), {rejected} rejected receipts");
    println!("  throughput           {tps:.0} tx/s (finalized, first to last finality)");
    println!(
        "  latency p50          {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3
    );
    println!(
        "  latency p99          {:.1} ms",
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "  latency max          {:.1} ms",
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "  block interval       {:.1} ms mean; proposal to finality p50 {:.1} ms (non-empty blocks, node 0)",
        window.as_secs_f64() * 1e3 / blocks.max(1) as f64,
        percentile(&block_delays, 0.50).as_secs_f64() * 1e3
    );
    let common = roots.first().map(|r| r.0).unwrap_or(0);
    let missing = roots.iter().filter(|r| r.1.is_none()).count();
    let distinct = roots
        .iter()
        .filter_map(|r| r.1)
        .collect::<std::collections::BTreeSet<_>>();
    println!(
        "  state roots          {} distinct across {} nodes at height {common} ({missing} without that height's root)",
        distinct.len(),
        roots.len() - missing
    );
    if distinct.len() > 1 {
        return Err(format!(
            "nodes disagree on the state root at height {common}: a safety bug, keep the data dirs"
        ));
    }
    Ok(())
}
