use super::*;
use crate::merkle::MerkleTree;
use proptest::prelude::*;

fn params() -> AuditParams {
    AuditParams::default()
}

#[test]
fn default_params_are_valid_and_bad_ones_are_refused() {
    params().validate().unwrap();
    let bad = [
        AuditParams {
            round_blocks: 1,
            ..params()
        },
        AuditParams {
            deadline_blocks: 240,
            ..params()
        },
        AuditParams {
            deadline_blocks: 0,
            ..params()
        },
        AuditParams {
            challenges_per_node: 65,
            ..params()
        },
        AuditParams {
            challenges_per_node: 0,
            ..params()
        },
        AuditParams {
            faulty_after_strikes: 0,
            ..params()
        },
    ];
    for p in bad {
        assert!(p.validate().is_err(), "{p:?}");
    }
}

#[test]
fn hypergeometric_detection_matches_the_targets() {
    // S = 16: 10% lost is caught with >= 99% within 3 rounds, 1% within 30.
    let per_round = |n, lost| detection_probability(n, lost, 16);
    for n in [200u64, 1_000, 10_000] {
        let p10 = per_round(n, n / 10);
        assert!(1.0 - (1.0 - p10).powi(3) >= 0.99, "n {n}: {p10}");
        let p1 = per_round(n, n / 100);
        assert!(1.0 - (1.0 - p1).powi(30) >= 0.99, "n {n}: {p1}");
    }
    // Everything lost: caught in the first round; nothing lost: never.
    assert_eq!(per_round(500, 500), 1.0);
    assert_eq!(per_round(500, 0), 0.0);
    // Without replacement beats with replacement.
    assert!(per_round(100, 10) > 1.0 - 0.9f64.powi(16));
    // Fewer fragments than challenges: every fragment is checked.
    assert_eq!(detection_probability(10, 1, 16), 1.0);
}

#[test]
fn the_penalty_schedule_escalates_and_a_pass_clears_it() {
    let p = params();
    let start = AuditRecord::default();
    // A first miss costs credit but no stake.
    let (r1, s1) = judge(&start, Verdict::Missed, 1_000, 0, &p);
    assert_eq!((r1.strikes, s1, r1.credit), (1, 0, CREDIT_START - 10));
    // A second miss in a row: 5% of the stake.
    let (r2, s2) = judge(&r1, Verdict::Missed, 1_000, 0, &p);
    assert_eq!((r2.strikes, s2), (2, 50));
    // A fail at once adds two strikes: 15% from the fourth strike on.
    let (r4, s4) = judge(&r2, Verdict::Fail, 950, 0, &p);
    assert_eq!((r4.strikes, s4, r4.fails), (4, 142, 1));
    assert!(!r4.faulty);
    // Faulty once strikes reach the threshold (6); it is sticky.
    let (r6, _) = judge(&r4, Verdict::Fail, 808, 0, &p);
    assert!(r6.faulty);
    // A pass clears strikes and earns one credit, up to the cap.
    let (ok, s) = judge(&r1, Verdict::Pass, 1_000, 4_500, &p);
    assert_eq!(
        (ok.strikes, s, ok.passes, ok.last_proof_bytes),
        (0, 0, 1, 4_500)
    );
    assert_eq!(ok.credit, r1.credit + 1);
    let full = AuditRecord {
        credit: CREDIT_MAX,
        ..AuditRecord::default()
    };
    assert_eq!(judge(&full, Verdict::Pass, 0, 0, &p).0.credit, CREDIT_MAX);
    // Credit never goes below zero; stake never below zero.
    let broke = AuditRecord {
        credit: 3,
        strikes: 5,
        ..AuditRecord::default()
    };
    let (b, s) = judge(&broke, Verdict::Fail, 7, 0, &p);
    assert_eq!(b.credit, 0);
    assert!(s <= 7);
}

#[test]
fn verdicts_follow_the_outcomes() {
    use Outcome::*;
    assert_eq!(verdict(&[Proved, Proved]), Verdict::Pass);
    assert_eq!(verdict(&[Proved, Open]), Verdict::Missed);
    assert_eq!(verdict(&[Failed, Open]), Verdict::Fail);
    assert_eq!(verdict(&[Proved, Failed]), Verdict::Fail);
}

fn fragment(len: usize, seed: u8) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed)
        .collect()
}

fn leaf_of(data: &[u8], i: u64) -> Vec<u8> {
    let start = (i as usize * LEAF_SIZE_BYTES).min(data.len());
    data[start..(start + LEAF_SIZE_BYTES).min(data.len())].to_vec()
}

fn challenge_for(data: &[u8], leaf: u64) -> Challenge {
    Challenge {
        bucket: "b".into(),
        key: "k".into(),
        segment: 0,
        fragment: 0,
        leaf,
        root: MerkleTree::build(data).root(),
        fragment_len: data.len() as u64,
    }
}

#[test]
fn leaf_proofs_verify_and_forgeries_fail() {
    let data = fragment(5 * 4096 + 100, 1);
    let tree = MerkleTree::build(&data);
    let c = challenge_for(&data, 3);
    let good = LeafProof {
        challenge: 0,
        data: leaf_of(&data, 3),
        path: tree.prove(3).unwrap().siblings,
    };
    assert!(verify_leaf(&c, &good));
    // A forged leaf.
    let mut forged = good.clone();
    forged.data[7] ^= 1;
    assert!(!verify_leaf(&c, &forged));
    // A wrong path.
    let mut bad_path = good.clone();
    bad_path.path[0][0] ^= 1;
    assert!(!verify_leaf(&c, &bad_path));
    // Another leaf of the same fragment, with its own valid path.
    let other = LeafProof {
        challenge: 0,
        data: leaf_of(&data, 2),
        path: tree.prove(2).unwrap().siblings,
    };
    assert!(!verify_leaf(&c, &other));
    // The same leaf index of another fragment (another node's data).
    let theirs = fragment(5 * 4096 + 100, 2);
    let their_tree = MerkleTree::build(&theirs);
    let stolen = LeafProof {
        challenge: 0,
        data: leaf_of(&theirs, 3),
        path: their_tree.prove(3).unwrap().siblings,
    };
    assert!(!verify_leaf(&c, &stolen));
}

#[test]
fn proofs_round_trip_their_encoding_and_bounds_hold() {
    let p = AuditProof {
        node: [3; 32],
        round: 9,
        leaves: vec![LeafProof {
            challenge: 2,
            data: vec![1; LEAF_SIZE_BYTES],
            path: vec![[7; 32]; 13],
        }],
    };
    p.validate().unwrap();
    let mut w = Writer::default();
    p.write(&mut w);
    let mut r = Reader::new(&w.0);
    assert_eq!(AuditProof::read(&mut r).unwrap(), p);
    r.finish().unwrap();
    // Eight full leaves with 13-level paths fit one 64 KiB transaction.
    let full = AuditProof {
        leaves: (0..MAX_LEAVES_PER_PROOF as u8)
            .map(|i| LeafProof {
                challenge: i,
                ..p.leaves[0].clone()
            })
            .collect(),
        ..p.clone()
    };
    let mut w = Writer::default();
    full.write(&mut w);
    assert!(w.0.len() + 200 < crate::MAX_TX_SIZE_BYTES, "{}", w.0.len());
    // Repeated or out-of-range indices, empty or oversized proofs are refused statelessly.
    let twice = AuditProof {
        leaves: vec![p.leaves[0].clone(), p.leaves[0].clone()],
        ..p.clone()
    };
    assert!(twice.validate().is_err());
    let empty = AuditProof {
        leaves: vec![],
        ..p.clone()
    };
    assert!(empty.validate().is_err());
    let too_many = AuditProof {
        leaves: (0..=MAX_LEAVES_PER_PROOF as u8)
            .map(|i| LeafProof {
                challenge: i,
                ..p.leaves[0].clone()
            })
            .collect(),
        ..p.clone()
    };
    assert!(too_many.validate().is_err());
}

#[test]
fn the_seed_depends_on_the_prior_root_the_round_and_the_chain() {
    let base = round_seed("c", 1, &[1; 32]);
    assert_ne!(base, round_seed("c", 1, &[2; 32]));
    assert_ne!(base, round_seed("c", 2, &[1; 32]));
    assert_ne!(base, round_seed("d", 1, &[1; 32]));
    assert_eq!(base, round_seed("c", 1, &[1; 32]));
}

#[test]
fn sampling_is_distinct_and_complete_when_small() {
    let seed = [5; 32];
    for n in 1..40u64 {
        for count in 0..=n.min(20) {
            let s = sample_ranks(&seed, &[1; 32], n, count);
            assert_eq!(s.len() as u64, count);
            assert!(s.iter().all(|r| *r < n));
        }
    }
}

proptest! {
    /// Each of n ranks is drawn with probability S/n: a chi-square test over many seeds
    /// (19 degrees of freedom; 43.8 is the 0.1% critical value).
    #[test]
    fn ranks_are_uniform(base in any::<u64>()) {
        let (n, s, trials) = (20u64, 4u64, 2_000u64);
        let mut hits = vec![0u64; n as usize];
        for t in 0..trials {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&base.wrapping_add(t).to_le_bytes());
            for r in sample_ranks(&seed, &[9; 32], n, s) {
                hits[r as usize] += 1;
            }
        }
        let expected = (trials * s) as f64 / n as f64;
        let chi2: f64 = hits.iter().map(|h| (*h as f64 - expected).powi(2) / expected).sum();
        prop_assert!(chi2 < 43.8, "chi2 {chi2}, hits {hits:?}");
    }

    /// The same seed always gives the same draws; different seeds almost always differ.
    #[test]
    fn draws_are_deterministic(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        let x = sample_ranks(&a, &[1; 32], 1_000, 16);
        prop_assert_eq!(&x, &sample_ranks(&a, &[1; 32], 1_000, 16));
        if a != b {
            prop_assert_ne!(x, sample_ranks(&b, &[1; 32], 1_000, 16));
        }
    }
}
