//! Unit tests of the ledger rules, on the public API only.

mod common;

use cairn_ledger::*;
use common::*;
use std::collections::BTreeMap;

fn malformed(bytes: &[u8]) -> &'static str {
    match SignedTx::decode(bytes) {
        Err(TxError::Malformed { reason }) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// Offset of the kind tag in an encoding: signer (32) + nonce (8) + valid_until (8).
const TAG_OFFSET: usize = 48;

#[test]
fn decode_accepts_and_round_trips_a_valid_tx() {
    let stx = signed(ADMIN, 1, cfg("a", "v", 0));
    let bytes = stx.encode();
    assert_eq!(SignedTx::decode_and_verify(&bytes), Ok(stx.clone()));
    assert_eq!(stx.hash(), *blake3::hash(&bytes).as_bytes());
    assert_ne!(stx.hash(), signed(ADMIN, 2, cfg("a", "v", 0)).hash());
}

#[test]
fn decode_rejects_trailing_bytes() {
    let mut bytes = tx(ADMIN, 1, cfg("a", "v", 0));
    bytes.push(0);
    assert_eq!(malformed(&bytes), "trailing bytes");
}

#[test]
fn decode_rejects_every_truncation() {
    let bytes = tx(OP, 1, register_node(OP, 4, "10.0.0.1:9000"));
    for len in 0..bytes.len() {
        assert_eq!(
            malformed(&bytes[..len]),
            "truncated",
            "prefix of {len} bytes"
        );
    }
}

#[test]
fn decode_rejects_oversize_before_parsing() {
    assert_eq!(
        SignedTx::decode(&vec![0u8; MAX_TX_SIZE_BYTES + 1]),
        Err(TxError::Oversize {
            size_bytes: MAX_TX_SIZE_BYTES + 1,
            max_bytes: MAX_TX_SIZE_BYTES
        })
    );
    // At the limit the size is fine and the content is what fails.
    assert!(matches!(
        SignedTx::decode(&vec![0u8; MAX_TX_SIZE_BYTES]),
        Err(TxError::Malformed { .. })
    ));
}

#[test]
fn decode_rejects_bad_enum_tag_and_bad_bool() {
    let mut bytes = tx(ADMIN, 1, cfg("a", "v", 0));
    bytes[TAG_OFFSET] = 16; // one past the last kind (FragmentLost = 15)
    assert_eq!(malformed(&bytes), "unknown transaction kind");

    let mut node = tx(OP, 1, register_node(OP, 4, "10.0.0.1:9000"));
    // tag, node id (32), zone "z2" (4 + 2), then the first role bool.
    let role_offset = TAG_OFFSET + 1 + 32 + 4 + 2;
    assert_eq!(
        node[role_offset], 0,
        "validator role is false in the fixture"
    );
    node[role_offset] = 2;
    assert_eq!(malformed(&node), "bool must be 0 or 1");
}

#[test]
fn decode_rejects_invalid_utf8_and_over_bound_lengths() {
    let mut bytes = tx(ADMIN, 1, TxKind::RegisterAccount { name: "ab".into() });
    let name_offset = TAG_OFFSET + 1 + 4;
    bytes[name_offset] = 0xff;
    assert_eq!(malformed(&bytes), "invalid UTF-8");

    // A name longer than MAX_NAME_SIZE_BYTES is refused from its length prefix alone.
    let long = Tx {
        signer: id(&key(ADMIN)),
        nonce: 1,
        valid_until: VALID_UNTIL,
        kind: TxKind::RegisterAccount {
            name: "a".repeat(MAX_NAME_SIZE_BYTES + 1),
        },
    };
    let mut bytes = long.encode();
    bytes.extend_from_slice(&[0; 64]);
    assert_eq!(malformed(&bytes), "length exceeds bound");

    let many = Tx {
        signer: id(&key(OP)),
        nonce: 1,
        valid_until: VALID_UNTIL,
        kind: TxKind::RegisterNode {
            node: [4; 32],
            zone: "z".into(),
            roles: roles(true, true),
            addresses: vec!["10.0.0.1:1".into(); MAX_ADDRESSES + 1],
            capacity_bytes: 0,
            stake: 0,
            possession: vec![0; 64],
        },
    };
    let mut bytes = many.encode();
    bytes.extend_from_slice(&[0; 64]);
    assert_eq!(malformed(&bytes), "length exceeds bound");
}

#[test]
fn signature_tampering_is_detected() {
    let good = signed(ADMIN, 1, cfg("a", "v", 0));
    assert_eq!(good.verify_signature(), Ok(()));

    let mut body = good.encode();
    let value_offset = body.len() - 64 - 8 - 1; // last value byte
    body[value_offset] = b'w';
    assert_eq!(
        SignedTx::decode_and_verify(&body),
        Err(TxError::BadSignature)
    );

    let mut sig = good.clone();
    sig.signature[3] ^= 1;
    assert_eq!(sig.verify_signature(), Err(TxError::BadSignature));

    // Signed by another key than the signer's.
    let mut forged = Tx {
        signer: id(&key(ADMIN)),
        nonce: 1,
        valid_until: VALID_UNTIL,
        kind: cfg("a", "v", 0),
    }
    .sign(&key(STRANGER));
    assert_eq!(forged.verify_signature(), Err(TxError::BadSignature));

    // A signature over the body without the domain prefix does not verify.
    use ed25519_dalek::Signer;
    forged.signature = key(ADMIN).sign(&good.tx.encode()).to_bytes();
    forged.tx = good.tx.clone();
    assert_eq!(forged.verify_signature(), Err(TxError::BadSignature));

    // A small-order signer key is refused by verify_strict.
    let mut weak = good.clone();
    weak.tx.signer = [0; 32];
    weak.tx.signer[0] = 1;
    assert_eq!(weak.verify_signature(), Err(TxError::BadSignature));
}

fn field_error(kind: TxKind) -> Option<&'static str> {
    match SignedTx::decode_and_verify(&tx(ADMIN, 1, kind)) {
        Ok(_) => None,
        Err(TxError::InvalidField { field, .. }) => Some(field),
        Err(other) => panic!("expected InvalidField, got {other:?}"),
    }
}

#[test]
fn stateless_field_validation() {
    let name = |n: &str| TxKind::RegisterAccount { name: n.into() };
    assert_eq!(field_error(name("good-name-1")), None);
    assert_eq!(field_error(name("Upper")), Some("name"));
    assert_eq!(field_error(name("")), Some("name"));
    assert_eq!(field_error(name("a_b")), Some("name"));

    // Signed by ADMIN, with a valid proof of possession: only the named field can fail.
    let node = |zone: &str, roles: Roles, addresses: Vec<&str>| {
        register_node_as(
            ADMIN,
            4,
            zone,
            roles,
            addresses.into_iter().map(String::from).collect(),
            1,
        )
    };
    let storage = roles(false, true);
    assert_eq!(
        field_error(node("z-1", storage.clone(), vec!["[::1]:9", "1.2.3.4:5"])),
        None
    );
    assert_eq!(
        field_error(node("Z", storage.clone(), vec!["1.2.3.4:5"])),
        Some("zone")
    );
    assert_eq!(
        field_error(node(
            &"z".repeat(MAX_ZONE_SIZE_BYTES),
            storage.clone(),
            vec!["1.2.3.4:5"]
        )),
        None
    );
    assert_eq!(
        field_error(node("z", roles(false, false), vec!["1.2.3.4:5"])),
        Some("roles")
    );
    assert_eq!(
        field_error(node("z", storage.clone(), vec![])),
        Some("addresses")
    );
    assert_eq!(
        field_error(node("z", storage.clone(), vec!["example.com:80"])),
        Some("addresses")
    );
    assert_eq!(
        field_error(node("z", storage, vec!["1.2.3.4"])),
        Some("addresses")
    );

    assert_eq!(field_error(cfg("dns/zone.a-b_C", "x", 0)), None);
    assert_eq!(field_error(cfg("bad key", "x", 0)), Some("key"));
    assert_eq!(field_error(cfg("", "x", 0)), Some("key"));
    assert_eq!(
        field_error(cfg("k", &"v".repeat(MAX_CONFIG_VALUE_SIZE_BYTES), 0)),
        None
    );

    assert!(matches!(
        SignedTx::decode_and_verify(&tx(ADMIN, 0, cfg("a", "v", 0))),
        Err(TxError::InvalidField { field: "nonce", .. })
    ));
    assert!(matches!(
        SignedTx::decode_and_verify(&signed_until(ADMIN, 1, 0, cfg("a", "v", 0)).encode()),
        Err(TxError::InvalidField {
            field: "valid_until",
            ..
        })
    ));
}

#[test]
fn validate_checks_bounds_that_decode_also_checks() {
    // In-process transactions (never decoded) are held to the same bounds.
    let oversized = Tx {
        signer: id(&key(ADMIN)),
        nonce: 1,
        valid_until: VALID_UNTIL,
        kind: cfg("k", &"v".repeat(MAX_CONFIG_VALUE_SIZE_BYTES + 1), 0),
    };
    assert!(matches!(
        oversized.validate(),
        Err(TxError::InvalidField { field: "value", .. })
    ));
    let long_name = Tx {
        signer: id(&key(ADMIN)),
        nonce: 1,
        valid_until: VALID_UNTIL,
        kind: TxKind::RegisterAccount {
            name: "a".repeat(MAX_NAME_SIZE_BYTES + 1),
        },
    };
    assert!(matches!(
        long_name.validate(),
        Err(TxError::InvalidField { field: "name", .. })
    ));
}

/// Applies each tx in its own block and checks `check_tx` predicted the receipt.
fn run(s: &mut State, txs: Vec<SignedTx>) -> Vec<Result<(), TxError>> {
    txs.into_iter()
        .map(|t| {
            let predicted = s.check_tx(&t);
            let out = s
                .apply_block(s.height() + 1, (s.height() + 1) * 1_000, &[t.encode()])
                .unwrap();
            assert_eq!(out.receipts.len(), 1);
            assert_eq!(out.receipts[0], predicted, "check_tx agrees with apply");
            out.receipts[0].clone()
        })
        .collect()
}

#[test]
fn every_stateful_error_comes_from_the_right_input() {
    let mut s = State::genesis(&genesis()).unwrap();
    let r = run(
        &mut s,
        vec![
            signed(STRANGER, 1, cfg("c", "v", 0)),
            signed(ADMIN, 1, TxKind::RegisterAccount { name: "x".into() }),
            signed(
                ADMIN,
                2,
                register_node(ADMIN, GENESIS_NODE_SEED, "1.2.3.4:5"),
            ),
            signed(ADMIN, 3, heartbeat([8; 32], 1)),
            signed(ADMIN, 4, heartbeat(genesis_node(), 1)),
            signed(OP, 1, heartbeat(genesis_node(), 3)),
            signed(OP, 2, heartbeat(genesis_node(), 3)),
            signed(OP, 3, heartbeat(genesis_node(), 2)),
            signed(ADMIN, 5, cfg("a", "v", 1)),
            signed(ADMIN, 5, cfg("b", "v", 0)),
            signed(ADMIN, 5, cfg("c", "v", 0)),
            signed(ADMIN, 100, cfg("d", "v", 0)),
            signed(ADMIN, 36, cfg("e", "v", 0)),
        ],
    );
    assert_eq!(
        r,
        vec![
            Err(TxError::UnknownAccount),
            Err(TxError::AccountExists),
            Err(TxError::NodeExists),
            Err(TxError::UnknownNode),
            Err(TxError::NotNodeOperator),
            Ok(()),
            Err(TxError::StaleHeartbeat { seq: 3, last: 3 }),
            Err(TxError::StaleHeartbeat { seq: 2, last: 3 }),
            Err(TxError::ConfigVersionMismatch {
                expected: 1,
                current: 0
            }),
            Ok(()),
            Err(TxError::NonceReplayed { nonce: 5 }),
            Ok(()),
            Err(TxError::NonceTooOld { nonce: 36, min: 37 }),
        ]
    );
}

#[test]
fn rejected_txs_consume_no_nonce_and_change_nothing() {
    let mut s = State::genesis(&genesis()).unwrap();
    // Block 1 also stamps the genesis nodes as seen (health); start after it.
    s.apply_block(1, 1_000, &[] as &[Vec<u8>]).unwrap();
    s.take_dirty();
    let bad = signed(ADMIN, 1, cfg("a", "v", 7));
    let out = s.apply_block(2, 2 * 1_000, &[bad.encode()]).unwrap();
    assert_eq!(
        out.events,
        vec![Event::TxRejected {
            hash: bad.hash(),
            error: TxError::ConfigVersionMismatch {
                expected: 7,
                current: 0
            }
        }]
    );
    assert_eq!(s.account(&id(&key(ADMIN))).unwrap().nonce_max, 0);
    let dirty: Vec<_> = s.take_dirty().into_iter().map(|(k, _)| k).collect();
    assert_eq!(dirty, vec![vec![0u8]], "only the height entry changed");
    // The same nonce is still usable by a valid tx.
    let out = s
        .apply_block(3, 3 * 1_000, &[tx(ADMIN, 1, cfg("a", "v", 0))])
        .unwrap();
    assert_eq!(out.receipts, vec![Ok(())]);
}

#[test]
fn register_account_then_use_it() {
    let mut s = State::genesis(&genesis()).unwrap();
    let out = s
        .apply_block(
            1,
            1_000,
            &[
                tx(STRANGER, 1, TxKind::RegisterAccount { name: "new".into() }),
                tx(STRANGER, 2, register_node(STRANGER, 4, "10.0.0.1:9000")),
                tx(STRANGER, 3, heartbeat(node_id(4), 1)),
            ],
        )
        .unwrap();
    assert_eq!(out.receipts, vec![Ok(()), Ok(()), Ok(())]);
    let me = id(&key(STRANGER));
    assert_eq!(
        out.events,
        vec![
            Event::AccountRegistered {
                account: me,
                name: "new".into()
            },
            Event::NodeRegistered {
                node: node_id(4),
                operator: me
            },
            Event::Heartbeat {
                node: node_id(4),
                seq: 1
            },
        ]
    );
    let a = s.account(&me).unwrap();
    assert_eq!(
        (a.name.as_str(), a.nonce_max, a.nonce_window),
        ("new", 3, 0b111)
    );
    let n = s.node(&node_id(4)).unwrap();
    assert_eq!(n.operator, me);
    assert_eq!(n.registered_height, 1);
    // The request is recorded; nothing is granted until the committee admits the node.
    assert_eq!(n.requested_capacity_bytes, 1 << 40);
    assert_eq!(n.requested_roles, roles(false, true));
    assert_eq!((n.capacity_bytes, n.admissions), (0, 0));
    assert_eq!(n.roles, roles(false, false));
    assert_eq!(s.nodes().count(), 2);
    assert_eq!(s.accounts().count(), 3);
}

#[test]
fn nonce_window_rules() {
    // In order.
    assert_eq!(check_nonce(&account(0, 0), 1), Ok((1, 0b1)));
    assert_eq!(check_nonce(&account(1, 0b1), 2), Ok((2, 0b11)));
    // A gap, then the skipped nonce arrives late (gossip reordering).
    assert_eq!(check_nonce(&account(10, 0b1), 12), Ok((12, 0b101)));
    assert_eq!(check_nonce(&account(12, 0b101), 11), Ok((12, 0b111)));
    // Replays: the newest and one inside the window.
    assert_eq!(
        check_nonce(&account(12, 0b111), 12),
        Err(TxError::NonceReplayed { nonce: 12 })
    );
    assert_eq!(
        check_nonce(&account(12, 0b111), 11),
        Err(TxError::NonceReplayed { nonce: 11 })
    );
    // The window edge: 63 behind is accepted, 64 behind is too old.
    assert_eq!(
        check_nonce(&account(100, 1), 100 - (NONCE_WINDOW - 1)),
        Ok((100, 1 | 1 << (NONCE_WINDOW - 1)))
    );
    assert_eq!(
        check_nonce(&account(100, 1), 100 - NONCE_WINDOW),
        Err(TxError::NonceTooOld { nonce: 36, min: 37 })
    );
    // A jump past the whole window forgets the old bits.
    assert_eq!(check_nonce(&account(5, u64::MAX), 5 + 64), Ok((69, 1)));
    assert_eq!(
        check_nonce(&account(5, u64::MAX), 5 + 63),
        Ok((68, 1 << 63 | 1))
    );
    // Nonce 0 is never valid.
    assert!(matches!(
        check_nonce(&account(0, 0), 0),
        Err(TxError::InvalidField { field: "nonce", .. })
    ));
    // The largest nonce works and then blocks nothing in the window below it.
    assert_eq!(check_nonce(&account(0, 0), u64::MAX), Ok((u64::MAX, 1)));
}

#[test]
fn nonce_window_through_blocks_tolerates_reordering() {
    let mut s = State::genesis(&genesis()).unwrap();
    let out = s
        .apply_block(
            1,
            1_000,
            &[
                tx(ADMIN, 3, cfg("a", "3", 0)),
                tx(ADMIN, 1, cfg("b", "1", 0)),
                tx(ADMIN, 2, cfg("c", "2", 0)),
                tx(ADMIN, 2, cfg("d", "2", 0)),
            ],
        )
        .unwrap();
    assert_eq!(
        out.receipts,
        vec![
            Ok(()),
            Ok(()),
            Ok(()),
            Err(TxError::NonceReplayed { nonce: 2 })
        ]
    );
    let a = s.account(&id(&key(ADMIN))).unwrap();
    assert_eq!((a.nonce_max, a.nonce_window), (3, 0b111));
}

#[test]
fn config_compare_and_set() {
    let mut s = State::genesis(&genesis()).unwrap();
    let out = s
        .apply_block(
            1,
            1_000,
            &[
                tx(ADMIN, 1, cfg("dns/a", "one", 0)),
                tx(OP, 1, cfg("dns/a", "stale", 0)),
                tx(OP, 2, cfg("dns/a", "two", 1)),
            ],
        )
        .unwrap();
    assert_eq!(
        out.receipts,
        vec![
            Ok(()),
            Err(TxError::ConfigVersionMismatch {
                expected: 0,
                current: 1
            }),
            Ok(())
        ]
    );
    assert_eq!(
        out.events[2],
        Event::ConfigChanged {
            key: "dns/a".into(),
            version: 2
        }
    );
    let e = s.config("dns/a").unwrap();
    assert_eq!(e.value, "two");
    assert_eq!(e.version, 2);
    assert_eq!(e.set_by, id(&key(OP)));
    assert_eq!(e.set_height, 1);

    s.apply_block(2, 2 * 1_000, &[tx(ADMIN, 2, cfg("dns/a", "three", 2))])
        .unwrap();
    let e = s.config("dns/a").unwrap();
    assert_eq!((e.value.as_str(), e.version, e.set_height), ("three", 3, 2));
    assert_eq!(s.configs().count(), 1);
    assert!(s.config("dns/b").is_none());
}

#[test]
fn heartbeat_sequence_and_height() {
    let mut s = State::genesis(&genesis()).unwrap();
    s.apply_block(1, 1_000, &[] as &[Vec<u8>]).unwrap();
    let out = s
        .apply_block(
            2,
            2 * 1_000,
            &[
                tx(OP, 1, heartbeat(genesis_node(), 1)),
                tx(OP, 2, heartbeat(genesis_node(), 5)),
                tx(OP, 3, heartbeat(genesis_node(), 5)),
                tx(OP, 4, heartbeat(genesis_node(), 4)),
            ],
        )
        .unwrap();
    assert_eq!(
        out.receipts,
        vec![
            Ok(()),
            Ok(()),
            Err(TxError::StaleHeartbeat { seq: 5, last: 5 }),
            Err(TxError::StaleHeartbeat { seq: 4, last: 5 }),
        ]
    );
    let n = s.node(&genesis_node()).unwrap();
    assert_eq!((n.last_heartbeat_seq, n.last_seen_ms), (5, 2_000));
    // Seq 0 is never above the initial 0.
    let out = s
        .apply_block(3, 3 * 1_000, &[tx(OP, 5, heartbeat(genesis_node(), 0))])
        .unwrap();
    assert_eq!(
        out.receipts,
        vec![Err(TxError::StaleHeartbeat { seq: 0, last: 5 })]
    );
}

#[test]
fn block_level_errors_leave_state_unchanged() {
    let mut s = State::genesis(&genesis()).unwrap();
    s.take_dirty();
    let before = s.clone();
    let empty: &[Vec<u8>] = &[];
    assert_eq!(
        s.apply_block(2, 2 * 1_000, empty),
        Err(BlockError::WrongHeight {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        s.apply_block(0, 0, empty),
        Err(BlockError::WrongHeight {
            expected: 1,
            got: 0
        })
    );
    let too_many = vec![Vec::<u8>::new(); MAX_TXS_PER_BLOCK + 1];
    assert_eq!(
        s.apply_block(1, 1_000, &too_many),
        Err(BlockError::TooManyTxs {
            count: MAX_TXS_PER_BLOCK + 1,
            max: MAX_TXS_PER_BLOCK
        })
    );
    // A valid tx followed by a bad one: nothing is applied, the index names the bad one.
    let mut tampered = tx(OP, 1, heartbeat(genesis_node(), 1));
    tampered[0] ^= 1;
    let block = vec![tx(ADMIN, 1, cfg("a", "v", 0)), tampered];
    assert_eq!(
        s.apply_block(1, 1_000, &block),
        Err(BlockError::BadTx {
            index: 1,
            error: TxError::BadSignature
        })
    );
    assert_eq!(
        State::validate_block_txs(&block).unwrap_err(),
        s.apply_block(1, 1_000, &block).unwrap_err()
    );
    assert_eq!(s, before);
    assert!(
        s.take_dirty().is_empty(),
        "a failed block marks nothing dirty"
    );

    // apply_verified_block still refuses statelessly invalid fields.
    let mut zero_nonce = signed(ADMIN, 1, cfg("a", "v", 0));
    zero_nonce.tx.nonce = 0;
    assert!(matches!(
        s.apply_verified_block(1, 1_000, &[zero_nonce]),
        Err(BlockError::BadTx {
            index: 0,
            error: TxError::InvalidField { field: "nonce", .. }
        })
    ));
    assert_eq!(s, before);

    let ok = State::validate_block_txs(&block[..1]).unwrap();
    assert_eq!(ok, vec![signed(ADMIN, 1, cfg("a", "v", 0))]);
    assert!(s.apply_block(1, 1_000, &block[..1]).is_ok());
    assert_eq!(s.height(), 1);
}

#[test]
fn genesis_validation() {
    let ok = State::genesis(&genesis()).unwrap();
    assert_eq!((ok.height(), ok.chain_id()), (0, "test"));

    let mut g = genesis();
    g.chain_id = String::new();
    assert!(matches!(
        State::genesis(&g),
        Err(TxError::InvalidField {
            field: "chain_id",
            ..
        })
    ));

    let mut g = genesis();
    g.accounts[0].1 = "Admin".into();
    assert!(matches!(
        State::genesis(&g),
        Err(TxError::InvalidField { field: "name", .. })
    ));

    let mut g = genesis();
    g.accounts.push(g.accounts[0].clone());
    assert_eq!(
        State::genesis(&g).unwrap(),
        ok,
        "an identical duplicate is harmless"
    );
    g.accounts.push((g.accounts[0].0, "other".into()));
    assert!(matches!(
        State::genesis(&g),
        Err(TxError::InvalidField {
            field: "accounts",
            ..
        })
    ));

    let mut g = genesis();
    g.nodes[0].1.operator = id(&key(STRANGER));
    assert_eq!(State::genesis(&g), Err(TxError::UnknownAccount));

    let mut g = genesis();
    g.nodes.push(g.nodes[0].clone());
    assert_eq!(State::genesis(&g), Err(TxError::NodeExists));

    let mut g = genesis();
    g.nodes[0].1.addresses = vec!["nowhere".into()];
    assert!(matches!(
        State::genesis(&g),
        Err(TxError::InvalidField {
            field: "addresses",
            ..
        })
    ));

    let mut g = genesis();
    g.chain_id = "other".into();
    assert_ne!(State::genesis(&g).unwrap().state_root(), ok.state_root());
}

#[test]
fn entries_round_trip_gives_same_root() {
    let mut s = State::genesis(&genesis()).unwrap();
    s.apply_block(
        1,
        1_000,
        &[
            tx(ADMIN, 1, cfg("x", "1", 0)),
            tx(STRANGER, 1, TxKind::RegisterAccount { name: "s".into() }),
            tx(STRANGER, 2, register_node(STRANGER, 4, "[::1]:7")),
            tx(OP, 1, heartbeat(genesis_node(), 9)),
        ],
    )
    .unwrap();
    let rebuilt = State::from_entries(s.entries()).unwrap();
    assert_eq!(rebuilt.state_root(), s.state_root());
    assert_eq!(rebuilt, s);
    assert_eq!(rebuilt.entries(), s.entries());
    // Order of the input does not matter.
    let rebuilt = State::from_entries(s.entries().into_iter().rev()).unwrap();
    assert_eq!(rebuilt, s);
    // And the rebuilt state keeps working identically.
    let mut a = s.clone();
    let mut b = rebuilt;
    let block = [tx(ADMIN, 2, cfg("x", "2", 1))];
    assert_eq!(
        a.apply_block(2, 2 * 1_000, &block),
        b.apply_block(2, 2 * 1_000, &block)
    );
}

#[test]
fn take_dirty_accumulates_to_the_live_state() {
    let mut s = State::genesis(&genesis()).unwrap();
    let mut mirror = BTreeMap::new();
    let first = s.take_dirty();
    assert_eq!(first.len(), s.entries().len(), "genesis marks every entry");
    absorb(&mut mirror, first);
    assert!(s.take_dirty().is_empty());

    s.apply_block(1, 1_000, &[tx(ADMIN, 1, cfg("x", "1", 0))])
        .unwrap();
    let dirty = s.take_dirty();
    let keys: Vec<u8> = dirty.iter().map(|(k, _)| k[0]).collect();
    assert_eq!(
        keys,
        vec![0, 1, 2, 3],
        "height, the signer account, the genesis node (first seen at block 1), the config key"
    );
    absorb(&mut mirror, dirty);

    s.apply_block(2, 2 * 1_000, &[tx(OP, 1, heartbeat(genesis_node(), 1))])
        .unwrap();
    s.apply_block(3, 3 * 1_000, &[tx(OP, 2, heartbeat(genesis_node(), 2))])
        .unwrap();
    absorb(&mut mirror, s.take_dirty());

    let rebuilt = State::from_entries(mirror.clone()).unwrap();
    assert_eq!(rebuilt, s);
    assert_eq!(mirror.into_iter().collect::<Vec<_>>(), s.entries());
}

#[test]
fn from_entries_rejects_corrupt_input() {
    let s = State::genesis(&genesis()).unwrap();
    let good = s.entries();
    let corrupt = |entries: Vec<(Vec<u8>, Vec<u8>)>| match State::from_entries(entries) {
        Err(StateError::Corrupt { reason }) => reason,
        Ok(_) => panic!("corrupt entries were accepted"),
    };
    assert_eq!(corrupt(good[1..].to_vec()), "missing height entry");
    assert_eq!(corrupt(vec![(vec![], vec![])]), "empty key");
    let mut e = good.clone();
    e.push((vec![13, 1], vec![]));
    assert_eq!(corrupt(e), "unknown table 13");
    let mut e = good.clone();
    e.retain(|(k, _)| k != &[10]);
    assert_eq!(corrupt(e), "missing audit entry");
    let mut e = good.clone();
    e.push(e[1].clone());
    assert_eq!(corrupt(e), "duplicate key");
    let mut e = good.clone();
    e[1].0.pop();
    assert_eq!(corrupt(e), "account key is not 32 bytes");
    let mut e = good.clone();
    e[1].1.push(0);
    assert!(corrupt(e).contains("trailing bytes"));
    let mut e = good.clone();
    e[0].1 = {
        let mut v = vec![4, 0, 0, 0];
        v.extend_from_slice(b"test");
        v.extend_from_slice(&u64::MAX.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes()); // block time
        v
    };
    assert_eq!(corrupt(e), "height is at its maximum");
    // The message tells the operator what to do.
    let msg = State::from_entries(vec![]).unwrap_err().to_string();
    assert!(msg.contains("restore"), "{msg}");
}

#[test]
fn state_root_commits_to_height_and_content() {
    let mut a = State::genesis(&genesis()).unwrap();
    let mut b = a.clone();
    let r0 = a.state_root();
    a.apply_block(1, 1_000, &[tx(ADMIN, 1, cfg("k", "1", 0))])
        .unwrap();
    b.apply_block(1, 1_000, &[tx(ADMIN, 1, cfg("k", "2", 0))])
        .unwrap();
    assert_ne!(a.state_root(), r0);
    assert_ne!(a.state_root(), b.state_root(), "one value byte differs");
    let mut c = State::genesis(&genesis()).unwrap();
    c.apply_block(1, 1_000, &[] as &[Vec<u8>]).unwrap();
    assert_ne!(c.state_root(), r0, "the height alone moves the root");
}

#[test]
fn errors_tell_the_user_what_to_do() {
    let samples = [
        TxError::UnknownAccount.to_string(),
        TxError::NonceReplayed { nonce: 1 }.to_string(),
        TxError::ConfigVersionMismatch {
            expected: 1,
            current: 2,
        }
        .to_string(),
        BlockError::WrongHeight {
            expected: 1,
            got: 2,
        }
        .to_string(),
    ];
    for (msg, hint) in samples
        .iter()
        .zip(["register", "fresh nonce", "re-read", "in order"])
    {
        assert!(msg.contains(hint), "{msg:?} should contain {hint:?}");
    }
}
