#!/usr/bin/env python3
"""presigned: SigV4 query-string URLs made by boto3 and fetched with urllib: a valid GET,
a valid PUT, an expired URL (403 AccessDenied) and a tampered signature (403
SignatureDoesNotMatch)."""

import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402


def fetch(url, method="GET", data=None, headers=None):
    """Returns (status, body bytes) for any HTTP status."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def tamper(url):
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    out = []
    for k, v in query:
        if k == "X-Amz-Signature":
            v = v[:-1] + ("0" if v[-1] != "0" else "1")
        out.append((k, v))
    return urlunsplit(parts._replace(query=urlencode(out)))


def main():
    s3 = c.client()
    bucket = c.fresh_bucket(s3, "presign")
    key = "presigned/object.bin"
    data = os.urandom(64 * c.KIB + 3)
    s3.put_object(Bucket=bucket, Key=key, Body=data)

    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    c.check("X-Amz-Signature=" in url and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url, f"not a SigV4 URL: {url}")
    with c.timed("presigned GET"):
        status, body = fetch(url)
    c.check_eq(status, 200, "presigned GET status")
    c.check(body == data, f"presigned GET returned {len(body)} bytes that differ from the {len(data)} stored")

    # Same URL, a byte range (Range is not signed into query URLs, so it may be added).
    status, body = fetch(url, headers={"Range": "bytes=10-19"})
    c.check_eq(status, 206, "presigned ranged GET status")
    c.check(body == data[10:20], "presigned ranged GET bytes")

    # Presigned HEAD.
    head_url = s3.generate_presigned_url("head_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    status, _ = fetch(head_url, method="HEAD")
    c.check_eq(status, 200, "presigned HEAD status")

    # Presigned PUT, then read back with the SDK.
    put_key = "presigned/put.bin"
    put_data = os.urandom(10 * c.KIB)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": put_key}, ExpiresIn=60)
    # (urllib would default to a form Content-Type; Content-Type is not signed into the URL.)
    status, body = fetch(put_url, method="PUT", data=put_data, headers={"Content-Type": "application/octet-stream"})
    c.check_eq(status, 200, f"presigned PUT status (body {body[:300]!r})")
    got = s3.get_object(Bucket=bucket, Key=put_key)["Body"].read()
    c.check(got == put_data, "object written by presigned PUT reads back different")

    # Tampered signature.
    status, body = fetch(tamper(url))
    c.check_eq(status, 403, "tampered presigned URL status")
    code, msg = c.parse_error_xml(body)
    c.check_eq(code, "SignatureDoesNotMatch", "tampered presigned URL error code")

    # Tampered key: a valid signature for another object must not open this one.
    other = url.replace("/presigned/object.bin", "/presigned/put.bin")
    c.check(other != url, "could not rewrite the URL path")
    status, body = fetch(other)
    c.check_eq(status, 403, "presigned URL with a swapped key: status")
    c.check_eq(c.parse_error_xml(body)[0], "SignatureDoesNotMatch", "presigned URL with a swapped key: code")

    # Expired: ExpiresIn=1, fetched 2 s later.
    short_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=1)
    time.sleep(2.0)
    with c.timed("expired presigned GET"):
        status, body = fetch(short_url)
    c.check_eq(status, 403, "expired presigned URL status")
    code, msg = c.parse_error_xml(body)
    c.log(f"  expired URL answered {status} {code}: {msg}")
    c.check_eq(code, "AccessDenied", "expired presigned URL error code")

    # A PUT through an expired URL must not write.
    short_put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned/late.bin"},
                                          ExpiresIn=1)
    time.sleep(2.0)
    status, body = fetch(short_put, method="PUT", data=b"too late", headers={"Content-Type": "text/plain"})
    c.check_eq(status, 403, "expired presigned PUT status")
    c.object_absent(s3, bucket, "presigned/late.bin", "expired presigned PUT")

    # No signature at all on a private object.
    status, body = fetch(f"{c.ENDPOINT}/{bucket}/{key}")
    c.check_eq(status, 403, "anonymous GET status")
    c.check_eq(c.parse_error_xml(body)[0], "AccessDenied", "anonymous GET error code")

    c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("presigned", main)
