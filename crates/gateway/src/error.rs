//! Typed gateway failures and the S3 error each one becomes.
//!
//! Every failure of the data path, the ledger or a request body is one [`Error`] variant, and
//! [`Error::code`] names its S3 code by matching on types only. Conditions a client should
//! retry (the chain or too many storage nodes unavailable, a nonce or expiry race in the
//! mempool) are 503 with a `Retry-After` hint, never 500.

use crate::{
    pipeline::{DownloadError, UploadError},
    s3::CommitError,
};
use cairn_ledger::TxError;
use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::{S3Error, S3ErrorCode};

/// Seconds a client is told to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Why a request body could not be read to its end.
///
/// s3s verifies SigV4 payloads inside the body stream and keeps its error types private, so
/// the gateway classifies a failed body from how the request declared it was signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// A signed single-chunk body whose SHA-256 is not the signed one (or that ended before
    /// its signed hash could verify).
    Sha256Mismatch,
    /// An aws-chunked body failed its chunk-signature chain (a wrong signature, or framing
    /// that ends before the signed final chunk).
    ChunkSignature,
    /// The body ended early or the connection failed.
    Incomplete,
}

/// How a request's body is authenticated (its `x-amz-content-sha256`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadMode {
    /// Not signed (`UNSIGNED-PAYLOAD`, unsigned streaming, anonymous, or no header).
    Unsigned,
    /// Signed as one SHA-256 of the whole body.
    SignedSingleChunk,
    /// Signed chunk by chunk (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`).
    SignedChunks,
}

impl PayloadMode {
    /// The mode a request's `x-amz-content-sha256` value declares.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
            | Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER") => Self::SignedChunks,
            Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Self::SignedSingleChunk
            }
            _ => Self::Unsigned,
        }
    }

    /// Classifies a body stream that failed.
    ///
    /// s3s checks a single-chunk SHA-256 as the last bytes arrive and fails the stream in their
    /// place; it checks aws-chunked signatures chunk by chunk. Either way a signed body that
    /// fails was not the one signed (a truncated one included: its signature never verified).
    /// Only an unsigned body's failure is a plain early end.
    pub fn fault(self) -> BodyFault {
        match self {
            Self::SignedSingleChunk => BodyFault::Sha256Mismatch,
            Self::SignedChunks => BodyFault::ChunkSignature,
            Self::Unsigned => BodyFault::Incomplete,
        }
    }
}

/// A failure of the gateway, with the S3 error it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upload pipeline failed.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The download pipeline failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The ledger did not take the transaction.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The request body failed.
    #[error("{}", body_message(*.0))]
    Body(BodyFault),
    /// The manifest built from the request breaks a ledger limit.
    #[error("{0}")]
    Manifest(TxError),
    /// A request header or subresource Cairn does not implement.
    #[error("{what} is not implemented by Cairn; nothing was stored or changed")]
    NotImplemented {
        /// The header or feature.
        what: String,
    },
    /// A header that only applies to objects stored with it (e.g. SSE-C on a plain object).
    #[error("{0}")]
    InvalidRequest(String),
}

fn body_message(f: BodyFault) -> &'static str {
    match f {
        BodyFault::Sha256Mismatch => {
            "the body does not match x-amz-content-sha256; nothing was stored"
        }
        BodyFault::ChunkSignature => {
            "a chunk signature of the aws-chunked body is wrong or missing; nothing was stored"
        }
        BodyFault::Incomplete => "the request body ended early; nothing was stored",
    }
}

/// How retrying helps: 503s carry a `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    No,
    After,
}

impl Error {
    /// The S3 code (and the status where the code alone does not fix it) of this failure.
    pub fn code(&self) -> (S3ErrorCode, Option<StatusCode>) {
        let (code, status, _) = self.mapping();
        (code, status)
    }

    fn mapping(&self) -> (S3ErrorCode, Option<StatusCode>, Retry) {
        use S3ErrorCode as C;
        let plain = |c: S3ErrorCode| (c, None, Retry::No);
        match self {
            Self::Upload(e) => match e {
                UploadError::Unavailable { .. } => (C::ServiceUnavailable, None, Retry::After),
                UploadError::TooLarge { .. } => plain(C::EntityTooLarge),
                UploadError::Body(_) => plain(C::IncompleteBody),
                UploadError::Placement { .. } | UploadError::Coding(_) | UploadError::Config(_) => {
                    plain(C::InternalError)
                }
            },
            Self::Download(e) => match e {
                DownloadError::Unavailable { .. } => (C::ServiceUnavailable, None, Retry::After),
                DownloadError::Range { .. } => plain(C::InvalidRange),
                DownloadError::Manifest { .. } | DownloadError::Coding(_) => {
                    plain(C::InternalError)
                }
            },
            Self::Commit(CommitError::Unavailable(_)) => {
                (C::ServiceUnavailable, None, Retry::After)
            }
            Self::Commit(CommitError::Rejected(e)) => tx_code(e),
            Self::Body(BodyFault::Sha256Mismatch) => (
                C::Custom("XAmzContentSHA256Mismatch".into()),
                Some(StatusCode::BAD_REQUEST),
                Retry::No,
            ),
            Self::Body(BodyFault::ChunkSignature) => plain(C::SignatureDoesNotMatch),
            Self::Body(BodyFault::Incomplete) => plain(C::IncompleteBody),
            Self::Manifest(TxError::InvalidField { field, .. })
                if field.starts_with("metadata") =>
            {
                plain(C::MetadataTooLarge)
            }
            Self::Manifest(_) => plain(C::InvalidArgument),
            Self::NotImplemented { .. } => plain(C::NotImplemented),
            Self::InvalidRequest(_) => plain(C::InvalidRequest),
        }
    }
}

/// The S3 code of a transaction the ledger refused. Exhaustive on purpose: a new ledger error
/// must be given its S3 meaning here.
fn tx_code(e: &TxError) -> (S3ErrorCode, Option<StatusCode>, Retry) {
    use S3ErrorCode as C;
    let code = match e {
        TxError::NoSuchBucket => C::NoSuchBucket,
        TxError::BucketExists => C::BucketAlreadyExists,
        TxError::BucketNotEmpty { .. } => C::BucketNotEmpty,
        TxError::NoSuchObject => C::NoSuchKey,
        TxError::ObjectExists => C::PreconditionFailed,
        TxError::NotAuthorized => C::AccessDenied,
        TxError::InvalidField { .. } => C::InvalidArgument,
        // A concurrent write to the key won; S3 calls that a conflicting operation.
        TxError::Superseded { .. } => C::OperationAborted,
        // Races a retry resolves: placement against a registry that moved, a nonce taken by a
        // concurrent write, a transaction that expired in a congested mempool.
        TxError::InvalidPlacement { .. } => return (C::ServiceUnavailable, None, Retry::After),
        TxError::NonceReplayed { .. } | TxError::NonceTooOld { .. } | TxError::Expired { .. } => {
            return (C::SlowDown, None, Retry::After)
        }
        // The gateway built a transaction the ledger cannot take: its account or build is
        // wrong, which no client retry fixes.
        TxError::Malformed { .. }
        | TxError::Oversize { .. }
        | TxError::BadSignature
        | TxError::UnknownAccount
        | TxError::AccountExists
        | TxError::UnknownNode
        | TxError::NodeExists
        | TxError::NotNodeOperator
        | TxError::StaleHeartbeat { .. }
        | TxError::ConfigVersionMismatch { .. }
        | TxError::NoSuchZone
        | TxError::ZoneVersionMismatch { .. }
        | TxError::InvalidZone { .. }
        | TxError::ZoneOverlap { .. }
        | TxError::NoSuchManagedName
        | TxError::ManagedNameExists
        | TxError::NotValidator
        | TxError::PlanRejected { .. }
        | TxError::UnknownEndpoint { .. }
        | TxError::ValidityTooLong { .. }
        | TxError::NoPossessionProof
        | TxError::AdmissionQuorum { .. }
        | TxError::OverrideQuorum { .. }
        // Storage nodes' audit transactions; a gateway never sends them.
        | TxError::AuditRoundNotOpen { .. }
        | TxError::AuditProofLate { .. }
        | TxError::NotChallenged
        | TxError::ChallengeNotOpen { .. }
        | TxError::FragmentNotHeld => C::InternalError,
    };
    (code, None, Retry::No)
}

impl From<Error> for S3Error {
    fn from(e: Error) -> Self {
        let (code, status, retry) = e.mapping();
        let message = match &e {
            Error::Commit(CommitError::Unavailable(msg)) => format!(
                "the ledger did not finalize the change ({msg}); nothing was acknowledged, retry later"
            ),
            Error::Commit(CommitError::Rejected(_)) if retry == Retry::After => {
                format!("{e}; nothing was stored, retry the request")
            }
            _ => e.to_string(),
        };
        let mut err = S3Error::with_message(code, message);
        if let Some(s) = status {
            err.set_status_code(s);
        }
        if retry == Retry::After {
            hint_retry(&mut err);
        }
        err
    }
}

/// Tells the client when to retry.
fn hint_retry(err: &mut S3Error) {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER_SECS),
    );
    err.set_headers(h);
}

/// A 503 ServiceUnavailable the client should retry.
pub(crate) fn unavailable(msg: impl Into<String>) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::ServiceUnavailable, msg.into());
    hint_retry(&mut err);
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_faults_follow_the_payload_mode() {
        let hash = "a".repeat(64);
        let single = PayloadMode::from_header(Some(&hash));
        assert_eq!(single, PayloadMode::SignedSingleChunk);
        assert_eq!(single.fault(), BodyFault::Sha256Mismatch);
        let chunks = PayloadMode::from_header(Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"));
        assert_eq!(chunks.fault(), BodyFault::ChunkSignature);
        let unsigned = PayloadMode::from_header(Some("UNSIGNED-PAYLOAD"));
        assert_eq!(unsigned.fault(), BodyFault::Incomplete);
        let trailer = PayloadMode::from_header(Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER"));
        assert_eq!(trailer.fault(), BodyFault::Incomplete);
        assert_eq!(PayloadMode::from_header(None), PayloadMode::Unsigned);
    }

    #[test]
    fn retryable_ledger_refusals_are_503_with_a_hint() {
        let e: S3Error =
            Error::Commit(CommitError::Rejected(TxError::NonceReplayed { nonce: 3 })).into();
        assert_eq!(e.code(), &S3ErrorCode::SlowDown);
        assert_eq!(e.status_code().map(|s| s.as_u16()).unwrap_or(503), 503);
        assert!(e
            .headers()
            .is_some_and(|h| h.contains_key(http::header::RETRY_AFTER)));
        let e: S3Error = Error::Commit(CommitError::Rejected(TxError::BadSignature)).into();
        assert_eq!(e.code(), &S3ErrorCode::InternalError);
        assert!(e.headers().is_none());
        let e: S3Error = Error::Body(BodyFault::Sha256Mismatch).into();
        assert_eq!(e.code().as_str(), "XAmzContentSHA256Mismatch");
        assert_eq!(e.status_code(), Some(StatusCode::BAD_REQUEST));
    }
}
