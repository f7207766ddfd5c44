//! `cairn devnet`: runs every node of a local layout as its own `cairn node` process, so fault
//! drills (`cairn drill stop-zone z2`) kill and restart real processes, as a zone outage would.
//!
//! Ready means every node is up: each node's process is alive and its admin API answers
//! `/status` with `healthy: true` (so every listener bound, since a node that cannot bind one
//! exits at start, and no critical worker has failed), and a block is finalized. A node that
//! exits or stays down is named with its error (e.g. the port it could not bind) and the devnet
//! exits non-zero instead of claiming ready. Before starting, every configured port is checked
//! against the kernel's ephemeral port range. After ready, nodes that exit or turn unhealthy
//! are reported as they do.
//!
//! Once the chain is live it authorizes every gateway node for the devnet admin account,
//! runs an S3 round trip through node 0's gateway (the storage self-check), writes
//! `<dir>/s3.env`, prints a ready-to-paste aws profile and then `devnet ready`. Drill commands
//! arrive on `<dir>/control.sock`. Node output goes to `<dir>/nodes/<name>/node.log`.

use crate::{
    client,
    config::{account_key, node_id, NodeConfig},
    devnet::{self, Layout},
    s3client::{Body, S3Client},
};
use cairn_ledger::{Tx, TxKind};
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{
        net::{UnixListener, UnixStream},
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

/// Longest the devnet waits for its first finalized block.
pub const READY_TIMEOUT_MS: u64 = 180_000;
/// Longest a stopping node gets to exit after SIGINT before SIGKILL.
pub const STOP_GRACE_MS: u64 = 10_000;
/// Longest one control command may take.
pub const CONTROL_TIMEOUT_MS: u64 = 60_000;
/// Size of the self-check object.
pub const SELF_CHECK_SIZE_BYTES: usize = 1 << 20;
/// Interval between health polls of every node once the devnet is ready.
pub const HEALTH_POLL_MS: u64 = 5_000;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct NodeProc {
    name: String,
    zone: String,
    config: PathBuf,
    log: PathBuf,
    /// Length of `log` when the process was last started (its own output starts there).
    log_start: u64,
    admin: String,
    s3: Option<String>,
    p2p_port: u16,
    partitioned: bool,
    child: Option<Child>,
}

struct Devnet {
    exe: PathBuf,
    nodes: Vec<NodeProc>,
}

impl Devnet {
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let n = &mut self.nodes[i];
        if n.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .map_err(|e| format!("cannot open {}: {e}", n.log.display()))?;
        n.log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .arg("--config")
            .arg(&n.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // Its own group id lets `drill partition` match its packets (root only).
        let gid = crate::partition::available().then(|| crate::partition::node_gid(n.p2p_port));
        // SAFETY: prctl, setgroups and setgid are async-signal-safe; prctl makes the node die
        // with the devnet even if the devnet itself is SIGKILLed.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(gid) = gid {
                    if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After setgid: changing credentials clears the parent-death signal.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", n.name))?;
        n.child = Some(child);
        Ok(())
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn select(&self, what: &str, arg: &str) -> Result<Vec<usize>, String> {
        let picked: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| match what {
                "zone" => self.nodes[i].zone == arg,
                _ => self.nodes[i].name == arg,
            })
            .collect();
        if picked.is_empty() {
            return Err(format!("no {what} named {arg:?}"));
        }
        Ok(picked)
    }

    fn command(&mut self, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let (cmd, arg) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match cmd {
            "stop-zone" | "stop-node" | "start-zone" | "start-node" => {
                let what = if cmd.ends_with("zone") {
                    "zone"
                } else {
                    "node"
                };
                let picked = self.select(what, arg)?;
                let names: Vec<String> =
                    picked.iter().map(|&i| self.nodes[i].name.clone()).collect();
                if cmd.starts_with("stop") {
                    for &i in &picked {
                        self.kill(i);
                    }
                    Ok(format!("stopped (SIGKILL) {}", names.join(" ")))
                } else {
                    for &i in &picked {
                        self.spawn(i)?;
                    }
                    let deadline = Instant::now() + Duration::from_millis(CONTROL_TIMEOUT_MS);
                    for &i in &picked {
                        while client::get_json(&self.nodes[i].admin, "/status").is_err() {
                            if Instant::now() > deadline {
                                return Err(format!(
                                    "{} did not come back within {CONTROL_TIMEOUT_MS} ms",
                                    self.nodes[i].name
                                ));
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    Ok(format!("started {}", names.join(" ")))
                }
            }
            "partition-node" | "heal-node" => {
                let picked = self.select("node", arg)?;
                let cut = cmd == "partition-node";
                let ports: Vec<u16> = self.nodes.iter().map(|n| n.p2p_port).collect();
                for &i in &picked {
                    self.set_partition(i, &ports, cut)?;
                }
                Ok(format!(
                    "{} {}",
                    if cut { "partitioned (p2p cut)" } else { "healed" },
                    arg
                ))
            }
            "status" => Ok(self
                .nodes
                .iter()
                .map(|n| {
                    format!(
                        "{}:{}:{}",
                        n.name,
                        n.zone,
                        if n.child.is_some() { "up" } else { "down" }
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")),
            _ => {
                Err("commands: stop-zone Z, start-zone Z, stop-node N, start-node N, partition-node N, heal-node N, status".into())
            }
        }
    }

    /// Notices nodes that exited on their own (not by a drill).
    fn reap(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = &mut n.child {
                if let Ok(Some(status)) = c.try_wait() {
                    println!("node {} exited ({status}): {}", n.name, exit_reason(n));
                    n.child = None;
                }
            }
        }
    }

    fn set_partition(&mut self, i: usize, ports: &[u16], cut: bool) -> Result<(), String> {
        let n = &self.nodes[i];
        if n.partitioned == cut {
            return Ok(());
        }
        let peers: Vec<u16> = ports.iter().copied().filter(|p| *p != n.p2p_port).collect();
        let tag = format!("cairn-devnet {} {}", n.name, n.p2p_port);
        crate::partition::set(n.p2p_port, &peers, &tag, cut)?;
        self.nodes[i].partitioned = cut;
        Ok(())
    }

    fn shutdown(&mut self) {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.p2p_port).collect();
        for i in 0..self.nodes.len() {
            if let Err(e) = self.set_partition(i, &ports, false) {
                println!("could not heal {}: {e}", self.nodes[i].name);
            }
        }
        for n in &mut self.nodes {
            if let Some(c) = &n.child {
                // SAFETY: plain kill(2) on a child we spawned and have not reaped.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, libc::SIGINT);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                loop {
                    match c.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            }
        }
    }
}

fn node_name(cfg: &NodeConfig) -> String {
    cfg.file
        .data_dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Runs the devnet until SIGINT/SIGTERM.
pub fn run(layout: Layout, dir: PathBuf) -> Result<(), String> {
    let created = devnet::ensure_layout(&dir, &layout, devnet::Keys::Deterministic)?;
    let configs = crate::run::devnet_configs(&dir)?;
    println!(
        "{} devnet at {} ({} nodes, one process each)",
        if created { "created" } else { "resuming" },
        dir.display(),
        configs.len()
    );
    println!("{}", devnet::LOCAL_ONLY_WARNING);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    devnet::check_ports_outside_ephemeral(&listen_ports(&configs))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the cairn binary: {e}"))?;
    let mut net = Devnet {
        exe,
        nodes: Vec::new(),
    };
    for cfg in &configs {
        let name = node_name(cfg);
        let zone = cfg
            .genesis
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.zone.clone())
            .unwrap_or_default();
        let node_dir = dir.join("nodes").join(&name);
        net.nodes.push(NodeProc {
            name,
            zone,
            config: node_dir.join("node.toml"),
            log: node_dir.join("node.log"),
            log_start: 0,
            admin: cfg.file.admin_listen.to_string(),
            s3: cfg.file.s3.as_ref().map(|s| s.listen.to_string()),
            p2p_port: cfg.file.p2p_listen.port(),
            partitioned: false,
            child: None,
        });
    }
    for i in 0..net.nodes.len() {
        if let Err(e) = net.spawn(i) {
            net.shutdown();
            return Err(e);
        }
    }
    println!(
        "{:<5} {:<5} {:<22} {:<22} {:<22} roles",
        "node", "zone", "p2p", "admin API", "S3"
    );
    for (n, cfg) in net.nodes.iter().zip(&configs) {
        let roles = cfg
            .genesis
            .nodes
            .iter()
            .find(|g| g.name == n.name)
            .map(|g| g.roles.join(","))
            .unwrap_or_default();
        println!(
            "{:<5} {:<5} {:<22} {:<22} {:<22} {}",
            n.name,
            n.zone,
            cfg.file.p2p_listen.to_string(),
            format!("http://{}", n.admin),
            n.s3.as_deref()
                .map(|s| format!("http://{s}"))
                .unwrap_or_default(),
            roles
        );
    }
    let result = bring_up(&mut net, &dir, &configs).and_then(|()| control_loop(&mut net, &dir));
    println!("stopping {} nodes ...", net.nodes.len());
    net.shutdown();
    let _ = std::fs::remove_file(dir.join("control.sock"));
    result
}

/// Every listen port of every node, named `<node> <listener>`.
fn listen_ports(configs: &[NodeConfig]) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for cfg in configs {
        let name = node_name(cfg);
        let f = &cfg.file;
        out.push((format!("{name} p2p"), f.p2p_listen.port()));
        out.push((format!("{name} admin"), f.admin_listen.port()));
        if let Some(s3) = &f.s3 {
            out.push((format!("{name} S3"), s3.listen.port()));
        }
        if let Some(dns) = &f.dns {
            out.push((format!("{name} DNS"), dns.listen.port()));
        }
        if let Some(addr) = f.fragment_listen {
            out.push((format!("{name} fragment"), addr.port()));
        }
    }
    out
}

/// The last `error` line a node printed since it was started (its start failure, e.g. a port
/// it could not bind), or where to look.
fn exit_reason(n: &NodeProc) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL_BYTES: u64 = 64 * 1024;
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(&n.log) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let from = n.log_start.max(len.saturating_sub(TAIL_BYTES));
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.take(TAIL_BYTES).read_to_string(&mut text);
        }
    }
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("error:") || l.contains("ERROR") || l.contains("panicked"));
    match line {
        Some(l) => format!("{} (log: {})", l.trim(), n.log.display()),
        None => format!("see {}", n.log.display()),
    }
}

/// Whether node `n` is up: its admin API answers `/status` with `healthy: true`.
/// Ok once `n` answers, is healthy and has applied `min_height`; else what it is missing.
fn node_health(n: &NodeProc, min_height: u64) -> Result<(), String> {
    let s: crate::api::Status = client::get(&n.admin, "/status")
        .map_err(|_| format!("admin API {} not answering", n.admin))?;
    if !s.healthy {
        return Err(format!(
            "unhealthy: failed critical workers {}",
            s.failed_workers.join(", ")
        ));
    }
    if s.height < min_height {
        return Err(format!("at height {}, waiting for {min_height}", s.height));
    }
    Ok(())
}

fn bring_up(net: &mut Devnet, dir: &Path, configs: &[NodeConfig]) -> Result<(), String> {
    let admin = net.nodes[0].admin.clone();
    wait_all_up(net, dir, 1)?;
    if STOP.load(Ordering::SeqCst) {
        return Ok(());
    }
    let authorized_at = authorize_gateways(&admin, configs)?;
    // Every node serves S3 from its own finalized state: wait until each has applied the
    // authorizations, or the first request to a lagging node is refused (AccessDenied).
    wait_all_up(net, dir, authorized_at)?;
    ensure_devnet_zone(&admin)?;
    let (access, secret) = devnet::s3_credentials();
    let s3 = net
        .nodes
        .iter()
        .find_map(|n| n.s3.clone())
        .ok_or("no node has an S3 endpoint")?;
    let env = format!(
        "export AWS_ACCESS_KEY_ID={access}\nexport AWS_SECRET_ACCESS_KEY={secret}\nexport AWS_DEFAULT_REGION=us-east-1\nexport AWS_ENDPOINT_URL=http://{s3}\n"
    );
    let client = S3Client {
        host: s3.clone(),
        access_key: access.clone(),
        secret_key: secret.clone(),
        region: "us-east-1".into(),
    };
    match self_check(&client) {
        Ok(report) => println!("{report}"),
        Err(e) => println!("storage self-check FAILED: {e}"),
    }
    // Nodes may have died during the self-check: ready only if all are still up.
    wait_all_up(net, dir, 0)?;
    let path = dir.join("s3.env");
    std::fs::write(&path, &env).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("S3 endpoint http://{s3} (path-style; virtual-host style under *.s3.localhost)");
    // The secret stays in the file: this output ends up in logs.
    println!(
        "aws profile: `source {}` (AWS_ACCESS_KEY_ID={access}, secret in the file)",
        path.display()
    );
    println!("  then e.g.: aws s3 mb s3://photos && aws s3 cp ./file s3://photos/");
    println!("drills:  cairn drill --dir {} stop-zone z2   (start-zone, stop-node n03, start-node n03, status)", dir.display());
    println!(
        "status:  cairn status --endpoint {admin}   (Ctrl-C stops the devnet; rerun resumes it)"
    );
    if let Some(dns) = configs[0].file.dns.as_ref() {
        let zone = devnet::DEVNET_ZONE;
        let line = format!(
            "export CAIRN_DNS={}\nexport CAIRN_DNS_PORT={}\nexport CAIRN_ZONE={zone}\n",
            dns.listen.ip(),
            dns.listen.port()
        );
        let path = dir.join("dns.env");
        std::fs::write(&path, &line)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!(
            "DNS: every node serves zone {zone} (n00 on {}); try: dig @{} -p {} s3.{zone}",
            dns.listen,
            dns.listen.ip(),
            dns.listen.port()
        );
    }
    println!("devnet ready");
    Ok(())
}

/// Waits until every node is up, healthy and has applied `min_height`.
/// A node process that exits fails at once, naming the node and its error; a node still down
/// at the deadline fails naming every such node.
fn wait_all_up(net: &mut Devnet, dir: &Path, min_height: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
    loop {
        if STOP.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut exited = Vec::new();
        for n in &mut net.nodes {
            match n.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => {}
                Some(Ok(Some(status))) => {
                    exited.push(format!("{} exited ({status}): {}", n.name, exit_reason(n)));
                    n.child = None;
                }
                Some(Err(e)) => exited.push(format!("{}: cannot wait for it: {e}", n.name)),
                None => exited.push(format!("{} is not running: {}", n.name, exit_reason(n))),
            }
        }
        if !exited.is_empty() {
            return Err(format!(
                "{} of {} nodes failed to start, devnet not ready:\n  {}",
                exited.len(),
                net.nodes.len(),
                exited.join("\n  ")
            ));
        }
        let down: Vec<String> = net
            .nodes
            .iter()
            .filter_map(|n| {
                node_health(n, min_height)
                    .err()
                    .map(|e| format!("{}: {e}", n.name))
            })
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "devnet not ready after {READY_TIMEOUT_MS} ms: {} of {} nodes not up:\n  {}\n\
                 see the node logs under {}",
                down.len(),
                net.nodes.len(),
                down.join("\n  "),
                dir.join("nodes").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Creates the devnet zone (SOA, NS, `ns1` and a TXT) and binds `s3.<zone>` to every gateway,
/// unless it already exists (a resumed devnet).
fn ensure_devnet_zone(admin: &str) -> Result<(), String> {
    let zone = devnet::DEVNET_ZONE;
    let existing = client::get_json(admin, &format!("/dns/zones/{zone}"));
    if existing.is_ok() {
        return Ok(());
    }
    let text = format!(
        "$ORIGIN {zone}.\n$TTL 300\n@ IN SOA ns1 hostmaster 1 3600 600 86400 30\n@ IN NS ns1\nns1 IN A 127.0.0.1\n@ IN TXT \"cairn devnet\"\n"
    );
    let (origin, sets) =
        cairn_dns::zonefile::parse(&text, zone).map_err(|e| format!("devnet zone: {e}"))?;
    let key = devnet::admin_key();
    let txs = crate::dnscli::import_plan(&origin, 0, &[], &sets);
    crate::dnscli::submit_in_order(admin, &key, txs)
        .map_err(|e| format!("creating zone {zone} failed: {e}"))?;
    crate::dnscli::manage_as(admin, &key, zone, &format!("s3.{zone}"), 30)
}

/// Lets every gateway node act for the devnet admin account (idempotent); returns the height
/// by which all the authorizations are finalized.
fn authorize_gateways(admin: &str, configs: &[NodeConfig]) -> Result<u64, String> {
    let key = devnet::admin_key();
    let signer = node_id(&key);
    let first_nonce = client::next_nonce(admin, &signer)?;
    let valid_until = client::valid_until(admin)?;
    let gateways: Vec<[u8; 32]> = configs[0]
        .genesis
        .nodes
        .iter()
        .filter(|n| n.roles.iter().any(|r| r == "gateway"))
        .filter_map(|n| crate::config::hex32(&n.public_key))
        .collect();
    let mut hashes = Vec::new();
    for (nonce, gateway) in (first_nonce..).zip(gateways) {
        let tx = Tx {
            signer,
            nonce,
            valid_until,
            kind: TxKind::AuthorizeGateway {
                gateway,
                allowed: true,
            },
        }
        .sign(&account_key(&key));
        hashes.push(
            client::post_tx(admin, &tx).map_err(|e| format!("authorizing gateways failed: {e}"))?,
        );
    }
    let mut last = 0;
    for h in hashes {
        let status = client::wait_finalized(admin, &h, READY_TIMEOUT_MS)?;
        if let Some(reason) = status.rejection() {
            return Err(format!("AuthorizeGateway rejected: {reason}"));
        }
        if let crate::api::TxState::Finalized { height, .. } = status {
            last = last.max(height);
        }
    }
    Ok(last)
}

/// Creates a bucket, PUTs 1 MiB, GETs it back and compares (the real S3 and storage path).
fn self_check(client: &S3Client) -> Result<String, String> {
    let bucket = "cairn-self-check";
    let r = client.request("PUT", &format!("/{bucket}"), &[], &[], Body::Empty, None)?;
    if r.status >= 300 && !r.error_text().contains("BucketAlreadyOwnedByYou") {
        return Err(format!("CreateBucket: {}", r.error_text()));
    }
    let mut data = vec![0u8; SELF_CHECK_SIZE_BYTES];
    blake3::Hasher::new()
        .update(format!("{:?}", Instant::now()).as_bytes())
        .finalize_xof()
        .fill(&mut data);
    let path = format!("/{bucket}/object");
    let started = Instant::now();
    let r = client.request("PUT", &path, &[], &[], Body::Bytes(&data), None)?;
    if r.status != 200 {
        return Err(format!("PutObject: {}", r.error_text()));
    }
    let put_ms = started.elapsed().as_millis();
    let started = Instant::now();
    let r = client.request("GET", &path, &[], &[], Body::Empty, None)?;
    if r.status != 200 {
        return Err(format!("GetObject: {}", r.error_text()));
    }
    let get_ms = started.elapsed().as_millis();
    if r.body != data {
        return Err("read-back bytes differ from what was written".into());
    }
    let head = client.request("HEAD", &path, &[], &[], Body::Empty, None)?;
    let field = |name: &str| head.header(name).unwrap_or("?").to_string();
    let coding = field("x-cairn-coding").replace('+', ", ");
    Ok(format!(
        "storage self-check: RS({coding}) 1 MiB over {} nodes in {} zones, S3 PUT (finalized) {put_ms} ms, verified GET {get_ms} ms",
        field("x-cairn-nodes"),
        field("x-cairn-zones"),
    ))
}

fn control_loop(net: &mut Devnet, dir: &Path) -> Result<(), String> {
    let path = dir.join("control.sock");
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    let (tx, rx) = mpsc::channel::<(String, UnixStream)>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut r = BufReader::new(&stream);
            if r.read_line(&mut line).is_ok() && tx.send((line, stream)).is_err() {
                return;
            }
        }
    });
    let mut unhealthy: Vec<Option<String>> = vec![None; net.nodes.len()];
    let mut next_poll = Instant::now() + Duration::from_millis(HEALTH_POLL_MS);
    while !STOP.load(Ordering::SeqCst) {
        net.reap();
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + Duration::from_millis(HEALTH_POLL_MS);
            report_health_changes(net, &mut unhealthy);
        }
        if let Ok((line, mut stream)) = rx.recv_timeout(Duration::from_millis(200)) {
            let reply = match net.command(line.trim()) {
                Ok(s) => format!("ok {s}\n"),
                Err(e) => format!("error {e}\n"),
            };
            print!("drill: {} -> {reply}", line.trim());
            let _ = stream.write_all(reply.as_bytes());
        }
    }
    Ok(())
}

/// Prints each running node whose health changed since the last poll (drilled-down nodes are
/// reported by `reap`/`drill` instead).
fn report_health_changes(net: &Devnet, last: &mut [Option<String>]) {
    for (n, last) in net.nodes.iter().zip(last.iter_mut()) {
        let now = match n.child {
            Some(_) => node_health(n, 0).err(),
            None => None,
        };
        if now != *last {
            match &now {
                Some(why) => println!("node {} is down or unhealthy: {why}", n.name),
                None if n.child.is_some() => println!("node {} is up and healthy", n.name),
                None => {}
            }
            *last = now;
        }
    }
}

/// `cairn drill corrupt-node N PERCENT`: flips one byte in the middle of PERCENT% of node N's
/// fragment files (evenly spaced in path order, so a rerun picks the same files), as disk rot
/// would. Works on a running or stopped devnet; returns how many files it damaged.
pub fn corrupt_node(dir: &Path, node: &str, percent: &str) -> Result<usize, String> {
    let percent: u64 = percent
        .parse()
        .ok()
        .filter(|p| (1..=100).contains(p))
        .ok_or("PERCENT must be an integer 1..=100")?;
    let root = dir.join("nodes").join(node).join("data").join("fragments");
    let mut files = Vec::new();
    let shards = std::fs::read_dir(&root).map_err(|e| {
        format!(
            "cannot read {}: {e} (is {node} a storage node?)",
            root.display()
        )
    })?;
    for shard in shards.flatten() {
        for f in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().extension().is_some_and(|x| x == "frag") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    let n = files.len() as u64;
    let take = (n * percent).div_ceil(100);
    let mut damaged = 0;
    for i in 0..take {
        let path = &files[(i * n / take.max(1)) as usize];
        let mut data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if data.is_empty() {
            continue;
        }
        let mid = data.len() / 2;
        data[mid] ^= 0x5a;
        std::fs::write(path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
        damaged += 1;
    }
    Ok(damaged)
}

/// `cairn drill`: sends one command to a running devnet and prints its answer.
pub fn drill(dir: &Path, command: &[String]) -> Result<(), String> {
    if let [cmd, node, percent] = command {
        if cmd == "corrupt-node" {
            let damaged = corrupt_node(dir, node, percent)?;
            println!("corrupted {damaged} fragment files of {node}");
            return Ok(());
        }
    }
    let path = dir.join("control.sock");
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "cannot reach the devnet at {}: {e} (is `cairn devnet --dir {}` running?)",
            path.display(),
            dir.display()
        )
    })?;
    stream
        .set_read_timeout(Some(Duration::from_millis(CONTROL_TIMEOUT_MS + 5_000)))
        .map_err(|e| e.to_string())?;
    writeln!(stream, "{}", command.join(" ")).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .map_err(|e| format!("no answer from the devnet: {e}"))?;
    let reply = reply.trim();
    match reply.strip_prefix("ok ") {
        Some(r) => {
            println!("{r}");
            Ok(())
        }
        None => Err(reply.strip_prefix("error ").unwrap_or(reply).to_string()),
    }
}
