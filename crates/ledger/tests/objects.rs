//! Buckets, objects and gateway authorizations: the ledger rules behind the S3 gateway.

mod common;

use cairn_ledger::{objects::ObjectManifest, *};
use common::*;

const OWNER: u8 = ADMIN;
const GATEWAY: u8 = 7;

/// Genesis plus 12 storage nodes and a registered gateway account.
fn setup() -> State {
    let mut g = genesis();
    g.accounts.push((id(&key(GATEWAY)), "gateway".into()));
    push_storage_nodes(&mut g, OP);
    State::genesis(&g).unwrap()
}

/// Request time of [`manifest`] writes (ms).
const T0_MS: u64 = 1_700_000_000_000;

fn manifest(size: u64) -> ObjectManifest {
    manifest_at(size, T0_MS)
}

/// A manifest written at request time `modified_ms` (its write version).
fn manifest_at(size: u64, modified_ms: u64) -> ObjectManifest {
    manifest_on(size, modified_ms, storage_placement())
}

fn put(owner: u8, bucket: &str, k: &str, m: ObjectManifest, if_absent: bool) -> TxKind {
    TxKind::PutObject {
        owner: id(&key(owner)),
        bucket: bucket.into(),
        key: k.into(),
        manifest: m,
        if_absent,
    }
}

/// A delete requested at `request_ms`.
fn delete(owner: u8, bucket: &str, k: &str, request_ms: u64) -> TxKind {
    TxKind::DeleteObject {
        owner: id(&key(owner)),
        bucket: bucket.into(),
        key: k.into(),
        request_ms,
    }
}

/// The owner grants (or revokes) the test gateway.
fn authorize(allowed: bool) -> TxKind {
    TxKind::AuthorizeGateway {
        gateway: id(&key(GATEWAY)),
        allowed,
    }
}

/// Applies one block and returns its receipts.
fn block(s: &mut State, txs: Vec<Vec<u8>>) -> Vec<Result<(), TxError>> {
    let h = s.height() + 1;
    s.apply_block(h, h * 1_000, &txs).unwrap().receipts
}

#[test]
fn bucket_lifecycle_and_gateway_authorization() {
    let mut s = setup();
    let owner = id(&key(OWNER));
    // A gateway cannot act for an owner who has not authorized it.
    let r = block(&mut s, vec![tx(GATEWAY, 1, create_bucket(OWNER, "photos"))]);
    assert_eq!(r, vec![Err(TxError::NotAuthorized)]);
    assert!(s.bucket("photos").is_none());

    let r = block(
        &mut s,
        vec![
            tx(OWNER, 1, authorize(true)),
            tx(GATEWAY, 2, create_bucket(OWNER, "photos")),
        ],
    );
    assert_eq!(r, vec![Ok(()), Ok(())]);
    assert!(s.gateway_authorized(&owner, &id(&key(GATEWAY))));
    assert_eq!(s.bucket("photos").unwrap().owner, owner);

    // Taken name; and nobody else's bucket can be deleted by the gateway's own account.
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 2, create_bucket(OWNER, "photos")),
            tx(
                GATEWAY,
                3,
                TxKind::DeleteBucket {
                    owner: id(&key(GATEWAY)),
                    bucket: "photos".into(),
                },
            ),
        ],
    );
    assert_eq!(
        r,
        vec![Err(TxError::BucketExists), Err(TxError::NotAuthorized)]
    );

    // Revoked: the gateway can no longer act.
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 3, authorize(false)),
            tx(GATEWAY, 4, create_bucket(OWNER, "other")),
        ],
    );
    assert_eq!(r, vec![Ok(()), Err(TxError::NotAuthorized)]);
}

#[test]
fn objects_account_usage_and_block_bucket_deletion() {
    let mut s = setup();
    block(&mut s, vec![tx(OWNER, 1, create_bucket(OWNER, "data"))]);
    let size = 1_000_000u64;
    let per_node = objects::fragment_size_bytes(size, 4);
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 2, put(OWNER, "data", "a/1", manifest(size), false)),
            tx(OWNER, 3, put(OWNER, "data", "a/2", manifest(0), false)),
            tx(OWNER, 4, put(OWNER, "data", "b", manifest(10), false)),
        ],
    );
    assert_eq!(r, vec![Ok(()), Ok(()), Ok(())]);
    assert_eq!(s.bucket("data").unwrap().object_count, 3);
    let used = s.node(&storage_node(0)).unwrap().used_bytes;
    assert_eq!(used, per_node + objects::fragment_size_bytes(10, 4));
    let listed: Vec<&str> = s
        .objects_with_prefix("data", "a/")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, vec!["a/1", "a/2"]);
    assert_eq!(s.objects_with_prefix("data", "").count(), 3);
    let after = |prefix, after| -> Vec<&str> {
        s.objects_after("data", prefix, after)
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(after("", "a/1"), vec!["a/2", "b"]);
    assert_eq!(after("a/", "a/1"), vec!["a/2"]);
    assert_eq!(after("a/", ""), vec!["a/1", "a/2"]);
    assert_eq!(after("", "a/"), vec!["a/1", "a/2", "b"]);
    assert_eq!(after("a/", "zzz"), Vec::<&str>::new());

    // Overwrite (a later request) replaces the usage instead of adding to it.
    let r = block(
        &mut s,
        vec![tx(
            OWNER,
            5,
            put(OWNER, "data", "a/1", manifest_at(size, T0_MS + 1), false),
        )],
    );
    assert_eq!(r, vec![Ok(())]);
    assert_eq!(s.node(&storage_node(0)).unwrap().used_bytes, used);
    assert_eq!(s.bucket("data").unwrap().object_count, 3);

    let del_bucket = TxKind::DeleteBucket {
        owner: id(&key(OWNER)),
        bucket: "data".into(),
    };
    let r = block(&mut s, vec![tx(OWNER, 6, del_bucket.clone())]);
    assert_eq!(r, vec![Err(TxError::BucketNotEmpty { objects: 3 })]);

    // Deleting an absent key succeeds (S3 semantics) and leaves only a tombstone: the counts
    // and usage are not decremented twice, so the bucket deletion still works.
    let later = T0_MS + 10;
    let out = s
        .apply_block(
            s.height() + 1,
            (s.height() + 1) * 1_000,
            &[
                tx(OWNER, 7, delete(OWNER, "data", "a/1", later)),
                tx(OWNER, 8, delete(OWNER, "data", "a/2", later)),
                tx(OWNER, 9, delete(OWNER, "data", "b", later)),
                tx(OWNER, 10, delete(OWNER, "data", "b", later + 1)),
                tx(OWNER, 11, del_bucket),
            ],
        )
        .unwrap();
    assert_eq!(out.receipts, vec![Ok(()), Ok(()), Ok(()), Ok(()), Ok(())]);
    let existed: Vec<bool> = out
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ObjectDeleted { existed, .. } => Some(*existed),
            _ => None,
        })
        .collect();
    assert_eq!(existed, vec![true, true, true, false]);
    assert_eq!(s.node(&storage_node(0)).unwrap().used_bytes, 0);
    assert!(s.bucket("data").is_none());
}

#[test]
fn conditional_writes_race_exactly_one_wins() {
    let mut s = setup();
    block(&mut s, vec![tx(OWNER, 1, create_bucket(OWNER, "race"))]);
    // Two If-None-Match: * writes of the same key, ordered into one block.
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 2, put(OWNER, "race", "k", manifest(5), true)),
            tx(OWNER, 3, put(OWNER, "race", "k", manifest(6), true)),
        ],
    );
    assert_eq!(r, vec![Ok(()), Err(TxError::ObjectExists)]);
    assert_eq!(s.object("race", "k").unwrap().manifest.size_bytes, 5);
}

#[test]
fn placement_must_fit_bucket_and_registry() {
    let mut s = setup();
    block(&mut s, vec![tx(OWNER, 1, create_bucket(OWNER, "pics"))]);
    let mut short = manifest(10);
    short.placement.pop();
    short.segments[0].fragment_roots.pop();
    let mut non_storage = manifest(10);
    non_storage.placement[3] = genesis_node(); // a validator-only node
    let mut unknown = manifest(10);
    unknown.placement[0] = [1; 32];
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 2, put(OWNER, "pics", "a", short, false)),
            tx(OWNER, 3, put(OWNER, "pics", "b", non_storage, false)),
            tx(OWNER, 4, put(OWNER, "pics", "c", unknown, false)),
            tx(OWNER, 5, put(OWNER, "nope", "d", manifest(1), false)),
        ],
    );
    assert!(matches!(r[0], Err(TxError::InvalidPlacement { .. })));
    assert!(matches!(r[1], Err(TxError::InvalidPlacement { .. })));
    assert!(matches!(r[2], Err(TxError::InvalidPlacement { .. })));
    assert_eq!(r[3], Err(TxError::NoSuchBucket));
    assert_eq!(s.bucket("pics").unwrap().object_count, 0);
}

/// A manifest placing slot i on `nodes[i]`, every fragment marked stored.
fn placed_on(nodes: &[u8]) -> ObjectManifest {
    let mut m = manifest(10);
    m.placement = nodes.iter().map(|i| storage_node(*i)).collect();
    m.segments[0].stored_mask = 0xfff;
    m
}

/// Storage node i sits in zone `z{i % 3}` (see `push_storage_nodes`).
#[test]
fn the_ledger_refuses_placements_that_one_zone_loss_would_break() {
    let mut s = setup();
    block(&mut s, vec![tx(OWNER, 1, create_bucket(OWNER, "pics"))]);
    // All 12 fragments on zone z0's four nodes: losing z0 loses the object.
    let one_zone = placed_on(&[0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9]);
    // 9 in z0 and 3 in z1: losing z0 leaves 3 < k = 4.
    let lopsided = placed_on(&[0, 3, 6, 9, 0, 3, 6, 9, 0, 1, 4, 7]);
    // Degraded but sound: 8 in z0 (two per node) and 4 in z1; losing z0 leaves 4 = k.
    let doubled = placed_on(&[0, 3, 6, 9, 0, 3, 6, 9, 1, 4, 7, 10]);
    // Only 6 stored (slots 0..5: two per zone): losing any zone leaves 4.
    let spread = manifest(10);
    // Stored fragments 0..4 (z0, z1, z2, z0, z1): losing z0 or z1 leaves 3.
    let mut thin = manifest(10);
    thin.segments[0].stored_mask = 0x1f;
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 2, put(OWNER, "pics", "a", one_zone, false)),
            tx(OWNER, 3, put(OWNER, "pics", "b", lopsided, false)),
            tx(OWNER, 4, put(OWNER, "pics", "c", doubled, false)),
            tx(OWNER, 5, put(OWNER, "pics", "d", spread, false)),
            tx(OWNER, 6, put(OWNER, "pics", "e", thin, false)),
        ],
    );
    assert!(
        matches!(r[0], Err(TxError::InvalidPlacement { .. })),
        "{r:?}"
    );
    assert!(
        matches!(r[1], Err(TxError::InvalidPlacement { .. })),
        "{r:?}"
    );
    assert_eq!(r[2], Ok(()));
    assert_eq!(r[3], Ok(()));
    assert!(
        matches!(r[4], Err(TxError::InvalidPlacement { .. })),
        "{r:?}"
    );
    assert_eq!(s.bucket("pics").unwrap().object_count, 2);
}

#[test]
fn the_ledger_refuses_fragments_marked_stored_on_unhealthy_nodes() {
    let mut s = setup();
    block(&mut s, vec![tx(OWNER, 1, create_bucket(OWNER, "pics"))]);
    // Blocks come every second; every storage node but node 0 heartbeats (operator OP).
    let window_blocks = registry::HEALTH_WINDOW_MS / 1_000;
    let mut nonce = 0;
    for seq in 1..=window_blocks + 2 {
        let beats = (1..12u8)
            .map(|i| {
                nonce += 1;
                tx(OP, nonce, heartbeat(storage_node(i), seq))
            })
            .collect();
        assert!(block(&mut s, beats).iter().all(Result::is_ok));
    }
    let dead = s.node(&storage_node(0)).unwrap();
    assert!(!registry::is_healthy(&s, dead), "node 0 aged out");
    // Slot 0 is node 0: marking it stored is refused; leaving it for repair is fine.
    let claims_dead = placed_on(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    let mut honest = claims_dead.clone();
    honest.segments[0].stored_mask = 0xffe;
    let r = block(
        &mut s,
        vec![
            tx(OWNER, 2, put(OWNER, "pics", "a", claims_dead, false)),
            tx(OWNER, 3, put(OWNER, "pics", "b", honest, false)),
        ],
    );
    assert!(
        matches!(r[0], Err(TxError::InvalidPlacement { .. })),
        "{r:?}"
    );
    assert_eq!(r[1], Ok(()));
    // The gateway's pre-commit refresh turns the first into the second.
    let mut segments = placed_on(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).segments;
    let placed: Vec<NodeId> = (0..12).map(storage_node).collect();
    placement::refresh(&s, 4, &placed, &mut segments).unwrap();
    assert_eq!(segments[0].stored_mask, 0xffe);
}

#[test]
fn stateless_checks_and_persistence_round_trip() {
    // A bad bucket name or inconsistent manifest invalidates the transaction itself.
    let bad = signed(OWNER, 1, create_bucket(OWNER, "Bad_Name"));
    assert!(matches!(
        SignedTx::decode_and_verify(&bad.encode()),
        Err(TxError::InvalidField {
            field: "bucket",
            ..
        })
    ));
    let mut m = manifest(10);
    m.size_bytes = 11;
    let bad = signed(OWNER, 1, put(OWNER, "pics", "k", m, false));
    assert!(matches!(
        SignedTx::decode_and_verify(&bad.encode()),
        Err(TxError::InvalidField {
            field: "size_bytes",
            ..
        })
    ));

    // State with buckets, objects and an authorization survives entries -> from_entries.
    let mut s = setup();
    block(
        &mut s,
        vec![
            tx(OWNER, 1, create_bucket(OWNER, "keep")),
            tx(OWNER, 2, authorize(true)),
            tx(OWNER, 3, put(OWNER, "keep", "x/y", manifest(77), false)),
        ],
    );
    let rebuilt = State::from_entries(s.entries()).unwrap();
    assert_eq!(rebuilt, s);
    assert_eq!(rebuilt.state_root(), s.state_root());
}
