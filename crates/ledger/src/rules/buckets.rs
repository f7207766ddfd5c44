//! Buckets and gateways: `CreateBucket`, `DeleteBucket` (empty buckets only) and
//! `AuthorizeGateway`, plus the "may act for the owner" rule objects share.

use crate::{
    objects::{gateway_key_suffix, Acl, Bucket},
    state::{key, Event, State, T_BUCKET, T_GATEWAY},
    AccountId, TxError,
};

/// A checked bucket or gateway change.
pub(crate) enum Change {
    /// A new bucket.
    Created { name: String, bucket: Bucket },
    /// An empty bucket removed.
    Deleted { name: String },
    /// A gateway authorization granted or revoked.
    Gateway {
        owner: AccountId,
        gateway: AccountId,
        allowed: bool,
    },
}

/// The signer may act for `owner`: it is the owner or a gateway the owner authorized.
pub(super) fn check_acting(
    state: &State,
    owner: &AccountId,
    signer: &AccountId,
) -> Result<(), TxError> {
    if owner == signer || state.gateways.contains(&(*owner, *signer)) {
        Ok(())
    } else {
        Err(TxError::NotAuthorized)
    }
}

/// The bucket `bucket`, if the signer may act for `owner` and `owner` owns it.
pub(super) fn owned_bucket<'a>(
    state: &'a State,
    owner: &AccountId,
    signer: &AccountId,
    bucket: &str,
) -> Result<&'a Bucket, TxError> {
    check_acting(state, owner, signer)?;
    let b = state.buckets.get(bucket).ok_or(TxError::NoSuchBucket)?;
    if b.owner != *owner {
        return Err(TxError::NotAuthorized);
    }
    Ok(b)
}

/// `CreateBucket`: acting for the owner, under a free name.
pub(super) fn check_create(
    state: &State,
    signer: &AccountId,
    owner: &AccountId,
    name: &str,
    acl: Acl,
    (data_shards, parity_shards): (u8, u8),
    height: u64,
) -> Result<Change, TxError> {
    check_acting(state, owner, signer)?;
    if state.buckets.contains_key(name) {
        return Err(TxError::BucketExists);
    }
    Ok(Change::Created {
        name: name.to_string(),
        bucket: Bucket {
            owner: *owner,
            acl,
            data_shards,
            parity_shards,
            created_height: height,
            object_count: 0,
        },
    })
}

/// `DeleteBucket`: acting for the owner, on an empty bucket it owns.
pub(super) fn check_delete(
    state: &State,
    signer: &AccountId,
    owner: &AccountId,
    name: &str,
) -> Result<Change, TxError> {
    let b = owned_bucket(state, owner, signer, name)?;
    if b.object_count > 0 {
        return Err(TxError::BucketNotEmpty {
            objects: b.object_count,
        });
    }
    Ok(Change::Deleted {
        name: name.to_string(),
    })
}

/// `AuthorizeGateway` has no stateful rule: the signer grants for itself.
pub(super) fn authorize(signer: &AccountId, gateway: &AccountId, allowed: bool) -> Change {
    Change::Gateway {
        owner: *signer,
        gateway: *gateway,
        allowed,
    }
}

/// Writes a checked bucket or gateway change.
pub(super) fn apply(state: &mut State, change: Change) -> Event {
    match change {
        Change::Created { name, bucket } => {
            let owner = bucket.owner;
            state.touch(key(T_BUCKET, name.as_bytes()));
            state.buckets.insert(name.clone(), bucket);
            Event::BucketCreated {
                bucket: name,
                owner,
            }
        }
        Change::Deleted { name } => {
            state.touch(key(T_BUCKET, name.as_bytes()));
            state.buckets.remove(&name);
            Event::BucketDeleted { bucket: name }
        }
        Change::Gateway {
            owner,
            gateway,
            allowed,
        } => {
            let pair = (owner, gateway);
            state.touch(key(T_GATEWAY, &gateway_key_suffix(&owner, &gateway)));
            if allowed {
                state.gateways.insert(pair);
            } else {
                state.gateways.remove(&pair);
            }
            Event::GatewayAuthorization {
                owner,
                gateway,
                allowed,
            }
        }
    }
}
