#!/usr/bin/env python3
"""boto3 transfer-manager helper for scenarios/clients_roundtrip.sh.

usage: boto3_xfer.py upload|download|get BUCKET KEY FILE
  upload/download use boto3's managed transfer (multipart / ranged GETs above 8 MiB);
  get uses one plain GetObject."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_s3 as c  # noqa: E402


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    mode, bucket, key, path = sys.argv[1:]
    s3 = c.client(read_timeout=300)
    if mode == "upload":
        s3.upload_file(path, bucket, key)
    elif mode == "download":
        s3.download_file(bucket, key, path)
    elif mode == "get":
        with open(path, "wb") as f:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in iter(lambda: body.read(1 << 20), b""):
                f.write(chunk)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
