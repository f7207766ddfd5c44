//! `cairn bench audit`: what storage audits cost, against this machine's references measured in
//! the same run.
//!
//! Setup: an in-memory ledger with 12 storage nodes, each holding one fragment of every object,
//! and node 0's fragments on disk in a real fragment store. Figures: proof generation per round
//! (the prover's verified reads, trees and paths) against raw reads of the same fragments;
//! proof and transaction bytes; ledger verification per leaf and per proof against BLAKE3 over
//! the same bytes; challenge derivation per round; and the share of one core a validator spends
//! at the devnet's round length.

use cairn_ledger::{
    audit::{self, AuditParams},
    objects::{Acl, ObjectManifest},
    Genesis, NodeId, NodeRecordInit, Roles, SignedTx, State, Tx, TxKind, MAX_TXS_PER_BLOCK,
};
use cairn_storage::{
    merkle,
    prover::{AuditChain, AuditStats, Prover},
    FragmentStore,
};
use ed25519_dalek::SigningKey;
use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

/// Arguments of `cairn bench audit`.
#[derive(clap::Args, Clone, Debug)]
pub struct AuditArgs {
    /// Fragments held by each storage node.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub fragments: u64,
    /// Size of each fragment in KiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=8192))]
    pub fragment_kib: u64,
    /// Block interval the devnet runs at, for the per-block and per-core figures.
    #[arg(long, default_value_t = 200)]
    pub block_ms: u64,
    /// Directory for the fragment store (a temporary directory under it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// Collects what the prover submits.
struct Collect {
    state: Arc<State>,
    sent: Mutex<Vec<TxKind>>,
}

impl AuditChain for Collect {
    fn snapshot(&self) -> Arc<State> {
        self.state.clone()
    }
    fn submit(&self, kind: TxKind, _validity_blocks: u64) -> Result<cairn_ledger::Hash, String> {
        self.sent.lock().map_err(|e| e.to_string())?.push(kind);
        Ok([0; 32])
    }
    fn pending(&self, _hash: &cairn_ledger::Hash) -> bool {
        false
    }
}

fn node(i: u8) -> NodeId {
    [100 + i; 32]
}

fn fragment(i: u64, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    blake3::Hasher::new()
        .update(&i.to_le_bytes())
        .finalize_xof()
        .fill(&mut d);
    d
}

/// Median of `v` in microseconds.
fn median_us(mut v: Vec<std::time::Duration>) -> f64 {
    v.sort();
    crate::bench::percentile(&v, 0.5).as_secs_f64() * 1e6
}

/// Builds the ledger: genesis, a bucket, `fragments` objects, then blocks until a round opens.
fn ledger(args: &AuditArgs, store: &FragmentStore) -> Result<State, String> {
    let admin = SigningKey::from_bytes(&[7; 32]);
    let admin_id = admin.verifying_key().to_bytes();
    let params = AuditParams {
        round_blocks: 8,
        deadline_blocks: 4,
        ..AuditParams::default()
    };
    let nodes = (0..12u8)
        .map(|i| {
            let roles = Roles {
                validator: false,
                storage: true,
                gateway: false,
                cache: false,
            };
            let rec = NodeRecordInit {
                operator: admin_id,
                zone: format!("z{}", i % 3),
                roles,
                addresses: vec![format!("127.0.0.1:{}", 2000 + u16::from(i))],
                capacity_bytes: u64::MAX / 16,
                stake: 1,
            };
            (node(i), rec)
        })
        .collect();
    let g = Genesis {
        chain_id: "bench-audit".into(),
        accounts: vec![(admin_id, "admin".into())],
        nodes,
        audit: params,
    };
    let mut state = State::genesis(&g).map_err(|e| e.to_string())?;
    let mut nonce = 0;
    let mut apply = |state: &mut State, kinds: Vec<TxKind>| -> Result<(), String> {
        let txs: Vec<SignedTx> = kinds
            .into_iter()
            .map(|kind| {
                nonce += 1;
                let tx = Tx {
                    signer: admin_id,
                    nonce,
                    valid_until: state.height() + 100,
                    kind,
                };
                tx.sign(&admin)
            })
            .collect();
        let h = state.height() + 1;
        let out = state
            .apply_verified_block(h, h * 1_000, &txs)
            .map_err(|e| e.to_string())?;
        match out.receipts.iter().find(|r| r.is_err()) {
            Some(Err(e)) => Err(format!("setup transaction refused: {e}")),
            _ => Ok(()),
        }
    };
    apply(
        &mut state,
        vec![TxKind::CreateBucket {
            owner: admin_id,
            bucket: "bench".into(),
            acl: Acl::Private,
            data_shards: 4,
            parity_shards: 8,
        }],
    )?;
    let len = (args.fragment_kib * 1024) as usize;
    let mut puts = Vec::new();
    for i in 0..args.fragments {
        let data = fragment(i, len);
        let root = merkle::root_of(&data);
        store.put(&root, &data).map_err(|e| e.to_string())?;
        // Only node 0 is proved; the other slots need roots, not bytes.
        let mut roots = vec![root];
        roots.extend((1..12u8).map(|s| *blake3::hash(&[s, (i % 251) as u8]).as_bytes()));
        let seg_len = 4 * len as u64;
        puts.push(TxKind::PutObject {
            owner: admin_id,
            bucket: "bench".into(),
            key: format!("o/{i:06}"),
            manifest: ObjectManifest::single_segment(
                seg_len,
                (0..12).map(node).collect(),
                roots,
                0xfff,
            ),
            if_absent: false,
        });
        if puts.len() == MAX_TXS_PER_BLOCK {
            apply(&mut state, std::mem::take(&mut puts))?;
        }
    }
    apply(&mut state, puts)?;
    while state.audit_round().is_none_or(|r| r.judged) {
        apply(&mut state, vec![])?;
    }
    Ok(state)
}

/// Runs the benchmark and prints its figures.
pub fn audit(args: AuditArgs) -> Result<(), String> {
    let work = args
        .dir
        .join(format!("cairn-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = run(&args, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(args: &AuditArgs, work: &std::path::Path) -> Result<(), String> {
    let store = FragmentStore::open(work, 4).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let state = ledger(args, &store)?;
    println!(
        "setup: {} fragments of {} KiB per node, 12 storage nodes, ledger built in {:.1} s",
        args.fragments,
        args.fragment_kib,
        t.elapsed().as_secs_f64()
    );
    let round = state.audit_round().ok_or("no round opened")?.clone();
    let s = usize::from(state.audit_params().challenges_per_node);

    // Validator: challenge derivation for the whole round.
    let t = Instant::now();
    let challenges = audit::derive_challenges(&state, &round.seed, s as u8);
    let derive_ms = t.elapsed().as_secs_f64() * 1e3;
    let mine = challenges.get(&node(0)).ok_or("node 0 has no challenges")?;

    // Reference: raw reads of the challenged fragments.
    let t = Instant::now();
    for c in mine {
        store.read_unverified(&c.root).map_err(|e| e.to_string())?;
    }
    let raw_read_ms = t.elapsed().as_secs_f64() * 1e3;
    // Measured: the prover's whole poll (verified reads, trees, paths, transactions).
    let chain = Collect {
        state: Arc::new(state.clone()),
        sent: Mutex::default(),
    };
    let t = Instant::now();
    Prover::default().poll(&chain, &node(0), &store, &AuditStats::default(), None);
    let prove_ms = t.elapsed().as_secs_f64() * 1e3;
    let sent = chain.sent.lock().map_err(|e| e.to_string())?.clone();
    let proofs: Vec<_> = sent
        .iter()
        .filter_map(|k| match k {
            TxKind::AuditProof(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let proof_bytes: u64 = proofs.iter().map(|p| p.proof_bytes()).sum();
    let tx_bytes: usize = sent
        .iter()
        .map(|kind| {
            Tx {
                signer: [0; 32],
                nonce: 1,
                valid_until: 1,
                kind: kind.clone(),
            }
            .sign(&SigningKey::from_bytes(&[1; 32]))
            .encode()
            .len()
        })
        .sum();

    // Ledger verification per leaf, against BLAKE3 over the same bytes.
    let leaves: Vec<_> = proofs.iter().flat_map(|p| p.leaves.iter()).collect();
    let reps = 200;
    let mut verify = Vec::new();
    let mut hash = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        for l in &leaves {
            let ok = audit::verify_leaf(&mine[usize::from(l.challenge)], l);
            if !ok {
                return Err("a generated proof did not verify".into());
            }
        }
        verify.push(t.elapsed());
        let t = Instant::now();
        for l in &leaves {
            std::hint::black_box(blake3::hash(&l.data));
        }
        hash.push(t.elapsed());
    }
    let verify_us = median_us(verify);
    let hash_us = median_us(hash);
    let n = leaves.len().max(1) as f64;
    let devnet_round_s = (AuditParams::default().round_blocks * args.block_ms) as f64 / 1e3;
    // A validator derives once per round and verifies 12 nodes' proofs.
    let validator_ms = derive_ms + 12.0 * verify_us / 1e3;
    println!(
        "proof generation per round (node 0, {} challenges): {prove_ms:.2} ms; raw reads of the same fragments {raw_read_ms:.2} ms ({:.2}x)",
        mine.len(),
        prove_ms / raw_read_ms.max(1e-9)
    );
    println!(
        "proof bytes per node per round: {proof_bytes} in {} transactions of {tx_bytes} bytes in all",
        proofs.len()
    );
    println!(
        "ledger verification: {verify_us:.1} us per proof ({:.2} us per leaf); BLAKE3 over the same leaves {hash_us:.1} us ({:.2}x)",
        verify_us / n,
        verify_us / hash_us.max(1e-9)
    );
    println!(
        "challenge derivation per round ({} fragments on 12 nodes): {derive_ms:.1} ms",
        12 * args.fragments
    );
    println!(
        "devnet ({} blocks of {} ms per round = {devnet_round_s:.0} s): audit transactions {:.0} bytes per block; validator audit work {validator_ms:.1} ms per round = {:.3}% of one core",
        AuditParams::default().round_blocks,
        args.block_ms,
        12.0 * tx_bytes as f64 / AuditParams::default().round_blocks as f64,
        100.0 * validator_ms / 1e3 / devnet_round_s.max(1e-9)
    );
    Ok(())
}
