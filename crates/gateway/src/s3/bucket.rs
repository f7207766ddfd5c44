//! Bucket operations: create, delete, head, location and listing the caller's buckets.

use super::*;
use cairn_ledger::objects;

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    /// Succeeds if the caller of `req` may read `bucket`.
    fn bucket_readable<I>(&self, req: &S3Request<I>, bucket: &str) -> S3Result<()> {
        let account = self.account(req)?;
        self.ledger
            .read(|s| self.readable(s, account.as_ref(), bucket).map(|_| ()))
    }

    pub(super) async fn create_bucket(
        &self,
        req: S3Request<dto::CreateBucketInput>,
    ) -> S3Result<S3Response<dto::CreateBucketOutput>> {
        let account = self.signed(&req)?;
        let bucket = req.input.bucket.clone();
        objects::validate_bucket_name(&bucket)
            .map_err(|e| S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string()))?;
        let acl = match req.input.acl.as_ref().map(|a| a.as_str()) {
            None | Some("private") => Acl::Private,
            Some("public-read") => Acl::PublicRead,
            Some(other) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!("canned ACL {other:?} is not supported; use private or public-read"),
                ))
            }
        };
        let requested = match req.headers.get(CODING_HEADER) {
            None => None,
            Some(v) => {
                let parsed = v.to_str().ok().and_then(|v| {
                    let (k, m) = v.trim().split_once('+')?;
                    Some(Coding {
                        data: k.parse().ok()?,
                        parity: m.parse().ok()?,
                    })
                });
                let coding = parsed.ok_or_else(|| {
                    s3_error!(
                        InvalidArgument,
                        "x-cairn-coding must look like 4+8 (data+parity shards)"
                    )
                })?;
                objects::validate_coding(coding.data, coding.parity).map_err(|e| {
                    S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string())
                })?;
                Some(coding)
            }
        };
        let coding = self.ledger.read(|s| {
            self.authorized(s, &account)?;
            if let Some(b) = s.bucket(&bucket) {
                return Err(if b.owner == account {
                    s3_error!(BucketAlreadyOwnedByYou)
                } else {
                    s3_error!(BucketAlreadyExists)
                });
            }
            self.bucket_coding(s, requested)
        })?;
        self.commit(TxKind::CreateBucket {
            owner: account,
            bucket: bucket.clone(),
            acl,
            data_shards: coding.data,
            parity_shards: coding.parity,
        })
        .await?;
        Ok(S3Response::new(dto::CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    pub(super) async fn delete_bucket(
        &self,
        req: S3Request<dto::DeleteBucketInput>,
    ) -> S3Result<S3Response<dto::DeleteBucketOutput>> {
        let account = self.signed(&req)?;
        let bucket = req.input.bucket;
        self.ledger.read(|s| {
            let b = self.writable(s, &account, &bucket)?;
            if b.object_count > 0 {
                return Err(s3_error!(BucketNotEmpty));
            }
            Ok(())
        })?;
        self.commit(TxKind::DeleteBucket {
            owner: account,
            bucket,
        })
        .await?;
        Ok(S3Response::new(dto::DeleteBucketOutput {}))
    }

    pub(super) async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.bucket_readable(&req, &req.input.bucket)?;
        Ok(S3Response::new(dto::HeadBucketOutput {
            bucket_region: Some("us-east-1".into()),
            ..Default::default()
        }))
    }

    pub(super) async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.bucket_readable(&req, &req.input.bucket)?;
        Ok(S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    pub(super) async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        let account = self.signed(&req)?;
        let owned: Vec<(String, u64)> = self.ledger.read(|s| {
            self.authorized(s, &account)?;
            Ok::<_, S3Error>(
                s.buckets()
                    .filter(|(_, b)| b.owner == account)
                    .map(|(n, b)| (n.clone(), b.created_height))
                    .collect(),
            )
        })?;
        let mut buckets = Vec::with_capacity(owned.len());
        for (name, height) in owned {
            let created = self.ledger.block_time_ms(height).await;
            buckets.push(dto::Bucket {
                name: Some(name),
                creation_date: created.map(timestamp),
                bucket_region: None,
            });
        }
        Ok(S3Response::new(dto::ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(dto::Owner {
                id: Some(hex(&account)),
                display_name: None,
            }),
            ..Default::default()
        }))
    }
}
