//! Buckets, object manifests and gateway authorizations: types, canonical encoding and the
//! stateless checks of the storage transactions.
//!
//! A manifest records, per segment, its length, the Merkle root of each of its k + m
//! fragments and which of them are confirmed stored; the object's placement (one node per
//! fragment index, shared by all its segments) is recorded once, so later registry changes
//! never move data silently. No S3 secret is ever part of any of these types: a gateway keeps
//! its access keys locally and only acts for accounts that authorized it on the ledger.

use crate::{
    codec::{Reader, Writer},
    AccountId, Hash, NodeId, TxError,
};
use serde::{Deserialize, Serialize};

/// Shortest bucket name (S3 rule).
pub const MIN_BUCKET_NAME_SIZE_BYTES: usize = 3;
/// Longest bucket name (S3 rule).
pub const MAX_BUCKET_NAME_SIZE_BYTES: usize = 63;
/// Longest object key (S3 rule).
pub const MAX_OBJECT_KEY_SIZE_BYTES: usize = 1024;
/// Longest ETag.
pub const MAX_ETAG_SIZE_BYTES: usize = 64;
/// Longest content type.
pub const MAX_CONTENT_TYPE_SIZE_BYTES: usize = 256;
/// Most user-metadata entries per object.
pub const MAX_METADATA_ENTRIES: usize = 32;
/// Most user-metadata bytes (keys plus values) per object (S3 allows 2 KiB).
pub const MAX_METADATA_SIZE_BYTES: usize = 2048;
/// Largest segment (DESIGN.md default segment size).
pub const MAX_SEGMENT_SIZE_BYTES: u64 = 32 * 1024 * 1024;
/// Most segments per manifest: 4 GiB objects at the default segment size.
pub const MAX_MANIFEST_SEGMENTS: usize = 128;
/// Most fragment roots per manifest (bounds the transaction size).
pub const MAX_MANIFEST_ROOTS: usize = 1536;
/// Most data fragments (k) per segment.
pub const MAX_DATA_SHARDS: u8 = 32;
/// Most parity fragments (m) per segment.
pub const MAX_PARITY_SHARDS: u8 = 32;

/// Who may read a bucket's objects without signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acl {
    /// Only the owner and gateways it authorized.
    Private,
    /// Anyone may read; writes stay with the owner.
    PublicRead,
}

/// A bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Owner account.
    pub owner: AccountId,
    /// Read access.
    pub acl: Acl,
    /// k of the bucket's RS(k, m) coding.
    pub data_shards: u8,
    /// m of the bucket's RS(k, m) coding.
    pub parity_shards: u8,
    /// Height of creation.
    pub created_height: u64,
    /// Objects currently in the bucket.
    pub object_count: u64,
}

/// One segment of an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Segment length before coding.
    pub len_bytes: u64,
    /// Merkle root of fragment i, for i in 0..k+m.
    pub fragment_roots: Vec<Hash>,
    /// Bit i set: fragment i was confirmed durably stored at write time (the rest await repair).
    pub stored_mask: u64,
}

/// What a PutObject records about an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectManifest {
    /// Object size.
    pub size_bytes: u64,
    /// S3 ETag (without quotes).
    pub etag: String,
    /// Content type.
    pub content_type: String,
    /// Last-Modified, Unix ms, as the writing gateway's clock saw the upload start.
    pub modified_ms: u64,
    /// User metadata, sorted by key, keys unique.
    pub metadata: Vec<(String, String)>,
    /// Node holding fragment i of every segment.
    pub placement: Vec<NodeId>,
    /// Segments in order.
    pub segments: Vec<Segment>,
}

/// An object as stored in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The manifest.
    pub manifest: ObjectManifest,
    /// Account that wrote it (the owner or a gateway acting for it).
    pub put_by: AccountId,
    /// Height of the write (the object's Last-Modified).
    pub put_height: u64,
    /// Hash of the writing transaction (with `manifest.modified_ms`, the write version).
    pub tx_hash: crate::Hash,
}

/// Size of each fragment of a `segment_len`-byte segment coded with k = `data_shards`
/// (ceil(len / k), at least 1, rounded up to even as the Reed-Solomon codec requires).
pub fn fragment_size_bytes(segment_len: u64, data_shards: u8) -> u64 {
    let per = segment_len.div_ceil(u64::from(data_shards.max(1))).max(1);
    per + per % 2
}

fn invalid(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// S3 bucket naming: 3..=63 bytes of `[a-z0-9.-]`, starting and ending with a letter or digit,
/// no `..`, not an IPv4 address.
pub fn validate_bucket_name(name: &str) -> Result<(), TxError> {
    let len = name.len();
    if !(MIN_BUCKET_NAME_SIZE_BYTES..=MAX_BUCKET_NAME_SIZE_BYTES).contains(&len) {
        return Err(invalid(
            "bucket",
            format!("length is {len} bytes, must be {MIN_BUCKET_NAME_SIZE_BYTES}..={MAX_BUCKET_NAME_SIZE_BYTES}"),
        ));
    }
    let edge_ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = name.as_bytes();
    if !edge_ok(b[0]) || !edge_ok(b[len - 1]) {
        return Err(invalid(
            "bucket",
            "must start and end with a lowercase letter or digit",
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Err(invalid(
            "bucket",
            format!("character {c:?} is not allowed (use a-z, 0-9, '.', '-')"),
        ));
    }
    if name.contains("..") {
        return Err(invalid("bucket", "must not contain \"..\""));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(invalid("bucket", "must not be formatted as an IP address"));
    }
    Ok(())
}

/// An object key: 1..=1024 bytes of UTF-8 without control characters.
pub fn validate_object_key(key: &str) -> Result<(), TxError> {
    if key.is_empty() || key.len() > MAX_OBJECT_KEY_SIZE_BYTES {
        return Err(invalid(
            "key",
            format!(
                "length is {} bytes, must be 1..={MAX_OBJECT_KEY_SIZE_BYTES}",
                key.len()
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("key", "control characters are not allowed"));
    }
    Ok(())
}

/// Checks a coding scheme's bounds.
pub fn validate_coding(data_shards: u8, parity_shards: u8) -> Result<(), TxError> {
    if data_shards == 0 || data_shards > MAX_DATA_SHARDS {
        return Err(invalid(
            "data_shards",
            format!("must be 1..={MAX_DATA_SHARDS}"),
        ));
    }
    if parity_shards == 0 || parity_shards > MAX_PARITY_SHARDS {
        return Err(invalid(
            "parity_shards",
            format!("must be 1..={MAX_PARITY_SHARDS}"),
        ));
    }
    Ok(())
}

impl ObjectManifest {
    /// A one-segment manifest of `len_bytes` with these fragment roots on `placement`, an
    /// empty-content ETag, no metadata and `modified_ms` 1 (benchmarks, simulations, tests).
    pub fn single_segment(
        len_bytes: u64,
        placement: Vec<NodeId>,
        fragment_roots: Vec<Hash>,
        stored_mask: u64,
    ) -> Self {
        Self {
            size_bytes: len_bytes,
            etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
            content_type: "application/octet-stream".into(),
            modified_ms: 1,
            metadata: vec![],
            placement,
            segments: vec![Segment {
                len_bytes,
                fragment_roots,
                stored_mask,
            }],
        }
    }

    /// Stateless checks: bounds, sizes adding up, one root per fragment. A node may hold
    /// several fragments (degraded placement); [`crate::placement::validate`] checks spread.
    pub fn validate(&self) -> Result<(), TxError> {
        if self.etag.len() > MAX_ETAG_SIZE_BYTES
            || !self.etag.chars().all(|c| c.is_ascii_graphic() && c != '"')
        {
            return Err(invalid(
                "etag",
                format!("at most {MAX_ETAG_SIZE_BYTES} printable ASCII bytes, no quotes"),
            ));
        }
        if self.content_type.len() > MAX_CONTENT_TYPE_SIZE_BYTES
            || self.content_type.chars().any(char::is_control)
        {
            return Err(invalid(
                "content_type",
                format!("at most {MAX_CONTENT_TYPE_SIZE_BYTES} bytes, no control characters"),
            ));
        }
        if self.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(invalid(
                "metadata",
                format!("at most {MAX_METADATA_ENTRIES} entries"),
            ));
        }
        let meta_bytes: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if meta_bytes > MAX_METADATA_SIZE_BYTES {
            return Err(invalid(
                "metadata",
                format!("{meta_bytes} bytes, at most {MAX_METADATA_SIZE_BYTES}"),
            ));
        }
        if !self.metadata.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(invalid("metadata", "keys must be sorted and unique"));
        }
        for (k, v) in &self.metadata {
            if k.is_empty()
                || !k
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "metadata",
                    format!("key {k:?} must be non-empty [a-z0-9_-]"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(invalid(
                    "metadata",
                    format!("value of {k:?} has control characters"),
                ));
            }
        }
        let fragments = self.placement.len();
        if fragments < 2
            || fragments > usize::from(MAX_DATA_SHARDS) + usize::from(MAX_PARITY_SHARDS)
        {
            return Err(invalid(
                "placement",
                "must name 2..=64 nodes, one per fragment",
            ));
        }
        if self.segments.len() > MAX_MANIFEST_SEGMENTS {
            return Err(invalid(
                "segments",
                format!("at most {MAX_MANIFEST_SEGMENTS}"),
            ));
        }
        if self.segments.len() * fragments > MAX_MANIFEST_ROOTS {
            return Err(invalid(
                "segments",
                format!("at most {MAX_MANIFEST_ROOTS} fragment roots per manifest"),
            ));
        }
        if self.size_bytes > 0 && self.segments.is_empty() {
            return Err(invalid(
                "segments",
                "a non-empty object needs at least one segment",
            ));
        }
        let mut total: u64 = 0;
        for (i, s) in self.segments.iter().enumerate() {
            if s.len_bytes == 0 || s.len_bytes > MAX_SEGMENT_SIZE_BYTES {
                return Err(invalid(
                    "segments",
                    format!("segment {i} length must be 1..={MAX_SEGMENT_SIZE_BYTES}"),
                ));
            }
            if s.fragment_roots.len() != fragments {
                return Err(invalid(
                    "segments",
                    format!("segment {i} must have one root per placed node ({fragments})"),
                ));
            }
            if fragments < 64 && s.stored_mask >> fragments != 0 {
                return Err(invalid(
                    "segments",
                    format!("segment {i} marks fragments beyond {fragments} as stored"),
                ));
            }
            total = total.saturating_add(s.len_bytes);
        }
        if total != self.size_bytes {
            return Err(invalid(
                "size_bytes",
                format!("{} but the segments add up to {total}", self.size_bytes),
            ));
        }
        Ok(())
    }

    /// Bytes stored on `placement[i]` for this object, given the bucket's k.
    pub fn bytes_per_node(&self, data_shards: u8) -> u64 {
        self.segments
            .iter()
            .map(|s| fragment_size_bytes(s.len_bytes, data_shards))
            .sum()
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.size_bytes);
        w.str(&self.etag);
        w.str(&self.content_type);
        w.u64(self.modified_ms);
        w.len(self.metadata.len());
        for (k, v) in &self.metadata {
            w.str(k);
            w.str(v);
        }
        w.len(self.placement.len());
        for n in &self.placement {
            w.fixed(n);
        }
        w.len(self.segments.len());
        for s in &self.segments {
            w.u64(s.len_bytes);
            w.len(s.fragment_roots.len());
            for r in &s.fragment_roots {
                w.fixed(r);
            }
            w.u64(s.stored_mask);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let size_bytes = r.u64()?;
        let etag = r.str(MAX_ETAG_SIZE_BYTES)?;
        let content_type = r.str(MAX_CONTENT_TYPE_SIZE_BYTES)?;
        let modified_ms = r.u64()?;
        let n = r.len(MAX_METADATA_ENTRIES)?;
        let mut metadata = Vec::with_capacity(n);
        for _ in 0..n {
            metadata.push((
                r.str(MAX_METADATA_SIZE_BYTES)?,
                r.str(MAX_METADATA_SIZE_BYTES)?,
            ));
        }
        let max_fragments = usize::from(MAX_DATA_SHARDS) + usize::from(MAX_PARITY_SHARDS);
        let n = r.len(max_fragments)?;
        let mut placement = Vec::with_capacity(n);
        for _ in 0..n {
            placement.push(r.fixed::<32>()?);
        }
        let n = r.len(MAX_MANIFEST_SEGMENTS)?;
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            let len_bytes = r.u64()?;
            let m = r.len(max_fragments)?;
            let mut fragment_roots = Vec::with_capacity(m);
            for _ in 0..m {
                fragment_roots.push(r.fixed::<32>()?);
            }
            segments.push(Segment {
                len_bytes,
                fragment_roots,
                stored_mask: r.u64()?,
            });
        }
        Ok(Self {
            size_bytes,
            etag,
            content_type,
            modified_ms,
            metadata,
            placement,
            segments,
        })
    }
}

pub(crate) fn write_acl(w: &mut Writer, acl: Acl) {
    w.u8(match acl {
        Acl::Private => 0,
        Acl::PublicRead => 1,
    });
}

pub(crate) fn read_acl(r: &mut Reader<'_>) -> Result<Acl, TxError> {
    match r.u8()? {
        0 => Ok(Acl::Private),
        1 => Ok(Acl::PublicRead),
        _ => Err(TxError::Malformed {
            reason: "unknown bucket ACL",
        }),
    }
}

pub(crate) fn enc_bucket(b: &Bucket) -> Vec<u8> {
    let mut w = Writer::default();
    w.fixed(&b.owner);
    write_acl(&mut w, b.acl);
    w.u8(b.data_shards);
    w.u8(b.parity_shards);
    w.u64(b.created_height);
    w.u64(b.object_count);
    w.0
}

pub(crate) fn dec_bucket(bytes: &[u8]) -> Result<Bucket, TxError> {
    let mut r = Reader::new(bytes);
    let b = Bucket {
        owner: r.fixed::<32>()?,
        acl: read_acl(&mut r)?,
        data_shards: r.u8()?,
        parity_shards: r.u8()?,
        created_height: r.u64()?,
        object_count: r.u64()?,
    };
    r.finish()?;
    validate_coding(b.data_shards, b.parity_shards)?;
    Ok(b)
}

pub(crate) fn enc_object(o: &ObjectRecord) -> Vec<u8> {
    let mut w = Writer::default();
    o.manifest.write(&mut w);
    w.fixed(&o.put_by);
    w.u64(o.put_height);
    w.fixed(&o.tx_hash);
    w.0
}

pub(crate) fn dec_object(bytes: &[u8]) -> Result<ObjectRecord, TxError> {
    let mut r = Reader::new(bytes);
    let manifest = ObjectManifest::read(&mut r)?;
    let o = ObjectRecord {
        manifest,
        put_by: r.fixed::<32>()?,
        put_height: r.u64()?,
        tx_hash: r.fixed::<32>()?,
    };
    r.finish()?;
    o.manifest.validate()?;
    Ok(o)
}

/// Key suffix of an object entry: bucket length byte, bucket, key.
pub(crate) fn object_key_suffix(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + bucket.len() + key.len());
    k.push(bucket.len() as u8);
    k.extend_from_slice(bucket.as_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// Inverse of [`object_key_suffix`].
pub(crate) fn split_object_key(suffix: &[u8]) -> Option<(String, String)> {
    let (&n, rest) = suffix.split_first()?;
    let (bucket, key) = rest.split_at_checked(n as usize)?;
    let bucket = std::str::from_utf8(bucket).ok()?;
    let key = std::str::from_utf8(key).ok()?;
    validate_bucket_name(bucket).ok()?;
    validate_object_key(key).ok()?;
    Some((bucket.to_string(), key.to_string()))
}

/// A gateway authorization key suffix: owner then gateway.
pub(crate) fn gateway_key_suffix(owner: &AccountId, gateway: &AccountId) -> Vec<u8> {
    let mut k = Vec::with_capacity(64);
    k.extend_from_slice(owner);
    k.extend_from_slice(gateway);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn manifest() -> ObjectManifest {
        ObjectManifest {
            size_bytes: 10,
            etag: "abc".into(),
            content_type: "text/plain".into(),
            modified_ms: 1_700_000_000_000,
            metadata: vec![("a".into(), "1".into()), ("b".into(), "2".into())],
            placement: (0..12u8).map(|i| [i; 32]).collect(),
            segments: vec![Segment {
                len_bytes: 10,
                fragment_roots: (0..12u8).map(|i| [i + 100; 32]).collect(),
                stored_mask: 0xfff,
            }],
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket.v2", "a1b", &"x".repeat(63)] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "a_b",
            "192.168.1.1",
            &"x".repeat(64),
            "é-bucket",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_checks() {
        let m = manifest();
        m.validate().unwrap();
        let mut w = Writer::default();
        m.write(&mut w);
        let mut r = Reader::new(&w.0);
        assert_eq!(ObjectManifest::read(&mut r).unwrap(), m);
        r.finish().unwrap();

        let bad = |f: &dyn Fn(&mut ObjectManifest)| {
            let mut m = manifest();
            f(&mut m);
            m.validate().unwrap_err()
        };
        bad(&|m| m.size_bytes = 11);
        bad(&|m| m.segments[0].fragment_roots.pop().map(|_| ()).unwrap());
        bad(&|m| m.segments[0].stored_mask = 1 << 12);
        bad(&|m| m.segments[0].len_bytes = MAX_SEGMENT_SIZE_BYTES + 1);
        bad(&|m| m.metadata.reverse());
        bad(&|m| m.metadata[0].0 = "Upper".into());
        bad(&|m| m.etag = "\"quoted\"".into());
        bad(&|m| m.segments.clear());
        bad(&|m| {
            m.segments = vec![m.segments[0].clone(); MAX_MANIFEST_SEGMENTS + 1];
        });
    }

    #[test]
    fn fragment_sizes() {
        assert_eq!(fragment_size_bytes(0, 4), 2);
        assert_eq!(fragment_size_bytes(1, 4), 2);
        assert_eq!(fragment_size_bytes(8, 4), 2);
        assert_eq!(fragment_size_bytes(9, 4), 4);
        assert_eq!(fragment_size_bytes(32 << 20, 4), 8 << 20);
        assert_eq!(manifest().bytes_per_node(4), 4);
    }

    #[test]
    fn object_keys_round_trip() {
        let s = object_key_suffix("bucket", "dir/file.txt");
        assert_eq!(
            split_object_key(&s),
            Some(("bucket".into(), "dir/file.txt".into()))
        );
        assert_eq!(split_object_key(&[200, b'a']), None);
        assert_eq!(split_object_key(&[]), None);
    }
}
