//! Property tests: no panics on untrusted bytes, canonical round trips, determinism, replay.

mod common;

use cairn_ledger::*;
use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn arb_roles() -> impl Strategy<Value = Roles> {
    (any::<[bool; 4]>())
        .prop_filter("at least one role", |r| r.iter().any(|b| *b))
        .prop_map(|[validator, storage, gateway, cache]| Roles {
            validator,
            storage,
            gateway,
            cache,
        })
}

fn arb_address() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port)).to_string()),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::from((ip, port)).to_string()),
    ]
}

/// Any transaction kind that passes stateless validation when signed by [`ADMIN`].
fn arb_kind() -> impl Strategy<Value = TxKind> {
    arb_kind_for(ADMIN)
}

/// Any transaction kind that passes stateless validation (proof of possession included) when
/// signed by test key `signer`.
fn arb_kind_for(signer: u8) -> impl Strategy<Value = TxKind> {
    use ed25519_dalek::Signer;
    prop_oneof![
        "[a-z0-9-]{1,64}".prop_map(|name| TxKind::RegisterAccount { name }),
        (
            any::<[u8; 32]>(),
            "[a-z0-9-]{1,32}",
            arb_roles(),
            proptest::collection::vec(arb_address(), 1..=MAX_ADDRESSES),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(
                move |(node_seed, zone, roles, addresses, capacity_bytes, stake)| {
                    let node_key = ed25519_dalek::SigningKey::from_bytes(&node_seed);
                    let node = node_key.verifying_key().to_bytes();
                    let message = admission::possession_message(
                        &id(&key(signer)),
                        &node,
                        &zone,
                        &roles,
                        &addresses,
                        capacity_bytes,
                        stake,
                    );
                    TxKind::RegisterNode {
                        node,
                        zone,
                        roles,
                        addresses,
                        capacity_bytes,
                        stake,
                        possession: node_key.sign(&message).to_bytes().to_vec(),
                    }
                }
            ),
        (
            any::<[u8; 32]>(),
            any::<[bool; 4]>(),
            any::<u64>(),
            proptest::collection::vec((any::<[u8; 32]>(), any::<u8>()), 0..=zones::MAX_APPROVALS)
        )
            .prop_map(
                |(node, [validator, storage, gateway, cache], capacity_bytes, approvals)| {
                    TxKind::AdmitNode {
                        node,
                        roles: Roles {
                            validator,
                            storage,
                            gateway,
                            cache,
                        },
                        capacity_bytes,
                        approvals: approvals
                            .into_iter()
                            .map(|(who, b)| (who, vec![b; 64]))
                            .collect(),
                    }
                }
            ),
        (any::<[u8; 32]>(), any::<u64>()).prop_map(|(node, seq)| TxKind::Heartbeat { node, seq }),
        (
            "[a-zA-Z0-9._/-]{1,128}",
            proptest::collection::vec(any::<char>(), 0..200),
            any::<u64>()
        )
            .prop_map(|(key, chars, expected_version)| {
                let mut value: String = chars.into_iter().collect();
                while value.len() > MAX_CONFIG_VALUE_SIZE_BYTES {
                    value.pop();
                }
                TxKind::ConfigSet {
                    key,
                    value,
                    expected_version,
                }
            }),
        (
            any::<[u8; 32]>(),
            "[a-z0-9][a-z0-9-]{1,40}[a-z0-9]",
            any::<bool>(),
            1u8..=32,
            1u8..=32
        )
            .prop_map(|(owner, bucket, public, data_shards, parity_shards)| {
                TxKind::CreateBucket {
                    owner,
                    bucket,
                    acl: if public {
                        objects::Acl::PublicRead
                    } else {
                        objects::Acl::Private
                    },
                    data_shards,
                    parity_shards,
                }
            }),
        (
            any::<[u8; 32]>(),
            "[a-z0-9]{3,20}",
            "[ -~]{1,100}",
            any::<u64>()
        )
            .prop_map(|(owner, bucket, key, request_ms)| TxKind::DeleteObject {
                owner,
                bucket,
                key,
                request_ms
            }),
        (any::<[u8; 32]>(), any::<bool>())
            .prop_filter("not self", |(g, _)| *g != [0; 32])
            .prop_map(|(gateway, allowed)| TxKind::AuthorizeGateway { gateway, allowed }),
        (
            any::<[u8; 32]>(),
            "[ -~]{1,200}",
            2usize..=16,
            proptest::collection::vec(1u64..=objects::MAX_SEGMENT_SIZE_BYTES, 0..6),
            any::<bool>()
        )
            .prop_map(|(owner, key, fragments, lens, if_absent)| {
                let manifest = objects::ObjectManifest {
                    size_bytes: lens.iter().sum(),
                    etag: "0123abcd".into(),
                    content_type: "text/plain".into(),
                    modified_ms: 1_700_000_000_000,
                    metadata: vec![("k".into(), "v".into())],
                    placement: (0..fragments as u8).map(|i| [i; 32]).collect(),
                    segments: lens
                        .iter()
                        .map(|&len_bytes| objects::Segment {
                            len_bytes,
                            fragment_roots: vec![[7; 32]; fragments],
                            stored_mask: 1,
                        })
                        .collect(),
                };
                TxKind::PutObject {
                    owner,
                    bucket: "bucket".into(),
                    key,
                    manifest,
                    if_absent,
                }
            }),
    ]
}

/// One operation of the random workload: (signer, nonce, kind selector, small parameters).
#[derive(Clone, Debug)]
struct Op {
    signer: u8,
    nonce: u64,
    what: u8,
    a: u8,
    b: u64,
}

fn arb_op() -> impl Strategy<Value = Op> {
    (1u8..=3, 1u64..24, 0u8..5, 0u8..3, 0u64..4).prop_map(|(signer, nonce, what, a, b)| Op {
        signer,
        nonce,
        what,
        a,
        b,
    })
}

fn op_tx(op: &Op) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let seed = if op.a == 0 {
        GENESIS_NODE_SEED
    } else {
        10 + op.a
    };
    let node = node_id(seed);
    let kind = match op.what {
        0 => TxKind::RegisterAccount {
            name: format!("acct-{}", op.signer),
        },
        1 => register_node(op.signer, seed, "10.1.2.3:4000"),
        2 => heartbeat(node, op.b),
        // An admission approved by the committee operator (OP) granting storage and capacity
        // b, signed at admission count b % 2, so some approvals are stale or replayed.
        4 => {
            let roles = roles(false, true);
            let message = admission::admit_message("test", &node, &roles, op.b, op.b % 2);
            TxKind::AdmitNode {
                node,
                roles,
                capacity_bytes: op.b,
                approvals: vec![(id(&key(OP)), key(OP).sign(&message).to_bytes().to_vec())],
            }
        }
        _ => cfg(&format!("k{}", op.a), &format!("v{}", op.b), op.b),
    };
    tx(op.signer, op.nonce, kind)
}

fn blocks_of(ops: &[Op]) -> Vec<Vec<Vec<u8>>> {
    ops.chunks(4)
        .map(|c| c.iter().map(op_tx).collect())
        .collect()
}

fn run(blocks: &[Vec<Vec<u8>>]) -> (State, Vec<Hash>) {
    let mut s = State::genesis(&genesis()).unwrap();
    let mut roots = vec![s.state_root()];
    for (h, block) in blocks.iter().enumerate() {
        s.apply_block(h as u64 + 1, (h as u64 + 1) * 1_000, block)
            .unwrap();
        roots.push(s.state_root());
    }
    (s, roots)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(stx) = SignedTx::decode(&bytes) {
            prop_assert_eq!(&stx.encode(), &bytes, "decode accepts only canonical bytes");
        }
        let _ = SignedTx::decode_and_verify(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_encodings(
        kind in arb_kind(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut bytes = tx(ADMIN, 7, kind);
        for (at, byte, how) in edits {
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        match SignedTx::decode(&bytes) {
            Ok(stx) => prop_assert_eq!(&stx.encode(), &bytes),
            Err(e) => {
                let decode_error = matches!(e, TxError::Malformed { .. } | TxError::Oversize { .. });
                prop_assert!(decode_error, "decode returned {:?}", e);
            }
        }
        let _ = SignedTx::decode_and_verify(&bytes);
    }

    #[test]
    fn valid_txs_round_trip(
        (signer, kind) in (1u8..=3).prop_flat_map(|signer| (Just(signer), arb_kind_for(signer))),
        nonce in 1u64..,
    ) {
        let stx = signed(signer, nonce, kind);
        prop_assert_eq!(stx.tx.validate(), Ok(()));
        let bytes = stx.encode();
        prop_assert!(bytes.len() <= MAX_TX_SIZE_BYTES);
        let decoded = SignedTx::decode_and_verify(&bytes).unwrap();
        prop_assert_eq!(&decoded, &stx);
        prop_assert_eq!(decoded.hash(), stx.hash());
    }

    #[test]
    fn same_blocks_give_same_roots_and_persist(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let blocks = blocks_of(&ops);
        let mut a = State::genesis(&genesis()).unwrap();
        let mut b = State::genesis(&genesis()).unwrap();
        let mut mirror = BTreeMap::new();
        absorb(&mut mirror, b.take_dirty());
        for (h, block) in blocks.iter().enumerate() {
            let height = h as u64 + 1;
            let ra = a.apply_block(height, height * 1_000, block).unwrap();
            let rb = b.apply_block(height, height * 1_000, block).unwrap();
            prop_assert_eq!(&ra, &rb);
            prop_assert_eq!(ra.state_root, a.state_root());
            // The durable mirror, fed only by take_dirty, rebuilds the live state.
            absorb(&mut mirror, b.take_dirty());
            let rebuilt = State::from_entries(mirror.clone()).unwrap();
            prop_assert_eq!(rebuilt.state_root(), b.state_root());
            prop_assert_eq!(&rebuilt, &b);
        }
    }

    #[test]
    fn roots_differ_exactly_when_state_differs(
        ops_a in proptest::collection::vec(arb_op(), 1..24),
        ops_b in proptest::collection::vec(arb_op(), 1..24),
    ) {
        let (blocks_a, blocks_b) = (blocks_of(&ops_a), blocks_of(&ops_b));
        // Same number of blocks, so only content can tell the states apart.
        let n = blocks_a.len().min(blocks_b.len());
        let (sa, _) = run(&blocks_a[..n]);
        let (sb, _) = run(&blocks_b[..n]);
        prop_assert_eq!(sa.entries() == sb.entries(), sa.state_root() == sb.state_root());
    }

    #[test]
    fn an_accepted_tx_always_moves_the_root(ops in proptest::collection::vec(arb_op(), 1..24)) {
        let blocks = blocks_of(&ops);
        let mut s = State::genesis(&genesis()).unwrap();
        for (h, block) in blocks.iter().enumerate() {
            let height = h as u64 + 1;
            let mut empty = s.clone();
            empty.apply_block(height, height * 1_000, &[] as &[Vec<u8>]).unwrap();
            let out = s.apply_block(height, height * 1_000, block).unwrap();
            let any_ok = out.receipts.iter().any(Result::is_ok);
            prop_assert_eq!(any_ok, out.state_root != empty.state_root(),
                "root moves iff a tx was accepted");
        }
    }

    #[test]
    fn nonce_window_matches_a_set_model(nonces in proptest::collection::vec(0u64..200, 1..300)) {
        let mut acct = account(0, 0);
        let mut used = BTreeSet::new();
        for n in nonces {
            let max = used.last().copied().unwrap_or(0);
            let expect_ok = n >= 1 && !used.contains(&n) && (n > max || max - n < NONCE_WINDOW);
            match check_nonce(&acct, n) {
                Ok((nonce_max, nonce_window)) => {
                    prop_assert!(expect_ok, "nonce {} accepted against the model", n);
                    prop_assert!(used.insert(n), "nonce {} accepted twice", n);
                    acct.nonce_max = nonce_max;
                    acct.nonce_window = nonce_window;
                }
                Err(_) => prop_assert!(!expect_ok, "nonce {} refused against the model", n),
            }
        }
    }
}
