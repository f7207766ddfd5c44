//! Objects: `PutObject` and `DeleteObject`, ordered by write version with tombstones for
//! deletes ([`crate::versions`]), keeping per-node used bytes and bucket object counts.

use super::buckets::owned_bucket;
use crate::{
    objects::{object_key_suffix, Bucket, ObjectManifest, ObjectRecord},
    state::{key, Event, State, T_BUCKET, T_NODE, T_OBJECT, T_TOMBSTONE},
    tx::SignedTx,
    versions::{check_newer, Tombstone, WriteVersion},
    AccountId, TxError,
};

/// A checked object change, with the bucket's record after it.
pub(crate) enum Change {
    /// A new or replacing object.
    Put {
        bucket: String,
        key: String,
        record: ObjectRecord,
        bucket_record: Bucket,
    },
    /// A delete, leaving a tombstone whether or not the object existed.
    Delete {
        bucket: String,
        key: String,
        tombstone: Tombstone,
        bucket_record: Bucket,
    },
}

/// The version of the object at `k`, or of the delete that removed it.
fn current_version(state: &State, k: &[u8]) -> Option<WriteVersion> {
    state
        .objects
        .get(k)
        .map(|o| WriteVersion {
            request_ms: o.manifest.modified_ms,
            tx_hash: o.tx_hash,
        })
        .or_else(|| state.tombstones.get(k).map(|t| t.version))
}

/// `PutObject`: acting for the owner of an existing bucket, a placement that fits the bucket's
/// coding and the registry, absent if asked, and newer than the current version.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_put(
    state: &State,
    stx: &SignedTx,
    owner: &AccountId,
    bucket: &str,
    key: &str,
    manifest: &ObjectManifest,
    if_absent: bool,
    height: u64,
) -> Result<Change, TxError> {
    let b = owned_bucket(state, owner, &stx.tx.signer, bucket)?;
    let slots = usize::from(b.data_shards) + usize::from(b.parity_shards);
    if manifest.placement.len() != slots {
        return Err(TxError::InvalidPlacement {
            reason: format!(
                "{} nodes for a bucket coded RS({}, {})",
                manifest.placement.len(),
                b.data_shards,
                b.parity_shards
            ),
        });
    }
    crate::placement::validate(state, b.data_shards, manifest)?;
    let k = object_key_suffix(bucket, key);
    let exists = state.objects.contains_key(&k);
    if if_absent && exists {
        return Err(TxError::ObjectExists);
    }
    let version = WriteVersion {
        request_ms: manifest.modified_ms,
        tx_hash: stx.hash(),
    };
    check_newer(current_version(state, &k), version)?;
    let mut bucket_record = b.clone();
    if !exists {
        bucket_record.object_count = bucket_record.object_count.saturating_add(1);
    }
    Ok(Change::Put {
        bucket: bucket.to_string(),
        key: key.to_string(),
        record: ObjectRecord {
            manifest: manifest.clone(),
            put_by: stx.tx.signer,
            put_height: height,
            tx_hash: version.tx_hash,
        },
        bucket_record,
    })
}

/// `DeleteObject`: acting for the owner of an existing bucket, newer than the current version.
pub(super) fn check_delete(
    state: &State,
    stx: &SignedTx,
    owner: &AccountId,
    bucket: &str,
    key: &str,
    request_ms: u64,
    height: u64,
) -> Result<Change, TxError> {
    let b = owned_bucket(state, owner, &stx.tx.signer, bucket)?;
    let version = WriteVersion {
        request_ms,
        tx_hash: stx.hash(),
    };
    let k = object_key_suffix(bucket, key);
    check_newer(current_version(state, &k), version)?;
    let mut bucket_record = b.clone();
    if state.objects.contains_key(&k) {
        bucket_record.object_count = bucket_record.object_count.saturating_sub(1);
    }
    Ok(Change::Delete {
        bucket: bucket.to_string(),
        key: key.to_string(),
        tombstone: Tombstone { version, height },
        bucket_record,
    })
}

/// Adds (or, with `remove`, subtracts) an object's fragment bytes to its placed nodes.
fn account_usage(state: &mut State, record: &ObjectRecord, data_shards: u8, remove: bool) {
    let per_node = record.manifest.bytes_per_node(data_shards);
    for n in &record.manifest.placement {
        // Usage is tracked for registered nodes only; the new record is built before the touch
        // so the write needs no second lookup.
        let Some(mut rec) = state.nodes.get(n).cloned() else {
            continue;
        };
        rec.used_bytes = if remove {
            rec.used_bytes.saturating_sub(per_node)
        } else {
            rec.used_bytes.saturating_add(per_node)
        };
        state.touch(key(T_NODE, n));
        state.nodes.insert(*n, rec);
    }
}

/// Writes a checked object change.
/// Marks the object and its bucket changed and clears the key's tombstone; returns the object's
/// state key and the bucket's data shard count.
fn start_write(state: &mut State, bucket: &str, object: &str, b: &Bucket) -> (Vec<u8>, u8) {
    let k = object_key_suffix(bucket, object);
    state.touch(key(T_OBJECT, &k));
    state.touch(key(T_BUCKET, bucket.as_bytes()));
    state.remove_tombstone(&k);
    (k, b.data_shards)
}

/// Releases the replaced or deleted object's usage and stores the bucket record.
fn finish_write(state: &mut State, bucket: &str, b: Bucket, old: Option<ObjectRecord>) {
    if let Some(old) = old {
        account_usage(state, &old, b.data_shards, true);
    }
    state.buckets.insert(bucket.to_string(), b);
}

pub(super) fn apply(state: &mut State, change: Change) -> Event {
    match change {
        Change::Put {
            bucket,
            key: object,
            record,
            bucket_record,
        } => {
            let (k, data_shards) = start_write(state, &bucket, &object, &bucket_record);
            account_usage(state, &record, data_shards, false);
            let old = state.objects.insert(k, record);
            let replaced = old.is_some();
            finish_write(state, &bucket, bucket_record, old);
            Event::ObjectPut {
                bucket,
                key: object,
                replaced,
            }
        }
        Change::Delete {
            bucket,
            key: object,
            tombstone,
            bucket_record,
        } => {
            let (k, _) = start_write(state, &bucket, &object, &bucket_record);
            state.touch(key(T_TOMBSTONE, &k));
            state
                .tombstone_heights
                .insert((tombstone.height, k.clone()));
            state.tombstones.insert(k.clone(), tombstone);
            let old = state.objects.remove(&k);
            let existed = old.is_some();
            finish_write(state, &bucket, bucket_record, old);
            Event::ObjectDeleted {
                bucket,
                key: object,
                existed,
            }
        }
    }
}
