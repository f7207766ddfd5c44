#!/usr/bin/env python3
"""zone_loss: objects written on the healthy 12-node devnet stay readable byte-identical
through node 0 (zone z1) while zones z2 and z3 are down (8 of 12 nodes); a PUT then fails
fast with 503 and leaves nothing behind; after the zones return, PUTs work again.

Needs CAIRN_BIN and CAIRN_DEVNET_DIR (set by tests/s3/run) to drive `cairn drill`."""

import concurrent.futures as cf
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

MIB, KIB = c.MIB, c.KIB
SIZES = [1, 2, 100, 4 * KIB, 64 * KIB, 256 * KIB + 1, MIB - 1, MIB, MIB + 1, 2 * MIB,
         3 * MIB + 17, 4 * MIB, 4 * MIB + 1, 5 * MIB, 6 * MIB + 5, 8 * MIB, 10 * MIB, 12 * MIB + 3,
         16 * MIB, 20 * MIB]
PUT_FAIL_LIMIT_S = float(os.environ.get("CAIRN_S3_PUT_FAIL_LIMIT", "60"))
RECOVERY_LIMIT_S = float(os.environ.get("CAIRN_S3_RECOVERY_LIMIT", "120"))
DOWN = ["z2", "z3"]


def drill(*args):
    cmd = [c.env("CAIRN_BIN"), "drill", "--dir", c.env("CAIRN_DEVNET_DIR"), *args]
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dt = time.monotonic() - t0
    c.log(f"  time drill {' '.join(args)}: {dt:.3f} s (exit {out.returncode})")
    c.check(out.returncode == 0, f"`{' '.join(cmd)}` failed with exit {out.returncode}:\n"
                                 f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return dt


def read_all(s3, bucket, objects, what):
    """GETs every object (4 in parallel) and compares bytes. Returns the wall time."""
    def get(key):
        t0 = time.monotonic()
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return key, body, time.monotonic() - t0

    t0 = time.monotonic()
    slowest = (0.0, None)
    with cf.ThreadPoolExecutor(max_workers=4) as pool:
        for fut in cf.as_completed([pool.submit(get, k) for k in objects]):
            try:
                key, body, dt = fut.result()
            except ClientError as e:
                raise c.CheckFailed(f"{what}: GET failed: HTTP {c.status_of(e)} {c.code_of(e)}: {e}")
            c.check_eq(len(body), len(objects[key]), f"{what}: length of {key}")
            c.check(body == objects[key], f"{what}: {key} is not byte-identical")
            slowest = max(slowest, (dt, key))
    total = time.monotonic() - t0
    c.log(f"  time {what}: {total:.3f} s for {len(objects)} objects "
          f"({sum(map(len, objects.values())) / MIB:.1f} MiB), slowest {slowest[1]} {slowest[0]:.3f} s")
    return total


def main():
    s3 = c.client(connect_timeout=5, read_timeout=90)
    bucket = c.fresh_bucket(s3, "zone")

    objects = {}
    with c.timed(f"put {len(SIZES)} objects ({sum(SIZES) / MIB:.1f} MiB) + one 18 MiB multipart"):
        for i, size in enumerate(SIZES):
            key = f"zone-loss/obj{i:02}-{size}"
            data = os.urandom(size)
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            objects[key] = data
        # One multipart object as well (8 MiB parts).
        key = "zone-loss/multipart-18MiB"
        data = os.urandom(18 * MIB)
        with open(os.path.join(c.env("CAIRN_S3_WORK"), "zone-mp.bin"), "wb") as f:
            f.write(data)
        s3.upload_file(os.path.join(c.env("CAIRN_S3_WORK"), "zone-mp.bin"), bucket, key,
                       Config=TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB,
                                             max_concurrency=2))
        objects[key] = data
    read_all(s3, bucket, objects, "GET all, healthy")

    stopped = []
    try:
        for zone in DOWN:
            drill("stop-zone", zone)
            stopped.append(zone)

        read_all(s3, bucket, objects, f"GET all with {'+'.join(DOWN)} down")
        big = "zone-loss/obj19-20971520"
        rng = s3.get_object(Bucket=bucket, Key=big, Range="bytes=7000000-13000000")["Body"].read()
        c.check(rng == objects[big][7000000:13000001], "ranged GET during zone loss returned wrong bytes")
        listed = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="zone-loss/"):
            listed.extend(o["Key"] for o in page.get("Contents", []))
        c.check_eq(sorted(listed), sorted(objects), "listing during zone loss")

        # A PUT cannot reach the write quorum nor finalize: 503, quickly, and nothing stored.
        doomed = "zone-loss/put-during-outage"
        t0 = time.monotonic()
        try:
            s3.put_object(Bucket=bucket, Key=doomed, Body=os.urandom(MIB))
            raise c.CheckFailed("PUT with 8 of 12 nodes down succeeded; expected 503")
        except ClientError as e:
            dt = time.monotonic() - t0
            c.log(f"  time PUT during outage: {dt:.3f} s -> HTTP {c.status_of(e)} {c.code_of(e)}")
            c.check_eq(c.status_of(e), 503, "PUT during outage: HTTP status")
            c.check(c.code_of(e) not in (None, "", "503"), "PUT during outage: 503 without an S3 error body")
        except Exception as e:  # noqa: BLE001 - e.g. read timeout: no answer at all
            if isinstance(e, c.CheckFailed):
                raise
            raise c.CheckFailed(f"PUT during outage got no HTTP answer after {time.monotonic() - t0:.1f} s: "
                                f"{type(e).__name__}: {e}")
        c.check(dt < PUT_FAIL_LIMIT_S, f"PUT during outage took {dt:.1f} s to fail (limit {PUT_FAIL_LIMIT_S} s)")
        c.object_absent(s3, bucket, doomed, "PUT that failed during the outage")

        for zone in DOWN:
            drill("start-zone", zone)
            stopped.remove(zone)
    finally:
        for zone in stopped:  # leave the devnet whole even when a check failed
            try:
                drill("start-zone", zone)
            except Exception as e:  # noqa: BLE001
                c.log(f"  (restoring {zone} failed: {e})")

    # Writes come back within the bound.
    fresh = "zone-loss/after-recovery"
    data = os.urandom(3 * MIB + 11)
    retry_client = c.client(connect_timeout=5, read_timeout=30)
    t0 = time.monotonic()
    attempts, last = 0, None
    while True:
        attempts += 1
        try:
            retry_client.put_object(Bucket=bucket, Key=fresh, Body=data)
            break
        except Exception as e:  # noqa: BLE001
            last = e
        if time.monotonic() - t0 > RECOVERY_LIMIT_S:
            raise c.CheckFailed(f"no successful PUT within {RECOVERY_LIMIT_S} s after the zones restarted "
                                f"({attempts} attempts), last error: {last}")
        time.sleep(2.0)
    c.log(f"  time to first successful PUT after restart: {time.monotonic() - t0:.3f} s ({attempts} attempts)")
    got = s3.get_object(Bucket=bucket, Key=fresh)["Body"].read()
    c.check(got == data, "object written after recovery reads back wrong")
    objects[fresh] = data
    read_all(s3, bucket, objects, "GET all after recovery")
    # The PUT refused during the outage must not surface later (e.g. from a queued transaction).
    c.object_absent(s3, bucket, "zone-loss/put-during-outage", "failed PUT, after recovery")
    c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("zone_loss", main)
