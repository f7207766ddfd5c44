//! Incremental state commitment: a lattice-based homomorphic multiset hash (LtHash).
//!
//! Each (key, value) entry maps to a vector of [`LANES`] 16-bit lanes drawn from the BLAKE3
//! XOF; the accumulator is the lane-wise sum modulo 2^16 over all live entries. Inserting adds
//! the entry's vector, deleting subtracts it, and updating does both, so a block costs
//! O(entries it touched) instead of O(all entries). Parameters (n = 1024 lanes of 16 bits) are
//! those analysed by Lewi et al., "Securing Update Propagation with Homomorphic Hashing"
//! (IACR ePrint 2019/227), which estimate more than 200 bits of collision resistance.
//!
//! The sum does not depend on insertion order, so two states with the same entries always get
//! the same checksum whatever history produced them.

use crate::Hash;

/// Lanes in the accumulator.
pub const LANES: usize = 1024;
const ELEMENT_DOMAIN: &[u8] = b"cairn/lthash/element/v1\0";
const CHECKSUM_DOMAIN: &[u8] = b"cairn/lthash/checksum/v1\0";

/// The accumulator over a set of entries.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash(Box<[u16; LANES]>);

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", hex_prefix(&self.checksum()))
    }
}

fn hex_prefix(h: &Hash) -> String {
    h[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The lane vector of one entry; length-prefixing makes (key, value) splits unambiguous.
fn element(key: &[u8], value: &[u8]) -> [u16; LANES] {
    let mut h = blake3::Hasher::new();
    h.update(ELEMENT_DOMAIN);
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(&(value.len() as u64).to_le_bytes());
    h.update(value);
    let mut bytes = [0u8; LANES * 2];
    h.finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl Default for LtHash {
    fn default() -> Self {
        Self::new()
    }
}

impl LtHash {
    /// The accumulator of the empty set.
    pub fn new() -> Self {
        Self(Box::new([0; LANES]))
    }

    /// Adds one entry (it must not be present already).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let e = element(key, value);
        for (a, b) in self.0.iter_mut().zip(e.iter()) {
            *a = a.wrapping_add(*b);
        }
    }

    /// Removes one entry (it must be present with exactly this value).
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        let e = element(key, value);
        for (a, b) in self.0.iter_mut().zip(e.iter()) {
            *a = a.wrapping_sub(*b);
        }
    }

    /// 32-byte digest of the accumulator.
    pub fn checksum(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(CHECKSUM_DOMAIN);
        let mut bytes = [0u8; LANES * 2];
        for (pair, lane) in bytes.chunks_exact_mut(2).zip(self.0.iter()) {
            pair.copy_from_slice(&lane.to_le_bytes());
        }
        h.update(&bytes);
        *h.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_and_invertible() {
        let mut a = LtHash::new();
        a.insert(b"k1", b"v1");
        a.insert(b"k2", b"v2");
        let mut b = LtHash::new();
        b.insert(b"k2", b"v2");
        b.insert(b"k1", b"v1");
        assert_eq!(a, b);
        assert_eq!(a.checksum(), b.checksum());
        b.remove(b"k2", b"v2");
        b.remove(b"k1", b"v1");
        assert_eq!(b, LtHash::new());
        assert_ne!(a.checksum(), LtHash::new().checksum());
    }

    #[test]
    fn key_value_split_matters() {
        let mut a = LtHash::new();
        a.insert(b"ab", b"c");
        let mut b = LtHash::new();
        b.insert(b"a", b"bc");
        assert_ne!(a.checksum(), b.checksum());
    }
}
