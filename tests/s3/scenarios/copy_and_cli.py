#!/usr/bin/env python3
"""copy_and_cli: CopyObject (metadata COPY and REPLACE, across buckets with different
erasure codings, error cases) and the `cairn put/get/ls/rm/mb` commands.

Needs CAIRN_BIN and CAIRN_DEVNET_DIR (set by tests/s3/run)."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402


def coded_bucket(s3, tag, coding):
    """A fresh bucket created with `x-cairn-coding: coding`."""
    name = c.bucket_name(tag)

    def add_header(request, **_):
        request.headers["x-cairn-coding"] = coding

    s3.meta.events.register("before-sign.s3.CreateBucket", add_header)
    try:
        s3.create_bucket(Bucket=name)
    finally:
        s3.meta.events.unregister("before-sign.s3.CreateBucket", add_header)
    return name


def copies(s3):
    src = c.fresh_bucket(s3, "copy-src")
    data = os.urandom(3 * c.MIB + 7)
    s3.put_object(Bucket=src, Key="a/orig", Body=data, ContentType="text/x-orig",
                  Metadata={"colour": "blue"})
    etag = c.md5_hex(data)

    # Same bucket, metadata copied.
    with c.timed("CopyObject same bucket (COPY)"):
        r = s3.copy_object(Bucket=src, Key="a/copy", CopySource={"Bucket": src, "Key": "a/orig"})
    c.check_eq(c.unquote_etag(r["CopyObjectResult"]["ETag"]), etag, "CopyObject result ETag")
    got = s3.get_object(Bucket=src, Key="a/copy")
    c.check(got["Body"].read() == data, "copied bytes differ")
    c.check_eq(got["Metadata"], {"colour": "blue"}, "copied metadata (COPY)")
    c.check_eq(got["ContentType"], "text/x-orig", "copied content type (COPY)")

    # Metadata replaced.
    s3.copy_object(Bucket=src, Key="a/replaced", CopySource={"Bucket": src, "Key": "a/orig"},
                   MetadataDirective="REPLACE", Metadata={"colour": "red"}, ContentType="text/x-new")
    head = s3.head_object(Bucket=src, Key="a/replaced")
    c.check_eq(head["Metadata"], {"colour": "red"}, "copied metadata (REPLACE)")
    c.check_eq(head["ContentType"], "text/x-new", "copied content type (REPLACE)")

    # Into a bucket with another coding: the data is re-encoded, bytes and ETag unchanged.
    dst = coded_bucket(s3, "copy-dst", "2+4")
    with c.timed("CopyObject into an RS(2, 4) bucket (re-encoded)"):
        s3.copy_object(Bucket=dst, Key="b/moved", CopySource={"Bucket": src, "Key": "a/orig"})
    got = s3.get_object(Bucket=dst, Key="b/moved")
    c.check(got["Body"].read() == data, "bytes copied across codings differ")
    c.check_eq(c.unquote_etag(got["ETag"]), etag, "ETag copied across codings")

    # Errors: missing source, copy onto itself without REPLACE, bad coding header.
    c.expect_client_error(
        lambda: s3.copy_object(Bucket=src, Key="x", CopySource={"Bucket": src, "Key": "missing"}),
        404, ("NoSuchKey",), what="CopyObject from a missing key")
    c.expect_client_error(
        lambda: s3.copy_object(Bucket=src, Key="a/orig", CopySource={"Bucket": src, "Key": "a/orig"}),
        400, ("InvalidRequest",), what="CopyObject onto itself without REPLACE")
    c.expect_client_error(lambda: coded_bucket(s3, "bad-coding", "four+eight"), 400,
                          ("InvalidArgument",), what="CreateBucket with a malformed x-cairn-coding")
    c.empty_bucket(s3, dst)
    c.empty_bucket(s3, src)


def cairn(*args, check=True):
    env = dict(os.environ)
    p = subprocess.run([c.env("CAIRN_BIN"), *args], capture_output=True, text=True, timeout=120,
                       env=env, stdin=subprocess.DEVNULL)
    if check:
        c.check(p.returncode == 0, f"cairn {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def cli(s3):
    bucket = c.bucket_name("cli")
    cairn("mb", f"s3://{bucket}")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.bin")
        data = os.urandom(9 * c.MIB + 3)  # above the progress-bar threshold
        with open(src, "wb") as f:
            f.write(data)
        with c.timed("cairn put 9 MiB"):
            out = cairn("put", src, f"s3://{bucket}/dir/").stdout
        c.check(f"s3://{bucket}/dir/big.bin" in out, f"cairn put output: {out!r}")
        c.check_eq(c.unquote_etag(s3.head_object(Bucket=bucket, Key="dir/big.bin")["ETag"]),
                   c.md5_hex(data), "ETag of the object cairn put wrote")
        listing = cairn("ls", f"s3://{bucket}/dir/").stdout
        c.check("dir/big.bin" in listing and str(len(data)) in listing, f"cairn ls output: {listing!r}")
        c.check(f"s3://{bucket}" in cairn("ls").stdout, "cairn ls lists the bucket")
        dst = os.path.join(tmp, "back.bin")
        with c.timed("cairn get 9 MiB"):
            cairn("get", f"s3://{bucket}/dir/big.bin", dst)
        with open(dst, "rb") as f:
            c.check(f.read() == data, "cairn get wrote different bytes")
        cairn("rm", f"s3://{bucket}/dir/big.bin")
        missing = os.path.join(tmp, "missing.bin")
        p = cairn("get", f"s3://{bucket}/dir/big.bin", missing, check=False)
        c.check(p.returncode != 0 and "does not exist" in p.stderr, f"cairn get of a deleted key: {p.stderr!r}")
        c.check(not os.path.exists(missing), "a failed cairn get left a file behind")
        # Keys that need percent-encoding must sign the way the gateway verifies them.
        odd = "dir/a b+c=d&ü~(1).txt"
        small = os.path.join(tmp, "small.txt")
        with open(small, "wb") as f:
            f.write(b"odd key\n")
        cairn("put", small, f"s3://{bucket}/{odd}")
        c.check_eq(s3.get_object(Bucket=bucket, Key=odd)["Body"].read(), b"odd key\n",
                   "the object cairn put under a key that needs encoding")
        c.check(odd in cairn("ls", f"s3://{bucket}/dir/").stdout, "cairn ls shows the encoded key")
        back = os.path.join(tmp, "odd.txt")
        cairn("get", f"s3://{bucket}/{odd}", back)
        with open(back, "rb") as f:
            c.check(f.read() == b"odd key\n", "cairn get of a key that needs encoding")
    c.empty_bucket(s3, bucket)


def main():
    s3 = c.client()
    copies(s3)
    cli(s3)


if __name__ == "__main__":
    c.run("copy_and_cli", main)
