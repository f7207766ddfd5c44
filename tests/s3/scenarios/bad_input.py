#!/usr/bin/env python3
"""bad_input: hostile or broken requests over raw HTTP (own SigV4 signer). Each must get the
S3 error S3 gives, must not store anything, and must leave the server answering ListBuckets.

Baseline first: the same raw signer must get 200s for well-formed requests, so a rejection
below is the server's judgement and not a signer bug."""

import base64
import datetime
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402
import rawhttp  # noqa: E402

S3 = None  # boto3 client, set in main
BUCKET = None


def sha(data):
    return hashlib.sha256(data).hexdigest()


def b64md5(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def request(method, path, query=(), body=b"", headers=None, payload_hash=None, access=None, secret=None,
            when=None, unsigned_headers=None, send_body=None, half_close=False, timeout=30.0):
    query = list(query)
    signed = rawhttp.sign(method, path, query, headers or {}, payload_hash or sha(body),
                          access or c.ACCESS_KEY, secret or c.SECRET_KEY, c.REGION, c.NETLOC, when=when)
    signed.update(unsigned_headers or {})
    return rawhttp.send(c.HOST, c.PORT, method, rawhttp.target(path, query), signed, body=body,
                        send_body=send_body, half_close=half_close, timeout=timeout)


def expect(resp, status, codes, what):
    c.expect_raw(resp, status, codes, what)
    return resp


def alive(what):
    c.server_alive(S3, what)


def case(fn):
    """Runs one hostile case, timing it, then asserts the server still answers."""
    name = fn.__name__
    t0 = time.monotonic()
    fn()
    alive(name)
    c.log(f"  case {name}: {time.monotonic() - t0:.2f} s")


def obj_path(key):
    return f"/{BUCKET}/{key}"


# ---- baseline ---------------------------------------------------------------------------

def baseline_raw_signer_works():
    r = request("GET", "/")
    expect(r, 200, None, "raw signed ListBuckets")
    c.check(BUCKET.encode() in r.body, "raw ListBuckets does not list the test bucket")
    data = os.urandom(1000)
    expect(request("PUT", obj_path("raw/ok-signed"), body=data), 200, None, "raw PUT, signed payload")
    expect(request("PUT", obj_path("raw/ok-unsigned"), body=data, payload_hash=rawhttp.UNSIGNED), 200, None,
           "raw PUT, UNSIGNED-PAYLOAD")
    expect(request("PUT", obj_path("raw/ok-md5"), body=data, headers={"content-md5": b64md5(data)}), 200, None,
           "raw PUT with a correct Content-MD5")
    for key in ("raw/ok-signed", "raw/ok-unsigned", "raw/ok-md5"):
        got = S3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        c.check(got == data, f"{key}: raw PUT stored different bytes")


# ---- cases ------------------------------------------------------------------------------

def malformed_xml_delete_objects():
    for label, body in (
        ("truncated XML", b"<Delete><Object><Key>raw/ok-signed</Key></Object>"),
        ("not XML", b"this is not xml at all {"),
        ("wrong root", b"<Nope><Object><Key>raw/ok-signed</Key></Object></Nope>"),
    ):
        r = request("POST", f"/{BUCKET}", query=[("delete", "")], body=body,
                    headers={"content-md5": b64md5(body), "content-type": "application/xml"})
        expect(r, 400, "MalformedXML", f"DeleteObjects with {label}")
    # Nothing named in the broken bodies was deleted.
    S3.head_object(Bucket=BUCKET, Key="raw/ok-signed")


def malformed_xml_complete_multipart():
    key = "raw/mp-malformed"
    up = S3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    part = S3.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=1, Body=b"p" * 1000)
    etag = part["ETag"]
    for label, body in (
        ("truncated XML", f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag>"
                          "</Part>".encode()),
        ("not XML", b"\x00\x01garbage"),
    ):
        r = request("POST", obj_path(key), query=[("uploadId", up)], body=body,
                    headers={"content-type": "application/xml"})
        expect(r, 400, "MalformedXML", f"CompleteMultipartUpload with {label}")
    c.object_absent(S3, BUCKET, key, "after malformed CompleteMultipartUpload")
    # The upload survives a malformed completion and can still be completed properly.
    ups = S3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    c.check(any(u["UploadId"] == up for u in ups), "upload vanished after a malformed CompleteMultipartUpload")
    S3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    got = S3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    c.check(got == b"p" * 1000, "object completed after the malformed attempts reads back wrong")


def wrong_secret():
    r = request("GET", "/", secret=c.SECRET_KEY + "x")
    expect(r, 403, "SignatureDoesNotMatch", "ListBuckets signed with a wrong secret")
    r = request("PUT", obj_path("raw/wrong-secret"), body=b"nope", secret="not-the-secret")
    expect(r, 403, "SignatureDoesNotMatch", "PUT signed with a wrong secret")
    c.object_absent(S3, BUCKET, "raw/wrong-secret", "PUT with a wrong secret")


def unknown_access_key():
    r = request("GET", "/", access="AKIACAIRNUNKNOWN0000")
    expect(r, 403, "InvalidAccessKeyId", "ListBuckets with an unknown access key")
    r = request("PUT", obj_path("raw/unknown-key"), body=b"nope", access="AKIACAIRNUNKNOWN0001")
    expect(r, 403, "InvalidAccessKeyId", "PUT with an unknown access key")
    c.object_absent(S3, BUCKET, "raw/unknown-key", "PUT with an unknown access key")


def stale_request_date():
    when = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    r = request("GET", "/", when=when)
    expect(r, 403, ("RequestTimeTooSkewed", "AccessDenied"), "request signed 1 hour ago (replay)")


def garbage_authorization():
    r = rawhttp.send(c.HOST, c.PORT, "GET", "/", {"host": c.NETLOC, "authorization": "AWS4-HMAC-SHA256 garbage",
                                                  "x-amz-date": "20000101T000000Z"})
    c.check(r.status in (400, 403), f"garbage Authorization header: expected 400/403, got {r!r}")
    code, _ = c.parse_error_xml(r.body)
    c.log(f"  ok  garbage Authorization header: HTTP {r.status} {code}")


def expired_presigned_url():
    url = S3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "raw/ok-signed"}, ExpiresIn=1)
    time.sleep(2.0)
    tgt = url[len(c.ENDPOINT):]
    r = rawhttp.send(c.HOST, c.PORT, "GET", tgt, {"host": c.NETLOC})
    expect(r, 403, "AccessDenied", "expired presigned URL")


def key_too_long():
    for label, key, ok in (
        ("1024 ASCII bytes", "k" * 1024, True),
        ("1025 ASCII bytes", "k" * 1025, False),
        ("512 x 'é' = 1024 UTF-8 bytes", "é" * 512, True),
        ("513 x 'é' = 1026 UTF-8 bytes", "é" * 513, False),
        ("4096 bytes", "long/" + "x" * 4091, False),
    ):
        if ok:
            S3.put_object(Bucket=BUCKET, Key=key, Body=b"max-key")
            got = S3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            c.check(got == b"max-key", f"key of {label}: reads back wrong")
            S3.delete_object(Bucket=BUCKET, Key=key)
            c.log(f"  ok  key of {label} accepted")
        else:
            c.expect_client_error(lambda: S3.put_object(Bucket=BUCKET, Key=key, Body=b"x"), 400, "KeyTooLongError",
                                  what=f"PUT key of {label}")
            listed = S3.list_objects_v2(Bucket=BUCKET, Prefix=key[:1000]).get("Contents", [])
            c.check(not any(o["Key"] == key for o in listed), f"key of {label} was stored")
            c.log(f"  ok  key of {label} rejected with KeyTooLongError")


def oversize_headers():
    # One 64 KiB header on an otherwise valid signed request.
    r = request("GET", "/", unsigned_headers={"x-cairn-pad": "a" * (64 * 1024)})
    c.check(r.status in (400, 431), f"64 KiB header: expected 400 or 431, got {r!r}")
    c.log(f"  ok  64 KiB header: HTTP {r.status}")
    alive("64 KiB header")
    # 300 small headers (~30 KiB).
    many = {f"x-cairn-h{i:03}": "v" * 90 for i in range(300)}
    r = request("GET", "/", unsigned_headers=many)
    c.check(r.status in (400, 431), f"300 headers: expected 400 or 431, got {r!r}")
    c.log(f"  ok  300 headers: HTTP {r.status}")
    alive("300 headers")
    # 1 MiB of header: the server may answer 400/431 or simply drop the connection.
    r = request("GET", "/", unsigned_headers={"x-cairn-pad": "b" * (1024 * 1024)})
    c.check(r.status in (0, 400, 431), f"1 MiB header: expected 400/431 or a closed connection, got {r!r}")
    c.log(f"  ok  1 MiB header: {'connection closed' if r.status == 0 else f'HTTP {r.status}'}")


def truncated_body():
    full = os.urandom(1000)
    for label, key, payload_hash in (
        ("UNSIGNED-PAYLOAD", "raw/truncated-unsigned", rawhttp.UNSIGNED),
        ("signed payload", "raw/truncated-signed", sha(full)),
    ):
        t0 = time.monotonic()
        r = request("PUT", obj_path(key), body=full, payload_hash=payload_hash, send_body=full[:500],
                    half_close=True, timeout=20.0)
        c.log(f"  truncated body ({label}): server answered {r.status or 'nothing'} "
              f"after {time.monotonic() - t0:.2f} s")
        c.check(r.status != 200, f"truncated body ({label}) was acknowledged with 200")
        c.object_absent(S3, BUCKET, key, f"truncated body ({label})")
    time.sleep(3.0)  # nothing may appear late either
    for key in ("raw/truncated-unsigned", "raw/truncated-signed"):
        c.object_absent(S3, BUCKET, key, "truncated body, 3 s later")


def content_md5_mismatch():
    data = os.urandom(2048)
    r = request("PUT", obj_path("raw/bad-md5"), body=data, headers={"content-md5": b64md5(data + b"!")})
    expect(r, 400, "BadDigest", "Content-MD5 of other bytes")
    c.object_absent(S3, BUCKET, "raw/bad-md5", "Content-MD5 mismatch")
    r = request("PUT", obj_path("raw/invalid-md5"), body=data, headers={"content-md5": "not-base64-md5!!"})
    expect(r, 400, "InvalidDigest", "Content-MD5 that is not a base64 MD5")
    c.object_absent(S3, BUCKET, "raw/invalid-md5", "invalid Content-MD5")


def content_sha256_mismatch():
    data = os.urandom(2048)
    r = request("PUT", obj_path("raw/bad-sha"), body=data, payload_hash=sha(data + b"!"))
    expect(r, 400, ("XAmzContentSHA256Mismatch", "BadDigest"), "x-amz-content-sha256 of other bytes")
    c.object_absent(S3, BUCKET, "raw/bad-sha", "x-amz-content-sha256 mismatch")
    # Declared Content-Length shorter than the signed body: the server reads 1000 of 2048 bytes,
    # whose hash cannot match the signed one.
    r = request("PUT", obj_path("raw/short-length"), body=data, headers={"content-length": "1000"})
    expect(r, (400, 403), ("XAmzContentSHA256Mismatch", "BadDigest", "SignatureDoesNotMatch", "IncompleteBody"),
           "Content-Length shorter than the signed body")
    c.object_absent(S3, BUCKET, "raw/short-length", "short Content-Length")


def no_such_bucket():
    r = request("GET", "/cairn-no-such-bucket-0000/key")
    expect(r, 404, "NoSuchBucket", "GET in a bucket that does not exist")
    r = request("PUT", "/Invalid_Bucket_Name")
    expect(r, 400, "InvalidBucketName", "CreateBucket with an invalid name")


def not_http():
    r = rawhttp.send_bytes(c.HOST, c.PORT, b"HELLO THERE\r\n\r\n")
    c.check(r.status in (0, 400), f"garbage request line: expected 400 or a closed connection, got {r!r}")
    c.log(f"  ok  garbage request line: {'connection closed' if r.status == 0 else f'HTTP {r.status}'}")
    r = rawhttp.send_bytes(c.HOST, c.PORT, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))
    c.check(r.status in (0, 400), f"TLS hello on the plain port: expected 400 or close, got {r!r}")
    c.log(f"  ok  TLS hello on the plain port: {'connection closed' if r.status == 0 else f'HTTP {r.status}'}")


def main():
    global S3, BUCKET
    S3 = c.client()
    BUCKET = c.fresh_bucket(S3, "bad")
    case(baseline_raw_signer_works)
    for fn in (
        malformed_xml_delete_objects,
        malformed_xml_complete_multipart,
        wrong_secret,
        unknown_access_key,
        stale_request_date,
        garbage_authorization,
        expired_presigned_url,
        key_too_long,
        oversize_headers,
        truncated_body,
        content_md5_mismatch,
        content_sha256_mismatch,
        no_such_bucket,
        not_http,
    ):
        case(fn)
    c.empty_bucket(S3, BUCKET)


if __name__ == "__main__":
    c.run("bad_input", main)
