#!/usr/bin/env python3
"""listing: 1,000 keys written concurrently, then delimiter listing, v2 pagination with
continuation tokens, v1 pagination with markers, StartAfter, `aws s3 ls`, and DeleteObjects."""

import concurrent.futures as cf
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402

N = 1000
DIRS = 10
KEYS = [f"dir{i % DIRS}/file{i:04}" for i in range(N)]
EXPECTED = sorted(KEYS)


def put_all(s3, bucket):
    def put(key):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(put, k) for k in KEYS]
        errors = []
        for f in cf.as_completed(futures):
            if f.exception() is not None:
                errors.append(f.exception())
    dt = time.monotonic() - t0
    c.log(f"  time put {N} keys with 16 threads: {dt:.3f} s ({N / dt:.1f} PUT/s)")
    c.check(not errors, f"{len(errors)} of {N} concurrent PUTs failed, first: {errors[:1]}")


def list_v2_all(s3, bucket, max_keys, prefix=None):
    """Pages through ListObjectsV2 by hand, checking each page. Returns (keys, pages)."""
    keys, pages, token = [], 0, None
    while True:
        kw = {"Bucket": bucket, "MaxKeys": max_keys}
        if prefix is not None:
            kw["Prefix"] = prefix
        if token is not None:
            kw["ContinuationToken"] = token
        page = s3.list_objects_v2(**kw)
        pages += 1
        c.check(pages <= N // max_keys + 2, f"ListObjectsV2 did not terminate after {pages} pages")
        got = [o["Key"] for o in page.get("Contents", [])]
        c.check(len(got) <= max_keys, f"page {pages} has {len(got)} keys > MaxKeys {max_keys}")
        c.check_eq(page.get("KeyCount"), len(got), f"KeyCount of page {pages}")
        if token is not None:
            c.check_eq(page.get("ContinuationToken"), token, f"echoed ContinuationToken of page {pages}")
        keys.extend(got)
        if not page.get("IsTruncated"):
            c.check("NextContinuationToken" not in page, f"last page {pages} carries a NextContinuationToken")
            return keys, pages
        c.check_eq(len(got), max_keys, f"truncated page {pages} must be full")
        token = page.get("NextContinuationToken")
        c.check(bool(token), f"truncated page {pages} has no NextContinuationToken")


def list_v1_all(s3, bucket, max_keys, prefix=None):
    keys, pages, marker = [], 0, None
    while True:
        kw = {"Bucket": bucket, "MaxKeys": max_keys}
        if prefix is not None:
            kw["Prefix"] = prefix
        if marker is not None:
            kw["Marker"] = marker
        page = s3.list_objects(**kw)
        pages += 1
        c.check(pages <= N // max_keys + 2, f"ListObjects (v1) did not terminate after {pages} pages")
        got = [o["Key"] for o in page.get("Contents", [])]
        c.check(len(got) <= max_keys, f"v1 page {pages} has {len(got)} keys > MaxKeys {max_keys}")
        if marker is not None:
            c.check_eq(page.get("Marker"), marker, f"echoed Marker of v1 page {pages}")
        keys.extend(got)
        if not page.get("IsTruncated"):
            return keys, pages
        c.check_eq(len(got), max_keys, f"truncated v1 page {pages} must be full")
        # Without a delimiter S3 may omit NextMarker; the last key is the next marker.
        marker = page.get("NextMarker") or got[-1]


def check_keys(keys, expected, what):
    c.check_eq(len(keys), len(expected), f"{what}: number of keys")
    c.check_eq(len(set(keys)), len(expected), f"{what}: number of unique keys")
    c.check(keys == sorted(keys), f"{what}: keys not in ascending order")
    c.check(keys == expected, f"{what}: key set differs; missing {sorted(set(expected) - set(keys))[:5]}, "
                              f"extra {sorted(set(keys) - set(expected))[:5]}")


def main():
    s3 = c.client(pool=20)
    bucket = c.fresh_bucket(s3, "list")
    put_all(s3, bucket)

    with c.timed("delimiter listing"):
        top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    prefixes = [p["Prefix"] for p in top.get("CommonPrefixes", [])]
    c.check_eq(prefixes, [f"dir{d}/" for d in range(DIRS)], "CommonPrefixes with Delimiter='/'")
    c.check_eq(top.get("Contents", []), [], "Contents at the top level with Delimiter='/'")
    c.check_eq(top.get("KeyCount"), DIRS, "KeyCount counts common prefixes")
    c.check(not top.get("IsTruncated"), "delimiter listing is truncated")

    sub = s3.list_objects_v2(Bucket=bucket, Prefix="dir3/", Delimiter="/")
    c.check_eq(sub.get("CommonPrefixes", []), [], "CommonPrefixes under dir3/")
    check_keys([o["Key"] for o in sub.get("Contents", [])], [k for k in EXPECTED if k.startswith("dir3/")],
               "dir3/ with Delimiter")

    with c.timed("ListObjectsV2 whole bucket, MaxKeys=100"):
        keys, pages = list_v2_all(s3, bucket, 100)
    check_keys(keys, EXPECTED, "ListObjectsV2 whole bucket")
    c.check_eq(pages, 10, "ListObjectsV2 pages for 1000 keys at MaxKeys=100")

    keys, pages = list_v2_all(s3, bucket, 100, prefix="dir7/")
    check_keys(keys, [k for k in EXPECTED if k.startswith("dir7/")], "ListObjectsV2 prefix dir7/ MaxKeys=100")
    keys, pages = list_v2_all(s3, bucket, 30, prefix="dir7/")
    check_keys(keys, [k for k in EXPECTED if k.startswith("dir7/")], "ListObjectsV2 prefix dir7/ MaxKeys=30")
    c.check_eq(pages, 4, "ListObjectsV2 pages for 100 keys at MaxKeys=30")

    after = s3.list_objects_v2(Bucket=bucket, StartAfter=EXPECTED[499], MaxKeys=5)
    c.check_eq([o["Key"] for o in after.get("Contents", [])], EXPECTED[500:505], "StartAfter")

    with c.timed("ListObjects (v1) whole bucket, MaxKeys=100"):
        keys, pages = list_v1_all(s3, bucket, 100)
    check_keys(keys, EXPECTED, "ListObjects v1 whole bucket")
    c.check_eq(pages, 10, "ListObjects v1 pages for 1000 keys at MaxKeys=100")
    keys, _ = list_v1_all(s3, bucket, 30, prefix="dir0/")
    check_keys(keys, [k for k in EXPECTED if k.startswith("dir0/")], "ListObjects v1 prefix dir0/ MaxKeys=30")

    # The paginator that real applications use.
    paged = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 250}):
        paged.extend(o["Key"] for o in page.get("Contents", []))
    check_keys(paged, EXPECTED, "boto3 paginator PageSize=250")

    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    aws = aws if os.path.exists(aws) else "aws"
    with c.timed("aws s3 ls --recursive"):
        out = subprocess.run([aws, "--endpoint-url", c.ENDPOINT, "s3", "ls", "--recursive", f"s3://{bucket}/"],
                             capture_output=True, text=True, timeout=120)
    c.check(out.returncode == 0, f"aws s3 ls --recursive exit {out.returncode}: {out.stderr[-500:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    c.check_eq(len(lines), N, "aws s3 ls --recursive line count")
    c.check_eq(sorted(ln.split()[-1] for ln in lines), EXPECTED, "aws s3 ls --recursive keys")
    out = subprocess.run([aws, "--endpoint-url", c.ENDPOINT, "s3", "ls", f"s3://{bucket}/"],
                         capture_output=True, text=True, timeout=60)
    c.check(out.returncode == 0, f"aws s3 ls exit {out.returncode}: {out.stderr[-500:]}")
    pre = sorted(ln.split()[-1] for ln in out.stdout.splitlines() if ln.strip().startswith("PRE "))
    c.check_eq(pre, [f"dir{d}/" for d in range(DIRS)], "aws s3 ls PRE lines")

    # DeleteObjects with the full 1,000 keys, then the bucket lists empty and can be deleted.
    with c.timed("DeleteObjects 1000 keys"):
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in KEYS]})
    c.check_eq(resp.get("Errors", []), [], "DeleteObjects errors")
    c.check_eq(len(resp.get("Deleted", [])), N, "DeleteObjects deleted count")
    left = s3.list_objects_v2(Bucket=bucket)
    c.check_eq(left.get("KeyCount"), 0, "KeyCount after deleting everything")
    c.expect_client_error(lambda: s3.head_object(Bucket=bucket, Key=KEYS[0]), 404, what="HEAD after DeleteObjects")
    s3.delete_bucket(Bucket=bucket)
    c.expect_client_error(lambda: s3.list_objects_v2(Bucket=bucket), 404, "NoSuchBucket",
                          what="listing a deleted bucket")


if __name__ == "__main__":
    c.run("listing", main)
