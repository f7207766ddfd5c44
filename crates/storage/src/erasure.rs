//! Reed-Solomon erasure coding of one segment into k data and m parity fragments.
//!
//! The segment is split into k equal data shards (the last zero-padded) and m parity shards
//! are computed with `reed-solomon-simd`; any k of the k + m fragments rebuild the segment.
//! Reed-Solomon does not detect corruption: callers verify each fragment against its Merkle
//! root before decoding (DESIGN.md invariant 6).

use thiserror::Error;

pub use cairn_ledger::objects::{MAX_DATA_SHARDS, MAX_PARITY_SHARDS};

/// An erasure-coding scheme: `data` (k) + `parity` (m) fragments per segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coding {
    /// k: fragments needed to rebuild a segment.
    pub data: u8,
    /// m: extra fragments; up to m may be lost.
    pub parity: u8,
}

impl From<&cairn_ledger::objects::Bucket> for Coding {
    fn from(b: &cairn_ledger::objects::Bucket) -> Self {
        Coding {
            data: b.data_shards,
            parity: b.parity_shards,
        }
    }
}

impl Coding {
    /// The default, RS(4, 8): survives the loss of 8 of 12 fragments.
    pub const DEFAULT: Coding = Coding { data: 4, parity: 8 };

    /// Checks the bounds; every other method assumes a valid scheme.
    pub fn validate(&self) -> Result<(), CodingError> {
        // The ledger owns the bounds: buckets are created with them.
        cairn_ledger::objects::validate_coding(self.data, self.parity)
            .map_err(|e| CodingError::Scheme(e.to_string()))
    }

    /// k + m.
    pub fn total(&self) -> usize {
        self.data as usize + self.parity as usize
    }

    /// Size of every fragment of a `segment_len`-byte segment (even, as the codec requires).
    pub fn fragment_size(&self, segment_len: usize) -> usize {
        // The ledger owns the formula: it accounts node usage from manifests with it.
        cairn_ledger::objects::fragment_size_bytes(segment_len as u64, self.data) as usize
    }
}

/// Why coding failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodingError {
    /// The (k, m) scheme is out of bounds.
    #[error("invalid erasure-coding scheme: {0}")]
    Scheme(String),
    /// Fewer than k fragments were supplied.
    #[error("only {have} of the {need} fragments needed to rebuild the segment are available; bring more storage nodes back or wait for repair")]
    TooFewFragments {
        /// Fragments supplied.
        have: usize,
        /// k.
        need: usize,
    },
    /// A fragment has the wrong size or index.
    #[error("fragment {index} is malformed: {reason}")]
    BadFragment {
        /// Fragment index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The codec itself failed.
    #[error("erasure codec failed: {0}")]
    Codec(String),
}

/// Encodes a segment into `coding.total()` fragments: k data fragments, then m parity ones.
pub fn encode(coding: Coding, segment: &[u8]) -> Result<Vec<Vec<u8>>, CodingError> {
    coding.validate()?;
    let size = coding.fragment_size(segment.len());
    let mut data: Vec<Vec<u8>> = (0..coding.data as usize)
        .map(|i| {
            let start = (i * size).min(segment.len());
            let end = (start + size).min(segment.len());
            let mut shard = Vec::with_capacity(size);
            shard.extend_from_slice(&segment[start..end]);
            shard.resize(size, 0);
            shard
        })
        .collect();
    let parity = reed_solomon_simd::encode(coding.data as usize, coding.parity as usize, &data)
        .map_err(|e| CodingError::Codec(e.to_string()))?;
    data.extend(parity);
    debug_assert_eq!(data.len(), coding.total());
    Ok(data)
}

/// Rebuilds a `segment_len`-byte segment from fragments (`None` = missing), indexed 0..k+m.
pub fn decode(
    coding: Coding,
    segment_len: usize,
    fragments: &[Option<Vec<u8>>],
) -> Result<Vec<u8>, CodingError> {
    coding.validate()?;
    let k = coding.data as usize;
    let size = coding.fragment_size(segment_len);
    if fragments.len() != coding.total() {
        return Err(CodingError::BadFragment {
            index: fragments.len(),
            reason: format!("expected {} fragment slots", coding.total()),
        });
    }
    for (index, f) in fragments.iter().enumerate() {
        if let Some(f) = f {
            if f.len() != size {
                return Err(CodingError::BadFragment {
                    index,
                    reason: format!("size {} bytes, expected {size}", f.len()),
                });
            }
        }
    }
    let have = fragments.iter().filter(|f| f.is_some()).count();
    if have < k {
        return Err(CodingError::TooFewFragments { have, need: k });
    }
    let mut data: Vec<Option<&[u8]>> = fragments[..k].iter().map(|f| f.as_deref()).collect();
    if data.iter().any(Option::is_none) {
        let originals = fragments[..k]
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_deref().map(|f| (i, f)));
        let recovery = fragments[k..]
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_deref().map(|f| (i, f)));
        let restored = reed_solomon_simd::decode(k, coding.parity as usize, originals, recovery)
            .map_err(|e| CodingError::Codec(e.to_string()))?;
        let mut out = Vec::with_capacity(k * size);
        for (i, slot) in data.iter_mut().enumerate() {
            match slot {
                Some(f) => out.extend_from_slice(f),
                None => out.extend_from_slice(restored.get(&i).ok_or_else(|| {
                    CodingError::Codec(format!("codec did not restore fragment {i}"))
                })?),
            }
        }
        out.truncate(segment_len);
        return Ok(out);
    }
    let mut out = Vec::with_capacity(k * size);
    for f in data.into_iter().flatten() {
        out.extend_from_slice(f);
    }
    out.truncate(segment_len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segment(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn any_k_of_twelve_rebuild_the_segment() {
        let c = Coding::DEFAULT;
        let seg = segment(100_003);
        let frags = encode(c, &seg).unwrap();
        assert_eq!(frags.len(), 12);
        // Lose 8 of 12 in several patterns: all data, all but one data, a mix.
        for keep in [[8, 9, 10, 11], [0, 5, 7, 11], [3, 4, 6, 9], [0, 1, 2, 3]] {
            let mut slots: Vec<Option<Vec<u8>>> = vec![None; 12];
            for i in keep {
                slots[i] = Some(frags[i].clone());
            }
            assert_eq!(decode(c, seg.len(), &slots).unwrap(), seg, "kept {keep:?}");
        }
    }

    #[test]
    fn too_few_or_malformed_fragments_are_errors() {
        let c = Coding::DEFAULT;
        let seg = segment(5000);
        let frags = encode(c, &seg).unwrap();
        let mut slots: Vec<Option<Vec<u8>>> = vec![None; 12];
        for i in [1, 4, 9] {
            slots[i] = Some(frags[i].clone());
        }
        assert_eq!(
            decode(c, seg.len(), &slots),
            Err(CodingError::TooFewFragments { have: 3, need: 4 })
        );
        slots[10] = Some(vec![0; 3]);
        assert!(matches!(
            decode(c, seg.len(), &slots),
            Err(CodingError::BadFragment { index: 10, .. })
        ));
        assert!(decode(c, seg.len(), &slots[..11]).is_err());
        assert!(Coding { data: 0, parity: 8 }.validate().is_err());
        assert!(Coding {
            data: 4,
            parity: 33
        }
        .validate()
        .is_err());
    }

    #[test]
    fn empty_and_tiny_segments_round_trip() {
        for len in [0, 1, 2, 3, 7, 8, 9] {
            let seg = segment(len);
            let c = Coding::DEFAULT;
            let frags = encode(c, &seg).unwrap();
            let mut slots: Vec<Option<Vec<u8>>> = frags.into_iter().map(Some).collect();
            for s in slots.iter_mut().take(4) {
                *s = None;
            }
            assert_eq!(decode(c, len, &slots).unwrap(), seg);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_schemes_and_losses(len in 0usize..20_000, k in 1u8..8, m in 1u8..8,
                                      seed in any::<u64>()) {
            let c = Coding { data: k, parity: m };
            let seg = segment(len);
            let frags = encode(c, &seg).unwrap();
            // Drop exactly m fragments chosen by the seed.
            let mut order: Vec<usize> = (0..c.total()).collect();
            let mut s = seed;
            for i in (1..order.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (s >> 33) as usize % (i + 1));
            }
            let mut slots: Vec<Option<Vec<u8>>> = frags.into_iter().map(Some).collect();
            for &i in order.iter().take(m as usize) {
                slots[i] = None;
            }
            prop_assert_eq!(decode(c, len, &slots).unwrap(), seg);
        }
    }
}
