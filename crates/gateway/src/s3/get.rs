//! GetObject and HeadObject, and the verified body stream behind every read.

use super::*;
use crate::pipeline::read_range;
use conditions::{check_conditions, refuse_sse_c, Preconditions};
use futures::StreamExt;
use s3s::dto::ETag;

/// The preconditions of a GetObject or HeadObject input (both name them alike).
macro_rules! read_preconditions {
    ($input:expr) => {
        Preconditions {
            if_match: $input.if_match.as_ref(),
            if_none_match: $input.if_none_match.as_ref(),
            if_modified_since: $input.if_modified_since.as_ref(),
            if_unmodified_since: $input.if_unmodified_since.as_ref(),
        }
    };
}

pub(super) fn metadata_map(v: &[(String, String)]) -> Option<dto::Metadata> {
    (!v.is_empty()).then(|| v.iter().cloned().collect())
}

impl<L: Ledger, T: FragmentTransport + 'static> Gateway<L, T> {
    /// Streams `start..end` of an object; fails (503) before any byte is sent if the first
    /// segment cannot be rebuilt.
    pub(super) async fn body(
        &self,
        rec: &ObjectRecord,
        coding: Coding,
        start: u64,
        end: u64,
    ) -> S3Result<StreamingBlob> {
        let stream = read_range(
            self.transport.clone(),
            coding,
            rec.manifest.placement.clone().into(),
            rec.manifest.segments.clone().into(),
            start,
            end,
            self.cfg.extra_read_requests,
        )
        .map_err(|e| S3Error::from(Error::from(e)))?;
        let mut stream = Box::pin(stream);
        let first = match stream.next().await {
            None => Bytes::new(),
            Some(r) => r.map_err(|e| S3Error::from(Error::from(e)))?,
        };
        let rest = stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
        Ok(StreamingBlob::wrap(SyncStream(Mutex::new(Box::pin(
            futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest),
        )))))
    }

    /// The object a GET or HEAD names, once the caller may read it and its preconditions hold.
    fn read_object<I>(
        &self,
        req: &S3Request<I>,
        bucket: &str,
        key: &str,
        p: Preconditions<'_>,
    ) -> S3Result<(ObjectRecord, Coding)> {
        refuse_sse_c(&req.headers)?;
        let account = self.account(req)?;
        let (rec, coding) = self.object(account.as_ref(), bucket, key)?;
        check_conditions(&rec.manifest.etag, rec.manifest.modified_ms, &p)?;
        Ok((rec, coding))
    }

    pub(super) async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let input = &req.input;
        let (rec, coding) =
            self.read_object(&req, &input.bucket, &input.key, read_preconditions!(input))?;
        let m = &rec.manifest;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GET by partNumber is not supported; use a Range"
            ));
        }
        let (range, content_range) = match &input.range {
            None => (0..m.size_bytes, None),
            Some(r) => {
                let range = r.check(m.size_bytes).map_err(|_| {
                    S3Error::with_message(
                        S3ErrorCode::InvalidRange,
                        format!(
                            "the requested range is not satisfiable for a {}-byte object",
                            m.size_bytes
                        ),
                    )
                })?;
                let cr = format!(
                    "bytes {}-{}/{}",
                    range.start,
                    range.end.saturating_sub(1),
                    m.size_bytes
                );
                (range, Some(cr))
            }
        };
        let body = self.body(&rec, coding, range.start, range.end).await?;
        Ok(S3Response::new(dto::GetObjectOutput {
            body: Some(body),
            accept_ranges: Some("bytes".into()),
            content_length: Some((range.end - range.start) as i64),
            content_range,
            content_type: Some(m.content_type.clone()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.modified_ms)),
            metadata: metadata_map(&m.metadata),
            ..Default::default()
        }))
    }

    pub(super) async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let input = &req.input;
        let (rec, coding) =
            self.read_object(&req, &input.bucket, &input.key, read_preconditions!(input))?;
        let m = &rec.manifest;
        let zones = self.ledger.read(|s| {
            m.placement
                .iter()
                .filter_map(|n| s.node(n).map(|r| r.zone.clone()))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        });
        // A node may hold several fragments (degraded placement): count each once.
        let distinct_nodes = m
            .placement
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let mut resp = S3Response::new(dto::HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(m.size_bytes as i64),
            content_type: Some(m.content_type.clone()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.modified_ms)),
            metadata: metadata_map(&m.metadata),
            ..Default::default()
        });
        // Where the object lives, for operators and the devnet self-check.
        for (name, value) in [
            (CODING_HEADER, format!("{}+{}", coding.data, coding.parity)),
            (NODES_HEADER, distinct_nodes.to_string()),
            (ZONES_HEADER, zones.to_string()),
        ] {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                resp.headers.insert(name, v);
            }
        }
        Ok(resp)
    }
}
