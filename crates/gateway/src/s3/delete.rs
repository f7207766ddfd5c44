//! DeleteObject and DeleteObjects, with If-Match honoured against the current ETag.

use super::*;
use s3s::dto::ETagCondition;

/// The If-Match of a delete.
#[derive(Clone, Copy)]
enum IfMatch<'a> {
    /// None given.
    Absent,
    /// `*`: the key must exist.
    Exists,
    /// The current ETag must be this.
    ETag(&'a str),
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    pub(super) async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        if input.if_match_last_modified_time.is_some() || input.if_match_size.is_some() {
            return Err(Error::NotImplemented {
                what: "x-amz-if-match-last-modified-time and x-amz-if-match-size on DeleteObject"
                    .into(),
            }
            .into());
        }
        let if_match = match &input.if_match {
            None => IfMatch::Absent,
            Some(ETagCondition::Any) => IfMatch::Exists,
            Some(ETagCondition::ETag(t)) => IfMatch::ETag(t.value()),
        };
        self.delete_one(account, &input.bucket, &input.key, if_match)
            .await?;
        Ok(S3Response::new(dto::DeleteObjectOutput::default()))
    }

    pub(super) async fn delete_objects(
        &self,
        req: S3Request<dto::DeleteObjectsInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectsOutput>> {
        let account = self.signed(&req)?;
        let input = req.input;
        if input.delete.objects.len() > MAX_DELETE_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "DeleteObjects takes at most 1000 keys"
            ));
        }
        self.ledger
            .read(|s| self.writable(s, &account, &input.bucket).map(|_| ()))?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let results = futures::future::join_all(input.delete.objects.iter().map(|o| async {
            let deleted = if o.last_modified_time.is_some() || o.size.is_some() {
                Err(Error::NotImplemented {
                    what: "LastModifiedTime and Size conditions in DeleteObjects".into(),
                }
                .into())
            } else {
                let if_match = o
                    .e_tag
                    .as_ref()
                    .map_or(IfMatch::Absent, |t| IfMatch::ETag(t.value()));
                self.delete_one(account, &input.bucket, &o.key, if_match)
                    .await
            };
            (o.key.clone(), deleted)
        }))
        .await;
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for (key, r) in results {
            match r {
                Ok(()) if !quiet => deleted.push(dto::DeletedObject {
                    key: Some(key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err(e) => errors.push(dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(key),
                    message: e.message().map(str::to_string),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(dto::DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    /// Deletes one key if `if_match` holds; a missing key is a success, as in S3.
    async fn delete_one(
        &self,
        account: AccountId,
        bucket: &str,
        key: &str,
        if_match: IfMatch<'_>,
    ) -> S3Result<()> {
        // Taken before the condition is read: a write that starts after the check has a later
        // request time, so the ledger keeps it over this delete.
        let request_ms = now_ms();
        let etag = self.ledger.read(|s| {
            self.writable(s, &account, bucket)?;
            Ok::<_, S3Error>(s.object(bucket, key).map(|o| o.manifest.etag.clone()))
        })?;
        match (etag, if_match) {
            (None, IfMatch::Absent) => return Ok(()),
            (None, _) => {
                return Err(s3_error!(
                    NoSuchKey,
                    "If-Match names a key that does not exist"
                ))
            }
            (Some(current), IfMatch::ETag(wanted)) if current != wanted => {
                return Err(s3_error!(
                    PreconditionFailed,
                    "If-Match did not match the object's ETag; nothing was deleted"
                ))
            }
            (Some(_), _) => {}
        }
        match self
            .ledger
            .commit(TxKind::DeleteObject {
                owner: account,
                bucket: bucket.to_string(),
                key: key.to_string(),
                request_ms,
            })
            .await
        {
            // A newer write already won (S3's latest-request-time rule): the delete "happened"
            // and was overwritten, which S3 reports as success.
            Ok(())
            | Err(CommitError::Rejected(TxError::NoSuchObject))
            | Err(CommitError::Rejected(TxError::Superseded { .. })) => Ok(()),
            Err(e) => Err(Error::from(e).into()),
        }
    }
}
