//! Typed bodies of the admin API, shared by the server ([`crate::admin`]) and its clients (the
//! CLI and the devnet supervisor), so both ends agree on field names and types at compile time.

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
}
