"""Shared helpers for the real-client S3 scenarios (tests/s3/scenarios/*.py).

Everything comes from the environment that tests/s3/run sets up:
  AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION  (DIR/s3.env)
  CAIRN_BIN, CAIRN_DEVNET_DIR, CAIRN_S3_WORK                                     (tests/s3/run)
Only boto3/botocore and the standard library are used.
"""

import contextlib
import hashlib
import os
import secrets
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from urllib.parse import urlparse

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

KIB = 1024
MIB = 1024 * 1024


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise SystemExit(f"missing environment variable {name} (run through tests/s3/run)")
    return value


ENDPOINT = env("AWS_ENDPOINT_URL").rstrip("/")
ACCESS_KEY = env("AWS_ACCESS_KEY_ID")
SECRET_KEY = env("AWS_SECRET_ACCESS_KEY")
REGION = os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
_parsed = urlparse(ENDPOINT)
HOST = _parsed.hostname or "127.0.0.1"
PORT = _parsed.port or 80
NETLOC = _parsed.netloc


class CheckFailed(AssertionError):
    pass


_checks = {"n": 0}


def check(cond, msg):
    """A real assertion: counts, and raises CheckFailed with msg when cond is false."""
    _checks["n"] += 1
    if not cond:
        raise CheckFailed(msg)


def check_eq(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def log(msg):
    print(msg, flush=True)


@contextlib.contextmanager
def timed(label):
    """Prints the wall time of the block as '  time <label>: 1.234 s'."""
    t0 = time.monotonic()
    try:
        yield
    finally:
        log(f"  time {label}: {time.monotonic() - t0:.3f} s")


def client(max_attempts=1, connect_timeout=10, read_timeout=120, pool=32, **config_kw):
    """A boto3 S3 client against the devnet endpoint, path-style, SigV4.

    Retries default to a single attempt so a 5xx is seen by the test, not hidden.
    """
    cfg = Config(
        region_name=REGION,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=pool,
        **config_kw,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=cfg,
    )


def bucket_name(tag):
    """A fresh, valid bucket name (lowercase, 3..63 chars) unique to this run."""
    name = f"cairn-{tag}-{int(time.time())}-{secrets.token_hex(3)}".lower()
    name = "".join(ch if (ch.isalnum() or ch == "-") else "-" for ch in name)
    return name[:63].strip("-")


def fresh_bucket(s3, tag):
    name = bucket_name(tag)
    with timed(f"create bucket {name}"):
        s3.create_bucket(Bucket=name)
    return name


def status_of(exc):
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def code_of(exc):
    return exc.response.get("Error", {}).get("Code")


def expect_client_error(fn, status, codes=None, what="request"):
    """Calls fn(); it must raise ClientError with this HTTP status (and one of codes, if given).

    Returns the ClientError.
    """
    try:
        result = fn()
    except ClientError as e:
        st, code = status_of(e), code_of(e)
        statuses = status if isinstance(status, (tuple, list, set)) else (status,)
        check(st in statuses, f"{what}: expected HTTP {status}, got {st} ({code}: {e})")
        if codes is not None:
            codes = (codes,) if isinstance(codes, str) else tuple(codes)
            check(code in codes, f"{what}: expected error code {codes}, got {code!r} (HTTP {st})")
        return e
    raise CheckFailed(f"{what}: expected HTTP {status} {codes or ''}, but it succeeded: {short(result)}")


def short(obj, n=300):
    text = repr(obj)
    return text if len(text) <= n else text[:n] + "..."


def object_absent(s3, bucket, key, what):
    """HEAD must say 404 and a prefix listing must not show the key."""
    expect_client_error(lambda: s3.head_object(Bucket=bucket, Key=key), 404, what=f"{what}: HEAD {key}")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    check(key not in keys, f"{what}: {key!r} is listed: {keys}")


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def unquote_etag(etag):
    return (etag or "").strip().strip('"')


def parse_error_xml(body):
    """S3 error XML -> (code, message). Raises CheckFailed if it is not an <Error> document."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise CheckFailed(f"error body is not XML ({e}): {body[:300]!r}")
    tag = root.tag.split("}")[-1]
    check(tag == "Error", f"error body root is <{tag}>, not <Error>: {body[:300]!r}")
    fields = {child.tag.split("}")[-1]: (child.text or "") for child in root}
    return fields.get("Code"), fields.get("Message")


def expect_raw(resp, status, codes, what):
    """Checks a raw response's HTTP status (one or a tuple) and, unless `codes` is None, its
    S3 error code (one or a tuple); returns the code."""
    statuses = status if isinstance(status, (tuple, list)) else (status,)
    check(resp.status in statuses, f"{what}: expected HTTP {status}, got {resp!r}")
    code = None
    if codes is not None:
        code, msg = parse_error_xml(resp.body)
        codes = (codes,) if isinstance(codes, str) else tuple(codes)
        check(code in codes, f"{what}: expected error code {codes}, got {code!r} ({msg!r}), HTTP {resp.status}")
    log(f"  ok  {what}: HTTP {resp.status} {code or ''}")
    return code


def server_alive(s3, what):
    """ListBuckets must still answer 200 (used after every hostile request)."""
    try:
        resp = s3.list_buckets()
    except Exception as e:  # noqa: BLE001 - any failure here is the finding
        raise CheckFailed(f"server not answering ListBuckets after {what}: {e}")
    check_eq(resp["ResponseMetadata"]["HTTPStatusCode"], 200, f"ListBuckets after {what}")


def empty_bucket(s3, bucket):
    """Best-effort cleanup: delete every object and abort open uploads. Never fails the test."""
    try:
        token = None
        while True:
            kw = {"Bucket": bucket}
            if token:
                kw["ContinuationToken"] = token
            page = s3.list_objects_v2(**kw)
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for i in range(0, len(keys), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[i : i + 1000], "Quiet": True})
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        s3.delete_bucket(Bucket=bucket)
    except Exception as e:  # noqa: BLE001
        log(f"  (cleanup of {bucket} incomplete: {e})")


def run(name, fn):
    """Runs a scenario body; prints the outcome and exits 0 (pass) or 1 (fail)."""
    log(f"== {name}: endpoint {ENDPOINT}, boto3 {boto3.__version__}, botocore {botocore.__version__}")
    t0 = time.monotonic()
    try:
        fn()
    except CheckFailed as e:
        log(f"CHECK FAILED in {name}: {e}")
        traceback.print_exc(file=sys.stdout)
        log(f"== {name}: FAIL after {_checks['n']} checks, {time.monotonic() - t0:.1f} s")
        sys.exit(1)
    except Exception as e:  # noqa: BLE001
        log(f"ERROR in {name}: {type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stdout)
        log(f"== {name}: FAIL (error) after {_checks['n']} checks, {time.monotonic() - t0:.1f} s")
        sys.exit(1)
    log(f"== {name}: ok, {_checks['n']} checks, {time.monotonic() - t0:.1f} s")
