use crate::harness::*;

#[tokio::test]
async fn put_get_round_trips_across_segments() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let body = data(2 * SEGMENT_BYTES + 1234);
    let etag = env.put("bkt", "dir/obj", &body).await;
    use md5::Digest;
    assert_eq!(etag, format!("\"{}\"", hex(&md5::Md5::digest(&body))));
    let r = env.get("bkt", "dir/obj").await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &body[..]);
    assert_eq!(r.header("etag"), Some(etag));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("binary/octet-stream")
    );
}

#[tokio::test]
async fn ranges_return_exactly_their_bytes() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let body = data(SEGMENT_BYTES + 5000);
    env.put("bkt", "k", &body).await;
    let n = body.len();
    for (range, want) in [
        ("bytes=10-19".to_string(), 10..20),
        ("bytes=-5".to_string(), n - 5..n),
        (
            format!("bytes={}-", SEGMENT_BYTES - 3),
            SEGMENT_BYTES - 3..n,
        ),
    ] {
        let r = env
            .req("GET", "/bkt/k")
            .header("range", &range)
            .send()
            .await;
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(&r.body[..], &body[want.clone()], "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {}-{}/{n}", want.start, want.end - 1))
        );
    }
    let r = env
        .req("GET", "/bkt/k")
        .header("range", &format!("bytes={n}-"))
        .send()
        .await;
    assert_eq!(r.status, 416);
    assert_eq!(r.code().as_deref(), Some("InvalidRange"));
}

#[tokio::test]
async fn head_reports_size_and_placement() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "k", &data(777)).await;
    let r = env.req("HEAD", "/bkt/k").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("777"));
    assert_eq!(r.header("x-cairn-coding").as_deref(), Some("4+8"));
    assert_eq!(r.header("x-cairn-nodes").as_deref(), Some("12"));
    assert_eq!(r.header("x-cairn-zones").as_deref(), Some("3"));
}

#[tokio::test]
async fn missing_keys_and_buckets_are_404() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    assert_eq!(
        env.get("bkt", "nope").await.code().as_deref(),
        Some("NoSuchKey")
    );
    assert_eq!(
        env.get("nob", "k").await.code().as_deref(),
        Some("NoSuchBucket")
    );
    assert_eq!(env.req("HEAD", "/bkt/nope").send().await.status, 404);
}

#[tokio::test]
async fn a_wrong_content_md5_stores_nothing() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let r = env
        .req("PUT", "/bkt/k")
        .header("content-md5", &md5_b64(b"other"))
        .body(b"payload")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("BadDigest"));
    assert!(!env.exists("bkt", "k"));
    let r = env
        .req("PUT", "/bkt/k")
        .header("content-md5", &md5_b64(b"payload"))
        .body(b"payload")
        .send()
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn overwrites_replace_the_object_and_metadata_round_trips() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "k", b"first").await;
    let r = env
        .req("PUT", "/bkt/k")
        .header("x-amz-meta-colour", "blue")
        .header("content-type", "text/plain")
        .body(b"second")
        .send()
        .await;
    assert_eq!(r.status, 200);
    let r = env.get("bkt", "k").await;
    assert_eq!(&r.body[..], b"second");
    assert_eq!(r.header("x-amz-meta-colour").as_deref(), Some("blue"));
    assert_eq!(r.header("content-type").as_deref(), Some("text/plain"));
}

#[tokio::test]
async fn if_none_match_star_never_overwrites() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let put = |body: &'static [u8]| {
        env.req("PUT", "/bkt/k")
            .header("if-none-match", "*")
            .body(body)
            .send()
    };
    assert_eq!(put(b"one").await.status, 200);
    let r = put(b"two").await;
    assert_eq!(r.status, 412);
    assert_eq!(r.code().as_deref(), Some("PreconditionFailed"));
    assert_eq!(&env.get("bkt", "k").await.body[..], b"one");
}

#[tokio::test]
async fn anonymous_reads_only_public_buckets() {
    let env = Env::new();
    env.bucket("private", &[]).await;
    env.bucket("public", &[("x-amz-acl", "public-read")]).await;
    env.put("private", "k", b"secret").await;
    env.put("public", "k", b"open").await;
    let r = env.req("GET", "/private/k").anonymous().send().await;
    assert_eq!(r.status, 403);
    let r = env.req("GET", "/public/k").anonymous().send().await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"open");
    let r = env
        .req("PUT", "/public/k")
        .anonymous()
        .body(b"x")
        .send()
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(&env.get("public", "k").await.body[..], b"open");
}

#[tokio::test]
async fn overlong_keys_are_refused() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let key = "k".repeat(1025);
    let r = env
        .req("PUT", &format!("/bkt/{key}"))
        .body(b"x")
        .send()
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("KeyTooLongError"));
}

#[tokio::test]
async fn preconditions_on_get_and_head() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let etag = env.put("bkt", "k", b"body").await;
    let get = |h: &'static str, v: String| {
        let r = env.req("GET", "/bkt/k").header(h, &v);
        async move { r.send().await.status }
    };
    assert_eq!(get("if-match", etag.clone()).await, 200);
    assert_eq!(get("if-match", "\"0000\"".into()).await, 412);
    assert_eq!(get("if-none-match", etag.clone()).await, 304);
    assert_eq!(get("if-none-match", "\"0000\"".into()).await, 200);
    let future = "Wed, 01 Jan 2200 00:00:00 GMT".to_string();
    let past = "Mon, 01 Jan 2001 00:00:00 GMT".to_string();
    assert_eq!(get("if-modified-since", future.clone()).await, 304);
    assert_eq!(get("if-modified-since", past.clone()).await, 200);
    assert_eq!(get("if-unmodified-since", past).await, 412);
    assert_eq!(get("if-unmodified-since", future).await, 200);
    let r = env
        .req("HEAD", "/bkt/k")
        .header("if-match", "\"0000\"")
        .send()
        .await;
    assert_eq!(r.status, 412);
}

#[tokio::test]
async fn a_chain_without_quorum_is_503_with_a_retry_hint_and_stores_nothing() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.ledger.set_down(true);
    let r = env.req("PUT", "/bkt/k").body(b"x").send().await;
    assert_eq!(r.status, 503);
    assert_eq!(r.code().as_deref(), Some("ServiceUnavailable"));
    assert!(r.header("retry-after").is_some());
    assert!(!env.exists("bkt", "k"));
}

#[tokio::test]
async fn a_nonce_collision_is_503_slow_down_not_500() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let height = env.ledger.height();
    env.ledger.replay_next_nonce();
    let r = env.req("PUT", "/bkt/k").body(b"x").send().await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.code().as_deref(), Some("SlowDown"));
    assert!(r.header("retry-after").is_some());
    assert!(!env.exists("bkt", "k"));
    // The ledger itself refused it: a block was applied with the failed receipt.
    assert_eq!(env.ledger.height(), height + 1);
    env.put("bkt", "k", b"x").await;
}
