//! Outcome 13: a header or subresource Cairn does not implement is refused, never ignored, and
//! nothing is stored.

use crate::harness::*;

/// PUTs `b/k` with `headers` into a bucket created with `bucket_headers`; asserts the refusal
/// code and that neither a fragment nor an object was stored.
async fn put_is_refused(bucket_headers: &[(&str, &str)], headers: &[(&str, &str)], code: &str) {
    let env = Env::new();
    env.bucket("bkt", bucket_headers).await;
    let puts = env.transport.puts();
    let mut r = env.req("PUT", "/bkt/k").body(b"plaintext");
    for (k, v) in headers {
        r = r.header(k, v);
    }
    let r = r.send().await;
    assert_eq!(r.code().as_deref(), Some(code), "{headers:?}: {}", r.text());
    assert!(!env.exists("bkt", "k"), "{headers:?} stored an object");
    assert_eq!(env.transport.puts(), puts, "{headers:?} stored fragments");
}

macro_rules! refused_on_put {
    ($($name:ident: $headers:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                put_is_refused(&[], $headers, "NotImplemented").await;
            }
        )*
    };
}

refused_on_put! {
    sse_c_on_put: &[
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-server-side-encryption-customer-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
        ("x-amz-server-side-encryption-customer-key-md5", "zZ5FnqcIqUjVwvWmyog4zw=="),
    ];
    sse_s3_on_put: &[("x-amz-server-side-encryption", "AES256")];
    sse_kms_on_put: &[
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-server-side-encryption-aws-kms-key-id", "arn:aws:kms:us-east-1:1:key/x"),
    ];
    sse_kms_context_on_put: &[("x-amz-server-side-encryption-context", "e30=")];
    bucket_key_on_put: &[("x-amz-server-side-encryption-bucket-key-enabled", "true")];
    object_lock_mode_on_put: &[
        ("x-amz-object-lock-mode", "GOVERNANCE"),
        ("x-amz-object-lock-retain-until-date", "2100-01-01T00:00:00Z"),
    ];
    object_lock_retain_until_on_put: &[("x-amz-object-lock-retain-until-date", "2100-01-01T00:00:00Z")];
    legal_hold_on_put: &[("x-amz-object-lock-legal-hold", "ON")];
    tagging_on_put: &[("x-amz-tagging", "team=storage")];
    grant_on_put: &[("x-amz-grant-read", "id=abc")];
    public_acl_in_a_private_bucket: &[("x-amz-acl", "public-read")];
    foreign_canned_acl: &[("x-amz-acl", "authenticated-read")];
}

#[tokio::test]
async fn a_private_object_acl_in_a_public_bucket_is_refused() {
    put_is_refused(
        &[("x-amz-acl", "public-read")],
        &[("x-amz-acl", "private")],
        "NotImplemented",
    )
    .await;
}

#[tokio::test]
async fn an_object_acl_equal_to_the_buckets_is_accepted() {
    let env = Env::new();
    env.bucket("pub", &[("x-amz-acl", "public-read")]).await;
    env.bucket("priv", &[]).await;
    let r = env
        .req("PUT", "/pub/k")
        .header("x-amz-acl", "public-read")
        .body(b"v")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = env
        .req("PUT", "/priv/k")
        .header("x-amz-acl", "private")
        .body(b"v")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn unimplemented_headers_on_copy_store_nothing() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.bucket("other", &[("x-cairn-coding", "2+1")]).await;
    env.put("bkt", "src", b"v").await;
    for (h, v) in [
        ("x-amz-server-side-encryption", "AES256"),
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        (
            "x-amz-copy-source-server-side-encryption-customer-algorithm",
            "AES256",
        ),
        ("x-amz-object-lock-legal-hold", "ON"),
        ("x-amz-tagging", "a=b"),
        ("x-amz-acl", "public-read"),
        ("x-amz-grant-full-control", "id=abc"),
    ] {
        let puts = env.transport.puts();
        let r = env
            .req("PUT", "/other/dst")
            .header("x-amz-copy-source", "/bkt/src")
            .header(h, v)
            .send()
            .await;
        assert_eq!(
            r.code().as_deref(),
            Some("NotImplemented"),
            "{h}: {}",
            r.text()
        );
        assert!(!env.exists("other", "dst"), "{h}");
        assert_eq!(env.transport.puts(), puts, "{h}");
    }
}

#[tokio::test]
async fn unimplemented_headers_on_create_multipart_start_nothing() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    for (h, v) in [
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        ("x-amz-server-side-encryption", "aws:kms"),
        ("x-amz-object-lock-mode", "COMPLIANCE"),
        ("x-amz-tagging", "a=b"),
        ("x-amz-acl", "public-read"),
        ("x-amz-grant-read", "id=abc"),
    ] {
        let r = env
            .req("POST", "/bkt/k")
            .query("uploads", "")
            .header(h, v)
            .send()
            .await;
        assert_eq!(
            r.code().as_deref(),
            Some("NotImplemented"),
            "{h}: {}",
            r.text()
        );
    }
    let r = env.req("GET", "/bkt").query("uploads", "").send().await;
    assert!(r.all("UploadId").is_empty(), "no upload was started");
}

#[tokio::test]
async fn sse_c_on_reads_of_a_plain_object_is_invalid() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "k", b"plain").await;
    for method in ["GET", "HEAD"] {
        let r = env
            .req(method, "/bkt/k")
            .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
            .header("x-amz-server-side-encryption-customer-key", "a2V5")
            .send()
            .await;
        assert_eq!(r.status, 400, "{method}");
        if method == "GET" {
            assert_eq!(r.code().as_deref(), Some("InvalidRequest"));
            assert!(r.body.len() < 1000 && !r.text().contains("plain"));
        }
    }
}

#[tokio::test]
async fn sse_c_on_upload_part_is_invalid() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env.req("POST", "/bkt/k").query("uploads", "").send().await;
    let id = r.all("UploadId").pop().expect("upload id");
    let puts = env.transport.puts();
    let r = env
        .req("PUT", "/bkt/k")
        .query("partNumber", "1")
        .query("uploadId", &id)
        .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
        .body(b"x")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("InvalidRequest"));
    assert_eq!(env.transport.puts(), puts);
}

#[tokio::test]
async fn an_etag_if_none_match_on_complete_is_refused() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env.req("POST", "/bkt/k").query("uploads", "").send().await;
    let id = r.all("UploadId").pop().expect("upload id");
    let r = env
        .req("PUT", "/bkt/k")
        .query("partNumber", "1")
        .query("uploadId", &id)
        .body(b"x")
        .send()
        .await;
    let etag = r.header("etag").expect("etag");
    let xml = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    );
    let r = env
        .req("POST", "/bkt/k")
        .query("uploadId", &id)
        .header("if-none-match", "\"0123\"")
        .body(xml.as_bytes())
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("NotImplemented"), "{}", r.text());
    assert!(!env.exists("bkt", "k"));
    // The upload is intact: completing it without the header works.
    let r = env
        .req("POST", "/bkt/k")
        .query("uploadId", &id)
        .body(xml.as_bytes())
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
