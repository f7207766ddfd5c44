//! Unit and property tests of the ledger rules, on the public API only.

use cairn_ledger::*;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}
fn id(k: &SigningKey) -> AccountId {
    k.verifying_key().to_bytes()
}

fn genesis() -> Genesis {
    let admin = key(1);
    let op = key(2);
    Genesis {
        chain_id: "t".into(),
        accounts: vec![(id(&admin), "admin".into()), (id(&op), "op".into())],
        nodes: vec![(
            [9; 32],
            NodeRecordInit {
                operator: id(&op),
                zone: "z1".into(),
                roles: Roles {
                    validator: true,
                    storage: false,
                    gateway: false,
                    cache: false,
                },
                addresses: vec!["127.0.0.1:1".into()],
                capacity_bytes: 1,
                stake: 1,
            },
        )],
    }
}

fn tx(k: &SigningKey, nonce: u64, kind: TxKind) -> Vec<u8> {
    Tx {
        signer: id(k),
        nonce,
        kind,
    }
    .sign(k)
    .encode()
}

fn cfg(k: &str, expected_version: u64) -> TxKind {
    TxKind::ConfigSet {
        key: k.into(),
        value: "v".into(),
        expected_version,
    }
}

#[test]
fn decode_rejects_bad_bytes() {
    let good = tx(&key(1), 1, cfg("a", 0));
    assert!(SignedTx::decode_and_verify(&good).is_ok());
    assert!(matches!(
        SignedTx::decode(&good[..good.len() - 1]),
        Err(TxError::Malformed { .. })
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        SignedTx::decode(&trailing),
        Err(TxError::Malformed {
            reason: "trailing bytes"
        })
    );
    let mut bad_tag = good.clone();
    bad_tag[40] = 99;
    assert!(matches!(
        SignedTx::decode(&bad_tag),
        Err(TxError::Malformed { .. })
    ));
    assert!(matches!(
        SignedTx::decode(&vec![0u8; MAX_TX_SIZE_BYTES + 1]),
        Err(TxError::Oversize { .. })
    ));
    let mut tampered = good.clone();
    let last = tampered.len() - 70;
    tampered[last] ^= 1;
    assert_eq!(
        SignedTx::decode_and_verify(&tampered).err(),
        Some(TxError::BadSignature)
    );
}

#[test]
fn field_validation() {
    let bad = |kind| SignedTx::decode_and_verify(&tx(&key(1), 1, kind)).err();
    assert!(matches!(
        bad(TxKind::RegisterAccount {
            name: "UPPER".into()
        }),
        Some(TxError::InvalidField { field: "name", .. })
    ));
    assert!(matches!(
        bad(cfg("bad key!", 0)),
        Some(TxError::InvalidField { field: "key", .. })
    ));
    let node = |addr: &str| TxKind::RegisterNode {
        node: [3; 32],
        zone: "z".into(),
        roles: Roles {
            validator: false,
            storage: true,
            gateway: false,
            cache: false,
        },
        addresses: vec![addr.into()],
        capacity_bytes: 1,
        stake: 0,
    };
    assert!(matches!(
        bad(node("not-an-addr")),
        Some(TxError::InvalidField {
            field: "addresses",
            ..
        })
    ));
    assert_eq!(bad(node("127.0.0.1:9")), None);
    assert!(matches!(
        SignedTx::decode_and_verify(&tx(&key(1), 0, cfg("a", 0))),
        Err(TxError::InvalidField { field: "nonce", .. })
    ));
}

#[test]
fn stateful_rules_produce_receipts() {
    let mut s = State::genesis(&genesis()).unwrap();
    let admin = key(1);
    let op = key(2);
    let stranger = key(3);
    let out = s
        .apply_block(
            1,
            &[
                tx(&admin, 1, cfg("a", 0)),
                tx(&admin, 1, cfg("b", 0)),    // replayed nonce
                tx(&admin, 2, cfg("a", 0)),    // CAS mismatch (now 1)
                tx(&admin, 3, cfg("a", 1)),    // ok -> version 2
                tx(&stranger, 1, cfg("c", 0)), // unknown account
                tx(&stranger, 1, TxKind::RegisterAccount { name: "s".into() }),
                tx(
                    &admin,
                    4,
                    TxKind::Heartbeat {
                        node: [9; 32],
                        seq: 1,
                    },
                ), // not operator
                tx(
                    &op,
                    1,
                    TxKind::Heartbeat {
                        node: [9; 32],
                        seq: 1,
                    },
                ),
                tx(
                    &op,
                    2,
                    TxKind::Heartbeat {
                        node: [9; 32],
                        seq: 1,
                    },
                ), // stale seq
                tx(
                    &op,
                    3,
                    TxKind::Heartbeat {
                        node: [8; 32],
                        seq: 5,
                    },
                ), // unknown node
                tx(
                    &admin,
                    5,
                    TxKind::RegisterAccount {
                        name: "again".into(),
                    },
                ),
            ],
        )
        .unwrap();
    let r = &out.receipts;
    assert_eq!(r[0], Ok(()));
    assert_eq!(r[1], Err(TxError::NonceReplayed { nonce: 1 }));
    assert_eq!(
        r[2],
        Err(TxError::ConfigVersionMismatch {
            expected: 0,
            current: 1
        })
    );
    assert_eq!(r[3], Ok(()));
    assert_eq!(r[4], Err(TxError::UnknownAccount));
    assert_eq!(r[5], Ok(()));
    assert_eq!(r[6], Err(TxError::NotNodeOperator));
    assert_eq!(r[7], Ok(()));
    assert_eq!(r[8], Err(TxError::StaleHeartbeat { seq: 1, last: 1 }));
    assert_eq!(r[9], Err(TxError::UnknownNode));
    assert_eq!(r[10], Err(TxError::AccountExists));
    assert_eq!(s.config("a").unwrap().version, 2);
    assert_eq!(s.node(&[9; 32]).unwrap().last_heartbeat_height, 1);
    assert_eq!(
        s.apply_block(5, &[] as &[Vec<u8>]),
        Err(BlockError::WrongHeight {
            expected: 2,
            got: 5
        })
    );
    let bad = vec![vec![1u8, 2, 3]];
    assert!(matches!(
        s.apply_block(2, &bad),
        Err(BlockError::BadTx { index: 0, .. })
    ));
    assert_eq!(s.height(), 1, "an invalid block leaves state unchanged");
}

#[test]
fn nonce_window() {
    let a = |max, window| Account {
        name: String::new(),
        nonce_max: max,
        nonce_window: window,
    };
    assert_eq!(check_nonce(&a(0, 0), 1), Ok((1, 1)));
    assert_eq!(check_nonce(&a(10, 1), 12), Ok((12, 0b101)));
    assert_eq!(check_nonce(&a(12, 0b101), 11), Ok((12, 0b111)));
    assert_eq!(
        check_nonce(&a(12, 0b111), 11),
        Err(TxError::NonceReplayed { nonce: 11 })
    );
    assert!(matches!(
        check_nonce(&a(100, 1), 36),
        Err(TxError::NonceTooOld { .. })
    ));
    assert!(check_nonce(&a(100, 1), 37).is_ok());
    assert!(check_nonce(&a(0, 0), 0).is_err());
}

#[test]
fn entries_round_trip() {
    let mut s = State::genesis(&genesis()).unwrap();
    let mut mirror: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
    let mut absorb = |s: &mut State| {
        for (k, v) in s.take_dirty() {
            match v {
                Some(v) => mirror.insert(k, v),
                None => mirror.remove(&k),
            };
        }
        State::from_entries(mirror.clone()).unwrap()
    };
    assert_eq!(absorb(&mut s).state_root(), s.state_root());
    s.apply_block(1, &[tx(&key(1), 1, cfg("x", 0))]).unwrap();
    let rebuilt = absorb(&mut s);
    assert_eq!(rebuilt.state_root(), s.state_root());
    assert_eq!(rebuilt, {
        let mut c = s.clone();
        c.take_dirty();
        c
    });
    assert_eq!(
        State::from_entries(s.entries()).unwrap().state_root(),
        s.state_root()
    );
    assert!(State::from_entries(vec![(vec![1, 2], vec![])]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedTx::decode_and_verify(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(i in 0usize..200, b in any::<u8>()) {
        let mut good = tx(&key(1), 7, cfg("some/key", 3));
        let i = i % good.len();
        good[i] = b;
        let _ = SignedTx::decode_and_verify(&good);
    }

    #[test]
    fn round_trip(nonce in 1u64.., name in "[a-z0-9-]{1,64}", v in "[ -~]{0,100}", ver in any::<u64>()) {
        for kind in [TxKind::RegisterAccount { name: name.clone() }, TxKind::ConfigSet { key: name.clone(), value: v.clone(), expected_version: ver }] {
            let bytes = tx(&key(4), nonce, kind);
            let decoded = SignedTx::decode_and_verify(&bytes).unwrap();
            prop_assert_eq!(decoded.encode(), bytes);
        }
    }

    #[test]
    fn same_blocks_same_roots(ops in proptest::collection::vec((0u8..2, 1u64..40, 0u64..3), 1..40)) {
        let blocks: Vec<Vec<Vec<u8>>> = ops
            .chunks(5)
            .map(|c| c.iter().map(|(who, nonce, ver)| tx(&key(1 + who), *nonce, cfg(&format!("k{}", nonce % 4), *ver))).collect())
            .collect();
        let mut a = State::genesis(&genesis()).unwrap();
        let mut b = State::genesis(&genesis()).unwrap();
        for (h, block) in blocks.iter().enumerate() {
            let before = a.state_root();
            let ra = a.apply_block(h as u64 + 1, block).unwrap();
            let rb = b.apply_block(h as u64 + 1, block).unwrap();
            prop_assert_eq!(&ra, &rb);
            prop_assert_ne!(before, a.state_root(), "height is committed in the root");
        }
    }

    #[test]
    fn nonce_accepted_at_most_once(nonces in proptest::collection::vec(1u64..200, 1..300)) {
        let mut acct = Account { name: String::new(), nonce_max: 0, nonce_window: 0 };
        let mut seen = std::collections::BTreeSet::new();
        for n in nonces {
            if let Ok((max, window)) = check_nonce(&acct, n) {
                prop_assert!(seen.insert(n), "nonce {} accepted twice", n);
                acct.nonce_max = max;
                acct.nonce_window = window;
            }
        }
    }
}
