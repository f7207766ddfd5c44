use crate::harness::*;

const KEYS: &[&str] = &["a/1", "a/2", "a/3", "b", "c/x/1", "c/y", "d"];

async fn filled() -> Env {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    for k in KEYS {
        env.put("bkt", k, k.as_bytes()).await;
    }
    env
}

#[tokio::test]
async fn list_v2_groups_common_prefixes() {
    let env = filled().await;
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("delimiter", "/")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.all("Key"), vec!["b", "d"]);
    assert_eq!(r.all("Prefix")[1..], ["a/", "c/"]);
    assert_eq!(r.all("KeyCount"), vec!["4"]);
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("prefix", "c/")
        .query("delimiter", "/")
        .send()
        .await;
    assert_eq!(r.all("Key"), vec!["c/y"]);
    assert_eq!(r.all("Prefix")[1..], ["c/x/"]);
}

#[tokio::test]
async fn list_v2_pages_with_continuation_tokens() {
    let env = filled().await;
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let mut req = env
            .req("GET", "/bkt")
            .query("list-type", "2")
            .query("max-keys", "2");
        if let Some(t) = &token {
            req = req.query("continuation-token", t);
        }
        let r = req.send().await;
        assert_eq!(r.status, 200, "{}", r.text());
        let keys = r.all("Key");
        assert!(keys.len() <= 2);
        seen.extend(keys);
        token = r.all("NextContinuationToken").pop();
        if r.all("IsTruncated") == vec!["false"] {
            break;
        }
    }
    assert_eq!(seen, KEYS);
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("continuation-token", "zz")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("InvalidArgument"));
}

#[tokio::test]
async fn list_v1_pages_with_markers_and_delimiters() {
    let env = filled().await;
    let mut marker = String::new();
    let mut pages = Vec::new();
    for _ in 0..10 {
        let r = env
            .req("GET", "/bkt")
            .query("delimiter", "/")
            .query("max-keys", "1")
            .query("marker", &marker)
            .send()
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let mut page = r.all("Key");
        page.extend(r.all("Prefix").into_iter().skip(1));
        pages.push(page);
        match r.all("NextMarker").pop() {
            Some(m) => marker = m,
            None => break,
        }
    }
    assert_eq!(pages, vec![vec!["a/"], vec!["b"], vec!["c/"], vec!["d"]]);
}

#[tokio::test]
async fn list_start_after_and_prefix() {
    let env = filled().await;
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("prefix", "a/")
        .query("start-after", "a/1")
        .send()
        .await;
    assert_eq!(r.all("Key"), vec!["a/2", "a/3"]);
}

#[tokio::test]
async fn list_url_encoding_and_bad_arguments() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "x+y", b"v").await;
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("encoding-type", "url")
        .send()
        .await;
    assert_eq!(r.all("Key"), vec!["x%2By"]);
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("encoding-type", "base64")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("InvalidArgument"));
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .query("max-keys", "-1")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("InvalidArgument"));
}

#[tokio::test]
async fn anonymous_listing_needs_a_public_bucket() {
    let env = filled().await;
    let r = env
        .req("GET", "/bkt")
        .query("list-type", "2")
        .anonymous()
        .send()
        .await;
    assert_eq!(r.status, 403);
    env.bucket("pub", &[("x-amz-acl", "public-read")]).await;
    env.put("pub", "k", b"v").await;
    let r = env
        .req("GET", "/pub")
        .query("list-type", "2")
        .anonymous()
        .send()
        .await;
    assert_eq!(r.all("Key"), vec!["k"]);
}
