//! `cairn devnet`: writes a local network layout (genesis, node configs, keys) once, then runs
//! every node of it in this one process. Rerunning on the same directory resumes the chain.
//!
//! `cairn devnet` (and `cairn bench`) derive keys from the node index and fixed seeds
//! ([`Keys::Deterministic`]): public, for local use only. `cairn init` lays out the same shape
//! with random node, admin and S3 keys ([`Keys::Random`]) and never overwrites a file.

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

/// Where the kernel keeps its ephemeral (outgoing) port range.
pub const EPHEMERAL_RANGE_PATH: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The kernel's ephemeral port range (inclusive), if readable.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string(EPHEMERAL_RANGE_PATH).ok()?;
    let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
    let (lo, hi) = (parts.next()??, parts.next()??);
    Some((lo, hi))
}

/// The named ports that lie inside the ephemeral range `lo..=hi`.
pub fn ephemeral_overlaps(ports: &[(String, u16)], (lo, hi): (u16, u16)) -> Vec<&(String, u16)> {
    ports
        .iter()
        .filter(|(_, p)| (lo..=hi).contains(p))
        .collect()
}

/// Fails with a clear message if any listen port lies in the kernel's ephemeral range: an
/// outgoing connection (e.g. between the devnet's own nodes) may hold such a port at any time,
/// and the node that needs it then fails to bind.
pub fn check_ports_outside_ephemeral(ports: &[(String, u16)]) -> Result<(), String> {
    let Some(range) = ephemeral_range() else {
        return Ok(());
    };
    let bad = ephemeral_overlaps(ports, range);
    let Some((first, port)) = bad.first() else {
        return Ok(());
    };
    Err(format!(
        "{} listen port(s) lie in the kernel's ephemeral port range {}-{} ({EPHEMERAL_RANGE_PATH}), first {first} port {port}: outgoing connections can hold them and that node would fail to bind. Use a --base-port whose ports (base .. base+4000+nodes) stay below {} (with a new --dir; an existing layout keeps its ports)",
        bad.len(),
        range.0,
        range.1,
        range.0
    ))
}

/// Where a layout's keys come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// From the node index and fixed seeds: the same on every machine (devnet, bench).
    Deterministic,
    /// From the operating system's CSPRNG (`cairn init`).
    Random,
}

/// Printed by every `cairn devnet` run.
pub const LOCAL_ONLY_WARNING: &str = "devnet keys (node, admin, S3) are derived from public fixed seeds: for local use only; lay out a real network with `cairn init`";

/// 32 bytes from the kernel's CSPRNG.
pub fn random_bytes() -> Result<[u8; 32], String> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    Ok(seed)
}

fn random_key() -> Result<ed25519::PrivateKey, String> {
    crate::config::private_key(&hex(&random_bytes()?))
        .ok_or_else(|| "generated key rejected".into())
}

/// A random S3 access key id and secret.
fn random_s3_credentials() -> Result<(String, String), String> {
    let a = hex(&random_bytes()?).to_uppercase();
    Ok((format!("CAIRN{}", &a[..15]), hex(&random_bytes()?)))
}

/// Writes `text` to a file readable by its owner only; with [`Keys::Random`] an existing file
/// is an error (a devnet rewrites the same deterministic content).
fn write_new(path: &Path, text: &str, keys: Keys) -> Result<(), String> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(keys == Keys::Random)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!(
                    "refusing to overwrite {}: it already exists",
                    path.display()
                )
            }
            _ => format!("cannot write {}: {e}", path.display()),
        })?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Seed for the devnet admin account key (devnet only).
const ADMIN_SEED: u64 = 1_000_000;

/// The devnet admin account key.
pub fn admin_key() -> ed25519::PrivateKey {
    ed25519::PrivateKey::from_seed(ADMIN_SEED)
}

/// Writes `genesis.toml`, `admin.key`, `s3-keys.toml` and `nodes/nNN/node.toml` unless `dir`
/// already has a `genesis.toml`. Returns true if a new layout was written. With
/// [`Keys::Random`] no file is ever overwritten: any existing one is an error naming it.
pub fn ensure_layout(dir: &Path, layout: &Layout, keys: Keys) -> Result<bool, String> {
    if dir.join("genesis.toml").exists() {
        if keys == Keys::Random {
            return Err(format!(
                "refusing to overwrite {}: it already exists",
                dir.join("genesis.toml").display()
            ));
        }
        return Ok(false);
    }
    let names: Vec<String> = (0..layout.nodes).map(|i| format!("n{i:02}")).collect();
    if keys == Keys::Random {
        let mut paths = vec![dir.join("admin.key"), dir.join("s3-keys.toml")];
        paths.extend(
            names
                .iter()
                .map(|n| dir.join("nodes").join(n).join("node.toml")),
        );
        if let Some(p) = paths.iter().find(|p| p.exists()) {
            return Err(format!(
                "refusing to overwrite {}: it already exists",
                p.display()
            ));
        }
    }
    let admin = match keys {
        Keys::Deterministic => admin_key(),
        Keys::Random => random_key()?,
    };
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
        let key = match keys {
            Keys::Deterministic => ed25519::PrivateKey::from_seed(i as u64),
            Keys::Random => random_key()?,
        };
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
        audit: Default::default(),
        chain_id: layout.chain_id.clone(),
        accounts: vec![GenesisAccount {
            public_key: hex(admin.public_key().as_ref()),
            name: "admin".into(),
        }],
        nodes,
    };
    for (name, file) in &files {
        let node_dir = dir.join("nodes").join(name);
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| format!("cannot create {}: {e}", node_dir.display()))?;
        let text = toml::to_string(file).map_err(|e| e.to_string())?;
        write_new(&node_dir.join("node.toml"), &text, keys)?;
    }
    let (access, secret) = match keys {
        Keys::Deterministic => s3_credentials(),
        Keys::Random => random_s3_credentials()?,
    };
    write_new(
        &dir.join("s3-keys.toml"),
        &crate::s3::key_file_text(&access, &secret, &crate::config::node_id(&admin)),
        keys,
    )?;
    write_new(
        &dir.join("admin.key"),
        &(private_key_hex(&admin) + "\n"),
        keys,
    )?;
    let text = toml::to_string(&genesis).map_err(|e| e.to_string())?;
    write_new(&dir.join("genesis.toml"), &text, keys)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_overlap_names_only_ports_inside_the_range() {
        let ports = vec![
            ("n00 p2p".to_string(), 7100),
            ("n00 fragment".to_string(), 32_767),
            ("n01 fragment".to_string(), 32_768),
            ("n02 fragment".to_string(), 60_999),
            ("n03 fragment".to_string(), 61_000),
        ];
        let bad = ephemeral_overlaps(&ports, (32_768, 60_999));
        let names: Vec<&str> = bad.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["n01 fragment", "n02 fragment"]);
        assert!(ephemeral_overlaps(&ports[..2], (32_768, 60_999)).is_empty());
    }

    #[test]
    fn a_port_in_this_kernels_ephemeral_range_is_refused() {
        let Some((lo, _)) = ephemeral_range() else {
            return; // not Linux: nothing to check against
        };
        let err = check_ports_outside_ephemeral(&[("n05 DNS".into(), lo)]).unwrap_err();
        assert!(
            err.contains("n05 DNS") && err.contains(&lo.to_string()),
            "{err}"
        );
        if let Some(below) = lo.checked_sub(1) {
            assert!(check_ports_outside_ephemeral(&[("n05 DNS".into(), below)]).is_ok());
        }
    }
}
