//! Typed bodies of the admin API, shared by the server ([`crate::admin`]) and its clients (the
//! CLI and the devnet supervisor), so both ends agree on field names and types at compile time.

use cairn_ledger::{registry::Service, Roles};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `GET /status`: this node's view of the chain and of the node registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Node name.
    pub name: String,
    /// False once a critical worker failed.
    pub healthy: bool,
    /// Names of the failed critical workers.
    pub failed_workers: Vec<String>,
    /// Chain id.
    pub chain_id: String,
    /// This node's id (hex).
    pub node_id: String,
    /// Latest finalized and applied height.
    pub height: u64,
    /// State root after that height (hex).
    pub state_root: String,
    /// That block's digest (hex).
    pub block_digest: String,
    /// That block's proposer time (Unix ms).
    pub block_timestamp_ms: u64,
    /// Committee keys (hex).
    pub committee: Vec<String>,
    /// Transactions waiting in this node's mempool.
    pub mempool_txs: usize,
    /// Admitted nodes per zone.
    pub nodes_per_zone: BTreeMap<String, u64>,
    /// Admitted nodes the ledger's health rule counts as healthy.
    pub nodes_healthy: u64,
    /// Admitted nodes.
    pub nodes_total: u64,
    /// Registrations awaiting admission.
    pub nodes_pending: u64,
}

/// `GET /accounts/{id}`: an account's name (`None` if unregistered) and highest used nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Account name.
    pub name: Option<String>,
    /// Highest nonce used (0 for a new account).
    pub nonce_max: u64,
}

/// `GET /nodes`: the node registry as of one finalized block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nodes {
    /// Height of the state read.
    pub height: u64,
    /// That block's time (Unix ms), which the health rule measures against.
    pub time_ms: u64,
    /// Every registered node, admitted or pending.
    pub nodes: Vec<NodeView>,
}

/// Whether a registered node has been admitted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admission {
    /// Registered, waiting for a committee quorum; holds no roles.
    Pending,
    /// Admitted with the granted `roles` and `capacity_bytes`.
    Admitted,
}

/// One registered node as `GET /nodes` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id (hex).
    pub node_id: String,
    /// Operator account (hex).
    pub operator: String,
    /// Failure domain.
    pub zone: String,
    /// Pending or admitted.
    pub status: Admission,
    /// Granted roles (none while pending).
    pub roles: Roles,
    /// Roles asked for at registration.
    pub requested_roles: Roles,
    /// Capacity asked for at registration.
    pub requested_capacity_bytes: u64,
    /// How many admissions this node has had (names the next approval).
    pub admissions: u64,
    /// Advertised addresses in registry order.
    pub addresses: Vec<String>,
    /// Advertised addresses by service name (`p2p`, `admin`, `s3`, `fragments`, ...).
    pub endpoints: BTreeMap<String, String>,
    /// Granted capacity.
    pub capacity_bytes: u64,
    /// Stake.
    pub stake: u64,
    /// Height of registration.
    pub registered_height: u64,
    /// Block time of its last accepted heartbeat (Unix ms).
    pub last_seen_ms: u64,
    /// Whether the ledger's one health rule counts it healthy.
    pub healthy: bool,
}

impl NodeView {
    /// True once admitted.
    pub fn admitted(&self) -> bool {
        self.status == Admission::Admitted
    }

    /// The address it advertises for `service`.
    pub fn endpoint(&self, service: Service) -> Option<&str> {
        self.endpoints.get(service.name()).map(String::as_str)
    }
}

/// `GET /tx/{hash}`: where a transaction is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum TxState {
    /// In this node's mempool.
    Pending,
    /// Not known to this node.
    Unknown,
    /// Finalized at `height`.
    Finalized {
        /// Height of the block that carried it.
        height: u64,
        /// It lost its nonce to another transaction of the account: sign it again.
        fresh_nonce: bool,
        /// "ok", or the ledger's reason for rejecting it.
        result: String,
    },
}

/// What [`TxState::Finalized::result`] holds for an applied transaction.
pub const TX_OK: &str = "ok";

impl TxState {
    /// The ledger's rejection, if the transaction finalized rejected.
    pub fn rejection(&self) -> Option<&str> {
        match self {
            TxState::Finalized { result, .. } if result != TX_OK => Some(result),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_state_keeps_its_wire_shape() {
        let done = TxState::Finalized {
            height: 9,
            fresh_nonce: false,
            result: TX_OK.into(),
        };
        let text = serde_json::to_string(&done).expect("serializes");
        assert_eq!(
            text,
            r#"{"status":"finalized","height":9,"fresh_nonce":false,"result":"ok"}"#
        );
        assert_eq!(
            serde_json::from_str::<TxState>(&text).expect("parses"),
            done
        );
        assert_eq!(
            serde_json::from_str::<TxState>(r#"{"status":"pending"}"#).expect("parses"),
            TxState::Pending
        );
        assert_eq!(done.rejection(), None);
        let refused = TxState::Finalized {
            height: 9,
            fresh_nonce: true,
            result: "nonce 3 was already used".into(),
        };
        assert_eq!(refused.rejection(), Some("nonce 3 was already used"));
    }

    #[test]
    fn nodes_keep_their_wire_shape() {
        // The shape the Python scenarios and older CLIs read; field names must not drift.
        let text = r#"{"height":7,"time_ms":1000,"nodes":[{"node_id":"ab","operator":"cd",
            "zone":"z1","status":"pending",
            "roles":{"validator":false,"storage":false,"gateway":false,"cache":false},
            "requested_roles":{"validator":false,"storage":true,"gateway":true,"cache":false},
            "requested_capacity_bytes":5,"admissions":0,"addresses":["127.0.0.1:1","127.0.0.1:2"],
            "endpoints":{"p2p":"127.0.0.1:1","admin":"127.0.0.1:2"},"capacity_bytes":0,
            "stake":1,"registered_height":3,"last_seen_ms":900,"healthy":false}]}"#;
        let nodes: Nodes = serde_json::from_str(text).expect("parses");
        let n = &nodes.nodes[0];
        assert!(!n.admitted());
        assert!(n.requested_roles.gateway && !n.roles.gateway);
        assert_eq!(n.endpoint(Service::Admin), Some("127.0.0.1:2"));
        assert_eq!(n.endpoint(Service::S3), None);
        let again: serde_json::Value = serde_json::to_value(&nodes).expect("serializes");
        let want: serde_json::Value = serde_json::from_str(text).expect("parses");
        assert_eq!(again, want);
    }
}
