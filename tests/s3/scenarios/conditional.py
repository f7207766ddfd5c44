#!/usr/bin/env python3
"""conditional: racing `If-None-Match: *` PUTs have exactly one winner; conditional GET/HEAD
(If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since) answer 304/412 as S3 does;
user metadata and Content-Type round-trip through HEAD and GET."""

import datetime
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

ROUNDS = int(os.environ.get("CAIRN_S3_RACE_ROUNDS", "20"))


def race_round(clients, bucket, key, rnd):
    bodies = [f"round {rnd} writer {i} ".encode() + os.urandom(32 * c.KIB) for i in range(2)]
    barrier = threading.Barrier(2)
    results = [None, None]

    def writer(i):
        barrier.wait()
        t0 = time.monotonic()
        try:
            r = clients[i].put_object(Bucket=bucket, Key=key, Body=bodies[i], IfNoneMatch="*")
            results[i] = ("ok", c.unquote_etag(r["ETag"]), time.monotonic() - t0)
        except ClientError as e:
            results[i] = ("err", (c.status_of(e), c.code_of(e)), time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            results[i] = ("exc", repr(e), time.monotonic() - t0)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    c.check(all(r is not None for r in results), f"round {rnd}: a writer did not finish: {results}")
    winners = [i for i, r in enumerate(results) if r[0] == "ok"]
    losers = [i for i, r in enumerate(results) if r[0] != "ok"]
    c.check_eq(len(winners), 1, f"round {rnd}: number of successful If-None-Match PUTs ({results})")
    loser = results[losers[0]]
    c.check(loser[0] == "err" and loser[1] == (412, "PreconditionFailed"),
            f"round {rnd}: losing PUT must be 412 PreconditionFailed, got {loser}")
    w = winners[0]
    c.check_eq(results[w][1], c.md5_hex(bodies[w]), f"round {rnd}: winner ETag")
    got = clients[0].get_object(Bucket=bucket, Key=key)["Body"].read()
    c.check(got == bodies[w], f"round {rnd}: GET does not return the winner's bytes "
                              f"(writer {w}); got {got[:24]!r}")
    return max(results[0][2], results[1][2])


def races(bucket):
    clients = [c.client(), c.client()]
    times = []
    with c.timed(f"{ROUNDS} If-None-Match races"):
        for rnd in range(ROUNDS):
            times.append(race_round(clients, bucket, f"race/{rnd:03}", rnd))
    times.sort()
    c.log(f"  race round latency: median {times[len(times) // 2]:.3f} s, max {times[-1]:.3f} s")
    # A later If-None-Match PUT on an existing key fails too, and leaves the object alone.
    before = clients[0].get_object(Bucket=bucket, Key="race/000")["Body"].read()
    c.expect_client_error(
        lambda: clients[0].put_object(Bucket=bucket, Key="race/000", Body=b"late", IfNoneMatch="*"),
        412, "PreconditionFailed", what="If-None-Match PUT on an existing key")
    after = clients[0].get_object(Bucket=bucket, Key="race/000")["Body"].read()
    c.check(after == before, "failed If-None-Match PUT changed the object")


def conditional_reads(s3, bucket):
    key = "cond/read.txt"
    data = os.urandom(4096)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    head = s3.head_object(Bucket=bucket, Key=key)
    etag = head["ETag"]  # quoted, as sent on the wire
    lm = head["LastModified"]
    c.check_eq(c.unquote_etag(etag), c.md5_hex(data), "single-PUT ETag is the MD5")
    day = datetime.timedelta(days=1)
    c.log(f"  object ETag {etag} LastModified {lm.isoformat()}")

    def get(**kw):
        return s3.get_object(Bucket=bucket, Key=key, **kw)

    def ok(what, **kw):
        try:
            r = get(**kw)
        except ClientError as e:
            raise c.CheckFailed(f"{what}: expected 200, got HTTP {c.status_of(e)} {c.code_of(e)}")
        c.check_eq(r["ResponseMetadata"]["HTTPStatusCode"], 200, what)
        c.check(r["Body"].read() == data, f"{what}: body")

    ok("GET If-Match: <etag>", IfMatch=etag)
    c.expect_client_error(lambda: get(IfMatch='"0123456789abcdef0123456789abcdef"'), 412, "PreconditionFailed",
                          what="GET If-Match: <other etag>")
    c.expect_client_error(lambda: get(IfNoneMatch=etag), 304, what="GET If-None-Match: <etag>")
    ok("GET If-None-Match: <other etag>", IfNoneMatch='"0123456789abcdef0123456789abcdef"')
    c.expect_client_error(lambda: get(IfModifiedSince=lm), 304, what="GET If-Modified-Since: <Last-Modified>")
    ok("GET If-Modified-Since: <Last-Modified - 1 day>", IfModifiedSince=lm - day)
    c.expect_client_error(lambda: get(IfUnmodifiedSince=lm - day), 412, "PreconditionFailed",
                          what="GET If-Unmodified-Since: <Last-Modified - 1 day>")
    ok("GET If-Unmodified-Since: <Last-Modified>", IfUnmodifiedSince=lm)
    # S3's documented precedence: If-Match true + If-Unmodified-Since false -> 200;
    # If-None-Match false + If-Modified-Since true -> 304.
    ok("GET If-Match true + If-Unmodified-Since false", IfMatch=etag, IfUnmodifiedSince=lm - day)
    c.expect_client_error(lambda: get(IfNoneMatch=etag, IfModifiedSince=lm - day), 304,
                          what="GET If-None-Match false + If-Modified-Since true")

    # HEAD answers the same way (no body, so only the status is checked).
    c.expect_client_error(lambda: s3.head_object(Bucket=bucket, Key=key, IfNoneMatch=etag), 304,
                          what="HEAD If-None-Match: <etag>")
    c.expect_client_error(lambda: s3.head_object(Bucket=bucket, Key=key, IfMatch='"00"'), 412,
                          what="HEAD If-Match: <other etag>")
    r = s3.head_object(Bucket=bucket, Key=key, IfMatch=etag)
    c.check_eq(r["ResponseMetadata"]["HTTPStatusCode"], 200, "HEAD If-Match: <etag>")

    # Conditional GET of a missing key is still 404, not 412/304.
    c.expect_client_error(lambda: s3.get_object(Bucket=bucket, Key="cond/missing", IfMatch=etag), 404,
                          "NoSuchKey", what="GET If-Match on a missing key")


def metadata(s3, bucket):
    key = "meta/object.json"
    meta = {"color": "blue", "run-id": "cairn-0042", "empty-ish": "x y z"}
    data = b'{"hello": "cairn"}'
    s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=meta, ContentType="application/json; charset=utf-8")
    head = s3.head_object(Bucket=bucket, Key=key)
    c.check_eq(head.get("Metadata"), meta, "HEAD user metadata (x-amz-meta-*)")
    c.check_eq(head.get("ContentType"), "application/json; charset=utf-8", "HEAD Content-Type")
    c.check_eq(head.get("ContentLength"), len(data), "HEAD Content-Length")
    c.check_eq(c.unquote_etag(head.get("ETag")), c.md5_hex(data), "HEAD ETag")
    c.check(head.get("LastModified") is not None, "HEAD has no Last-Modified")
    got = s3.get_object(Bucket=bucket, Key=key)
    c.check_eq(got.get("Metadata"), meta, "GET user metadata")
    c.check_eq(got.get("ContentType"), "application/json; charset=utf-8", "GET Content-Type")
    c.check(got["Body"].read() == data, "GET body")
    # An overwrite replaces the metadata entirely.
    s3.put_object(Bucket=bucket, Key=key, Body=b"v2", Metadata={"color": "red"})
    head = s3.head_object(Bucket=bucket, Key=key)
    c.check_eq(head.get("Metadata"), {"color": "red"}, "metadata after overwrite")
    c.check_eq(head.get("ContentLength"), 2, "length after overwrite")


def main():
    s3 = c.client()
    bucket = c.fresh_bucket(s3, "cond")
    races(bucket)
    conditional_reads(s3, bucket)
    metadata(s3, bucket)
    c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("conditional", main)
