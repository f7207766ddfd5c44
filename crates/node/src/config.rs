//! `node.toml` and `genesis.toml`: parsing, validation and conversion to ledger/chain types.
//!
//! Both files reject unknown keys, so a typo is an error rather than a silently ignored
//! setting. Relative paths in `node.toml` are resolved against the file's own directory.

use cairn_ledger::{Genesis, NodeRecordInit, Roles};
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::{ed25519, Signer};
use serde::{Deserialize, Serialize};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// Errors loading configuration; each names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown keys included).
    #[error("invalid config {path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// Parser message (names the offending key and line).
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("invalid value in {path}: {field}: {reason}")]
    Invalid {
        /// File path.
        path: PathBuf,
        /// Key name.
        field: &'static str,
        /// What is wrong and what is expected.
        reason: String,
    },
}

/// Tunables a node may override (all optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Longest a leader waits for transactions before an empty block.
    pub empty_block_interval_ms: Option<u64>,
    /// Leader timeout.
    pub leader_timeout_ms: Option<u64>,
    /// Mempool bound in transactions.
    pub mempool_max_txs: Option<usize>,
    /// Interval between this node's heartbeat transactions (0 disables).
    pub heartbeat_interval_ms: Option<u64>,
    /// Average read rate of the fragment scrubber (storage nodes; 0 = unpaced).
    pub scrub_bytes_per_sec: Option<u64>,
}

/// `node.toml`: one node's identity, addresses and storage.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// Path to `genesis.toml`.
    pub genesis: PathBuf,
    /// Hex-encoded 32-byte ed25519 private key (p2p identity, consensus key, operator account).
    pub private_key: String,
    /// Directory for the node's journals, archives and state database.
    pub data_dir: PathBuf,
    /// Address the p2p listener binds.
    pub p2p_listen: SocketAddr,
    /// Address the admin HTTP API binds.
    pub admin_listen: SocketAddr,
    /// Address the fragment listener binds (storage nodes: required; others: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_listen: Option<SocketAddr>,
    /// Optional tunables.
    #[serde(default)]
    pub tuning: Tuning,
    /// S3 endpoint (gateway nodes only; absent = no S3 endpoint).
    #[serde(default)]
    pub s3: Option<S3File>,
    /// Authoritative DNS server (absent = none).
    #[serde(default)]
    pub dns: Option<DnsFile>,
}

/// `[dns]` of `node.toml`: this node's authoritative DNS server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// Address the UDP and TCP listeners bind.
    pub listen: SocketAddr,
    /// Secondaries (e.g. Knot, NSD, BIND) to NOTIFY when a zone changes.
    #[serde(default)]
    pub notify: Vec<SocketAddr>,
    /// Answers per second per client address (default 10000; 0 = unlimited).
    #[serde(default)]
    pub rate_limit_qps: Option<u32>,
    /// UDP worker threads (default 2).
    #[serde(default)]
    pub udp_threads: Option<usize>,
}

/// `[s3]` of `node.toml`: this gateway's S3 endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    /// Address the S3 listener binds.
    pub listen: SocketAddr,
    /// The gateway's local key file (`[[keys]] access_key, secret_key, account`).
    pub keys: PathBuf,
    /// Domain for virtual-host-style addressing (`<bucket>.<domain>`).
    #[serde(default = "default_s3_domain")]
    pub domain: String,
    /// Segment size of new objects (default 16 MiB).
    #[serde(default)]
    pub segment_size_bytes: Option<usize>,
}

fn default_s3_domain() -> String {
    "s3.localhost".into()
}

/// A node listed in genesis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisNode {
    /// Hex public key (node id and operator account).
    pub public_key: String,
    /// Human name, also the operator account name.
    pub name: String,
    /// Failure zone.
    pub zone: String,
    /// Roles: any of validator, storage, gateway, cache.
    pub roles: Vec<String>,
    /// p2p address peers dial.
    pub p2p_address: SocketAddr,
    /// Admin API address.
    pub admin_address: SocketAddr,
    /// S3 address clients use (gateways; the IP managed names like `s3.<zone>` point at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_address: Option<SocketAddr>,
    /// Fragment listener address gateways use (storage nodes; `addresses[3]` of the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_address: Option<SocketAddr>,
    /// Advertised capacity.
    pub capacity_bytes: u64,
    /// Stake.
    pub stake: u64,
}

/// A genesis account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// Hex public key.
    pub public_key: String,
    /// Account name.
    pub name: String,
}

/// `genesis.toml`: the chain's starting point, identical on every node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisFile {
    /// Chain identifier.
    pub chain_id: String,
    /// Accounts (besides node operators, which are implied by `nodes`).
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// Nodes.
    pub nodes: Vec<GenesisNode>,
    /// Audit rounds, deadline and penalties (`[audit]`; the devnet's defaults if absent).
    #[serde(default)]
    pub audit: cairn_ledger::audit::AuditParams,
}

/// A node's fully validated configuration.
#[derive(Clone)]
pub struct NodeConfig {
    /// The parsed `node.toml`, with paths resolved.
    pub file: NodeFile,
    /// Node identity key.
    pub key: ed25519::PrivateKey,
    /// The parsed genesis.
    pub genesis: GenesisFile,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = read(path)?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: toml_error(&text, &e),
    })
}

/// A TOML error without the source excerpt `toml` quotes by default: the offending line may
/// hold a private key or an S3 secret, and these errors end up in logs.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

/// Decodes a 64-hex-character string to 32 bytes.
pub fn hex32(s: &str) -> Option<[u8; 32]> {
    unhex(s.trim())
}

pub use cairn_storage::protocol::{hex, unhex};

/// Parses a hex private key.
pub fn private_key(s: &str) -> Option<ed25519::PrivateKey> {
    ed25519::PrivateKey::decode(bytes::Bytes::copy_from_slice(&hex32(s)?)).ok()
}

/// Hex of a private key (for writing config files).
pub fn private_key_hex(key: &ed25519::PrivateKey) -> String {
    hex(&key.encode())
}

/// The ledger signing key matching a node's identity key.
pub fn account_key(key: &ed25519::PrivateKey) -> ed25519_dalek::SigningKey {
    let bytes: [u8; 32] = key
        .encode()
        .as_ref()
        .try_into()
        .expect("ed25519 key is 32 bytes");
    ed25519_dalek::SigningKey::from_bytes(&bytes)
}

/// Public key bytes of a node key.
pub fn node_id(key: &ed25519::PrivateKey) -> [u8; 32] {
    key.public_key()
        .encode()
        .as_ref()
        .try_into()
        .expect("ed25519 public key is 32 bytes")
}

impl NodeConfig {
    /// Loads and validates `node.toml` and the genesis it points to.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut file: NodeFile = parse(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        if file.genesis.is_relative() {
            file.genesis = base.join(&file.genesis);
        }
        if file.data_dir.is_relative() {
            file.data_dir = base.join(&file.data_dir);
        }
        if let Some(s3) = &mut file.s3 {
            if s3.keys.is_relative() {
                s3.keys = base.join(&s3.keys);
            }
        }
        let key = private_key(&file.private_key).ok_or_else(|| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: "private_key",
            reason: "expected 64 hex characters (a 32-byte ed25519 key)".into(),
        })?;
        let genesis = GenesisFile::load(&file.genesis)?;
        Ok(Self { file, key, genesis })
    }
}

impl GenesisFile {
    /// Loads and validates a genesis file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let genesis: Self = parse(path)?;
        genesis
            .to_ledger()
            .map_err(|(field, reason)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                reason,
            })?;
        Ok(genesis)
    }

    /// Committee: nodes with the validator role, in file order.
    pub fn committee(&self) -> Vec<ed25519::PublicKey> {
        self.nodes
            .iter()
            .filter(|n| n.roles.iter().any(|r| r == "validator"))
            .filter_map(|n| hex32(&n.public_key))
            .filter_map(|b| ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(&b)).ok())
            .collect()
    }

    /// Converts to the ledger's genesis, or names the bad field.
    pub fn to_ledger(&self) -> Result<Genesis, (&'static str, String)> {
        let mut accounts = Vec::new();
        for a in &self.accounts {
            let id = hex32(&a.public_key).ok_or((
                "accounts.public_key",
                "expected 64 hex characters".to_string(),
            ))?;
            accounts.push((id, a.name.clone()));
        }
        let mut nodes = Vec::new();
        for n in &self.nodes {
            let id = hex32(&n.public_key)
                .ok_or(("nodes.public_key", "expected 64 hex characters".to_string()))?;
            ed25519::PublicKey::decode(bytes::Bytes::copy_from_slice(&id)).map_err(|_| {
                (
                    "nodes.public_key",
                    format!("{} is not an ed25519 point", n.public_key),
                )
            })?;
            let mut roles = Roles {
                validator: false,
                storage: false,
                gateway: false,
                cache: false,
            };
            for r in &n.roles {
                match r.as_str() {
                    "validator" => roles.validator = true,
                    "storage" => roles.storage = true,
                    "gateway" => roles.gateway = true,
                    "cache" => roles.cache = true,
                    other => {
                        return Err((
                            "nodes.roles",
                            format!(
                                "unknown role {other:?}; use validator, storage, gateway or cache"
                            ),
                        ))
                    }
                }
            }
            accounts.push((id, n.name.clone()));
            // Positions: [0] p2p, [1] admin, [2] S3, [3] fragments. A node with a fragment
            // listener but no S3 endpoint repeats its admin address at [2] as a placeholder
            // (only gateway records' [2] is read as S3, and gateways must have one then).
            let s3_slot = match (n.s3_address, n.fragment_address) {
                (Some(s3), _) => Some(s3),
                (None, Some(_)) if roles.gateway => {
                    return Err((
                        "nodes.s3_address",
                        format!(
                            "gateway {} has a fragment_address but no s3_address; add one",
                            n.name
                        ),
                    ))
                }
                (None, Some(_)) => Some(n.admin_address),
                (None, None) => None,
            };
            nodes.push((
                id,
                NodeRecordInit {
                    operator: id,
                    zone: n.zone.clone(),
                    roles,
                    addresses: [
                        Some(n.p2p_address),
                        Some(n.admin_address),
                        s3_slot,
                        n.fragment_address,
                    ]
                    .into_iter()
                    .flatten()
                    .map(|a| a.to_string())
                    .collect(),
                    capacity_bytes: n.capacity_bytes,
                    stake: n.stake,
                },
            ));
        }
        let genesis = Genesis {
            chain_id: self.chain_id.clone(),
            accounts,
            nodes,
            audit: self.audit,
        };
        cairn_ledger::State::genesis(&genesis).map_err(|e| ("nodes", e.to_string()))?;
        if self.committee().is_empty() {
            return Err(("nodes.roles", "no node has the validator role".into()));
        }
        Ok(genesis)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn genesis_advertises_fragment_address_at_position_3() {
        let dir = std::env::temp_dir().join(format!("cairn-cfg-frag-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let layout = crate::devnet::Layout {
            nodes: 3,
            zones: 1,
            validators: 1,
            gateways: 1,
            base_port: 40_000,
            chain_id: "t".into(),
        };
        assert!(
            crate::devnet::ensure_layout(&dir, &layout, crate::devnet::Keys::Deterministic)
                .unwrap()
        );
        let genesis = super::GenesisFile::load(&dir.join("genesis.toml")).unwrap();
        let ledger = genesis.to_ledger().unwrap();
        let addrs = |i: usize| ledger.nodes[i].1.addresses.clone();
        // n00, n01: storage only, no S3: admin repeated at [2] as a placeholder.
        assert_eq!(
            addrs(0),
            [
                "127.0.0.1:40000",
                "127.0.0.1:41000",
                "127.0.0.1:41000",
                "127.0.0.1:44000"
            ]
        );
        // n02: the gateway: S3 at [2], fragments at [3].
        assert_eq!(addrs(2)[3], "127.0.0.1:44002");
        assert!(addrs(2)[2].ends_with(":42002"));
        let node = super::NodeConfig::load(&dir.join("nodes/n01/node.toml")).unwrap();
        assert_eq!(
            node.file.fragment_listen,
            Some("127.0.0.1:44001".parse().unwrap())
        );
        // A gateway with a fragment address but no S3 address is refused.
        let mut bad = genesis.clone();
        bad.nodes[2].s3_address = None;
        assert_eq!(bad.to_ledger().unwrap_err().0, "nodes.s3_address");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_partial_audit_table_keeps_the_other_defaults_and_bad_values_are_refused() {
        let base = "chain_id = \"t\"\nnodes = []\n";
        let parse = |extra: &str| toml::from_str::<super::GenesisFile>(&format!("{base}{extra}"));
        let none = parse("").unwrap();
        assert_eq!(none.audit, cairn_ledger::audit::AuditParams::default());
        let partial = parse("[audit]\nround_blocks = 600\n").unwrap();
        assert_eq!(partial.audit.round_blocks, 600);
        assert_eq!(
            partial.audit.challenges_per_node,
            cairn_ledger::audit::AuditParams::default().challenges_per_node
        );
        // A deadline at or past the round length would make rounds overlap.
        let bad = parse("[audit]\nround_blocks = 10\ndeadline_blocks = 10\n").unwrap();
        assert!(bad.audit.validate().is_err());
    }

    #[test]
    fn node_key_and_account_key_agree() {
        use commonware_cryptography::Signer as _;
        // Fragment requests and gateway transactions are signed with the dalek form of the
        // node's p2p key; servers and the ledger look the signer up by node id, so both must
        // be the same public key.
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(7);
        assert_eq!(
            super::account_key(&key).verifying_key().to_bytes(),
            super::node_id(&key)
        );
    }

    #[test]
    fn a_toml_error_never_quotes_the_offending_line() {
        let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let text = format!("genesis = \"g.toml\"\nprivate_key = \"{secret}\" trailing\n");
        let e = toml::from_str::<toml::Table>(&text).unwrap_err();
        assert!(
            e.to_string().contains(secret),
            "toml's own message quotes the line"
        );
        let msg = super::toml_error(&text, &e);
        assert!(!msg.contains(secret), "{msg}");
        assert!(msg.starts_with("line 2:"), "{msg}");
    }
}
