//! BLAKE3 Merkle tree over fixed-size leaves of one fragment.
//!
//! Leaves are [`LEAF_SIZE_BYTES`] slices of the fragment (the last may be shorter). Leaf and
//! interior hashes are domain-separated, a level with an odd count promotes its last node
//! unchanged, and the published root also commits to the fragment's length, so a proof for
//! leaf `i` of an `n`-byte fragment cannot be replayed for another length or position.
//!
//! Why 4 KiB leaves: an audit proof carries one leaf plus one 32-byte sibling per level, so for
//! an 8 MiB fragment (the largest at k = 4, from a 32 MiB segment) a proof is
//! 4 KiB + 11 × 32 B ≈ 4.4 KB; a leaf is one page, so proving it reads exactly one page from
//! disk; and the leaf hashes a prover may cache are 1/128 of the data. Smaller leaves shrink
//! proofs only slightly (the path grows) while multiplying the cached hashes.

use crate::Hash;

/// Size of one Merkle leaf.
pub const LEAF_SIZE_BYTES: usize = 4096;

const LEAF_TAG: u8 = 0;
const NODE_TAG: u8 = 1;
const ROOT_TAG: u8 = 2;

fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[LEAF_TAG]);
    h.update(data);
    *h.finalize().as_bytes()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[NODE_TAG]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

fn final_root(tree_root: &Hash, len_bytes: u64) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[ROOT_TAG]);
    h.update(&len_bytes.to_le_bytes());
    h.update(tree_root);
    *h.finalize().as_bytes()
}

/// Number of leaves of a fragment of `len_bytes` (an empty fragment has one empty leaf).
pub fn leaf_count(len_bytes: u64) -> u64 {
    len_bytes.div_ceil(LEAF_SIZE_BYTES as u64).max(1)
}

/// A fragment's full tree (all levels), for proving.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
    len_bytes: u64,
}

impl MerkleTree {
    /// Builds the tree of `data`.
    pub fn build(data: &[u8]) -> Self {
        let mut leaves: Vec<Hash> = data.chunks(LEAF_SIZE_BYTES).map(leaf_hash).collect();
        if leaves.is_empty() {
            leaves.push(leaf_hash(&[]));
        }
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("non-empty");
            let above = below
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [single] => *single,
                    _ => unreachable!("chunks(2) yields 1 or 2"),
                })
                .collect();
            levels.push(above);
        }
        Self {
            levels,
            len_bytes: data.len() as u64,
        }
    }

    /// The published root (commits to the content and the length).
    pub fn root(&self) -> Hash {
        final_root(&self.levels.last().expect("non-empty")[0], self.len_bytes)
    }

    /// The sibling path of leaf `index`, bottom-up; `None` if out of range.
    pub fn prove(&self, index: u64) -> Option<Proof> {
        let leaves = self.levels[0].len() as u64;
        if index >= leaves {
            return None;
        }
        let mut siblings = Vec::with_capacity(self.levels.len());
        let mut i = index as usize;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if sibling < level.len() {
                siblings.push(level[sibling]);
            }
            i /= 2;
        }
        Some(Proof { siblings })
    }
}

/// The root of `data` without keeping the tree.
pub fn root_of(data: &[u8]) -> Hash {
    MerkleTree::build(data).root()
}

/// A Merkle path: the sibling hashes of one leaf, bottom-up (promoted levels have none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// Sibling hashes from the leaf level upward.
    pub siblings: Vec<Hash>,
}

impl Proof {
    /// True if `leaf` is leaf `index` of the `len_bytes`-long fragment whose root is `root`.
    pub fn verify(&self, root: &Hash, len_bytes: u64, index: u64, leaf: &[u8]) -> bool {
        let leaves = leaf_count(len_bytes);
        if index >= leaves {
            return false;
        }
        let expected_len = if index + 1 == leaves {
            (len_bytes - index * LEAF_SIZE_BYTES as u64) as usize
        } else {
            LEAF_SIZE_BYTES
        };
        if leaf.len() != expected_len {
            return false;
        }
        let mut hash = leaf_hash(leaf);
        let mut siblings = self.siblings.iter();
        let (mut i, mut width) = (index, leaves);
        while width > 1 {
            let sibling = i ^ 1;
            if sibling < width {
                let Some(s) = siblings.next() else {
                    return false;
                };
                hash = if i % 2 == 0 {
                    node_hash(&hash, s)
                } else {
                    node_hash(s, &hash)
                };
            }
            i /= 2;
            width = width.div_ceil(2);
        }
        siblings.next().is_none() && final_root(&hash, len_bytes) == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        // Not periodic in the leaf size, so no two leaves are equal.
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ seed)
            .collect()
    }

    #[test]
    fn every_leaf_proves_and_tampering_fails() {
        for len in [0, 1, 4095, 4096, 4097, 3 * 4096, 5 * 4096 + 7] {
            let d = data(len, 1);
            let tree = MerkleTree::build(&d);
            let root = tree.root();
            let n = leaf_count(len as u64);
            for i in 0..n {
                let start = (i as usize * LEAF_SIZE_BYTES).min(len);
                let end = (start + LEAF_SIZE_BYTES).min(len);
                let leaf = &d[start..end];
                let proof = tree.prove(i).unwrap();
                assert!(
                    proof.verify(&root, len as u64, i, leaf),
                    "len {len} leaf {i}"
                );
                // Wrong index, wrong length, flipped byte, wrong root: all rejected.
                assert!(!proof.verify(&root, len as u64 + 1, i, leaf));
                if n > 1 {
                    assert!(!proof.verify(&root, len as u64, (i + 1) % n, leaf));
                }
                if !leaf.is_empty() {
                    let mut bad = leaf.to_vec();
                    bad[0] ^= 1;
                    assert!(!proof.verify(&root, len as u64, i, &bad));
                }
                assert!(!proof.verify(&[0; 32], len as u64, i, leaf));
            }
            assert!(tree.prove(n).is_none());
        }
    }

    #[test]
    fn root_commits_to_length() {
        // Same leaf content, different declared length: different roots.
        assert_ne!(root_of(&[0u8; 10]), root_of(&[0u8; 11]));
        assert_ne!(root_of(&[]), root_of(&[0u8]));
    }

    proptest! {
        #[test]
        fn distinct_data_distinct_roots(a in proptest::collection::vec(any::<u8>(), 0..20_000),
                                        flip in any::<usize>()) {
            let mut b = a.clone();
            if b.is_empty() { b.push(0) } else { let i = flip % b.len(); b[i] ^= 0x80; }
            prop_assert_ne!(root_of(&a), root_of(&b));
        }

        #[test]
        fn random_leaf_proves(len in 0usize..40_000, pick in any::<u64>()) {
            let d = data(len, 7);
            let tree = MerkleTree::build(&d);
            let i = pick % leaf_count(len as u64);
            let start = (i as usize * LEAF_SIZE_BYTES).min(len);
            let end = (start + LEAF_SIZE_BYTES).min(len);
            prop_assert!(tree.prove(i).unwrap().verify(&tree.root(), len as u64, i, &d[start..end]));
        }
    }
}
