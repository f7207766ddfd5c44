//! Object write order: time never runs backwards for an object (invariant 11).
//!
//! Every `PutObject` carries its gateway's request time (the manifest's `modified_ms`) and
//! every `DeleteObject` its `request_ms`. A write or delete applies only if its version,
//! `(request time, transaction hash)`, is greater than the object's current version or the
//! version of the delete that removed it. That is S3's latest-request-time rule; the hash makes
//! it a total, deterministic order when two requests carry the same millisecond (the larger
//! hash wins). An older write is refused with [`crate::TxError::Superseded`]; for the client
//! that is success immediately overwritten, so gateways answer it like S3 does (200/204).
//!
//! Deletes leave a tombstone holding their version, kept for [`TOMBSTONE_RETENTION_BLOCKS`]
//! after the delete. A transaction can only apply within [`crate::MAX_TX_VALIDITY_BLOCKS`] of
//! its `valid_until`, so once the tombstone is pruned any write still able to apply was signed
//! by a gateway that had already seen the delete finalized: it is causally later, and applying
//! it is what the client that sent it expects.

use crate::{codec::Reader, codec::Writer, Hash, TxError};

/// Blocks a delete's tombstone is kept (equal to the longest transaction validity).
pub const TOMBSTONE_RETENTION_BLOCKS: u64 = crate::MAX_TX_VALIDITY_BLOCKS;

/// The order of writes to one object: request time, then transaction hash.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct WriteVersion {
    /// The gateway's request time in Unix milliseconds.
    pub request_ms: u64,
    /// Hash of the transaction that wrote it (the tie-break).
    pub tx_hash: Hash,
}

/// A deleted object's last version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tombstone {
    /// Version of the delete.
    pub version: WriteVersion,
    /// Height at which the delete applied (pruned [`TOMBSTONE_RETENTION_BLOCKS`] later).
    pub height: u64,
}

/// Refuses `incoming` unless it is newer than `current` (the object's or its tombstone's).
pub fn check_newer(current: Option<WriteVersion>, incoming: WriteVersion) -> Result<(), TxError> {
    match current {
        Some(c) if c >= incoming => Err(TxError::Superseded {
            request_ms: incoming.request_ms,
            current_ms: c.request_ms,
        }),
        _ => Ok(()),
    }
}

impl WriteVersion {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.request_ms);
        w.fixed(&self.tx_hash);
    }
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            request_ms: r.u64()?,
            tx_hash: r.fixed::<32>()?,
        })
    }
}

impl Tombstone {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        self.version.write(&mut w);
        w.u64(self.height);
        w.0
    }
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        let mut r = Reader::new(bytes);
        let t = Self {
            version: WriteVersion::read(&mut r)?,
            height: r.u64()?,
        };
        r.finish()?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ms: u64, h: u8) -> WriteVersion {
        WriteVersion {
            request_ms: ms,
            tx_hash: [h; 32],
        }
    }

    #[test]
    fn newer_time_wins_and_the_hash_breaks_ties() {
        assert!(check_newer(None, v(1, 0)).is_ok());
        assert!(check_newer(Some(v(5, 9)), v(6, 0)).is_ok());
        assert!(check_newer(Some(v(5, 0)), v(4, 9)).is_err());
        assert!(check_newer(Some(v(5, 1)), v(5, 2)).is_ok());
        assert!(check_newer(Some(v(5, 2)), v(5, 1)).is_err());
        // The same version twice is not newer: a replay changes nothing.
        assert!(check_newer(Some(v(5, 2)), v(5, 2)).is_err());
    }

    #[test]
    fn tombstones_round_trip() {
        let t = Tombstone {
            version: v(7, 3),
            height: 11,
        };
        assert_eq!(Tombstone::decode(&t.encode()), Ok(t));
        assert!(Tombstone::decode(&t.encode()[1..]).is_err());
    }
}
