//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cairn_ledger::*;
use ed25519_dalek::SigningKey;

/// Node id registered in [`genesis`], operated by `key(OP)`.
pub const GENESIS_NODE: NodeId = [9; 32];
/// Genesis account with no node.
pub const ADMIN: u8 = 1;
/// Genesis account operating [`GENESIS_NODE`].
pub const OP: u8 = 2;
/// A key with no account at genesis.
pub const STRANGER: u8 = 3;

pub fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

pub fn id(k: &SigningKey) -> AccountId {
    k.verifying_key().to_bytes()
}

pub fn roles(validator: bool, storage: bool) -> Roles {
    Roles {
        validator,
        storage,
        gateway: false,
        cache: false,
    }
}

pub fn genesis() -> Genesis {
    Genesis {
        chain_id: "test".into(),
        accounts: vec![
            (id(&key(ADMIN)), "admin".into()),
            (id(&key(OP)), "op".into()),
        ],
        nodes: vec![(
            GENESIS_NODE,
            NodeRecordInit {
                operator: id(&key(OP)),
                zone: "z1".into(),
                roles: roles(true, false),
                addresses: vec!["127.0.0.1:1".into()],
                capacity_bytes: 1,
                stake: 1,
            },
        )],
    }
}

pub fn signed(signer: u8, nonce: u64, kind: TxKind) -> SignedTx {
    let k = key(signer);
    Tx {
        signer: id(&k),
        nonce,
        kind,
    }
    .sign(&k)
}

pub fn tx(signer: u8, nonce: u64, kind: TxKind) -> Vec<u8> {
    signed(signer, nonce, kind).encode()
}

pub fn cfg(k: &str, value: &str, expected_version: u64) -> TxKind {
    TxKind::ConfigSet {
        key: k.into(),
        value: value.into(),
        expected_version,
    }
}

pub fn heartbeat(node: NodeId, seq: u64) -> TxKind {
    TxKind::Heartbeat { node, seq }
}

pub fn register_node(node: NodeId, address: &str) -> TxKind {
    TxKind::RegisterNode {
        node,
        zone: "z2".into(),
        roles: roles(false, true),
        addresses: vec![address.into()],
        capacity_bytes: 1 << 40,
        stake: 5,
    }
}

pub fn account(nonce_max: u64, nonce_window: u64) -> Account {
    Account {
        name: "a".into(),
        nonce_max,
        nonce_window,
    }
}

/// Applies `take_dirty` to a mirror of the durable store.
pub fn absorb(
    mirror: &mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    dirty: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) {
    for (k, v) in dirty {
        match v {
            Some(v) => mirror.insert(k, v),
            None => mirror.remove(&k),
        };
    }
}
