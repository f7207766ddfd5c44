//! CopyObject: a new manifest over the source's fragments, or a re-encoded copy when the
//! destination bucket's coding differs.

use super::*;
use cairn_ledger::objects::ObjectManifest;
use conditions::{check_conditions, refuse_unimplemented, Preconditions};
use put::{check_key, sorted_metadata, Declared};
use s3s::dto::ETag;

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    pub(super) async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        check_key(&input.key)?;
        let (src_bucket, src_key) = match &input.copy_source {
            dto::CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "only bucket/key copy sources are supported"
                ))
            }
        };
        let (src, src_coding) = self.object(Some(&account), &src_bucket, &src_key)?;
        let sm = &src.manifest;
        let p = Preconditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
        };
        check_conditions(&sm.etag, sm.modified_ms, &p).map_err(|e| {
            if *e.code() == S3ErrorCode::NotModified {
                s3_error!(PreconditionFailed, "a copy-source precondition failed")
            } else {
                e
            }
        })?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        let (content_type, metadata) = if replace {
            (
                input
                    .content_type
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
                sorted_metadata(input.metadata.clone()),
            )
        } else {
            if src_bucket == input.bucket && src_key == input.key {
                return Err(s3_error!(
                    InvalidRequest,
                    "copying an object onto itself needs x-amz-metadata-directive: REPLACE"
                ));
            }
            (sm.content_type.clone(), sm.metadata.clone())
        };
        let dst_coding = self.ledger.read(|s| {
            let b = self.writable(s, &account, &input.bucket)?;
            refuse_unimplemented(&req.headers, b.acl)?;
            Ok::<_, S3Error>(Coding::from(b))
        })?;
        let modified_ms = now_ms();
        // Fragments are content-addressed, so a copy into a bucket with the same coding
        // shares them and moves no data.
        // Shared fragments on nodes that went unhealthy count as missing; if what is left no
        // longer survives losing one failure domain, the copy re-encodes instead.
        let shared = (dst_coding == src_coding)
            .then(|| {
                let mut segments = sm.segments.clone();
                self.ledger
                    .read(|s| placement::refresh(s, dst_coding.data, &sm.placement, &mut segments))
                    .ok()
                    .map(|()| (sm.placement.clone(), segments))
            })
            .flatten();
        let (placement, segments) = if let Some(shared) = shared {
            shared
        } else {
            let _slot = self.upload_slot().await?;
            let seed = self.seed(&[input.bucket.as_bytes(), input.key.as_bytes()]);
            let placed = self
                .ledger
                .read(|s| self.place(s, dst_coding, &seed, sm.size_bytes))?;
            let body = self.body(&src, src_coding, 0, sm.size_bytes).await?;
            let (segments, _, _) = self
                .store_body(dst_coding, &placed, body, Declared::default())
                .await?;
            (placed.nodes, segments)
        };
        let manifest = ObjectManifest {
            size_bytes: sm.size_bytes,
            etag: sm.etag.clone(),
            content_type,
            modified_ms,
            metadata,
            placement,
            segments,
        };
        manifest
            .validate()
            .map_err(|e| S3Error::from(Error::Manifest(e)))?;
        self.commit(TxKind::PutObject {
            owner: account,
            bucket: input.bucket,
            key: input.key,
            manifest,
            if_absent: false,
        })
        .await?;
        Ok(S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(ETag::Strong(sm.etag.clone())),
                last_modified: Some(timestamp(modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}
