#!/usr/bin/env python3
"""multipart: explicit boto3 multipart upload (3 parts), listing of parts and uploads,
the S3 multipart ETag formula, and abort."""

import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402


def complete_and_verify(s3, bucket):
    key = "mp/three-parts.bin"
    parts_data = [os.urandom(5 * c.MIB), os.urandom(5 * c.MIB), os.urandom(1 * c.MIB)]
    whole = b"".join(parts_data)

    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ContentType="application/x-cairn-mp",
                                    Metadata={"purpose": "multipart-test"})
    upload_id = up["UploadId"]
    c.check(bool(upload_id), "CreateMultipartUpload returned no UploadId")
    c.check_eq(up.get("Key"), key, "CreateMultipartUpload Key")
    c.log(f"  upload id {upload_id}")

    # The upload must be listed while it is open.
    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    c.check(any(u["UploadId"] == upload_id and u["Key"] == key for u in listed),
            f"open upload {upload_id} not in ListMultipartUploads: {c.short(listed)}")

    # Upload the parts out of order (3, 1, 2): the object is assembled by part number.
    etags = {}
    with c.timed("upload 3 parts (11 MiB)"):
        for number in (3, 1, 2):
            data = parts_data[number - 1]
            resp = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)
            etags[number] = c.unquote_etag(resp["ETag"])
            c.check_eq(etags[number], c.md5_hex(data), f"UploadPart {number} ETag (md5 of the part)")

    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    got = [(p["PartNumber"], p["Size"], c.unquote_etag(p["ETag"])) for p in parts.get("Parts", [])]
    want = [(n, len(parts_data[n - 1]), etags[n]) for n in (1, 2, 3)]
    c.check_eq(got, want, "ListParts (number, size, etag) in part-number order")
    c.check_eq(parts.get("UploadId"), upload_id, "ListParts UploadId")

    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    c.check(any(u["UploadId"] == upload_id and u["Key"] == key for u in listed),
            f"upload {upload_id} with parts not in ListMultipartUploads: {c.short(listed)}")
    # Not visible as an object before completion.
    c.expect_client_error(lambda: s3.head_object(Bucket=bucket, Key=key), 404,
                          what="HEAD of an uncompleted multipart object")

    with c.timed("complete multipart upload"):
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{etags[n]}"'} for n in (1, 2, 3)]},
        )
    expected_etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts_data)).hexdigest() + "-3"
    c.check_eq(c.unquote_etag(done.get("ETag")), expected_etag, "CompleteMultipartUpload ETag")

    with c.timed("get 11 MiB"):
        obj = s3.get_object(Bucket=bucket, Key=key)
        body = obj["Body"].read()
    c.check_eq(len(body), len(whole), "multipart object length")
    c.check(c.sha256_hex(body) == c.sha256_hex(whole), "multipart object content differs from the parts")
    c.check_eq(c.unquote_etag(obj["ETag"]), expected_etag, "GET ETag of the multipart object")
    c.check_eq(obj.get("ContentType"), "application/x-cairn-mp", "ContentType given at CreateMultipartUpload")
    c.check_eq(obj.get("Metadata", {}).get("purpose"), "multipart-test", "metadata given at CreateMultipartUpload")

    head = s3.head_object(Bucket=bucket, Key=key)
    c.check_eq(head["ContentLength"], len(whole), "HEAD ContentLength")
    c.check_eq(c.unquote_etag(head["ETag"]), expected_etag, "HEAD ETag")

    # A range across the part 1 / part 2 boundary.
    lo, hi = 5 * c.MIB - 100, 5 * c.MIB + 99
    rng = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={lo}-{hi}")
    c.check_eq(rng["ResponseMetadata"]["HTTPStatusCode"], 206, "ranged GET status")
    c.check(rng["Body"].read() == whole[lo : hi + 1], "ranged GET across the part boundary returned wrong bytes")

    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    c.check(not any(u["UploadId"] == upload_id for u in listed),
            f"completed upload {upload_id} still in ListMultipartUploads")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="mp/").get("Contents", [])]
    c.check(key in keys, f"completed object {key} not listed: {keys}")


def abort(s3, bucket):
    key = "mp/aborted.bin"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=os.urandom(5 * c.MIB))
    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    c.check(any(u["UploadId"] == upload_id for u in listed), "upload to abort not listed before abort")
    with c.timed("abort multipart upload"):
        resp = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    c.check_eq(resp["ResponseMetadata"]["HTTPStatusCode"], 204, "AbortMultipartUpload status")
    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    c.check(not any(u["UploadId"] == upload_id for u in listed),
            f"aborted upload {upload_id} still in ListMultipartUploads: {c.short(listed)}")
    c.expect_client_error(lambda: s3.head_object(Bucket=bucket, Key=key), 404, what="HEAD of aborted key")
    c.expect_client_error(lambda: s3.get_object(Bucket=bucket, Key=key), 404, "NoSuchKey",
                          what="GET of aborted key")
    c.expect_client_error(lambda: s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id), 404,
                          "NoSuchUpload", what="ListParts of aborted upload")
    c.expect_client_error(
        lambda: s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=b"x"),
        404, "NoSuchUpload", what="UploadPart to aborted upload")


def main():
    s3 = c.client()
    bucket = c.fresh_bucket(s3, "mp")
    complete_and_verify(s3, bucket)
    abort(s3, bucket)
    c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("multipart", main)
