#!/usr/bin/env python3
"""writes_survive: PUTs keep working with storage nodes down, for longer than the ledger's
health window (so placement has dropped the dead nodes and must degrade, not fail).

1. SIGKILL one node (n04, zone z2) and keep writing 4 KiB and 1 MiB objects for
   CAIRN_S3_DEGRADED_WRITE_S seconds (default 35: the 15 s health window plus margin). Every
   PUT must succeed; objects placed after the window sit on the 11 live nodes.
2. Restart it, then stop the whole zone z3 (4 nodes; the 11-validator committee keeps its
   quorum of 8) and write for as long again. Every PUT must succeed; objects placed after the
   window sit in the two live zones.
3. Everything written reads back byte-identical, before and after the nodes return.

On a main where placement needed k + m distinct healthy nodes, step 1 failed with 503 once the
dead node aged out of the (then 600-block, about 3 minute) window: run it there with
CAIRN_S3_DEGRADED_WRITE_S=240 to see it.

Needs CAIRN_BIN and CAIRN_DEVNET_DIR (set by tests/s3/run) to drive `cairn drill`."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

KIB, MIB = c.KIB, c.MIB
WRITE_S = float(os.environ.get("CAIRN_S3_DEGRADED_WRITE_S", "35"))
# The ledger's health window (cairn_ledger::registry::HEALTH_WINDOW_MS) plus a few blocks.
AGED_OUT_S = 15 + 3


def drill(*args):
    cmd = [c.env("CAIRN_BIN"), "drill", "--dir", c.env("CAIRN_DEVNET_DIR"), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    c.check(out.returncode == 0, f"`{' '.join(cmd)}` failed with exit {out.returncode}:\n"
                                 f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    c.log(f"  drill {' '.join(args)}: {out.stdout.strip()[-200:]}")


def write_for(s3, bucket, tag, seconds, objects):
    """PUTs alternating 4 KiB / 1 MiB objects for `seconds`; every one must succeed. Returns
    the keys written after AGED_OUT_S (placed once the dead nodes were out of the window)."""
    t0 = time.monotonic()
    late, lat, i = [], [], 0
    while time.monotonic() - t0 < seconds:
        key = f"{tag}/obj{i:04}"
        data = os.urandom(4 * KIB if i % 2 == 0 else MIB)
        t1 = time.monotonic()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
        except ClientError as e:
            raise c.CheckFailed(f"{tag}: PUT {i} at {time.monotonic() - t0:.1f} s failed: "
                                f"HTTP {c.status_of(e)} {c.code_of(e)}: {e}")
        lat.append(time.monotonic() - t1)
        objects[key] = data
        if t1 - t0 > AGED_OUT_S:
            late.append(key)
        i += 1
    lat.sort()
    c.log(f"  time {tag}: {i} PUTs in {seconds:.0f} s, all ok; p50 {lat[len(lat) // 2] * 1000:.0f} ms, "
          f"max {lat[-1] * 1000:.0f} ms; {len(late)} placed after the window")
    c.check(late, f"{tag}: no PUT ran after the health window; raise CAIRN_S3_DEGRADED_WRITE_S")
    return late


def spread(s3, bucket, key):
    h = s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
    return int(h["x-cairn-nodes"]), int(h["x-cairn-zones"])


def read_all(s3, bucket, objects, what):
    for key, data in objects.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        c.check(body == data, f"{what}: {key} is not byte-identical")
    c.log(f"  {what}: {len(objects)} objects byte-identical")


def outage(s3, bucket, objects, down, kind, name, nodes_left, zones_left):
    """Stops `name` (a node or zone), writes through it, checks where late objects landed and
    that everything reads back, then starts it again."""
    drill(f"stop-{kind}", name)
    down.append((kind, name))
    for key in write_for(s3, bucket, f"{kind}-{name}-down", WRITE_S, objects):
        nodes, zones = spread(s3, bucket, key)
        c.check_eq((nodes, zones), (nodes_left, zones_left), f"{key}: (nodes, zones) with {name} down")
    read_all(s3, bucket, objects, f"GET with {name} down")
    drill(f"start-{kind}", name)
    down.remove((kind, name))


def main():
    s3 = c.client(connect_timeout=5, read_timeout=60)
    bucket = c.fresh_bucket(s3, "survive")
    objects = {}
    down = []
    try:
        outage(s3, bucket, objects, down, "node", "n04", 11, 3)
        outage(s3, bucket, objects, down, "zone", "z3", 8, 2)
    finally:
        for kind, name in down:  # leave the devnet whole even when a check failed
            try:
                drill(f"start-{kind}", name)
            except Exception as e:  # noqa: BLE001
                c.log(f"  (restoring {name} failed: {e})")
    read_all(s3, bucket, objects, "GET after the nodes returned")
    c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("writes_survive", main)
