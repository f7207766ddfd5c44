#!/usr/bin/env python3
"""streaming: request shapes that SDKs send but that a plain signed PUT does not exercise,
over raw HTTP with our own SigV4 signer (lib/rawhttp.py):

1. SigV4 streaming uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, `aws-chunked` body, one
   signature per chunk chained from the request's seed signature): the decoded bytes must be
   stored and the ETag must be their MD5; a chunk with a wrong signature must be refused with
   403 SignatureDoesNotMatch and must store nothing (nor replace an existing object).
2. Unsigned streaming with a trailing checksum (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`,
   `x-amz-trailer: x-amz-checksum-crc32`): round-trips, unless the server answers
   501 NotImplemented, which is reported and tolerated. What a trailer with a wrong checksum
   gets is printed (S3 says 400 BadDigest) but not asserted.
3. Virtual-host-style addressing (`Host: <bucket>.s3.localhost:PORT`, path `/<key>`, the
   Host header being the signed canonical host): PUT, GET, HEAD and ListObjectsV2, checked
   against path-style reads of the same objects."""

import base64
import hashlib
import hmac
import os
import sys
import time
import xml.etree.ElementTree as ET
import zlib

import botocore.exceptions
from urllib.parse import quote

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402
import rawhttp  # noqa: E402

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
VHOST_DOMAIN = os.environ.get("CAIRN_S3_VHOST_DOMAIN", "s3.localhost")
CHUNK = 64 * c.KIB

S3 = None  # boto3 client (path-style), set in main
BUCKET = None


# ---- helpers ----------------------------------------------------------------------------

def sha(data):
    return hashlib.sha256(data).hexdigest()


def key_path(key):
    """The URI path of a key, percent-encoded once (as SDKs send it; '/' kept)."""
    return "/" + quote(key, safe="/-_.~")


def signing_key(day):
    k = hmac.new(("AWS4" + c.SECRET_KEY).encode(), day.encode(), hashlib.sha256).digest()
    for part in (c.REGION, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def seed_of(signed_headers):
    """(amz_date, scope, seed signature) of a request signed by rawhttp.sign."""
    auth = signed_headers["authorization"]
    seed = auth.rsplit("Signature=", 1)[1].strip()
    amz_date = signed_headers["x-amz-date"]
    scope = f"{amz_date[:8]}/{c.REGION}/s3/aws4_request"
    return amz_date, scope, seed


def chunk_signature(key, amz_date, scope, previous, data):
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY_SHA256, sha(data)])
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def split_chunks(data, size):
    """Data chunks of `size` bytes (the last one shorter), then the final empty chunk."""
    return [data[i : i + size] for i in range(0, len(data), size)] + [b""]


def signed_chunked_length(chunks):
    # "<hex size>;chunk-signature=<64 hex>\r\n<data>\r\n" per chunk, the final one included.
    return sum(len(f"{len(ch):x};chunk-signature=") + 64 + 2 + len(ch) + 2 for ch in chunks)


def flip(sig):
    return sig[:-1] + ("0" if sig[-1] != "0" else "1")


def streaming_put(path, data, host=None, chunk_size=CHUNK, corrupt_chunk=None, extra_headers=None):
    """A SigV4 streaming PUT (signed chunks) of `data` to `path`; returns the Response.

    corrupt_chunk: index (into the chunk list, the final empty chunk included) whose
    chunk-signature is sent with its last hex digit changed. Later signatures chain from the
    correct value, as a client that miscomputed only that one chunk would send them."""
    host = host or c.NETLOC
    chunks = split_chunks(data, chunk_size)
    headers = {
        "content-encoding": "aws-chunked",
        "content-length": str(signed_chunked_length(chunks)),
        "x-amz-decoded-content-length": str(len(data)),
        "content-type": "application/octet-stream",
    }
    headers.update(extra_headers or {})
    signed = rawhttp.sign("PUT", path, [], headers, STREAMING_SIGNED, c.ACCESS_KEY, c.SECRET_KEY, c.REGION, host)
    amz_date, scope, previous = seed_of(signed)
    key = signing_key(amz_date[:8])
    body = bytearray()
    for i, ch in enumerate(chunks):
        sig = chunk_signature(key, amz_date, scope, previous, ch)
        previous = sig
        sent = flip(sig) if i == corrupt_chunk else sig
        body += f"{len(ch):x};chunk-signature={sent}\r\n".encode() + ch + b"\r\n"
    c.check_eq(len(body), int(headers["content-length"]), "encoded body length (test self-check)")
    return rawhttp.send(c.HOST, c.PORT, "PUT", path, signed, body=bytes(body), timeout=60.0)


def crc32_b64(data):
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def trailer_put(path, data, crc_b64, chunk_size=CHUNK):
    """An unsigned streaming PUT with an x-amz-checksum-crc32 trailer; returns the Response."""
    body = bytearray()
    for ch in split_chunks(data, chunk_size)[:-1]:
        body += f"{len(ch):x}\r\n".encode() + ch + b"\r\n"
    body += f"0\r\nx-amz-checksum-crc32:{crc_b64}\r\n\r\n".encode()
    headers = {
        "content-encoding": "aws-chunked",
        "content-length": str(len(body)),
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "content-type": "application/octet-stream",
    }
    signed = rawhttp.sign("PUT", path, [], headers, STREAMING_UNSIGNED_TRAILER, c.ACCESS_KEY, c.SECRET_KEY,
                          c.REGION, c.NETLOC)
    return rawhttp.send(c.HOST, c.PORT, "PUT", path, signed, body=bytes(body), timeout=60.0)


def request(method, path, query=(), body=b"", host=None, headers=None, payload_hash=None, send_host=None):
    """A signed request. host: the Host header (and canonical host); send_host: a different Host
    header to send than the signed one (to prove the server canonicalises the received one)."""
    query = list(query)
    signed = rawhttp.sign(method, path, query, headers or {}, payload_hash or sha(body), c.ACCESS_KEY,
                          c.SECRET_KEY, c.REGION, host or c.NETLOC)
    if send_host:
        signed["host"] = send_host
    return rawhttp.send(c.HOST, c.PORT, method, rawhttp.target(path, query), signed, body=body, timeout=60.0)


def expect_ok(resp, what, status=200):
    c.check(resp.status == status, f"{what}: expected HTTP {status}, got {resp!r}")


def expect_error(resp, status, codes, what):
    return c.expect_raw(resp, status, codes, what)


def get_boto(key):
    resp = S3.get_object(Bucket=BUCKET, Key=key)
    return resp["Body"].read(), c.unquote_etag(resp["ETag"]), resp["ContentLength"]


def check_stored(key, data, what, put_resp=None):
    """boto3 (path-style) reads back exactly `data`, ETag = MD5(data) (also the PUT's ETag)."""
    got, etag, length = get_boto(key)
    c.check(got == data, f"{what}: GET returned {len(got)} bytes that differ from the {len(data)} uploaded "
                         f"(first difference at {next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), len(data)))})")
    c.check_eq(length, len(data), f"{what}: ContentLength")
    c.check_eq(etag, c.md5_hex(data), f"{what}: ETag vs MD5 of the decoded bytes")
    if put_resp is not None:
        c.check_eq(c.unquote_etag(put_resp.headers.get("etag")), c.md5_hex(data), f"{what}: PUT response ETag")


# ---- 1. signed streaming ----------------------------------------------------------------

def signed_streaming_roundtrip():
    data = os.urandom(3 * CHUNK + 8 * c.KIB + 13)  # three full chunks and a partial one
    key = "stream/signed-200k.bin"
    with c.timed(f"streaming PUT {len(data)} B in {len(split_chunks(data, CHUNK))} chunks (final empty included)"):
        r = streaming_put(f"/{BUCKET}{key_path(key)}", data)
    expect_ok(r, "signed streaming PUT")
    with c.timed("boto3 GET of the streamed object"):
        check_stored(key, data, "signed streaming PUT", r)
    head = S3.head_object(Bucket=BUCKET, Key=key)
    c.check_eq(head["ContentLength"], len(data), "HEAD ContentLength of the streamed object")
    c.check(head.get("ContentEncoding") in (None, ""),
            f"aws-chunked leaked into the stored Content-Encoding: {head.get('ContentEncoding')!r}")
    c.log(f"  ok  signed streaming PUT of {len(data)} B: bytes, ETag {c.md5_hex(data)}, HEAD")

    # Smaller chunks, with an odd size, and user metadata signed along.
    data2 = os.urandom(10 * 8 * c.KIB + 1)
    key2 = "stream/signed-8k-chunks.bin"
    with c.timed(f"streaming PUT {len(data2)} B in 8 KiB chunks"):
        r = streaming_put(f"/{BUCKET}{key_path(key2)}", data2, chunk_size=8 * c.KIB,
                          extra_headers={"x-amz-meta-origin": "streaming"})
    expect_ok(r, "signed streaming PUT, 8 KiB chunks")
    check_stored(key2, data2, "signed streaming PUT, 8 KiB chunks", r)
    meta = S3.head_object(Bucket=BUCKET, Key=key2).get("Metadata", {})
    c.check_eq(meta.get("origin"), "streaming", "user metadata of a streamed object")
    c.log(f"  ok  signed streaming PUT of {len(data2)} B in 8 KiB chunks, metadata kept")

    # Empty object: only the final 0-size chunk.
    key3 = "stream/signed-empty.bin"
    r = streaming_put(f"/{BUCKET}{key_path(key3)}", b"")
    expect_ok(r, "signed streaming PUT of 0 bytes")
    check_stored(key3, b"", "signed streaming PUT of 0 bytes", r)
    c.log("  ok  signed streaming PUT of 0 B")


def signed_streaming_bad_chunk_signature():
    data = os.urandom(3 * CHUNK + 8 * c.KIB + 13)
    chunks = len(split_chunks(data, CHUNK))

    # Second data chunk's signature wrong, fresh key: refused, nothing stored.
    key = "stream/bad-chunk-sig.bin"
    with c.timed("streaming PUT with a wrong signature on chunk 2"):
        r = streaming_put(f"/{BUCKET}{key_path(key)}", data, corrupt_chunk=1)
    expect_error(r, 403, "SignatureDoesNotMatch", "streaming PUT, chunk 2 of 5 wrongly signed")
    c.object_absent(S3, BUCKET, key, "streaming PUT with a wrongly signed chunk")

    # Only the final (empty) chunk's signature wrong, over an existing object: every data
    # byte was correctly signed, but the upload is not complete, so nothing may be replaced.
    key2 = "stream/bad-final-sig.bin"
    old = os.urandom(5000)
    S3.put_object(Bucket=BUCKET, Key=key2, Body=old)
    with c.timed("streaming PUT with a wrong signature on the final chunk"):
        r = streaming_put(f"/{BUCKET}{key_path(key2)}", data, corrupt_chunk=chunks - 1)
    expect_error(r, 403, "SignatureDoesNotMatch", "streaming PUT, final 0-size chunk wrongly signed")
    check_stored(key2, old, "object under a refused streaming overwrite")
    c.log("  ok  the refused streaming overwrite left the old object in place")

    # Both keys still absent / unchanged a moment later (nothing committed in the background).
    time.sleep(2.0)
    c.object_absent(S3, BUCKET, key, "wrongly signed streaming PUT, 2 s later")
    check_stored(key2, old, "object under a refused streaming overwrite, 2 s later")


# ---- 2. unsigned streaming with a trailer -----------------------------------------------

def unsigned_trailer():
    data = os.urandom(3 * CHUNK + 8 * c.KIB + 13)
    key = "stream/unsigned-trailer.bin"
    with c.timed(f"unsigned streaming PUT {len(data)} B with an x-amz-checksum-crc32 trailer"):
        r = trailer_put(f"/{BUCKET}{key_path(key)}", data, crc32_b64(data))
    if r.status == 501:
        code, msg = c.parse_error_xml(r.body)
        c.check_eq(code, "NotImplemented", "error code of a 501 to STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        c.log(f"  NOTE: STREAMING-UNSIGNED-PAYLOAD-TRAILER is not supported: HTTP 501 {code} ({msg}); skipped")
        c.object_absent(S3, BUCKET, key, "unsupported trailer upload")
        return
    expect_ok(r, "unsigned streaming PUT with a crc32 trailer")
    check_stored(key, data, "unsigned streaming PUT with a crc32 trailer", r)
    c.log(f"  ok  unsigned streaming PUT with a crc32 trailer, {len(data)} B round-trip")

    # A trailer whose checksum does not match the bytes: 400 BadDigest, nothing stored.
    bad_key = "stream/unsigned-trailer-bad-crc.bin"
    r = trailer_put(f"/{BUCKET}{key_path(bad_key)}", data, crc32_b64(data + b"!"))
    expect_error(r, 400, "BadDigest", "unsigned streaming PUT with a wrong crc32 trailer")
    try:
        S3.head_object(Bucket=BUCKET, Key=bad_key)
        c.check(False, "an upload with a wrong crc32 trailer was stored")
    except botocore.exceptions.ClientError as e:
        c.check(e.response["Error"]["Code"] in ("404", "NoSuchKey"),
                f"HEAD after a wrong-crc32 upload: expected 404, got {e.response['Error']}")
    c.log("  ok  wrong crc32 trailer -> 400 BadDigest, nothing stored")


# ---- 3. virtual-host-style addressing ---------------------------------------------------

def vhost_name():
    return f"{BUCKET}.{VHOST_DOMAIN}:{c.PORT}"


def list_keys_xml(body):
    root = ET.fromstring(body)
    tag = root.tag.split("}")[-1]
    c.check_eq(tag, "ListBucketResult", "ListObjectsV2 root element")

    def local(el):
        return el.tag.split("}")[-1]

    fields = {local(ch): (ch.text or "") for ch in root if local(ch) != "Contents"}
    keys = []
    for ch in root:
        if local(ch) == "Contents":
            keys.append({local(x): (x.text or "") for x in ch}.get("Key"))
    return fields, keys


def virtual_host():
    vh = vhost_name()
    data = os.urandom(100 * c.KIB + 7)
    key = "vhost/dir/obj one+two.bin"  # a space and a plus: percent-encoded in the path
    path = key_path(key)

    with c.timed("virtual-host PUT"):
        r = request("PUT", path, body=data, host=vh)
    expect_ok(r, f"virtual-host PUT (Host: {vh}, path {path})")
    c.check_eq(c.unquote_etag(r.headers.get("etag")), c.md5_hex(data), "virtual-host PUT ETag")

    with c.timed("virtual-host GET"):
        r = request("GET", path, host=vh)
    expect_ok(r, "virtual-host GET")
    c.check(r.body == data, f"virtual-host GET returned {len(r.body)} bytes that differ from the {len(data)} PUT")
    # The same key, path-style: raw request and boto3.
    r2 = request("GET", f"/{BUCKET}{path}")
    expect_ok(r2, "path-style raw GET of the virtual-host object")
    c.check(r2.body == r.body, "path-style and virtual-host GET of the same key differ")
    check_stored(key, data, "object PUT in virtual-host style")

    r = request("HEAD", path, host=vh)
    expect_ok(r, "virtual-host HEAD")
    c.check_eq(r.headers.get("content-length"), str(len(data)), "virtual-host HEAD Content-Length")

    # A ranged GET in virtual-host style.
    r = request("GET", path, host=vh, headers={"range": "bytes=1000-1999"})
    expect_ok(r, "virtual-host ranged GET", status=206)
    c.check(r.body == data[1000:2000], "virtual-host ranged GET bytes")
    c.log(f"  ok  virtual-host PUT/GET/HEAD/range of {key!r} ({len(data)} B) match path-style")

    # A streaming (signed chunks) PUT in virtual-host style: the canonical host is the vhost.
    sdata = os.urandom(2 * CHUNK + 999)
    skey = "vhost/streamed.bin"
    with c.timed("virtual-host streaming PUT"):
        r = streaming_put(key_path(skey), sdata, host=vh)
    expect_ok(r, "virtual-host streaming PUT")
    check_stored(skey, sdata, "virtual-host streaming PUT", r)
    c.log(f"  ok  virtual-host streaming PUT of {len(sdata)} B")

    # ListObjectsV2 in virtual-host style.
    with c.timed("virtual-host ListObjectsV2"):
        r = request("GET", "/", query=[("list-type", "2"), ("prefix", "vhost/")], host=vh)
    expect_ok(r, "virtual-host ListObjectsV2")
    fields, keys = list_keys_xml(r.body)
    c.check_eq(fields.get("Name"), BUCKET, "virtual-host ListObjectsV2 <Name>")
    c.check_eq(sorted(keys), sorted([key, skey]), "virtual-host ListObjectsV2 keys under vhost/")
    c.check_eq(fields.get("KeyCount"), "2", "virtual-host ListObjectsV2 KeyCount")
    boto_keys = [o["Key"] for o in S3.list_objects_v2(Bucket=BUCKET, Prefix="vhost/").get("Contents", [])]
    c.check_eq(sorted(boto_keys), sorted(keys), "path-style vs virtual-host listing")
    c.log(f"  ok  virtual-host ListObjectsV2 lists {keys}")

    # The Host header is what the signature covers: signed for the path-style host but sent
    # with the virtual host, the request must be refused (and the reverse, too).
    r = request("GET", path, host=c.NETLOC, send_host=vh)
    expect_error(r, 403, "SignatureDoesNotMatch", "GET signed for another Host than the one sent")
    r = request("PUT", path, body=b"wrong host", host=vh, send_host=f"other-{BUCKET}.{VHOST_DOMAIN}:{c.PORT}")
    expect_error(r, (403, 404), ("SignatureDoesNotMatch", "NoSuchBucket"),
                 "PUT signed for one virtual host, sent to another")
    check_stored(key, data, "virtual-host object after the refused requests")

    # A virtual host whose bucket does not exist.
    nb = f"cairn-no-such-bucket-{os.getpid()}.{VHOST_DOMAIN}:{c.PORT}"
    r = request("GET", "/some-key", host=nb)
    expect_error(r, 404, "NoSuchBucket", "virtual-host GET in a bucket that does not exist")


def case(fn):
    t0 = time.monotonic()
    c.log(f"-- {fn.__name__}")
    fn()
    c.server_alive(S3, fn.__name__)
    c.log(f"  case {fn.__name__}: {time.monotonic() - t0:.2f} s")


def main():
    global S3, BUCKET
    S3 = c.client()
    BUCKET = c.fresh_bucket(S3, "stream")
    for fn in (signed_streaming_roundtrip, signed_streaming_bad_chunk_signature, unsigned_trailer, virtual_host):
        case(fn)
    c.empty_bucket(S3, BUCKET)


if __name__ == "__main__":
    c.run("streaming", main)
