use crate::harness::*;

#[tokio::test]
async fn copy_within_a_coding_shares_fragments() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let body = data(SEGMENT_BYTES + 10);
    let etag = env.put("bkt", "src", &body).await;
    let puts = env.transport.puts();
    let r = env
        .req("PUT", "/bkt/dst")
        .header("x-amz-copy-source", "/bkt/src")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.all("ETag"), vec![etag]);
    assert_eq!(
        env.transport.puts(),
        puts,
        "a same-coding copy moves no data"
    );
    assert_eq!(&env.get("bkt", "dst").await.body[..], &body[..]);
}

#[tokio::test]
async fn copy_across_codings_reencodes() {
    let env = Env::new();
    env.bucket("wide", &[]).await;
    env.bucket("narrow", &[("x-cairn-coding", "2+1")]).await;
    let body = data(3000);
    env.put("wide", "src", &body).await;
    let puts = env.transport.puts();
    let r = env
        .req("PUT", "/narrow/dst")
        .header("x-amz-copy-source", "/wide/src")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(env.transport.puts(), puts + 3);
    assert_eq!(&env.get("narrow", "dst").await.body[..], &body[..]);
    let head = env.req("HEAD", "/narrow/dst").send().await;
    assert_eq!(head.header("x-cairn-coding").as_deref(), Some("2+1"));
}

#[tokio::test]
async fn copy_onto_itself_needs_replace() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "k", b"v").await;
    let r = env
        .req("PUT", "/bkt/k")
        .header("x-amz-copy-source", "/bkt/k")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("InvalidRequest"));
    let r = env
        .req("PUT", "/bkt/k")
        .header("x-amz-copy-source", "/bkt/k")
        .header("x-amz-metadata-directive", "REPLACE")
        .header("x-amz-meta-new", "yes")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        env.get("bkt", "k")
            .await
            .header("x-amz-meta-new")
            .as_deref(),
        Some("yes")
    );
}

#[tokio::test]
async fn copy_source_preconditions_fail_with_412() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "src", b"v").await;
    let r = env
        .req("PUT", "/bkt/dst")
        .header("x-amz-copy-source", "/bkt/src")
        .header("x-amz-copy-source-if-match", "\"0000\"")
        .send()
        .await;
    assert_eq!(r.status, 412);
    assert!(!env.exists("bkt", "dst"));
}

#[tokio::test]
async fn delete_object_removes_and_missing_keys_succeed() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    env.put("bkt", "k", b"v").await;
    assert_eq!(env.req("DELETE", "/bkt/k").send().await.status, 204);
    assert!(!env.exists("bkt", "k"));
    assert_eq!(env.req("DELETE", "/bkt/k").send().await.status, 204);
}

#[tokio::test]
async fn delete_if_match_is_honoured() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let etag = env.put("bkt", "k", b"v").await;
    let r = env
        .req("DELETE", "/bkt/k")
        .header("if-match", "\"00000000000000000000000000000000\"")
        .send()
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(r.code().as_deref(), Some("PreconditionFailed"));
    assert!(env.exists("bkt", "k"), "a failed If-Match deletes nothing");
    let r = env
        .req("DELETE", "/bkt/k")
        .header("if-match", &etag)
        .send()
        .await;
    assert_eq!(r.status, 204);
    assert!(!env.exists("bkt", "k"));
}

fn delete_xml(keys: &[(&str, Option<&str>)], quiet: bool) -> String {
    let objects: String = keys
        .iter()
        .map(|(k, etag)| match etag {
            Some(e) => format!("<Object><Key>{k}</Key><ETag>{e}</ETag></Object>"),
            None => format!("<Object><Key>{k}</Key></Object>"),
        })
        .collect();
    format!("<Delete><Quiet>{quiet}</Quiet>{objects}</Delete>")
}

#[tokio::test]
async fn delete_objects_deletes_each_key() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    for k in ["a", "b", "c"] {
        env.put("bkt", k, b"v").await;
    }
    let xml = delete_xml(&[("a", None), ("b", None), ("zz", None)], false);
    let r = env
        .req("POST", "/bkt")
        .query("delete", "")
        .header("content-md5", &md5_b64(xml.as_bytes()))
        .body(xml.as_bytes())
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut deleted = r.all("Key");
    deleted.sort();
    assert_eq!(deleted, vec!["a", "b", "zz"]);
    assert!(!env.exists("bkt", "a") && !env.exists("bkt", "b") && env.exists("bkt", "c"));
    let xml = delete_xml(&[("c", None)], true);
    let r = env
        .req("POST", "/bkt")
        .query("delete", "")
        .header("content-md5", &md5_b64(xml.as_bytes()))
        .body(xml.as_bytes())
        .send()
        .await;
    assert_eq!(r.status, 200);
    assert!(r.all("Key").is_empty(), "quiet mode lists no deleted keys");
    assert!(!env.exists("bkt", "c"));
}

#[tokio::test]
async fn delete_objects_honours_each_etag() {
    let env = Env::new();
    env.bucket("bkt", &[]).await;
    let etag = env.put("bkt", "keep", b"v").await;
    env.put("bkt", "go", b"w").await;
    let go = env.get("bkt", "go").await.header("etag").expect("etag");
    let xml = delete_xml(&[("keep", Some("\"0000\"")), ("go", Some(&go))], false);
    let r = env
        .req("POST", "/bkt")
        .query("delete", "")
        .header("content-md5", &md5_b64(xml.as_bytes()))
        .body(xml.as_bytes())
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.all("Code"), vec!["PreconditionFailed"]);
    assert!(env.exists("bkt", "keep"), "{etag} kept");
    assert!(!env.exists("bkt", "go"));
}
