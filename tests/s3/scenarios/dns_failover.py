#!/usr/bin/env python3
"""dns_failover: with S3 traffic running through node 0, node n03 is killed. Its S3 address
(127.0.1.4) must leave s3.cairn.test within FAILOVER_LIMIT_S, every answer seen meanwhile (one
query per 100 ms) must be NOERROR with a non-empty record set, S3 traffic must not fail, and
the address must come back after the node restarts. Prints the measured times."""

import os
import sys
import subprocess
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402

FAILOVER_LIMIT_S = float(os.environ.get("CAIRN_DNS_FAILOVER_LIMIT", "60"))
NAME = f"s3.{d.ZONE}"
VICTIM = 3


def traffic(s3, bucket, stop, stats):
    i = 0
    while not stop.is_set():
        key = f"t{i % 50}"
        body = os.urandom(4096)
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
            got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            stats["ok" if got == body else "mismatch"] += 1
        except Exception as e:  # counted and reported, the check below fails on any
            stats["errors"] += 1
            stats["last_error"] = repr(e)
        i += 1


def main():
    dev = d.env("CAIRN_DEVNET_DIR")
    w = d.Watch(NAME)
    everyone = sorted(d.s3_ip(i) for i in range(12))
    waited = w.until(lambda ips: sorted(ips) == everyone, 60, "all 12 gateways listed")
    c.log(f"  s3.{d.ZONE} lists all 12 gateways (after {waited:.1f} s)")

    s3 = c.client(max_attempts=1)
    bucket = c.fresh_bucket(s3, "dnsfail")
    stop, stats = threading.Event(), {"ok": 0, "errors": 0, "mismatch": 0, "last_error": ""}
    worker = threading.Thread(target=traffic, args=(s3, bucket, stop, stats), daemon=True)
    worker.start()
    try:
        time.sleep(2)
        victim = d.s3_ip(VICTIM)
        t0 = time.monotonic()
        d.drill(dev, "stop-node", f"n{VICTIM:02d}")
        w.until(lambda ips: victim not in ips, FAILOVER_LIMIT_S, f"{victim} leaves {NAME}")
        removed = time.monotonic() - t0  # from the kill (drill time included)
        c.log(f"  time failover: {victim} left {NAME} {removed:.1f} s after SIGKILL of n{VICTIM:02d}")
        _, ips = w.poll()
        c.check_eq(sorted(ips), sorted(set(everyone) - {victim}), "record set after failover")
        # Every other node's server agrees within a few blocks.
        other = d.Watch(NAME, node=7)
        other.until(lambda ips: victim not in ips, 10, "node n07 agrees")
        t1 = time.monotonic()
        d.drill(dev, "start-node", f"n{VICTIM:02d}")
        w.until(lambda ips: victim in ips, FAILOVER_LIMIT_S, f"{victim} returns to {NAME}")
        back = time.monotonic() - t1
        c.log(f"  time recovery: {victim} back in {NAME} {back:.1f} s after restarting n{VICTIM:02d}")
    finally:
        stop.set()
        worker.join(timeout=60)
    bad = w.never_empty()
    c.check(not bad, f"{len(bad)} of {len(w.seen)} answers were empty or failed, e.g. {bad[:3]}")
    c.log(f"  {len(w.seen)} DNS answers observed, none empty; S3 traffic: {stats['ok']} PUT+GET ok, "
          f"{stats['errors']} errors, {stats['mismatch']} mismatches")
    c.check(stats["ok"] > 0, "S3 traffic ran")
    c.check_eq(stats["mismatch"], 0, "S3 read-back mismatches")
    c.check_eq(stats["errors"], 0, f"S3 errors during failover (last: {stats['last_error']})")
    hist = subprocess.run([d.env("CAIRN_BIN"), "dns", "history", NAME, "--endpoint",
                             f"127.0.0.1:{int(d.env('CAIRN_S3_BASE_PORT')) + 1000}"],
                            capture_output=True, text=True, timeout=30)
    c.check(hist.returncode == 0 and f"-{victim}" in hist.stdout and f"+{victim}" in hist.stdout,
            f"cairn dns history shows the removal and the return:\n{hist.stdout}{hist.stderr}")
    c.log(hist.stdout.rstrip())


if __name__ == "__main__":
    main()
