use crate::harness::*;

#[tokio::test]
async fn presigned_get_and_put() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env
        .req("PUT", "/bkt/k")
        .presigned(60)
        .body(b"via url")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = env.req("GET", "/bkt/k").presigned(60).send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&r.body[..], b"via url");
}

#[tokio::test]
async fn a_presigned_url_with_a_wrong_secret_is_refused() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env
        .req("PUT", "/bkt/k")
        .presigned(60)
        .wrong_secret()
        .body(b"x")
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code().as_deref(), Some("SignatureDoesNotMatch"));
    assert!(!env.exists("bkt", "k"));
}

#[tokio::test]
async fn wrong_secrets_and_unknown_keys_are_refused() {
    let env = Env::new();
    let r = env.req("PUT", "/bkt").wrong_secret().send().await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code().as_deref(), Some("SignatureDoesNotMatch"));
    assert!(env.ledger.read(|s| s.bucket("bkt").is_none()));
}

#[tokio::test]
async fn aws_chunked_uploads_round_trip() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let body = data(SEGMENT_BYTES + 100);
    let r = env
        .req("PUT", "/bkt/k")
        .chunked(64 * 1024, None)
        .body(&body)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = env.get("bkt", "k").await;
    assert_eq!(&got.body[..], &body[..]);
    assert_eq!(got.header("content-encoding"), None);
}

#[tokio::test]
async fn a_wrong_chunk_signature_is_403_and_stores_nothing() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    for bad in [1, 3] {
        let r = env
            .req("PUT", "/bkt/k")
            .chunked(8 * 1024, Some(bad))
            .body(&data(3 * 8 * 1024))
            .send()
            .await;
        assert_eq!(r.status, 403, "bad chunk {bad}: {}", r.text());
        assert_eq!(r.code().as_deref(), Some("SignatureDoesNotMatch"));
        assert!(!env.exists("bkt", "k"));
    }
}

#[tokio::test]
async fn a_body_that_is_not_the_signed_one_is_refused() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env
        .req("PUT", "/bkt/k")
        .declared_sha256_of(b"other bytes")
        .body(b"these bytes")
        .send()
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.code().as_deref(), Some("XAmzContentSHA256Mismatch"));
    assert!(!env.exists("bkt", "k"));
}

#[tokio::test]
async fn unsigned_payloads_are_accepted_when_the_headers_are_signed() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env
        .req("PUT", "/bkt/k")
        .unsigned_payload()
        .body(b"free")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(&env.get("bkt", "k").await.body[..], b"free");
}
