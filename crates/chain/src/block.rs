//! The block that consensus orders: a header plus a bounded list of encoded transactions.
//!
//! A block's digest is SHA-256 over its canonical encoding (minus nothing: the digest is never
//! sent on the wire, it is recomputed on every decode so a peer cannot lie about it).

use bytes::{BufMut, Bytes};
use commonware_codec::{varint::UInt, Buf, EncodeSize, Error as CodecError, Read, ReadExt, Write};
use commonware_consensus::{types::Height, Heightable};
use commonware_cryptography::{sha256, Digestible, Hasher, Sha256};

/// Digest type of blocks.
pub type Digest = sha256::Digest;

/// Most transaction bytes one block carries (sum of encoded transactions).
pub const MAX_BLOCK_TX_BYTES: usize = 2 * 1024 * 1024;
/// Most transactions one block carries (mirrors the ledger limit).
pub const MAX_BLOCK_TXS: usize = cairn_ledger::MAX_TXS_PER_BLOCK;
/// Fixed bytes a block header can take at most (parent, height, timestamp, count varints).
const MAX_HEADER_SIZE_BYTES: usize = 32 + 10 + 10 + 5;

/// A block of transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Digest of the parent block.
    pub parent: Digest,
    /// Height of this block (genesis is 0).
    pub height: u64,
    /// Proposer wall-clock time in milliseconds since the Unix epoch (informational).
    pub timestamp_ms: u64,
    /// Canonically encoded, signed ledger transactions.
    pub txs: Vec<Bytes>,
    digest: Digest,
}

impl Block {
    /// Builds a block and computes its digest.
    pub fn new(parent: Digest, height: u64, timestamp_ms: u64, txs: Vec<Bytes>) -> Self {
        let mut block = Self {
            parent,
            height,
            timestamp_ms,
            txs,
            digest: sha256::Digest([0u8; 32]),
        };
        block.digest = block.compute_digest();
        block
    }

    /// The genesis block of a chain: height 0, no transactions, bound to the chain id.
    pub fn genesis(chain_id: &str) -> Self {
        let parent = Sha256::hash(&[b"cairn/genesis/v1", chain_id.as_bytes()]);
        Self::new(parent, 0, 0, Vec::new())
    }

    /// Total encoded transaction bytes.
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(Bytes::len).sum()
    }

    fn compute_digest(&self) -> Digest {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        Sha256::hash(&[&buf])
    }
}

impl Write for Block {
    fn write(&self, writer: &mut impl BufMut) {
        self.parent.write(writer);
        UInt(self.height).write(writer);
        UInt(self.timestamp_ms).write(writer);
        UInt(self.txs.len() as u32).write(writer);
        for tx in &self.txs {
            UInt(tx.len() as u32).write(writer);
            writer.put_slice(tx);
        }
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + UInt(self.height).encode_size()
            + UInt(self.timestamp_ms).encode_size()
            + UInt(self.txs.len() as u32).encode_size()
            + self
                .txs
                .iter()
                .map(|tx| UInt(tx.len() as u32).encode_size() + tx.len())
                .sum::<usize>()
    }
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(reader: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let parent = Digest::read(reader)?;
        let height: u64 = UInt::read(reader)?.into();
        let timestamp_ms: u64 = UInt::read(reader)?.into();
        let count: u32 = UInt::read(reader)?.into();
        let count = count as usize;
        if count > MAX_BLOCK_TXS {
            return Err(CodecError::Invalid("Block", "too many transactions"));
        }
        let mut txs = Vec::with_capacity(count);
        let mut total_bytes = 0usize;
        for _ in 0..count {
            let len: u32 = UInt::read(reader)?.into();
            let len = len as usize;
            if len > cairn_ledger::MAX_TX_SIZE_BYTES {
                return Err(CodecError::Invalid("Block", "transaction too large"));
            }
            total_bytes += len;
            if total_bytes > MAX_BLOCK_TX_BYTES {
                return Err(CodecError::Invalid("Block", "block too large"));
            }
            if reader.remaining() < len {
                return Err(CodecError::EndOfBuffer);
            }
            txs.push(reader.copy_to_bytes(len));
        }
        Ok(Self::new(parent, height, timestamp_ms, txs))
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl commonware_consensus::BoundedBlock for Block {
    fn max_encode_size(_: &()) -> usize {
        MAX_HEADER_SIZE_BYTES + MAX_BLOCK_TXS * 5 + MAX_BLOCK_TX_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn round_trip_recomputes_digest() {
        let block = Block::new(
            Block::genesis("t").digest(),
            1,
            7,
            vec![Bytes::from_static(b"abc"), Bytes::from_static(b"")],
        );
        let decoded = Block::decode(block.encode()).unwrap();
        assert_eq!(decoded, block);
        assert_eq!(decoded.digest(), block.digest());
        let other = Block::new(block.parent, 1, 8, block.txs.clone());
        assert_ne!(other.digest(), block.digest());
    }

    #[test]
    fn rejects_oversize_and_truncated() {
        let huge = Bytes::from(vec![0u8; cairn_ledger::MAX_TX_SIZE_BYTES + 1]);
        let block = Block::new(Block::genesis("t").digest(), 1, 0, vec![huge]);
        assert!(Block::decode(block.encode()).is_err());
        let ok = Block::new(
            Block::genesis("t").digest(),
            1,
            0,
            vec![Bytes::from_static(b"x")],
        );
        let bytes = ok.encode();
        assert!(Block::decode(bytes.slice(..bytes.len() - 1)).is_err());
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(Block::decode(Bytes::from(trailing)).is_err());
    }
}
