//! Multipart uploads: parts are stored as they arrive and held in this gateway's memory until
//! CompleteMultipartUpload commits one manifest over all of them (or abort drops them).

use super::*;
use cairn_ledger::objects::{ObjectManifest, Segment, MAX_MANIFEST_SEGMENTS};
use conditions::{refuse_sse_c, refuse_unimplemented, write_condition};
use md5::{Digest, Md5};
use put::{check_key, sorted_metadata, store_request_body, Declared};
use s3s::dto::ETag;

pub(super) struct Part {
    segments: Vec<Segment>,
    size_bytes: u64,
    md5: [u8; 16],
    modified_ms: u64,
}

pub(super) struct Multipart {
    owner: AccountId,
    coding: Coding,
    placed: Placed,
    content_type: String,
    metadata: Vec<(String, String)>,
    initiated_ms: u64,
    parts: BTreeMap<i32, Part>,
}

/// (bucket, key, upload id), so uploads list in S3 order.
pub(super) type UploadKey = (String, String, String);

/// The upload `id`, if `account` started it.
fn owned<'u>(
    uploads: &'u BTreeMap<UploadKey, Multipart>,
    id: &UploadKey,
    account: &AccountId,
) -> S3Result<&'u Multipart> {
    let u = uploads.get(id).ok_or_else(|| s3_error!(NoSuchUpload))?;
    if u.owner != *account {
        return Err(s3_error!(
            AccessDenied,
            "the upload belongs to another account"
        ));
    }
    Ok(u)
}

/// The upload an input names.
macro_rules! upload_key {
    ($input:expr) => {
        (
            $input.bucket.clone(),
            $input.key.clone(),
            $input.upload_id.clone(),
        )
    };
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    pub(super) fn new_upload_id(&self, bucket: &str, key: &str) -> String {
        hex(&self.seed(&[bucket.as_bytes(), key.as_bytes(), b"multipart"])[..16])
    }

    pub(super) async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        check_key(&input.key)?;
        let upload_id = self.new_upload_id(&input.bucket, &input.key);
        let seed = self.seed(&[upload_id.as_bytes()]);
        let (coding, placed) = self.ledger.read(|s| {
            let b = self.writable(s, &account, &input.bucket)?;
            refuse_unimplemented(&req.headers, b.acl)?;
            let coding = Coding::from(b);
            Ok::<_, S3Error>((
                coding,
                self.place(s, coding, &seed, self.cfg.segment_size_bytes as u64)?,
            ))
        })?;
        let mut uploads = self.uploads.lock().expect("uploads lock");
        if uploads.len() >= self.cfg.max_multipart_uploads {
            return Err(s3_error!(
                SlowDown,
                "too many multipart uploads in progress; complete or abort some"
            ));
        }
        uploads.insert(
            (input.bucket.clone(), input.key.clone(), upload_id.clone()),
            Multipart {
                owner: account,
                coding,
                placed,
                content_type: input
                    .content_type
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
                metadata: sorted_metadata(input.metadata),
                initiated_ms: now_ms(),
                parts: BTreeMap::new(),
            },
        );
        Ok(S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        let account = self.signed(&req)?;
        refuse_sse_c(&req.headers)?;
        let input = req.input;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers run from 1 to 10000"
            ));
        }
        let id = upload_key!(input);
        let (coding, placed) = {
            let uploads = self.uploads.lock().expect("uploads lock");
            let u = owned(&uploads, &id, &account)?;
            (u.coding, u.placed.clone())
        };
        let _slot = self.upload_slot().await?;
        let (segments, size, md5) = store_request_body!(self, req, input, coding, &placed)?;
        let mut uploads = self.uploads.lock().expect("uploads lock");
        let u = uploads.get_mut(&id).ok_or_else(|| {
            s3_error!(
                NoSuchUpload,
                "the upload was completed or aborted meanwhile"
            )
        })?;
        u.parts.insert(
            input.part_number,
            Part {
                segments,
                size_bytes: size,
                md5,
                modified_ms: now_ms(),
            },
        );
        Ok(S3Response::new(dto::UploadPartOutput {
            e_tag: Some(ETag::Strong(hex(&md5))),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        let id = upload_key!(input);
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if listed.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "CompleteMultipartUpload needs at least one part"
            ));
        }
        let if_absent = write_condition(
            "CompleteMultipartUpload",
            &input.if_match,
            &input.if_none_match,
        )?;
        let (mut manifest, data_shards) = {
            let uploads = self.uploads.lock().expect("uploads lock");
            let u = owned(&uploads, &id, &account)?;
            let mut segments = Vec::new();
            let mut md5s = Vec::with_capacity(listed.len() * 16);
            let mut size = 0u64;
            let mut previous = 0;
            for (i, p) in listed.iter().enumerate() {
                let n = p.part_number.unwrap_or(0);
                if n <= previous {
                    return Err(s3_error!(
                        InvalidPartOrder,
                        "parts must be listed in ascending order"
                    ));
                }
                previous = n;
                let part = u.parts.get(&n).ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidPart,
                        format!("part {n} was not uploaded"),
                    )
                })?;
                if p.e_tag
                    .as_ref()
                    .is_some_and(|t| t.value() != hex(&part.md5))
                {
                    return Err(S3Error::with_message(
                        S3ErrorCode::InvalidPart,
                        format!("part {n}'s ETag does not match the uploaded part"),
                    ));
                }
                if i + 1 < listed.len() && part.size_bytes < MIN_PART_SIZE_BYTES {
                    return Err(S3Error::with_message(
                        S3ErrorCode::EntityTooSmall,
                        format!(
                            "part {n} is {} bytes; every part but the last needs at least 5 MiB",
                            part.size_bytes
                        ),
                    ));
                }
                segments.extend(part.segments.iter().cloned());
                md5s.extend_from_slice(&part.md5);
                size += part.size_bytes;
            }
            if segments.len() > MAX_MANIFEST_SEGMENTS {
                return Err(S3Error::with_message(
                    S3ErrorCode::EntityTooLarge,
                    format!(
                        "the parts add up to {} segments; one object holds at most {MAX_MANIFEST_SEGMENTS} (use fewer, larger parts)",
                        segments.len()
                    ),
                ));
            }
            let etag = format!("{}-{}", hex(&Md5::digest(&md5s)), listed.len());
            let manifest = ObjectManifest {
                size_bytes: size,
                etag,
                content_type: u.content_type.clone(),
                modified_ms: u.initiated_ms,
                metadata: u.metadata.clone(),
                placement: u.placed.nodes.clone(),
                segments,
            };
            (manifest, u.coding.data)
        };
        manifest
            .validate()
            .map_err(|e| S3Error::from(Error::Manifest(e)))?;
        // Parts may be old: fragments on nodes that went unhealthy since count as missing, and
        // what is left must still survive losing one failure domain (else 503, retryable).
        self.ledger
            .read(|s| {
                placement::refresh(s, data_shards, &manifest.placement, &mut manifest.segments)
            })
            .map_err(|e| S3Error::from(Error::Manifest(e)))?;
        let etag = manifest.etag.clone();
        self.ledger.read(|s| {
            self.writable(s, &account, &input.bucket)?;
            if if_absent && s.object(&input.bucket, &input.key).is_some() {
                return Err(s3_error!(
                    PreconditionFailed,
                    "the key exists and If-None-Match: * was given"
                ));
            }
            Ok(())
        })?;
        self.commit(TxKind::PutObject {
            owner: account,
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            manifest,
            if_absent,
        })
        .await?;
        self.uploads.lock().expect("uploads lock").remove(&id);
        Ok(S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        let id = (input.bucket, input.key, input.upload_id);
        let mut uploads = self.uploads.lock().expect("uploads lock");
        owned(&uploads, &id, &account)?;
        // The parts' fragments become unreferenced; garbage collection reclaims them.
        uploads.remove(&id);
        Ok(S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        let max = input.max_parts.map_or(1000, |m| m.clamp(0, 1000)) as usize;
        let marker = input.part_number_marker.unwrap_or(0);
        let id = upload_key!(input);
        let uploads = self.uploads.lock().expect("uploads lock");
        let u = owned(&uploads, &id, &account)?;
        let mut parts: Vec<dto::Part> = u
            .parts
            .range(marker.saturating_add(1)..)
            .take(max + 1)
            .map(|(n, p)| dto::Part {
                part_number: Some(*n),
                e_tag: Some(ETag::Strong(hex(&p.md5))),
                size: Some(p.size_bytes as i64),
                last_modified: Some(timestamp(p.modified_ms)),
                ..Default::default()
            })
            .collect();
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok(S3Response::new(dto::ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            part_number_marker: Some(marker),
            next_part_number_marker: parts
                .last()
                .and_then(|p| p.part_number)
                .filter(|_| truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads(
        &self,
        req: S3Request<dto::ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<dto::ListMultipartUploadsOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        self.ledger
            .read(|s| self.writable(s, &account, &input.bucket).map(|_| ()))?;
        let max = input.max_uploads.map_or(1000, |m| m.clamp(0, 1000)) as usize;
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let uploads = self.uploads.lock().expect("uploads lock");
        let mut listed: Vec<dto::MultipartUpload> = uploads
            .iter()
            .filter(|((b, k, id), u)| {
                *b == input.bucket
                    && u.owner == account
                    && k.starts_with(&prefix)
                    && (k.as_str(), id.as_str()) > (key_marker.as_str(), id_marker.as_str())
            })
            .take(max + 1)
            .map(|((_, k, id), u)| dto::MultipartUpload {
                key: Some(k.clone()),
                upload_id: Some(id.clone()),
                initiated: Some(timestamp(u.initiated_ms)),
                ..Default::default()
            })
            .collect();
        let truncated = listed.len() > max;
        listed.truncate(max);
        let last = listed.last().map(|u| (u.key.clone(), u.upload_id.clone()));
        let (next_key, next_id) = match last.filter(|_| truncated) {
            Some((k, id)) => (k, id),
            None => (None, None),
        };
        Ok(S3Response::new(dto::ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(listed),
            ..Default::default()
        }))
    }
}
