//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cairn_ledger::*;
use ed25519_dalek::SigningKey;

/// Seed of the node key of the one node in [`genesis`] (the genesis committee).
pub const GENESIS_NODE_SEED: u8 = 9;

/// Node id registered in [`genesis`] as its only validator (the committee), operated by
/// `key(OP)`; a real key's id, so tests can sign proofs of possession for it.
pub fn genesis_node() -> NodeId {
    node_id(GENESIS_NODE_SEED)
}
/// Genesis account with no node.
pub const ADMIN: u8 = 1;
/// Genesis account operating [`genesis_node`].
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
        audit: Default::default(),
        chain_id: "test".into(),
        accounts: vec![
            (id(&key(ADMIN)), "admin".into()),
            (id(&key(OP)), "op".into()),
        ],
        nodes: vec![(
            genesis_node(),
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
    signed_until(signer, nonce, VALID_UNTIL, kind)
}

/// Like [`signed`] with an explicit `valid_until` height.
pub fn signed_until(signer: u8, nonce: u64, valid_until: u64, kind: TxKind) -> SignedTx {
    let k = key(signer);
    Tx {
        signer: id(&k),
        nonce,
        valid_until,
        kind,
    }
    .sign(&k)
}

/// `valid_until` of test transactions: valid from genesis through this height.
pub const VALID_UNTIL: u64 = MAX_TX_VALIDITY_BLOCKS;

/// The node id of test node key `seed`.
pub fn node_id(seed: u8) -> NodeId {
    id(&key(seed))
}

/// A registration of node key `node_seed` by operator `operator`, with its proof of possession.
pub fn register_node_as(
    operator: u8,
    node_seed: u8,
    zone: &str,
    roles: Roles,
    addresses: Vec<String>,
    capacity_bytes: u64,
) -> TxKind {
    use ed25519_dalek::Signer;
    let node = node_id(node_seed);
    let message = admission::possession_message(
        &id(&key(operator)),
        &node,
        zone,
        &roles,
        &addresses,
        capacity_bytes,
        5,
    );
    TxKind::RegisterNode {
        node,
        zone: zone.into(),
        roles,
        addresses,
        capacity_bytes,
        stake: 5,
        possession: key(node_seed).sign(&message).to_bytes().to_vec(),
    }
}

/// An `AdmitNode` granting `roles`/`capacity_bytes` to `node`, approved by `approvers`.
pub fn admit(
    state: &State,
    node: NodeId,
    roles: Roles,
    capacity_bytes: u64,
    approvers: &[u8],
) -> TxKind {
    use ed25519_dalek::Signer;
    let admissions = state.node(&node).map_or(0, |n| n.admissions);
    let message =
        admission::admit_message(state.chain_id(), &node, &roles, capacity_bytes, admissions);
    TxKind::AdmitNode {
        node,
        roles,
        capacity_bytes,
        approvals: approvers
            .iter()
            .map(|a| (id(&key(*a)), key(*a).sign(&message).to_bytes().to_vec()))
            .collect(),
    }
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

/// A storage-node registration of node key `node_seed` in zone z2, by `operator`.
pub fn register_node(operator: u8, node_seed: u8, address: &str) -> TxKind {
    register_node_as(
        operator,
        node_seed,
        "z2",
        roles(false, true),
        vec![address.into()],
        1 << 40,
    )
}

/// Storage node `i` of [`push_storage_nodes`] (genesis-admitted, no key behind it).
pub fn storage_node(i: u8) -> NodeId {
    [100 + i; 32]
}

/// Adds 12 genesis storage nodes (1 TiB each, zones z0..z2) operated by `operator`.
pub fn push_storage_nodes(g: &mut Genesis, operator: u8) {
    for i in 0..12u8 {
        g.nodes.push((
            storage_node(i),
            NodeRecordInit {
                operator: id(&key(operator)),
                zone: format!("z{}", i % 3),
                roles: roles(false, true),
                addresses: vec![format!("127.0.0.1:{}", 2000 + u16::from(i))],
                capacity_bytes: 1 << 40,
                stake: 1,
            },
        ));
    }
}

/// Keys of the four validators [`push_validators`] adds.
pub const VALIDATORS: [u8; 4] = [10, 11, 12, 13];

/// Adds the four [`VALIDATORS`] to `g`, each with its own account: zone z1, gateway and
/// validator roles (storage as given), an S3 address 127.0.1.n:9000.
pub fn push_validators(g: &mut Genesis, storage: bool) {
    for (n, op) in VALIDATORS.iter().enumerate() {
        let k = key(*op);
        g.accounts.push((id(&k), format!("v{n}")));
        g.nodes.push((
            id(&k),
            NodeRecordInit {
                operator: id(&k),
                zone: "z1".into(),
                roles: Roles {
                    validator: true,
                    storage,
                    gateway: true,
                    cache: false,
                },
                addresses: vec![
                    "127.0.0.1:1".into(),
                    "127.0.0.1:2".into(),
                    format!("127.0.1.{}:9000", n + 1),
                ],
                capacity_bytes: 1,
                stake: 1,
            },
        ));
    }
}

/// A manifest of `size` bytes written at `modified_ms` on `placement`: one segment (none when
/// empty) whose first six fragments are stored.
pub fn manifest_on(size: u64, modified_ms: u64, placement: Vec<NodeId>) -> objects::ObjectManifest {
    let fragments = placement.len();
    objects::ObjectManifest {
        size_bytes: size,
        etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
        content_type: "application/octet-stream".into(),
        modified_ms,
        metadata: vec![],
        placement,
        segments: if size == 0 {
            vec![]
        } else {
            vec![objects::Segment {
                len_bytes: size,
                fragment_roots: (0..fragments as u8).map(|i| [i; 32]).collect(),
                stored_mask: 0x3f,
            }]
        },
    }
}

/// Placement on the 12 nodes of [`push_storage_nodes`], in order.
pub fn storage_placement() -> Vec<NodeId> {
    (0..12).map(storage_node).collect()
}

/// `CreateBucket` of a private RS(4, 8) bucket owned by `key(owner)`.
pub fn create_bucket(owner: u8, bucket: &str) -> TxKind {
    TxKind::CreateBucket {
        owner: id(&key(owner)),
        bucket: bucket.into(),
        acl: objects::Acl::Private,
        data_shards: 4,
        parity_shards: 8,
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
