//! `cairn devnet`: writes a local network layout (genesis, node configs, keys) once, then runs
//! every node of it in this one process. Rerunning on the same directory resumes the chain.
//!
//! Keys are derived from the node index (`ed25519::PrivateKey::from_seed`): fine for a local
//! devnet, never for a real deployment (use `cairn keygen`).

use crate::config::{
    hex, private_key_hex, DnsFile, GenesisAccount, GenesisFile, GenesisNode, NodeFile, S3File,
    Tuning,
};
use commonware_cryptography::{ed25519, Signer};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
};

/// Shape of a devnet.
#[derive(Clone, Debug)]
pub struct Layout {
    /// Number of nodes.
    pub nodes: usize,
    /// Number of zones (nodes are spread round-robin).
    pub zones: usize,
    /// Committee size (the first `validators` nodes, interleaved across zones).
    pub validators: usize,
    /// Nodes with the gateway role (S3 and `s3.<zone>` endpoints): the last `gateways` nodes,
    /// so validators lose it first.
    pub gateways: usize,
    /// First p2p port; admin ports start at `base_port + 1000`, S3 at `+ 2000`, DNS at
    /// `+ 3000`, fragment listeners at `+ 4000`.
    pub base_port: u16,
    /// Chain id.
    pub chain_id: String,
}

/// Zone every devnet creates, with the managed name `s3.<zone>` over all gateways.
pub const DEVNET_ZONE: &str = "cairn.test";

/// DNS port of node `i` (UDP and TCP).
pub fn dns_port(layout: &Layout, i: usize) -> u16 {
    layout.base_port + 3000 + i as u16
}

/// The loopback IP node `i` serves S3 on: each gateway gets its own (127.0.1.1, 127.0.1.2,
/// ...), so DNS failover can be seen on one machine (Linux routes all of 127/8 to `lo`).
pub fn s3_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        1 + (i / 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

/// Fragment listener port of node `i`.
pub fn fragment_port(layout: &Layout, i: usize) -> u16 {
    layout.base_port + 4000 + i as u16
}

/// S3 port of node `i`.
pub fn s3_port(layout: &Layout, i: usize) -> u16 {
    layout.base_port + 2000 + i as u16
}

/// The devnet's S3 access key id and secret, derived from the admin key (devnet only).
pub fn s3_credentials() -> (String, String) {
    let seed =
        blake3::hash(format!("cairn devnet s3 {}", private_key_hex(&admin_key())).as_bytes());
    let h = hex(seed.as_bytes()).to_uppercase();
    (
        format!("CAIRN{}", &h[..15]),
        hex(&seed.as_bytes()[16..]) + &h[..8].to_lowercase(),
    )
}

/// Seed for the devnet admin account key (devnet only).
const ADMIN_SEED: u64 = 1_000_000;

/// The devnet admin account key.
pub fn admin_key() -> ed25519::PrivateKey {
    ed25519::PrivateKey::from_seed(ADMIN_SEED)
}

/// Writes `genesis.toml`, `admin.key` and `nodes/nNN/node.toml` unless `dir` already has them.
/// Returns true if a new layout was written.
pub fn ensure_layout(dir: &Path, layout: &Layout) -> Result<bool, String> {
    if dir.join("genesis.toml").exists() {
        return Ok(false);
    }
    if layout.nodes == 0 || layout.zones == 0 || layout.validators == 0 {
        return Err("--nodes, --zones and --validators must be at least 1".into());
    }
    if layout.gateways == 0 || layout.gateways > layout.nodes {
        return Err(format!(
            "--gateways ({}) must be 1..=--nodes ({})",
            layout.gateways, layout.nodes
        ));
    }
    if layout.validators > layout.nodes {
        return Err(format!(
            "--validators ({}) cannot exceed --nodes ({})",
            layout.validators, layout.nodes
        ));
    }
    if layout.nodes > 1000 {
        return Err("at most 1000 nodes (each listener kind has a block of 1000 ports)".into());
    }
    if usize::from(layout.base_port) + 4000 + layout.nodes > usize::from(u16::MAX) {
        return Err("--base-port too high for this many nodes".into());
    }
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut nodes = Vec::new();
    let mut files = Vec::new();
    for i in 0..layout.nodes {
        let key = ed25519::PrivateKey::from_seed(i as u64);
        let name = format!("n{i:02}");
        let zone = format!("z{}", i % layout.zones + 1);
        let gateway = i >= layout.nodes - layout.gateways;
        let mut roles = vec!["storage".to_string()];
        if gateway {
            roles.push("gateway".to_string());
        }
        if i < layout.validators {
            roles.insert(0, "validator".to_string());
        } else {
            roles.push("cache".to_string());
        }
        let p2p = SocketAddr::new(ip, layout.base_port + i as u16);
        let admin = SocketAddr::new(ip, layout.base_port + 1000 + i as u16);
        let fragments = SocketAddr::new(ip, fragment_port(layout, i));
        nodes.push(GenesisNode {
            public_key: hex(key.public_key().as_ref()),
            name: name.clone(),
            zone,
            roles,
            p2p_address: p2p,
            admin_address: admin,
            s3_address: gateway.then(|| SocketAddr::new(s3_ip(i), s3_port(layout, i))),
            fragment_address: Some(fragments),
            capacity_bytes: 1 << 40,
            stake: 1_000,
        });
        files.push((
            name,
            NodeFile {
                genesis: "../../genesis.toml".into(),
                private_key: private_key_hex(&key),
                data_dir: "data".into(),
                p2p_listen: p2p,
                admin_listen: admin,
                fragment_listen: Some(fragments),
                tuning: Tuning::default(),
                s3: gateway.then(|| S3File {
                    listen: SocketAddr::new(s3_ip(i), s3_port(layout, i)),
                    keys: "../../s3-keys.toml".into(),
                    domain: "s3.localhost".into(),
                    segment_size_bytes: None,
                }),
                dns: Some(DnsFile {
                    listen: SocketAddr::new(ip, dns_port(layout, i)),
                    notify: Vec::new(),
                    rate_limit_qps: None,
                    udp_threads: None,
                }),
            },
        ));
    }
    let genesis = GenesisFile {
        chain_id: layout.chain_id.clone(),
        accounts: vec![GenesisAccount {
            public_key: hex(admin_key().public_key().as_ref()),
            name: "admin".into(),
        }],
        nodes,
    };
    let io = |p: &Path, e: std::io::Error| format!("cannot write {}: {e}", p.display());
    for (name, file) in &files {
        let node_dir = dir.join("nodes").join(name);
        std::fs::create_dir_all(&node_dir).map_err(|e| io(&node_dir, e))?;
        let path = node_dir.join("node.toml");
        let text = toml::to_string(file).map_err(|e| e.to_string())?;
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    let path = dir.join("s3-keys.toml");
    let (access, secret) = s3_credentials();
    crate::s3::write_key_file(
        &path,
        &access,
        &secret,
        &crate::config::node_id(&admin_key()),
    )
    .map_err(|e| io(&path, e))?;
    let path = dir.join("admin.key");
    std::fs::write(&path, private_key_hex(&admin_key()) + "\n").map_err(|e| io(&path, e))?;
    let path = dir.join("genesis.toml");
    let text = toml::to_string(&genesis).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    Ok(true)
}
