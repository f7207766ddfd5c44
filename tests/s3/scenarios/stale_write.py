#!/usr/bin/env python3
"""stale_write: a write that failed, or lost, never comes back over a newer one.

Phase 1 (short partition, write order): n03's p2p links are cut (`cairn drill partition-node`),
a PUT K=v1 and a DELETE D go to n03's gateway and wait there; then PUT K=v2 and PUT D=v2 go
through n00 and are acknowledged. The partition heals within the old transactions' validity,
so they reach the chain after the newer writes: the ledger's latest-request-time rule must
keep v2 for both (the original bug returned v1 and deleted D). n03 answers them like S3
answers a write that was overwritten at once (200/204), or 503.

Phase 2 (long partition, expiry): with n03 cut off past COMMIT_TIMEOUT_MS, a PUT X=v1 through
n03 must answer 503; X is written nowhere else; after healing, X must never appear: the 503'd
write expired. Needs root (iptables) and CAIRN_BIN, CAIRN_DEVNET_DIR, CAIRN_S3_BASE_PORT."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import boto3  # noqa: E402
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402
from botocore.config import Config  # noqa: E402

VICTIM = 3
SETTLE_S = 15
CATCH_UP_LIMIT_S = 90


def gateway(node, read_timeout):
    base = int(d.env("CAIRN_S3_BASE_PORT"))
    cfg = Config(region_name=c.REGION, signature_version="s3v4", s3={"addressing_style": "path"},
                 retries={"total_max_attempts": 1}, connect_timeout=10,
                 read_timeout=read_timeout)
    return boto3.session.Session().client(
        "s3", endpoint_url=f"http://{d.s3_ip(node)}:{base + 2000 + node}",
        aws_access_key_id=c.ACCESS_KEY, aws_secret_access_key=c.SECRET_KEY,
        region_name=c.REGION, config=cfg)


def background(results, name, fn):
    def run():
        t0 = time.monotonic()
        try:
            fn()
            results[name] = ("ok", time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001
            results[name] = (c.status_of(e) or repr(e), time.monotonic() - t0)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def height(node=0):
    import json
    import urllib.request

    admin = f"127.0.0.1:{int(d.env('CAIRN_S3_BASE_PORT')) + 1000 + node}"
    with urllib.request.urlopen(f"http://{admin}/status", timeout=10) as r:
        return json.load(r)["height"]


def body(s3, bucket, key):
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as e:  # noqa: BLE001
        if c.status_of(e) == 404:
            return None
        raise


def main():
    dev = d.env("CAIRN_DEVNET_DIR")
    good = c.client(max_attempts=1)
    victim = gateway(VICTIM, read_timeout=90)
    bucket = c.fresh_bucket(good, "stale")
    good.put_object(Bucket=bucket, Key="K", Body=b"v0")
    good.put_object(Bucket=bucket, Key="D", Body=b"v0")
    t0 = time.monotonic()
    while body(victim, bucket, "D") != b"v0":  # n03 applies the block a moment later
        c.check(time.monotonic() - t0 < 10, "n03 sees D before the partition")
        time.sleep(0.2)

    # ---- phase 1: the stale PUT and DELETE reach the chain after newer writes ----
    d.drill(dev, "partition-node", f"n{VICTIM:02d}")
    results, threads = {}, []
    try:
        threads.append(background(results, "put K=v1",
                                  lambda: victim.put_object(Bucket=bucket, Key="K", Body=b"v1")))
        threads.append(background(results, "delete D",
                                  lambda: victim.delete_object(Bucket=bucket, Key="D")))
        time.sleep(2)
        c.check(not results, f"n03 cannot finalize while cut off: {results}")
        good.put_object(Bucket=bucket, Key="K", Body=b"v2")
        good.put_object(Bucket=bucket, Key="D", Body=b"v2")
        c.check_eq(body(good, bucket, "K"), b"v2", "K=v2 acknowledged and readable")
        time.sleep(1)
    finally:
        d.drill(dev, "heal-node", f"n{VICTIM:02d}")
    healed = time.monotonic()
    for t in threads:
        t.join(timeout=60)
    c.log(f"  n03 answered after healing: {results}")
    for name, (outcome, _) in results.items():
        c.check(outcome in ("ok", 503), f"{name} through n03 answers success-overwritten or 503, got {outcome}")
    # Whatever n03's transactions did, the newer values stay, everywhere, for a while.
    while time.monotonic() - healed < SETTLE_S:
        for node in (0, VICTIM, 7):
            s3 = gateway(node, read_timeout=30)
            c.check_eq(body(s3, bucket, "K"), b"v2", f"K at n{node:02d} after heal")
            c.check_eq(body(s3, bucket, "D"), b"v2", f"D at n{node:02d} after heal")
        time.sleep(1)
    c.log(f"  time phase 1: K and D kept v2 for {SETTLE_S} s after the heal")

    # ---- phase 2: a write answered 503 never applies ----
    d.drill(dev, "partition-node", f"n{VICTIM:02d}")
    try:
        h0 = height()
        t0 = time.monotonic()
        c.expect_client_error(lambda: victim.put_object(Bucket=bucket, Key="X", Body=b"v1"), 503,
                              what="PUT through a node cut off from the chain")
        c.log(f"  time PUT through the cut-off node answered 503 after {time.monotonic() - t0:.1f} s")
        # Heal only once the chain has passed the write's expiry height (finalized height at
        # signing + S3_TX_VALIDITY_BLOCKS = 40): from then on it can never apply.
        while height() < h0 + 45:
            time.sleep(0.5)
    finally:
        d.drill(dev, "heal-node", f"n{VICTIM:02d}")
    healed = time.monotonic()
    while time.monotonic() - healed < SETTLE_S:
        for node in (0, VICTIM):
            c.check_eq(body(gateway(node, 30), bucket, "X"), None, f"X absent at n{node:02d}")
        time.sleep(1)
    c.log(f"  time phase 2: the 503'd write stayed absent {SETTLE_S} s after the heal")
    good.put_object(Bucket=bucket, Key="after", Body=b"ok")
    t0 = time.monotonic()
    while body(victim, bucket, "after") != b"ok":
        c.check(time.monotonic() - t0 < CATCH_UP_LIMIT_S,
                f"n03 catches up within {CATCH_UP_LIMIT_S} s of the heal")
        time.sleep(0.5)
    c.log(f"  time n03 served a write made elsewhere {time.monotonic() - healed:.1f} s after the heal")
    c.empty_bucket(good, bucket)


if __name__ == "__main__":
    c.run("stale_write", main)
