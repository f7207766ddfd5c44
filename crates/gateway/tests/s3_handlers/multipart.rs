use crate::harness::*;

const MIB: usize = 1024 * 1024;

async fn start(env: &Env, key: &str) -> String {
    let r = env
        .req("POST", &format!("/bkt/{key}"))
        .query("uploads", "")
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.all("UploadId").pop().expect("upload id")
}

async fn part(env: &Env, key: &str, id: &str, n: u32, body: &[u8]) -> String {
    let r = env
        .req("PUT", &format!("/bkt/{key}"))
        .query("partNumber", &n.to_string())
        .query("uploadId", id)
        .body(body)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("etag").expect("etag")
}

fn complete_xml(parts: &[(u32, &str)]) -> String {
    let parts: String = parts
        .iter()
        .map(|(n, e)| format!("<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"))
        .collect();
    format!("<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>")
}

async fn complete(env: &Env, key: &str, id: &str, parts: &[(u32, &str)]) -> Resp {
    env.req("POST", &format!("/bkt/{key}"))
        .query("uploadId", id)
        .body(complete_xml(parts).as_bytes())
        .send()
        .await
}

async fn small_bucket() -> Env {
    let env = Env::new();
    env.bucket("bkt", &[("x-cairn-coding", "2+1")]).await;
    env
}

#[tokio::test]
async fn multipart_upload_lists_and_completes() {
    let env = small_bucket().await;
    let id = start(&env, "big").await;
    let one = data(5 * MIB);
    let two = data(1000);
    let e1 = part(&env, "big", &id, 1, &one).await;
    let e2 = part(&env, "big", &id, 2, &two).await;
    let r = env
        .req("GET", "/bkt/big")
        .query("uploadId", &id)
        .send()
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.all("PartNumber"), vec!["1", "2"]);
    assert_eq!(
        r.all("Size"),
        vec![(5 * MIB).to_string(), "1000".to_string()]
    );
    let r = env.req("GET", "/bkt").query("uploads", "").send().await;
    assert_eq!(r.all("UploadId"), vec![id.clone()]);
    let r = complete(&env, "big", &id, &[(1, &e1), (2, &e2)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let etag = r.all("ETag").pop().expect("etag");
    assert!(etag.ends_with("-2\""), "{etag}");
    let got = env.get("bkt", "big").await;
    assert_eq!(got.body.len(), one.len() + two.len());
    assert!(got.body[..one.len()] == one[..] && got.body[one.len()..] == two[..]);
    let r = env.req("GET", "/bkt").query("uploads", "").send().await;
    assert!(r.all("UploadId").is_empty(), "completed uploads are gone");
}

#[tokio::test]
async fn small_non_final_parts_are_too_small() {
    let env = small_bucket().await;
    let id = start(&env, "k").await;
    let e1 = part(&env, "k", &id, 1, b"tiny").await;
    let e2 = part(&env, "k", &id, 2, b"last").await;
    let r = complete(&env, "k", &id, &[(1, &e1), (2, &e2)]).await;
    assert_eq!(r.code().as_deref(), Some("EntityTooSmall"));
    assert!(!env.exists("bkt", "k"));
}

#[tokio::test]
async fn parts_must_match_and_be_ordered() {
    let env = small_bucket().await;
    let id = start(&env, "k").await;
    let e1 = part(&env, "k", &id, 1, &data(5 * MIB)).await;
    let e2 = part(&env, "k", &id, 2, b"end").await;
    let r = complete(&env, "k", &id, &[(1, &e1), (1, &e1)]).await;
    assert_eq!(r.code().as_deref(), Some("InvalidPartOrder"));
    let r = complete(&env, "k", &id, &[(1, "\"0000\""), (2, &e2)]).await;
    assert_eq!(r.code().as_deref(), Some("InvalidPart"));
    let r = complete(&env, "k", &id, &[(1, &e1), (3, &e2)]).await;
    assert_eq!(r.code().as_deref(), Some("InvalidPart"));
    assert!(!env.exists("bkt", "k"));
    assert_eq!(
        complete(&env, "k", &id, &[(1, &e1), (2, &e2)]).await.status,
        200
    );
}

#[tokio::test]
async fn aborted_uploads_take_no_more_parts() {
    let env = small_bucket().await;
    let id = start(&env, "k").await;
    part(&env, "k", &id, 1, b"x").await;
    let r = env
        .req("DELETE", "/bkt/k")
        .query("uploadId", &id)
        .send()
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = env
        .req("PUT", "/bkt/k")
        .query("partNumber", "2")
        .query("uploadId", &id)
        .body(b"y")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("NoSuchUpload"));
    let r = complete(&env, "k", &id, &[(1, "\"x\"")]).await;
    assert_eq!(r.code().as_deref(), Some("NoSuchUpload"));
}

#[tokio::test]
async fn another_account_cannot_touch_an_upload() {
    let env = small_bucket().await;
    let id = start(&env, "k").await;
    let r = env
        .req("GET", "/bkt/k")
        .query("uploadId", &id)
        .signed_by_stranger()
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("AccessDenied"));
}

#[tokio::test]
async fn complete_if_none_match_star_keeps_an_existing_key() {
    let env = small_bucket().await;
    env.put("bkt", "k", b"old").await;
    let id = start(&env, "k").await;
    let e1 = part(&env, "k", &id, 1, b"new").await;
    let r = env
        .req("POST", "/bkt/k")
        .query("uploadId", &id)
        .header("if-none-match", "*")
        .body(complete_xml(&[(1, &e1)]).as_bytes())
        .send()
        .await;
    assert_eq!(r.status, 412);
    assert_eq!(&env.get("bkt", "k").await.body[..], b"old");
}
