//! The gateway's local S3 key store, and the s3s auth and access hooks built on it.
//!
//! Secrets never go on the ledger: each access key lives only in this store, bound to an
//! account; the ledger only records that the account authorized this gateway
//! (`AuthorizeGateway`), which the handlers check on every non-public request.

use crate::s3::Ledger;
use cairn_ledger::{objects::Acl, AccountId};
use s3s::{
    access::{S3Access, S3AccessContext},
    auth::{S3Auth, SecretKey},
    path::S3Path,
    s3_error, S3Result,
};
use std::{collections::HashMap, sync::Arc};

/// Shortest accepted access key id.
pub const MIN_ACCESS_KEY_SIZE_BYTES: usize = 16;
/// Longest accepted access key id.
pub const MAX_ACCESS_KEY_SIZE_BYTES: usize = 128;
/// Shortest accepted secret.
pub const MIN_SECRET_SIZE_BYTES: usize = 32;
/// Most keys one gateway holds.
pub const MAX_KEYS: usize = 10_000;

/// Access key id -> (secret, account).
#[derive(Default)]
pub struct KeyStore {
    keys: HashMap<String, (String, AccountId)>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key bound to `account`; refuses short secrets, odd key ids and duplicates.
    pub fn insert(
        &mut self,
        access_key: &str,
        secret: &str,
        account: AccountId,
    ) -> Result<(), String> {
        if !(MIN_ACCESS_KEY_SIZE_BYTES..=MAX_ACCESS_KEY_SIZE_BYTES).contains(&access_key.len())
            || !access_key.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(format!(
                "access key id must be {MIN_ACCESS_KEY_SIZE_BYTES}..={MAX_ACCESS_KEY_SIZE_BYTES} ASCII letters and digits"
            ));
        }
        if secret.len() < MIN_SECRET_SIZE_BYTES || secret.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "secret must be at least {MIN_SECRET_SIZE_BYTES} characters without spaces"
            ));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(format!("a gateway holds at most {MAX_KEYS} keys"));
        }
        if self.keys.contains_key(access_key) {
            return Err(format!("access key {access_key} is already present"));
        }
        self.keys
            .insert(access_key.to_string(), (secret.to_string(), account));
        Ok(())
    }

    /// The account an access key acts for.
    pub fn account(&self, access_key: &str) -> Option<AccountId> {
        self.keys.get(access_key).map(|(_, a)| *a)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// SigV4 secret lookup for s3s.
pub struct Auth(pub Arc<KeyStore>);

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.0.keys.get(access_key) {
            Some((secret, _)) => Ok(SecretKey::from(secret.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "the access key id is not known to this gateway"
            )),
        }
    }
}

/// Lets anonymous requests read public-read buckets; everything else needs a signature.
pub struct Access<L>(pub Arc<L>);

/// Operations an anonymous caller may run on a public-read bucket.
const PUBLIC_READ_OPS: &[&str] = &[
    "GetObject",
    "HeadObject",
    "ListObjects",
    "ListObjectsV2",
    "HeadBucket",
];

#[async_trait::async_trait]
impl<L: Ledger> S3Access for Access<L> {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() {
            // Ownership and gateway authorization are checked by each handler.
            return Ok(());
        }
        let bucket = match cx.s3_path() {
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket.to_string(),
            S3Path::Root => String::new(),
        };
        let public = PUBLIC_READ_OPS.contains(&cx.s3_op().name())
            && self
                .0
                .read(|s| s.bucket(&bucket).map(|b| b.acl == Acl::PublicRead))
                .unwrap_or(false);
        if public {
            Ok(())
        } else {
            Err(s3_error!(
                AccessDenied,
                "anonymous access is only allowed to read public-read buckets; sign the request"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_store_validates_and_binds_accounts() {
        let mut k = KeyStore::new();
        let secret = "s".repeat(40);
        assert!(k.insert("short", &secret, [1; 32]).is_err());
        assert!(k
            .insert("AKIA0000000000000000", "tooshort", [1; 32])
            .is_err());
        assert!(k.insert("AKIA00000000000000-0", &secret, [1; 32]).is_err());
        k.insert("AKIA0000000000000000", &secret, [1; 32]).unwrap();
        assert!(k.insert("AKIA0000000000000000", &secret, [2; 32]).is_err());
        assert_eq!(k.account("AKIA0000000000000000"), Some([1; 32]));
        assert_eq!(k.account("AKIA0000000000000001"), None);
        assert_eq!(k.len(), 1);
    }
}
