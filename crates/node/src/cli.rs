//! The `cairn` command line: argument parsing and one function per subcommand. The binary
//! (`src/main.rs`) only calls [`main`].

use crate::*;
use cairn_chain::mempool::SigCache;
use cairn_ledger::TxKind;
use clap::{Parser, Subcommand};
use commonware_runtime::{tokio as cw_tokio, Runner as _};
use config::{hex, node_id, private_key, NodeConfig};
use std::{path::PathBuf, process::ExitCode, sync::Arc};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: decentralized object storage and DNS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Per node: rounds, passes, fails, misses, credit, strikes, state, last proof size.
    Status,
    /// Replay the chain from genesis and re-verify every round and proof in a height range.
    Verify {
        /// First height checked.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last height checked (default: the node's finalized height).
        #[arg(long)]
        to: Option<u64>,
        /// The network's genesis file.
        #[arg(long, default_value = "devnet/genesis.toml")]
        genesis: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole local network, one process per node (creates the layout on first run).
    Devnet {
        /// Number of nodes.
        #[arg(long, default_value_t = 12)]
        nodes: usize,
        /// Number of zones.
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// Committee size.
        #[arg(long, default_value_t = 11)]
        validators: usize,
        /// Nodes with the gateway role, counted from the last node (default: all).
        #[arg(long)]
        gateways: Option<usize>,
        /// Directory holding the layout and all node data.
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
        /// First p2p port (admin ports start 1000 higher).
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
    },
    /// Write a network layout (genesis, keys, node configs) without running it.
    Init {
        /// Number of nodes.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Number of zones.
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// Committee size.
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Directory to write.
        #[arg(long)]
        dir: PathBuf,
        /// First p2p port (admin ports start 1000 higher).
        #[arg(long, default_value_t = 7200)]
        base_port: u16,
    },
    /// Run one node from its config file.
    #[command(args_conflicts_with_subcommands = true)]
    Node {
        /// Path to node.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Option<NodeCommand>,
    },
    /// Print the network's status as a table.
    Status {
        /// Admin endpoint of any node.
        #[arg(long, default_value = "127.0.0.1:8100")]
        endpoint: String,
    },
    /// Storage audits: `cairn audit status` lists every audited node's standing.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
        /// Admin endpoint of any node.
        #[arg(long, default_value = "127.0.0.1:8100", global = true)]
        endpoint: String,
    },
    /// Build, sign and submit a transaction.
    Tx {
        /// Admin endpoint of any node.
        #[arg(long, default_value = "127.0.0.1:8100")]
        endpoint: String,
        /// File holding the signer's hex private key.
        #[arg(long, default_value = "devnet/admin.key")]
        key: PathBuf,
        /// Wait until the transaction is finalized and print its receipt.
        #[arg(long)]
        wait: bool,
        #[command(subcommand)]
        kind: TxCommand,
    },
    /// Print a fresh random private key (hex) and its public key.
    Keygen,
    /// DNS zones on the ledger: import/export master files, managed names, history.
    Dns {
        /// Admin endpoint of any node.
        #[arg(long, default_value = "127.0.0.1:8100", global = true)]
        endpoint: String,
        /// File holding the signer's hex private key (the zone owner).
        #[arg(long, default_value = "devnet/admin.key", global = true)]
        key: PathBuf,
        #[command(subcommand)]
        command: DnsCommand,
    },
    /// Stop or start nodes or zones of a running devnet (fault drills).
    Drill {
        /// The devnet's directory.
        #[arg(long, default_value = "devnet")]
        dir: PathBuf,
        /// stop-zone Z | start-zone Z | stop-node N | start-node N | partition-node N | heal-node N | status |
        /// corrupt-node N PERCENT (flips a byte in PERCENT% of N's fragment files on disk)
        #[arg(required = true, num_args = 1..=3)]
        command: Vec<String>,
    },
    /// Upload a file: `cairn put FILE s3://bucket/key` (AWS_* env vars or devnet/s3.env).
    Put {
        /// Local file.
        file: PathBuf,
        /// s3://bucket/key (a trailing / appends the file name).
        target: String,
        /// Env file to read credentials from when AWS_* are unset.
        #[arg(long, default_value = "devnet/s3.env")]
        env_file: PathBuf,
    },
    /// Download an object: `cairn get s3://bucket/key FILE` (`-` for stdout).
    Get {
        /// s3://bucket/key.
        source: String,
        /// Local file, or - for stdout.
        file: PathBuf,
        /// Env file to read credentials from when AWS_* are unset.
        #[arg(long, default_value = "devnet/s3.env")]
        env_file: PathBuf,
    },
    /// List buckets, or the keys of s3://bucket[/prefix].
    Ls {
        /// s3://bucket[/prefix]; absent lists buckets.
        target: Option<String>,
        /// Env file to read credentials from when AWS_* are unset.
        #[arg(long, default_value = "devnet/s3.env")]
        env_file: PathBuf,
    },
    /// Delete an object: `cairn rm s3://bucket/key`.
    Rm {
        /// s3://bucket/key.
        target: String,
        /// Env file to read credentials from when AWS_* are unset.
        #[arg(long, default_value = "devnet/s3.env")]
        env_file: PathBuf,
    },
    /// Create a bucket: `cairn mb s3://bucket`.
    Mb {
        /// s3://bucket.
        target: String,
        /// Env file to read credentials from when AWS_* are unset.
        #[arg(long, default_value = "devnet/s3.env")]
        env_file: PathBuf,
    },
    /// Print the signed headers of one fragment request as JSON (tests, debugging access).
    #[command(hide = true)]
    FragmentSign {
        /// File holding the requester's hex private key.
        #[arg(long)]
        key: PathBuf,
        /// PUT or GET.
        #[arg(long)]
        method: String,
        /// Hex node id of the receiving node.
        #[arg(long)]
        target: String,
        /// Hex fragment root.
        #[arg(long)]
        root: String,
        /// Body length in bytes (0 for GET).
        #[arg(long, default_value_t = 0)]
        content_length: u64,
        /// Request time (ms since the epoch); default now.
        #[arg(long)]
        time_ms: Option<u64>,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Subcommand)]
enum TxCommand {
    /// Register the signer's key as an account.
    RegisterAccount {
        /// Account name ([a-z0-9-], 1..=64).
        name: String,
    },
    /// Set a versioned configuration entry (compare-and-set on the version).
    ConfigSet {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Version the entry must currently have (0 = absent); default: current.
        #[arg(long)]
        expected_version: Option<u64>,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Register a node you operate (it stays pending until the committee admits it).
    Register(admission::RegisterArgs),
    /// Print one committee operator's approval of an admission (`ACCOUNT:SIGNATURE`).
    Approve(admission::AdmitArgs),
    /// Submit an admission with approvals from a committee quorum.
    Admit(admission::AdmitArgs),
}

#[derive(Subcommand)]
enum DnsCommand {
    /// Create or update a zone from an RFC 1035 master file (sends only the difference).
    Import {
        /// The master file.
        file: PathBuf,
        /// Zone origin (default: the file's $ORIGIN).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print a zone as a master file (static and managed records; SOA serial = version).
    Export {
        /// Zone origin.
        origin: String,
        /// Only the static record sets (what `import` manages).
        #[arg(long)]
        r#static: bool,
    },
    /// List the zones on the ledger.
    Zones,
    /// Bind a managed name (e.g. s3.<zone>) to the healthy gateways.
    Manage {
        /// The name, inside the zone.
        name: String,
        /// Zone origin.
        #[arg(long)]
        zone: String,
        /// TTL of its A/AAAA records.
        #[arg(long, default_value_t = 30)]
        ttl_secs: u32,
    },
    /// Show every kept generation of a managed name: who, when, why.
    History {
        /// The managed name.
        name: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Finalized tx/s and submit-to-finality latency on an in-process devnet.
    Chain(bench::ChainArgs),
    /// Erasure coding, fragment writes and verified reads against raw encode and disk figures.
    Storage(bench_storage::StorageArgs),
    /// Storage audits: proof generation, proof bytes, verification and a validator's cost.
    Audit(crate::bench_audit::AuditArgs),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line and runs the chosen subcommand.
pub fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Devnet { .. } | Command::Node { .. }) {
        conn::raise_nofile_limit();
    }
    let result = match cli.command {
        Command::Devnet {
            nodes,
            zones,
            validators,
            gateways,
            dir,
            base_port,
        } => supervisor::run(
            devnet::Layout {
                nodes,
                zones,
                validators,
                gateways: gateways.unwrap_or(nodes),
                base_port,
                chain_id: "cairn-devnet".into(),
            },
            dir,
        ),
        Command::Init {
            nodes,
            zones,
            validators,
            dir,
            base_port,
        } => devnet::ensure_layout(
            &dir,
            &devnet::Layout {
                nodes,
                zones,
                validators,
                gateways: nodes,
                base_port,
                chain_id: "cairn-local".into(),
            },
            devnet::Keys::Random,
        )
        .and_then(|created| {
            if created {
                println!("wrote {}", dir.display());
                Ok(())
            } else {
                Err(format!("{} already holds a layout", dir.display()))
            }
        }),
        Command::Node {
            command: Some(command),
            ..
        } => match command {
            NodeCommand::Register(a) => admission::register(&a),
            NodeCommand::Approve(a) => admission::approve(&a),
            NodeCommand::Admit(a) => admission::admit(&a),
        },
        Command::Node {
            config: Some(config),
            ..
        } => run_single(config),
        Command::Node { .. } => Err(
            "give --config node.toml to run a node, or a subcommand (register, approve, admit)"
                .into(),
        ),
        Command::Status { endpoint } => {
            restore_default_sigpipe();
            status(&endpoint)
        }
        Command::Audit { command, endpoint } => {
            restore_default_sigpipe();
            match command {
                AuditCommand::Status => crate::audit::print_status(&endpoint),
                AuditCommand::Verify { from, to, genesis } => {
                    audit_verify(&endpoint, from, to, &genesis)
                }
            }
        }
        Command::Tx {
            endpoint,
            key,
            wait,
            kind,
        } => submit_tx(&endpoint, &key, wait, kind),
        Command::Keygen => keygen(),
        Command::FragmentSign {
            key,
            method,
            target,
            root,
            content_length,
            time_ms,
        } => fragment_sign(&key, &method, &target, &root, content_length, time_ms),
        Command::Dns {
            endpoint,
            key,
            command,
        } => {
            restore_default_sigpipe();
            match command {
                DnsCommand::Import { file, origin } => {
                    dnscli::import(&endpoint, &key, &file, origin.as_deref())
                }
                DnsCommand::Export { origin, r#static } => {
                    dnscli::export(&endpoint, &origin, r#static)
                }
                DnsCommand::Zones => client::get_json(&endpoint, "/dns/zones").map(|v| {
                    for z in v["zones"].as_array().cloned().unwrap_or_default() {
                        println!(
                            "{:<30} version {:<6} {} record sets, managed: {}",
                            z["origin"].as_str().unwrap_or("?"),
                            z["version"],
                            z["record_sets"],
                            z["managed"]
                        );
                    }
                }),
                DnsCommand::Manage {
                    name,
                    zone,
                    ttl_secs,
                } => dnscli::manage(&endpoint, &key, &zone, &name, ttl_secs),
                DnsCommand::History { name } => dnscli::history(&endpoint, &name),
            }
        }
        Command::Drill { dir, command } => supervisor::drill(&dir, &command),
        Command::Put {
            file,
            target,
            env_file,
        } => objects::put(&file, &target, &env_file),
        Command::Get {
            source,
            file,
            env_file,
        } => objects::get(&source, &file, &env_file),
        Command::Ls { target, env_file } => {
            restore_default_sigpipe();
            objects::ls(target.as_deref(), &env_file)
        }
        Command::Rm { target, env_file } => objects::rm(&target, &env_file),
        Command::Mb { target, env_file } => objects::mb(&target, &env_file),
        Command::Bench {
            which: BenchCommand::Chain(args),
        } => bench::chain(args),
        Command::Bench {
            which: BenchCommand::Storage(args),
        } => bench_storage::storage(args),
        Command::Bench {
            which: BenchCommand::Audit(args),
        } => crate::bench_audit::audit(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(storage: PathBuf) -> cw_tokio::Runner {
    let cfg = cw_tokio::Config::new()
        .with_storage_directory(storage)
        .with_tcp_nodelay(Some(true));
    cw_tokio::Runner::new(cfg)
}

fn run_single(path: PathBuf) -> Result<(), String> {
    let cfg = NodeConfig::load(&path).map_err(|e| e.to_string())?;
    let storage = cfg.file.data_dir.join("journal");
    runtime(storage).start(|context| async move {
        let sig_cache = Arc::new(SigCache::new(run::SIG_CACHE_CAPACITY));
        let r = run::start_node(&context, &cfg, "node", sig_cache)
            .await
            .map_err(|e| e.to_string())?;
        println!("node {} p2p {} admin http://{}", r.name, r.p2p, r.admin);
        shutdown_signal().await?;
        let shared = r.node.shared.clone();
        let report = r
            .shutdown(std::time::Duration::from_millis(tasks::SHUTDOWN_TIMEOUT_MS))
            .await;
        println!("stopped workers: {}", report.order.join(" "));
        if !report.aborted.is_empty() {
            println!(
                "aborted after {} ms: {}",
                tasks::SHUTDOWN_TIMEOUT_MS,
                report.aborted.join(" ")
            );
        }
        println!("stopped at finalized height {}", shared.finalized_height());
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(|e| format!("cannot watch SIGINT: {e}")),
        _ = term.recv() => Ok(()),
    }
}

/// The `workers` column of `cairn status`: `ok`, the failed critical workers, or `down`.
fn workers_column(admin_addr: &str) -> String {
    let report = client::get_json(admin_addr, "/workers")
        .ok()
        .and_then(|v| serde_json::from_value::<tasks::WorkersReport>(v).ok());
    let Some(report) = report else {
        return "down".into();
    };
    let failed: Vec<String> = report
        .workers
        .iter()
        .filter(|w| w.state == tasks::WorkerState::Failed)
        .map(|w| format!("{}{}", w.name, if w.critical { "!" } else { "" }))
        .collect();
    match (report.healthy, failed.is_empty()) {
        (true, true) => format!("ok({})", report.workers.len()),
        (true, false) => format!("ok failed:{}", failed.join(",")),
        (false, _) => format!("FAILED:{}", failed.join(",")),
    }
}

fn role_list(roles: &cairn_ledger::Roles) -> Vec<&'static str> {
    [
        ("validator", roles.validator),
        ("storage", roles.storage),
        ("gateway", roles.gateway),
        ("cache", roles.cache),
    ]
    .into_iter()
    .filter_map(|(name, held)| held.then_some(name))
    .collect()
}

fn audit_verify(
    endpoint: &str,
    from: u64,
    to: Option<u64>,
    genesis: &std::path::Path,
) -> Result<(), String> {
    let genesis = crate::config::GenesisFile::load(genesis)
        .map_err(|e| e.to_string())?
        .to_ledger()
        .map_err(|(field, e)| format!("genesis {field}: {e}"))?;
    let height = client::get::<api::Status>(endpoint, "/status")?.height;
    let to = to.unwrap_or(height);
    if to > height || from > to || from == 0 {
        return Err(format!(
            "check heights 1 <= FROM ({from}) <= TO ({to}) <= the node's finalized height ({height})"
        ));
    }
    let started = std::time::Instant::now();
    let v = crate::audit::verify(endpoint, &genesis, from, to)?;
    println!(
        "replayed blocks 1..={to} from genesis in {:.1} s; heights {from}..={to}: {} rounds \
         recomputed (seed and challenges), {} proofs re-verified ({} leaves ok, {} bad), \
         {} verdicts; state root matches",
        started.elapsed().as_secs_f64(),
        v.rounds,
        v.proofs,
        v.leaves_ok,
        v.leaves_bad,
        v.verdicts
    );
    Ok(())
}

fn status(endpoint: &str) -> Result<(), String> {
    let status: api::Status = client::get(endpoint, "/status")?;
    let nodes: api::Nodes = client::get(endpoint, "/nodes")?;
    println!("chain      {}", status.chain_id);
    println!("height     {}", status.height);
    println!("state root {}", status.state_root);
    println!("mempool    {} txs", status.mempool_txs);
    println!("committee  {} validators", status.committee.len());
    let zones: Vec<String> = status
        .nodes_per_zone
        .iter()
        .map(|(z, n)| format!("{z}={n}"))
        .collect();
    println!("zones      {}", zones.join(" "));
    println!(
        "healthy    {}/{} ({} pending admission)",
        status.nodes_healthy, status.nodes_total, status.nodes_pending
    );
    println!();
    println!(
        "{:<16} {:<5} {:<9} {:<22} {:>8} {:<8} {:<14} roles",
        "node", "zone", "committee", "admin", "height", "health", "workers"
    );
    for n in &nodes.nodes {
        let id = n.node_id.as_str();
        let admin_addr = n
            .endpoint(cairn_ledger::registry::Service::Admin)
            .unwrap_or("");
        if !n.admitted() {
            // Never contact a pending node: its addresses are its own claim.
            println!(
                "{:<16} {:<5} {:<9} {:<22} {:>8} {:<8} {:<14} (requested) {}",
                &id[..id.len().min(16)],
                n.zone,
                "no",
                admin_addr,
                "-",
                "pending",
                "-",
                role_list(&n.requested_roles).join(",")
            );
            continue;
        }
        let height = client::get::<api::Status>(admin_addr, "/status")
            .map(|s| s.height.to_string())
            .unwrap_or_else(|_| "down".into());
        let roles = role_list(&n.roles);
        let in_committee = status.committee.iter().any(|c| c == id);
        println!(
            "{:<16} {:<5} {:<9} {:<22} {:>8} {:<8} {:<14} {}",
            &id[..id.len().min(16)],
            n.zone,
            if in_committee { "yes" } else { "no" },
            admin_addr,
            height,
            if n.healthy { "ok" } else { "STALE" },
            workers_column(admin_addr),
            roles.join(",")
        );
    }
    Ok(())
}

fn submit_tx(
    endpoint: &str,
    key_path: &PathBuf,
    wait: bool,
    kind: TxCommand,
) -> Result<(), String> {
    let text = std::fs::read_to_string(key_path)
        .map_err(|e| format!("cannot read key file {}: {e}", key_path.display()))?;
    let key = private_key(&text).ok_or_else(|| {
        format!(
            "{} does not hold a 64-hex-character key",
            key_path.display()
        )
    })?;
    let kind = match kind {
        TxCommand::RegisterAccount { name } => TxKind::RegisterAccount { name },
        TxCommand::ConfigSet {
            key,
            value,
            expected_version,
        } => {
            let expected_version = match expected_version {
                Some(v) => v,
                None => client::get_json(endpoint, &format!("/config/{key}"))?["version"]
                    .as_u64()
                    .unwrap_or(0),
            };
            TxKind::ConfigSet {
                key,
                value,
                expected_version,
            }
        }
    };
    let wait_ms = wait.then_some(30_000);
    let (hash, status) = client::sign_and_submit(endpoint, &key, &kind, wait_ms)?;
    println!("submitted {hash}");
    if let Some(api::TxState::Finalized { height, result, .. }) = &status {
        println!("finalized at height {height}: {result}");
    }
    if status.as_ref().and_then(|s| s.rejection()).is_some() {
        return Err("transaction rejected by the ledger".into());
    }
    Ok(())
}

fn keygen() -> Result<(), String> {
    let seed = devnet::random_bytes()?;
    let key = private_key(&hex(&seed)).ok_or("generated key rejected")?;
    println!("private_key = \"{}\"", hex(&seed));
    println!("public_key  = \"{}\"", hex(&node_id(&key)));
    Ok(())
}

/// `cairn fragment-sign` (hidden, for tests and operators debugging access): prints the
/// protocol headers of one signed request as a JSON object.
fn fragment_sign(
    key_file: &std::path::Path,
    method: &str,
    target: &str,
    root: &str,
    content_length: u64,
    time_ms: Option<u64>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read {}: {e}", key_file.display()))?;
    let key = config::hex32(&text)
        .map(|b| ed25519_dalek::SigningKey::from_bytes(&b))
        .ok_or_else(|| {
            format!(
                "{}: expected a 64-hex-character private key",
                key_file.display()
            )
        })?;
    let method = method.to_ascii_uppercase();
    if method != "PUT" && method != "GET" {
        return Err("--method must be PUT or GET".into());
    }
    let target = config::hex32(target).ok_or("--target must be a 64-hex-character node id")?;
    let root = config::hex32(root).ok_or("--root must be 64 hex characters")?;
    let ticket = cairn_storage::auth::Ticket {
        method,
        target,
        root,
        content_length,
        time_ms: time_ms.unwrap_or_else(cairn_storage::server::now_ms),
        nonce: cairn_storage::auth::fresh_nonce(),
    };
    let headers: serde_json::Map<String, serde_json::Value> =
        cairn_storage::auth::sign(&key, &ticket)
            .into_iter()
            .map(|(n, v)| (n.to_string(), serde_json::Value::String(v)))
            .collect();
    println!("{}", serde_json::Value::Object(headers));
    Ok(())
}

/// Lets a short-lived CLI command die quietly when its output pipe closes (`cairn status |
/// head`) instead of panicking in `println!`. Never called by long-running node commands, which
/// need EPIPE as an error on sockets.
fn restore_default_sigpipe() {
    // SAFETY: called before any thread is spawned; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
