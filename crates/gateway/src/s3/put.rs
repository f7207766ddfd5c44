//! PutObject, and the body path every upload shares: streaming into fragments and checking
//! what the client declared about the body.

use super::*;
use crate::{
    error::PayloadMode,
    pipeline::{upload, UploadError},
};
use cairn_ledger::objects::{self, ObjectManifest, Segment, MAX_OBJECT_KEY_SIZE_BYTES};
use conditions::{refuse_unimplemented, write_condition};
use futures::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::ETag;

/// What a client declared about a request body, checked once the body is stored.
#[derive(Default)]
pub(super) struct Declared<'a> {
    content_length: Option<i64>,
    content_md5: Option<&'a str>,
    crc32: Option<&'a str>,
    trailers: Option<&'a s3s::TrailingHeaders>,
    payload: Option<PayloadMode>,
}

/// Stores the body of a PutObject or UploadPart input (both name their fields alike).
macro_rules! store_request_body {
    ($gateway:expr, $req:expr, $input:expr, $coding:expr, $placed:expr) => {
        $gateway
            .store_body(
                $coding,
                $placed,
                $input.body.unwrap_or_else(empty_body),
                Declared::new(
                    &$req.headers,
                    $req.trailing_headers.as_ref(),
                    $input.content_length,
                    $input.content_md5.as_deref(),
                    $input.checksum_crc32.as_deref(),
                ),
            )
            .await
    };
}
pub(super) use store_request_body;

impl<'a> Declared<'a> {
    /// What a PUT or UploadPart declared: its length and digests, and how its body is signed.
    pub(super) fn new(
        headers: &'a http::HeaderMap,
        trailers: Option<&'a s3s::TrailingHeaders>,
        content_length: Option<i64>,
        content_md5: Option<&'a str>,
        crc32: Option<&'a str>,
    ) -> Self {
        let sha256 = headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok());
        Self {
            content_length,
            content_md5,
            crc32,
            trailers,
            payload: Some(PayloadMode::from_header(sha256)),
        }
    }
}

/// Checks a CRC32 the client declared, in a header or an aws-chunked trailer (other
/// checksum algorithms are not verified).
pub(super) fn check_crc32(
    header: Option<&str>,
    trailers: Option<&s3s::TrailingHeaders>,
    crc: u32,
) -> S3Result<()> {
    let trailer = trailers
        .and_then(|t| {
            t.read(|h| {
                h.get("x-amz-checksum-crc32")
                    .and_then(|v| v.to_str().ok().map(str::to_string))
            })
        })
        .flatten();
    match header.map(str::to_string).or(trailer) {
        Some(declared) if declared.trim() != base64(&crc.to_be_bytes()) => Err(s3_error!(
            BadDigest,
            "the x-amz-checksum-crc32 you specified did not match the body; nothing was stored"
        )),
        _ => Ok(()),
    }
}

pub(super) fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_OBJECT_KEY_SIZE_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "object keys are at most 1024 bytes"
        ));
    }
    objects::validate_object_key(key)
        .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()))
}

pub(super) fn sorted_metadata(m: Option<dto::Metadata>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    /// Streams a request body into fragments, checking what the client declared about it;
    /// returns its segments, size and MD5.
    pub(super) async fn store_body<S, E>(
        &self,
        coding: Coding,
        placed: &Placed,
        body: S,
        declared: Declared<'_>,
    ) -> S3Result<(Vec<Segment>, u64, [u8; 16])>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Declared {
            content_length,
            content_md5,
            crc32,
            trailers,
            payload,
        } = declared;
        if let Some(m) = content_md5 {
            let m = m.trim();
            let b64 = |c: char| c.is_ascii_alphanumeric() || c == '+' || c == '/';
            if m.len() != 24 || !m.ends_with("==") || !m[..22].chars().all(b64) {
                return Err(s3_error!(
                    InvalidDigest,
                    "Content-MD5 must be the base64 of a 16-byte MD5 digest"
                ));
            }
        }
        let mut hasher = Md5::new();
        // CRC32 only when the client declared one (header or trailer): not on every upload.
        let mut crc = (crc32.is_some() || trailers.is_some()).then(crc32fast::Hasher::new);
        let mut size = 0u64;
        // Whether the body stream itself failed: s3s reports its SigV4 checks only that way.
        let mut body_failed = false;
        let counted = body.map(|chunk| {
            match &chunk {
                Ok(b) => {
                    hasher.update(b);
                    if let Some(c) = &mut crc {
                        c.update(b);
                    }
                    size += b.len() as u64;
                }
                Err(_) => body_failed = true,
            }
            chunk
        });
        let stored = upload(
            &*self.transport,
            &self.upload_config(coding, placed),
            &placed.nodes,
            counted,
        )
        .await;
        let segments = match stored {
            Ok(segments) => segments,
            Err(UploadError::Body(_)) if body_failed => {
                let mode = payload.unwrap_or(PayloadMode::Unsigned);
                return Err(Error::Body(mode.fault()).into());
            }
            Err(e) => return Err(Error::from(e).into()),
        };
        let md5: [u8; 16] = hasher.finalize().into();
        if let Some(expected) = content_length {
            if expected != size as i64 {
                return Err(S3Error::with_message(
                    S3ErrorCode::IncompleteBody,
                    format!("Content-Length said {expected} bytes but the body had {size}"),
                ));
            }
        }
        if let Some(expected) = content_md5 {
            if expected.trim() != base64(&md5) {
                return Err(s3_error!(
                    BadDigest,
                    "the Content-MD5 you specified did not match what we received"
                ));
            }
        }
        if let Some(c) = crc {
            check_crc32(crc32, trailers, c.finalize())?;
        }
        Ok((segments, size, md5))
    }

    pub(super) async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let account = self.signed(&req)?;
        let _slot = self.upload_slot().await?;
        let input = req.input;
        check_key(&input.key)?;
        let if_absent = write_condition("PutObject", &input.if_match, &input.if_none_match)?;
        let modified_ms = now_ms();
        let size_hint = input.content_length.unwrap_or(0).max(0) as u64;
        let seed = self.seed(&[input.bucket.as_bytes(), input.key.as_bytes()]);
        let (coding, placed) = self.ledger.read(|s| {
            let b = self.writable(s, &account, &input.bucket)?;
            refuse_unimplemented(&req.headers, b.acl)?;
            if if_absent && s.object(&input.bucket, &input.key).is_some() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "the key exists and If-None-Match: * was given"
                ));
            }
            let coding = Coding::from(b);
            Ok((coding, self.place(s, coding, &seed, size_hint)?))
        })?;
        let started = std::time::Instant::now();
        let (segments, size, md5) = store_request_body!(self, req, input, coding, &placed)?;
        let stored_ms = started.elapsed().as_millis();
        let etag = hex(&md5);
        let manifest = ObjectManifest {
            size_bytes: size,
            etag: etag.clone(),
            content_type: input
                .content_type
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            modified_ms,
            metadata: sorted_metadata(input.metadata),
            placement: placed.nodes,
            segments,
        };
        manifest
            .validate()
            .map_err(|e| S3Error::from(Error::Manifest(e)))?;
        let (bucket, key) = (input.bucket, input.key);
        let started = std::time::Instant::now();
        let committed = self
            .commit(TxKind::PutObject {
                owner: account,
                bucket: bucket.clone(),
                key: key.clone(),
                manifest,
                if_absent,
            })
            .await;
        tracing::debug!(
            bucket,
            key,
            size,
            stored_ms,
            commit_ms = started.elapsed().as_millis() as u64,
            ok = committed.is_ok(),
            "PutObject"
        );
        committed?;
        Ok(S3Response::new(dto::PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(size as i64),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_checks_the_declared_value() {
        let crc = crc32fast::hash(b"hello world");
        assert_eq!(crc, 0x0d4a_1185);
        assert!(check_crc32(Some("DUoRhQ=="), None, crc).is_ok());
        assert!(check_crc32(None, None, crc).is_ok());
        let err = check_crc32(Some("AAAAAA=="), None, crc).unwrap_err();
        assert_eq!(err.code().as_str(), "BadDigest");
    }
}
