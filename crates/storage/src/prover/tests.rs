use super::*;
use cairn_ledger::{
    audit::{AuditParams, Verdict},
    objects::{Acl, ObjectManifest},
    Event, Genesis, NodeRecordInit, Roles, Tx,
};
use commonware_runtime::{deterministic, Runner};
use ed25519_dalek::SigningKey;
use std::sync::Mutex;

const OBJECTS: u8 = 6;
const FRAGMENT_BYTES: usize = 2 * LEAF_SIZE_BYTES + 10;

fn admin() -> SigningKey {
    SigningKey::from_bytes(&[1; 32])
}

fn node(i: u8) -> NodeId {
    [100 + i; 32]
}

fn bytes(object: u8, slot: u8) -> Vec<u8> {
    (0..FRAGMENT_BYTES as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 20) as u8 ^ object ^ (slot << 4))
        .collect()
}

/// A ledger where 12 storage nodes each hold one fragment of [`OBJECTS`] objects, and a
/// fragment store holding node 0's fragments; blocks are signed by the admin, who operates
/// every node.
struct Setup {
    state: State,
    nonce: u64,
    store: FragmentStore,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let admin_id = admin().verifying_key().to_bytes();
        let nodes = (0..12u8)
            .map(|i| {
                (
                    node(i),
                    NodeRecordInit {
                        operator: admin_id,
                        zone: format!("z{}", i % 3),
                        roles: Roles {
                            validator: false,
                            storage: true,
                            gateway: false,
                            cache: false,
                        },
                        addresses: vec![format!("127.0.0.1:{}", 2000 + u16::from(i))],
                        capacity_bytes: 1 << 40,
                        stake: 100,
                    },
                )
            })
            .collect();
        let g = Genesis {
            chain_id: "prover".into(),
            accounts: vec![(admin_id, "admin".into())],
            nodes,
            audit: AuditParams {
                round_blocks: 4,
                deadline_blocks: 2,
                challenges_per_node: 4,
                faulty_after_strikes: 6,
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let mut s = Self {
            state: State::genesis(&g).unwrap(),
            nonce: 0,
            store: FragmentStore::open(dir.path(), 4).unwrap(),
            _dir: dir,
        };
        s.block(vec![TxKind::CreateBucket {
            owner: admin_id,
            bucket: "audited".into(),
            acl: Acl::Private,
            data_shards: 4,
            parity_shards: 8,
        }]);
        let mut puts = vec![];
        for o in 0..OBJECTS {
            let roots = (0..12u8)
                .map(|slot| crate::merkle::root_of(&bytes(o, slot)))
                .collect();
            s.store
                .put(&crate::merkle::root_of(&bytes(o, 0)), &bytes(o, 0))
                .unwrap();
            let len = 4 * FRAGMENT_BYTES as u64;
            puts.push(TxKind::PutObject {
                owner: admin_id,
                bucket: "audited".into(),
                key: format!("obj-{o}"),
                manifest: ObjectManifest::single_segment(
                    len,
                    (0..12).map(node).collect(),
                    roots,
                    0xfff,
                ),
                if_absent: false,
            });
        }
        s.block(puts);
        while s.state.height() < 4 {
            s.block(vec![]);
        }
        assert!(s.state.audit_challenges(&node(0)).is_some());
        s
    }

    fn block(&mut self, kinds: Vec<TxKind>) -> Vec<Event> {
        let txs: Vec<Vec<u8>> = kinds
            .into_iter()
            .map(|kind| {
                self.nonce += 1;
                Tx {
                    signer: admin().verifying_key().to_bytes(),
                    nonce: self.nonce,
                    valid_until: self.state.height() + 50,
                    kind,
                }
                .sign(&admin())
                .encode()
            })
            .collect();
        let h = self.state.height() + 1;
        let out = self.state.apply_block(h, h * 1_000, &txs).unwrap();
        assert!(out.receipts.iter().all(Result::is_ok), "{:?}", out.receipts);
        out.events
    }

    /// Damages the file of node 0's fragment of `object`: deletes it or flips a byte.
    fn damage(&self, object: u8, delete: bool) {
        let root = crate::merkle::root_of(&bytes(object, 0));
        if delete {
            self.store.delete(&root).unwrap();
        } else {
            let mut d = self.store.read_unverified(&root).unwrap();
            d[5] ^= 1;
            self.store.delete(&root).unwrap();
            // Written around the store's check, as rot on disk would be.
            let path = self.store.path_of(&root);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, d).unwrap();
        }
    }
}

/// An [`AuditChain`] over a fixed snapshot that records what is submitted.
struct Fake {
    state: Arc<State>,
    sent: Mutex<Vec<TxKind>>,
}

impl AuditChain for Fake {
    fn snapshot(&self) -> Arc<State> {
        self.state.clone()
    }
    fn submit(&self, kind: TxKind, _validity_blocks: u64) -> Result<Hash, String> {
        let mut sent = self.sent.lock().unwrap();
        sent.push(kind);
        Ok([sent.len() as u8; 32])
    }
    fn pending(&self, _hash: &Hash) -> bool {
        true
    }
}

fn fake(s: &Setup) -> Fake {
    Fake {
        state: Arc::new(s.state.clone()),
        sent: Mutex::default(),
    }
}

fn verdict_of(events: &[Event], n: NodeId) -> Option<Verdict> {
    events.iter().find_map(|e| match e {
        Event::AuditVerdict { node, verdict, .. } if *node == n => Some(*verdict),
        _ => None,
    })
}

#[test]
fn an_honest_node_passes_and_answers_once() {
    let mut s = Setup::new();
    let chain = fake(&s);
    let stats = AuditStats::default();
    let mut prover = Prover::default();
    prover.poll(&chain, &node(0), &s.store, &stats, None);
    // In flight: a second poll sends nothing new.
    prover.poll(&chain, &node(0), &s.store, &stats, None);
    let sent = std::mem::take(&mut *chain.sent.lock().unwrap());
    assert_eq!(sent.len(), 1);
    assert!(matches!(&sent[0], TxKind::AuditProof(p) if p.leaves.len() == 4));
    assert_eq!(stats.leaves_proved.load(Ordering::Relaxed), 4);
    s.block(sent);
    let events = s.block(vec![]);
    assert_eq!(verdict_of(&events, node(0)), Some(Verdict::Pass));
    assert_eq!(verdict_of(&events, node(1)), Some(Verdict::Missed));
}

#[test]
fn lost_fragments_are_reported_not_answered() {
    let mut s = Setup::new();
    let challenged: Vec<u8> = s
        .state
        .audit_challenges(&node(0))
        .unwrap()
        .challenges
        .iter()
        .map(|c| c.key.trim_start_matches("obj-").parse().unwrap())
        .collect();
    s.damage(challenged[0], true);
    s.damage(challenged[1], false);
    let chain = fake(&s);
    let stats = AuditStats::default();
    Prover::default().poll(&chain, &node(0), &s.store, &stats, None);
    let sent = std::mem::take(&mut *chain.sent.lock().unwrap());
    let lost = sent
        .iter()
        .filter(|k| matches!(k, TxKind::FragmentLost(_)))
        .count();
    assert_eq!(lost, 2);
    assert!(sent
        .iter()
        .any(|k| matches!(k, TxKind::AuditProof(p) if p.leaves.len() == 2)));
    s.block(sent);
    let events = s.block(vec![]);
    // Missed, never failed: an honest node that lost data does not submit bad leaves.
    assert_eq!(verdict_of(&events, node(0)), Some(Verdict::Missed));
    let m = &s
        .state
        .object("audited", &format!("obj-{}", challenged[0]))
        .unwrap();
    assert_eq!(m.manifest.segments[0].stored_mask & 1, 0);
}

#[test]
fn reported_suspects_are_checked_and_only_the_lost_reported() {
    let s = Setup::new();
    s.damage(1, false);
    let chain = fake(&s);
    let stats = AuditStats::default();
    let suspects = Suspects::default();
    // A rotten fragment, an intact one, and a root this node does not hold.
    suspects.push(crate::merkle::root_of(&bytes(1, 0)));
    suspects.push(crate::merkle::root_of(&bytes(3, 0)));
    suspects.push([9; 32]);
    assert_eq!(
        check_suspects(&chain, &node(0), &s.store, &stats, &suspects),
        1
    );
    let sent = chain.sent.lock().unwrap();
    assert!(matches!(&sent[..], [TxKind::FragmentLost(l)] if l.key == "obj-1"));
    assert!(suspects.take().is_empty(), "taken once");
}

#[test]
fn the_scrubber_finds_every_damaged_fragment() {
    let s = Setup::new();
    s.damage(2, true);
    s.damage(4, false);
    let chain = fake(&s);
    let stats = AuditStats::default();
    deterministic::Runner::default().start(|context| async move {
        let t0 = context.current();
        let n = scrub_pass(&context, &chain, &node(0), &s.store, &stats, 1 << 20).await;
        assert_eq!(n, 2);
        let sent = chain.sent.lock().unwrap();
        let keys: BTreeSet<String> = sent
            .iter()
            .filter_map(|k| match k {
                TxKind::FragmentLost(l) => Some(l.key.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(keys, BTreeSet::from(["obj-2".into(), "obj-4".into()]));
        assert_eq!(
            stats.scrubbed_fragments.load(Ordering::Relaxed),
            u64::from(OBJECTS)
        );
        // Paced: the 5 fragments still on disk (8,202 bytes) at 1 MiB/s sleep 7 ms each.
        let took = context.current().duration_since(t0).unwrap();
        assert!(took >= Duration::from_millis(5 * 7), "{took:?}");
    });
}
