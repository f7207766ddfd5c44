//! ListObjects (v1 and v2): pages of keys and common prefixes over finalized state.

use super::*;
use s3s::dto::ETag;

/// One page of a listing.
pub(super) struct Listing {
    pub(super) objects: Vec<(String, ObjectRecord)>,
    pub(super) prefixes: Vec<String>,
    pub(super) truncated: bool,
    /// The last key or common prefix returned (the next page starts after it).
    last: Option<String>,
}

/// A listing page as S3 entries.
pub(super) struct Page {
    contents: Vec<dto::Object>,
    prefixes: Vec<dto::CommonPrefix>,
    truncated: bool,
    /// The last key or common prefix, unencoded (the next page starts after it).
    last: Option<String>,
    enc: fn(String) -> String,
}

pub(super) fn list(
    s: &State,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> Listing {
    paginate(
        s.objects_after(bucket, prefix, after),
        prefix,
        delimiter,
        after,
        max_keys,
    )
}

/// One page from `objects` (keys under `prefix`, sorted, all after `after`): keys and common
/// prefixes, `max_keys` of them in total.
pub(super) fn paginate<'a>(
    objects: impl Iterator<Item = (&'a str, &'a ObjectRecord)>,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> Listing {
    let mut out = Listing {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    // A page that ended on a common prefix resumes after every key under it.
    let skip_under = delimiter
        .filter(|d| after.len() > prefix.len() && after.starts_with(prefix) && after.ends_with(*d))
        .map(|_| after);
    for (key, rec) in objects {
        debug_assert!(key.starts_with(prefix) && key > after);
        if skip_under.is_some_and(|p| key.starts_with(p)) {
            continue;
        }
        let common = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| &key[..prefix.len() + i + d.len()])
        });
        if let Some(cp) = common {
            if out.prefixes.last().is_some_and(|l| l == cp) {
                continue;
            }
        }
        if out.objects.len() + out.prefixes.len() >= max_keys {
            out.truncated = true;
            break;
        }
        match common {
            Some(cp) => {
                out.prefixes.push(cp.to_string());
                out.last = Some(cp.to_string());
            }
            None => {
                out.objects.push((key.to_string(), rec.clone()));
                out.last = Some(key.to_string());
            }
        }
    }
    out
}

pub(super) fn list_entry(key: String, rec: &ObjectRecord) -> dto::Object {
    dto::Object {
        key: Some(key),
        e_tag: Some(ETag::Strong(rec.manifest.etag.clone())),
        size: Some(rec.manifest.size_bytes as i64),
        last_modified: Some(timestamp(rec.manifest.modified_ms)),
        storage_class: Some(dto::ObjectStorageClass::from_static(
            dto::ObjectStorageClass::STANDARD,
        )),
        ..Default::default()
    }
}

/// Percent-encodes a key for `encoding-type=url` listings (clients decode with
/// `unquote_plus`, so `+` and space must be escaped).
pub(super) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Applies a listing's `encoding-type` to one returned name.
pub(super) fn encoder(encoding: Option<&dto::EncodingType>) -> S3Result<fn(String) -> String> {
    match encoding.map(|e| e.as_str()) {
        None => Ok(|s| s),
        Some("url") => Ok(|s| url_encode(&s)),
        Some(other) => Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            format!("encoding-type {other:?} is not supported; use url"),
        )),
    }
}

pub(super) fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(MAX_LIST_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys must not be negative")),
        Some(n) => Ok((n as usize).min(MAX_LIST_KEYS)),
    }
}

/// The page a ListObjects or ListObjectsV2 input asks for (both name their fields alike).
macro_rules! page_of {
    ($gateway:expr, $account:expr, $input:expr, $prefix:expr, $after:expr, $max:expr) => {
        $gateway.list_page(
            $account.as_ref(),
            &$input.bucket,
            $prefix,
            $input.delimiter.as_deref(),
            $after,
            $max,
            $input.encoding_type.as_ref(),
        )
    };
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    /// One listing page of a bucket the caller may read, as S3 entries with names encoded as
    /// `encoding` asks (`enc` encodes the other names of the reply the same way).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn list_page(
        &self,
        account: Option<&AccountId>,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max_keys: usize,
        encoding: Option<&dto::EncodingType>,
    ) -> S3Result<Page> {
        let enc = encoder(encoding)?;
        let listing = self.ledger.read(|s| {
            self.readable(s, account, bucket)?;
            Ok::<_, S3Error>(list(s, bucket, prefix, delimiter, after, max_keys))
        })?;
        Ok(Page {
            contents: listing
                .objects
                .into_iter()
                .map(|(k, r)| list_entry(enc(k), &r))
                .collect(),
            prefixes: listing
                .prefixes
                .into_iter()
                .map(|p| dto::CommonPrefix {
                    prefix: Some(enc(p)),
                })
                .collect(),
            truncated: listing.truncated,
            last: listing.last,
            enc,
        })
    }

    pub(super) async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        let account = self.account(&req)?;
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let marker = input.marker.clone().unwrap_or_default();
        let page = page_of!(self, account, input, &prefix, &marker, max)?;
        let enc = page.enc;
        Ok(S3Response::new(dto::ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            marker: Some(enc(marker)),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: page.last.filter(|_| page.truncated).map(enc),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            delimiter: input.delimiter.map(enc),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        let account = self.account(&req)?;
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = match &input.continuation_token {
            Some(t) => unhex(t)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "the continuation token is not one this gateway issued"
                    )
                })?,
            None => input.start_after.clone().unwrap_or_default(),
        };
        let page = page_of!(self, account, input, &prefix, &after, max)?;
        let enc = page.enc;
        Ok(S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(prefix)),
            max_keys: Some(max as i32),
            key_count: Some((page.contents.len() + page.prefixes.len()) as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.truncated),
            next_continuation_token: page
                .last
                .filter(|_| page.truncated)
                .map(|l| hex(l.as_bytes())),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            delimiter: input.delimiter.map(enc),
            encoding_type: input.encoding_type,
            start_after: input.start_after.map(enc),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_ledger::objects::ObjectManifest;

    #[test]
    fn url_encoding_escapes_plus_and_space() {
        assert_eq!(url_encode("a/5MiB+1 x"), "a/5MiB%2B1%20x");
        assert_eq!(url_encode("ü"), "%C3%BC");
        let enc = encoder(None).unwrap();
        assert_eq!(enc("a+b".into()), "a+b");
        assert!(encoder(Some(&dto::EncodingType::from_static("base64"))).is_err());
    }

    /// Pages through `keys` like a client following `last` tokens.
    fn pages(keys: &[&str], prefix: &str, delimiter: Option<&str>, max: usize) -> Vec<Vec<String>> {
        let rec = ObjectRecord {
            manifest: ObjectManifest {
                size_bytes: 0,
                etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
                content_type: DEFAULT_CONTENT_TYPE.into(),
                modified_ms: 0,
                metadata: vec![],
                placement: vec![],
                segments: vec![],
            },
            put_by: [0; 32],
            put_height: 1,
            tx_hash: [0; 32],
        };
        let mut sorted: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| k.starts_with(prefix))
            .collect();
        sorted.sort();
        let mut after = String::new();
        let mut out = Vec::new();
        loop {
            let iter = sorted
                .iter()
                .filter(|k| **k > after.as_str())
                .map(|k| (*k, &rec));
            let page = paginate(iter, prefix, delimiter, &after, max);
            let mut names: Vec<String> = page.objects.iter().map(|(k, _)| k.clone()).collect();
            names.extend(page.prefixes.iter().map(|p| format!("{p}*")));
            names.sort();
            out.push(names);
            match page.last.filter(|_| page.truncated) {
                Some(l) => after = l,
                None => return out,
            }
            assert!(out.len() < 100, "pagination does not terminate");
        }
    }

    #[test]
    fn pagination_groups_common_prefixes_across_pages() {
        let keys = ["a/1", "a/2", "a/3", "b", "c/x/1", "c/y", "d"];
        assert_eq!(
            pages(&keys, "", Some("/"), 1000),
            vec![vec!["a/*", "b", "c/*", "d"]]
        );
        // One entry per page: a common prefix is never split or repeated.
        assert_eq!(
            pages(&keys, "", Some("/"), 1),
            vec![vec!["a/*"], vec!["b"], vec!["c/*"], vec!["d"]]
        );
        assert_eq!(
            pages(&keys, "c/", Some("/"), 1),
            vec![vec!["c/x/*"], vec!["c/y"]]
        );
        // Without a delimiter every key is listed, in order, across pages of 3.
        let flat: Vec<String> = pages(&keys, "", None, 3).concat();
        assert_eq!(flat, keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        assert_eq!(
            pages(&keys, "zz", Some("/"), 10),
            vec![Vec::<String>::new()]
        );
    }

    proptest::proptest! {
        #[test]
        fn pagination_lists_every_key_once(
            keys in proptest::collection::btree_set("[ab/]{1,6}", 0..40),
            max in 1usize..7,
        ) {
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let flat: Vec<String> = pages(&keys, "", None, max).concat();
            proptest::prop_assert_eq!(flat, keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            // With a delimiter, every key is either listed or under exactly one listed prefix.
            let grouped: Vec<String> = pages(&keys, "", Some("/"), max).concat();
            for k in &keys {
                let covered = grouped.iter().filter(|g| match g.strip_suffix('*') {
                    Some(p) => k.starts_with(p),
                    None => g.as_str() == *k,
                }).count();
                proptest::prop_assert_eq!(covered, 1, "{} covered {} times in {:?}", k, covered, grouped);
            }
        }
    }
}
