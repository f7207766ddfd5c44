//! `cairn node register | approve | admit`: joining the network and admitting a node.
//!
//! An operator registers a node with a proof of possession signed by the node key; the node is
//! `pending` (no roles, no capacity) until a quorum of the current committee's operators signs
//! an admission. `approve` prints one committee operator's approval; `admit` gathers approvals
//! (from local key files and from `--approval` strings) and submits the `AdmitNode`.

use crate::{
    client,
    config::{account_key, hex, node_id, unhex},
    dnscli::{signer, submit_in_order},
};
use cairn_ledger::{admission, AccountId, NodeId, Roles, TxKind};
use ed25519_dalek::Signer as _;
use std::path::{Path, PathBuf};

/// Arguments of `cairn node register`.
#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// Admin endpoint of any node.
    #[arg(long, default_value = "127.0.0.1:8100")]
    pub endpoint: String,
    /// File holding the node's hex private key (it signs the proof of possession and, as the
    /// operator account, the registration).
    #[arg(long)]
    pub key: PathBuf,
    /// Failure zone.
    #[arg(long)]
    pub zone: String,
    /// Requested roles, comma-separated: validator, storage, gateway, cache.
    #[arg(long)]
    pub roles: String,
    /// Requested storage capacity.
    #[arg(long, default_value_t = 0)]
    pub capacity_bytes: u64,
    /// Advertised addresses in order: p2p, admin API, S3, fragments (repeat the flag).
    #[arg(long = "address", required = true)]
    pub addresses: Vec<String>,
}

/// Arguments of `cairn node admit` and `cairn node approve`.
#[derive(clap::Args, Debug)]
pub struct AdmitArgs {
    /// Admin endpoint of any node.
    #[arg(long, default_value = "127.0.0.1:8100")]
    pub endpoint: String,
    /// The node id (hex).
    pub node: String,
    /// Roles to grant (default: what the node requested).
    #[arg(long)]
    pub roles: Option<String>,
    /// Capacity to grant (default: what the node requested).
    #[arg(long)]
    pub capacity_bytes: Option<u64>,
    /// Key files of committee operators to approve with (repeat; the first also signs the
    /// transaction).
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// Approvals from other operators, `ACCOUNT_HEX:SIGNATURE_HEX` as `cairn node approve`
    /// prints them (repeat).
    #[arg(long = "approval")]
    pub approvals: Vec<String>,
}

/// Parses `storage,gateway` into roles.
pub fn parse_roles(s: &str) -> Result<Roles, String> {
    let mut roles = admission_none();
    for r in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        match r {
            "validator" => roles.validator = true,
            "storage" => roles.storage = true,
            "gateway" => roles.gateway = true,
            "cache" => roles.cache = true,
            other => {
                return Err(format!(
                    "unknown role {other:?}; use validator, storage, gateway or cache"
                ))
            }
        }
    }
    Ok(roles)
}

fn admission_none() -> Roles {
    Roles {
        validator: false,
        storage: false,
        gateway: false,
        cache: false,
    }
}

/// `cairn node register`: registers the account if needed, then the node (pending).
pub fn register(args: &RegisterArgs) -> Result<(), String> {
    let key = signer(&args.key)?;
    let id = node_id(&key);
    let roles = parse_roles(&args.roles)?;
    let message = admission::possession_message(
        &id,
        &id,
        &args.zone,
        &roles,
        &args.addresses,
        args.capacity_bytes,
        0,
    );
    let possession = account_key(&key).sign(&message).to_bytes().to_vec();
    let mut kinds = Vec::new();
    let account: crate::api::Account =
        client::get(&args.endpoint, &format!("/accounts/{}", hex(&id)))?;
    if account.name.is_none() {
        kinds.push(TxKind::RegisterAccount {
            name: format!("node-{}", &hex(&id)[..12]),
        });
    }
    kinds.push(TxKind::RegisterNode {
        node: id,
        zone: args.zone.clone(),
        roles,
        addresses: args.addresses.clone(),
        capacity_bytes: args.capacity_bytes,
        stake: 0,
        possession,
    });
    submit_in_order(&args.endpoint, &key, kinds)?;
    println!(
        "registered node {} (pending): a committee quorum must run `cairn node admit {}`",
        hex(&id),
        hex(&id)
    );
    Ok(())
}

/// The grant `args` asks for, and the admission message the committee signs for it.
fn grant(args: &AdmitArgs) -> Result<(NodeId, Roles, u64, Vec<u8>), String> {
    let node: NodeId =
        unhex::<32>(&args.node).ok_or("NODE must be 64 hex characters (a node id)")?;
    let status: crate::api::Status = client::get(&args.endpoint, "/status")?;
    let chain_id = status.chain_id.as_str();
    let nodes: crate::api::Nodes = client::get(&args.endpoint, "/nodes")?;
    let rec = nodes
        .nodes
        .into_iter()
        .find(|n| n.node_id.eq_ignore_ascii_case(&args.node))
        .ok_or_else(|| format!("node {} is not registered", args.node))?;
    let roles = match &args.roles {
        Some(r) => parse_roles(r)?,
        None => rec.requested_roles,
    };
    let capacity_bytes = args.capacity_bytes.unwrap_or(rec.requested_capacity_bytes);
    let admissions = rec.admissions;
    let message = admission::admit_message(chain_id, &node, &roles, capacity_bytes, admissions);
    Ok((node, roles, capacity_bytes, message))
}

fn approval(key_path: &Path, message: &[u8]) -> Result<(AccountId, Vec<u8>), String> {
    let key = signer(key_path)?;
    Ok((
        node_id(&key),
        account_key(&key).sign(message).to_bytes().to_vec(),
    ))
}

/// `cairn node approve`: prints this operator's approval of the grant.
pub fn approve(args: &AdmitArgs) -> Result<(), String> {
    let (_, _, _, message) = grant(args)?;
    let key = args.keys.first().ok_or("--key is required")?;
    let (who, sig) = approval(key, &message)?;
    println!("{}:{}", hex(&who), hex(&sig));
    Ok(())
}

/// `cairn node admit`: gathers approvals and submits the admission.
pub fn admit(args: &AdmitArgs) -> Result<(), String> {
    let (node, roles, capacity_bytes, message) = grant(args)?;
    let submitter = args
        .keys
        .first()
        .ok_or("--key is required (a committee operator's key file signs the transaction)")?;
    let mut approvals = Vec::new();
    for k in &args.keys {
        approvals.push(approval(k, &message)?);
    }
    for a in &args.approvals {
        let (who, sig) = a
            .split_once(':')
            .ok_or("--approval must be ACCOUNT_HEX:SIGNATURE_HEX")?;
        let who = unhex::<32>(who).ok_or("approval account must be 64 hex characters")?;
        let sig = unhex::<64>(sig).ok_or("approval signature must be 128 hex characters")?;
        approvals.push((who, sig.to_vec()));
    }
    let kind = TxKind::AdmitNode {
        node,
        roles,
        capacity_bytes,
        approvals,
    };
    submit_in_order(&args.endpoint, &signer(submitter)?, vec![kind])?;
    println!("admitted node {}", args.node);
    Ok(())
}
