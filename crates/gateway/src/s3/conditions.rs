//! Preconditions (RFC 9110 order) and the refusal of request headers Cairn does not implement.

use super::*;
use s3s::dto::ETagCondition;

/// Header prefixes of object features Cairn does not implement, with the feature's name. A
/// write carrying one is refused with NotImplemented before any byte is stored.
const UNIMPLEMENTED_PREFIXES: &[(&str, &str)] = &[
    (
        SSE_C_PREFIX,
        "server-side encryption with customer keys (SSE-C)",
    ),
    (
        "x-amz-copy-source-server-side-encryption-customer-",
        "a copy source encrypted with customer keys (SSE-C)",
    ),
    (
        "x-amz-server-side-encryption",
        "server-side encryption (SSE-S3, SSE-KMS, bucket keys)",
    ),
    (
        "x-amz-object-lock-",
        "object lock (retention and legal hold)",
    ),
    ("x-amz-grant-", "ACL grants"),
    ("x-amz-website-redirect-location", "website redirects"),
];

/// Headers (exact names) of object features Cairn does not implement.
const UNIMPLEMENTED_HEADERS: &[(&str, &str)] = &[("x-amz-tagging", "object tagging")];

/// Prefix of the SSE-C headers.
const SSE_C_PREFIX: &str = "x-amz-server-side-encryption-customer-";

/// Refuses a write (PutObject, CopyObject, CreateMultipartUpload) that asks for an object
/// feature Cairn does not implement, or for an object ACL other than its bucket's: objects
/// have no ACL of their own, so a `private` object in a public-read bucket would stay public.
pub(super) fn refuse_unimplemented(headers: &http::HeaderMap, bucket_acl: Acl) -> S3Result<()> {
    for name in headers.keys().map(http::HeaderName::as_str) {
        let feature = UNIMPLEMENTED_PREFIXES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .or_else(|| UNIMPLEMENTED_HEADERS.iter().find(|(h, _)| name == *h));
        if let Some((_, what)) = feature {
            return Err(Error::NotImplemented {
                what: format!("{what} ({name})"),
            }
            .into());
        }
    }
    if let Some(acl) = headers.get("x-amz-acl") {
        let fits = matches!(
            (acl.to_str().unwrap_or(""), bucket_acl),
            ("public-read", Acl::PublicRead)
                | (
                    "private" | "bucket-owner-full-control" | "bucket-owner-read",
                    Acl::Private
                )
        );
        if !fits {
            let bucket = match bucket_acl {
                Acl::Private => "private",
                Acl::PublicRead => "public-read",
            };
            return Err(Error::NotImplemented {
                what: format!(
                    "an object ACL ({}) other than its {bucket} bucket's; objects take their bucket's ACL",
                    acl.to_str().unwrap_or("?")
                ),
            }
            .into());
        }
    }
    Ok(())
}

/// Refuses SSE-C headers on a read or a part upload: Cairn never stores an object with SSE-C,
/// so they cannot apply (S3 answers 400 InvalidRequest).
pub(super) fn refuse_sse_c(headers: &http::HeaderMap) -> S3Result<()> {
    match headers
        .keys()
        .find(|n| n.as_str().starts_with(SSE_C_PREFIX))
    {
        Some(name) => Err(Error::InvalidRequest(format!(
            "{name}: the object is not stored with customer-provided encryption keys"
        ))
        .into()),
        None => Ok(()),
    }
}

/// The precondition of a write (`op`): true for `If-None-Match: *` (write only if absent, which
/// the ledger decides). `If-Match` and an ETag `If-None-Match` are not implemented.
pub(super) fn write_condition(
    op: &str,
    if_match: &Option<ETagCondition>,
    if_none_match: &Option<ETagCondition>,
) -> S3Result<bool> {
    let refused = match (if_match, if_none_match) {
        (Some(_), _) => "If-Match",
        (None, Some(ETagCondition::ETag(_))) => "If-None-Match with an ETag (only * is)",
        (None, Some(ETagCondition::Any)) => return Ok(true),
        (None, None) => return Ok(false),
    };
    Err(Error::NotImplemented {
        what: format!("{refused} on {op}"),
    }
    .into())
}

/// The RFC 9110 preconditions of a read.
#[derive(Clone, Copy, Default)]
pub(super) struct Preconditions<'a> {
    pub(super) if_match: Option<&'a ETagCondition>,
    pub(super) if_none_match: Option<&'a ETagCondition>,
    pub(super) if_modified_since: Option<&'a Timestamp>,
    pub(super) if_unmodified_since: Option<&'a Timestamp>,
}

/// Evaluates RFC 9110 preconditions in their specified order against an object.
pub(super) fn check_conditions(
    etag: &str,
    modified_ms: u64,
    p: &Preconditions<'_>,
) -> S3Result<()> {
    let Preconditions {
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    } = *p;
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(t) => t.value() == etag,
    };
    let modified_s = (modified_ms / 1000) as i64;
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(s3_error!(
                PreconditionFailed,
                "If-Match did not match the object's ETag"
            ));
        }
    } else if let Some(t) = if_unmodified_since {
        if modified_s > unix_secs(t) {
            return Err(s3_error!(
                PreconditionFailed,
                "the object was modified after If-Unmodified-Since"
            ));
        }
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(s3_error!(NotModified));
        }
    } else if let Some(t) = if_modified_since {
        if modified_s <= unix_secs(t) {
            return Err(s3_error!(NotModified));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::dto::ETag;

    #[test]
    fn preconditions_follow_rfc9110_order() {
        let t = |s: u64| Timestamp::from(UNIX_EPOCH + Duration::from_secs(s));
        let (abc, x) = (
            ETagCondition::ETag(ETag::Strong("abc".into())),
            ETagCondition::ETag(ETag::Strong("x".into())),
        );
        let zz = ETagCondition::ETag(ETag::Strong("zz".into()));
        let (t1, t999, t1000, t5000) = (t(1), t(999), t(1000), t(5000));
        let any = ETagCondition::Any;
        let p = Preconditions::default;
        // The object: ETag "abc", modified at 1000 s.
        let cases: Vec<(Preconditions<'_>, Option<&str>)> = vec![
            (
                Preconditions {
                    if_match: Some(&abc),
                    ..p()
                },
                None,
            ),
            (
                Preconditions {
                    if_match: Some(&x),
                    ..p()
                },
                Some("PreconditionFailed"),
            ),
            (
                Preconditions {
                    if_none_match: Some(&abc),
                    ..p()
                },
                Some("NotModified"),
            ),
            (
                Preconditions {
                    if_none_match: Some(&any),
                    ..p()
                },
                Some("NotModified"),
            ),
            (
                Preconditions {
                    if_modified_since: Some(&t1000),
                    ..p()
                },
                Some("NotModified"),
            ),
            (
                Preconditions {
                    if_modified_since: Some(&t999),
                    ..p()
                },
                None,
            ),
            (
                Preconditions {
                    if_unmodified_since: Some(&t999),
                    ..p()
                },
                Some("PreconditionFailed"),
            ),
            // If-Match that holds overrides a failing If-Unmodified-Since (RFC 9110 13.2.2).
            (
                Preconditions {
                    if_match: Some(&abc),
                    if_unmodified_since: Some(&t1),
                    ..p()
                },
                None,
            ),
            // If-None-Match that fails (no match) overrides If-Modified-Since.
            (
                Preconditions {
                    if_none_match: Some(&zz),
                    if_modified_since: Some(&t5000),
                    ..p()
                },
                None,
            ),
        ];
        for (i, (pre, want)) in cases.iter().enumerate() {
            let got = check_conditions("abc", 1_000_000, pre).err();
            assert_eq!(got.as_ref().map(|e| e.code().as_str()), *want, "case {i}");
        }
    }
}
