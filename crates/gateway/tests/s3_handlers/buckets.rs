use crate::harness::*;

#[tokio::test]
async fn create_head_delete_bucket() {
    let env = Env::new();
    env.bucket("photos", &[]).await;
    assert_eq!(env.req("HEAD", "/photos").send().await.status, 200);
    let r = env.req("DELETE", "/photos").send().await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(env.req("HEAD", "/photos").send().await.status, 404);
    assert!(env.ledger.read(|s| s.bucket("photos").is_none()));
}

#[tokio::test]
async fn creating_an_owned_bucket_again_conflicts() {
    let env = Env::new();
    env.bucket("photos", &[]).await;
    let r = env.req("PUT", "/photos").send().await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code().as_deref(), Some("BucketAlreadyOwnedByYou"));
}

#[tokio::test]
async fn invalid_bucket_names_are_refused() {
    let env = Env::new();
    let r = env.req("PUT", "/ab").send().await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("InvalidBucketName"));
}

#[tokio::test]
async fn list_buckets_names_the_callers_buckets() {
    let env = Env::new();
    env.bucket("alpha", &[]).await;
    env.bucket("beta", &[]).await;
    let r = env.req("GET", "/").send().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.all("Name"), vec!["alpha", "beta"]);
    assert_eq!(r.all("CreationDate").len(), 2);
}

#[tokio::test]
async fn an_account_that_never_authorized_the_gateway_is_refused() {
    let env = Env::new();
    let r = env.req("PUT", "/theirs").signed_by_stranger().send().await;
    assert_eq!(r.status, 403);
    assert_eq!(r.code().as_deref(), Some("AccessDenied"));
    assert!(env.ledger.read(|s| s.bucket("theirs").is_none()));
    let r = env.req("GET", "/").signed_by_stranger().send().await;
    assert_eq!(r.code().as_deref(), Some("AccessDenied"));
}

#[tokio::test]
async fn bucket_location_is_answered() {
    let env = Env::new();
    env.bucket("photos", &[]).await;
    let r = env.req("GET", "/photos").query("location", "").send().await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("LocationConstraint"));
    let r = env
        .req("GET", "/missing")
        .query("location", "")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("NoSuchBucket"));
}

#[tokio::test]
async fn a_bucket_with_objects_is_not_deleted() {
    let env = Env::new();
    env.bucket("photos", &[]).await;
    env.put("photos", "a", b"x").await;
    let r = env.req("DELETE", "/photos").send().await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code().as_deref(), Some("BucketNotEmpty"));
    assert!(env.ledger.read(|s| s.bucket("photos").is_some()));
}

#[tokio::test]
async fn the_coding_header_picks_the_buckets_coding() {
    let env = Env::new();
    env.bucket("small", &[("x-cairn-coding", "2+1")]).await;
    env.put("small", "k", &data(1000)).await;
    let r = env.req("HEAD", "/small/k").send().await;
    assert_eq!(r.header("x-cairn-coding").as_deref(), Some("2+1"));
    assert_eq!(r.header("x-cairn-nodes").as_deref(), Some("3"));
    assert_eq!(r.header("x-cairn-zones").as_deref(), Some("3"));
    let r = env
        .req("PUT", "/huge")
        .header("x-cairn-coding", "10+10")
        .send()
        .await;
    assert_eq!(r.code().as_deref(), Some("InvalidArgument"));
    assert!(env.ledger.read(|s| s.bucket("huge").is_none()));
}
