#!/usr/bin/env python3
"""writes_survive: PUTs keep working with storage nodes down, for longer than the ledger's
health window (so placement has dropped the dead nodes and must degrade, not fail).

1. SIGKILL one node (n04, zone z2) and keep writing 4 KiB and 1 MiB objects until the
   ledger (`/nodes` on n00, whose gateway we write through) reports it unhealthy, which takes
   the 15 s health window plus finality (at most CAIRN_S3_AGE_OUT_LIMIT_S, default 60). Every
   PUT must succeed; the next LATE_PUTS objects must sit on the 11 live nodes.
2. Restart it, then stop the whole zone z3 (n02 n05 n08 n11; the 11-validator committee keeps
   its quorum of 8) and do the same: every PUT succeeds, later objects sit in the two live
   zones on 8 nodes.
3. Everything written reads back byte-identical, before and after the nodes return.

On a main where placement needed k + m distinct healthy nodes, step 1 failed with 503 once the
dead node aged out of the (then 600-block, about 3 minute) window; and there the spread check
fails, since placement kept the dead node until then.

Needs CAIRN_BIN and CAIRN_DEVNET_DIR (set by tests/s3/run) to drive `cairn drill`."""

import json
import os
import subprocess
import urllib.request
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

KIB, MIB = c.KIB, c.MIB
AGE_OUT_LIMIT_S = float(os.environ.get("CAIRN_S3_AGE_OUT_LIMIT_S", "60"))
LATE_PUTS = 6


def drill(*args):
    cmd = [c.env("CAIRN_BIN"), "drill", "--dir", c.env("CAIRN_DEVNET_DIR"), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    c.check(out.returncode == 0, f"`{' '.join(cmd)}` failed with exit {out.returncode}:\n"
                                 f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    c.log(f"  drill {' '.join(args)}: {out.stdout.strip()[-200:]}")


def unhealthy(names):
    """True once n00's finalized state reports every node in `names` unhealthy."""
    base = int(c.env("CAIRN_S3_BASE_PORT"))
    with urllib.request.urlopen(f"http://127.0.0.1:{base + 1000}/nodes", timeout=5) as r:
        nodes = json.load(r)["nodes"]
    admin = {f"127.0.0.1:{base + 1000 + int(n[1:])}" for n in names}
    seen = [n for n in nodes if n.get("endpoints", {}).get("admin") in admin]
    return len(seen) == len(names) and not any(n["healthy"] for n in seen)


def put(s3, bucket, key, size, objects, what):
    data = os.urandom(size)
    t0 = time.monotonic()
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=data)
    except ClientError as e:
        raise c.CheckFailed(f"{what}: PUT {key} failed: HTTP {c.status_of(e)} {c.code_of(e)}: {e}")
    objects[key] = data
    return time.monotonic() - t0


def write_through(s3, bucket, tag, names, objects):
    """PUTs alternating 4 KiB / 1 MiB objects until `names` are unhealthy on the ledger, then
    LATE_PUTS more; every one must succeed. Returns the late keys."""
    t0 = time.monotonic()
    lat, i = [], 0
    while not unhealthy(names):
        c.check(time.monotonic() - t0 < AGE_OUT_LIMIT_S,
                f"{tag}: {names} still healthy on the ledger after {AGE_OUT_LIMIT_S} s")
        lat.append(put(s3, bucket, f"{tag}/obj{i:04}", 4 * KIB if i % 2 == 0 else MIB, objects, tag))
        i += 1
    aged = time.monotonic() - t0
    late = []
    for j in range(LATE_PUTS):
        key = f"{tag}/late{j:02}"
        lat.append(put(s3, bucket, key, 4 * KIB if j % 2 == 0 else MIB, objects, tag))
        late.append(key)
    lat.sort()
    c.log(f"  time {tag}: unhealthy on the ledger after {aged:.1f} s; {len(lat)} PUTs all ok, "
          f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms")
    return late


def spread(s3, bucket, key):
    h = s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
    return int(h["x-cairn-nodes"]), int(h["x-cairn-zones"])


def read_all(s3, bucket, objects, what):
    for key, data in objects.items():
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        c.check(body == data, f"{what}: {key} is not byte-identical")
    c.log(f"  {what}: {len(objects)} objects byte-identical")


def outage(s3, bucket, objects, down, kind, name, members, nodes_left, zones_left):
    """Stops `name` (a node or zone of `members`), writes through it, checks where late objects
    landed and that everything reads back, then starts it again."""
    drill(f"stop-{kind}", name)
    down.append((kind, name))
    for key in write_through(s3, bucket, f"{kind}-{name}-down", members, objects):
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
        outage(s3, bucket, objects, down, "node", "n04", ["n04"], 11, 3)
        outage(s3, bucket, objects, down, "zone", "z3", ["n02", "n05", "n08", "n11"], 8, 2)
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
