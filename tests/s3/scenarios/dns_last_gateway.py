#!/usr/bin/env python3
"""dns_last_gateway: on a second devnet of 7 nodes (4 validators, 3 gateways n04..n06), the
gateways are stopped one by one. s3.cairn.test shrinks to the last gateway and is never empty;
when that one stops too, the record set stays as it was (fail static) and the ledger raises
its all-unhealthy alert (`alerting` in `/dns/history`)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402

LIMIT_S = float(os.environ.get("CAIRN_DNS_FAILOVER_LIMIT", "60"))
NAME = f"s3.{d.ZONE}"


def main():
    base = int(d.env("CAIRN_S3_BASE_PORT")) + 100
    tmp = tempfile.mkdtemp(prefix="cairn-lastgw.")
    dev = os.path.join(tmp, "devnet")
    log = open(os.path.join(tmp, "devnet.log"), "w")
    proc = subprocess.Popen(
        [d.env("CAIRN_BIN"), "devnet", "--dir", dev, "--nodes", "7", "--validators", "4",
         "--zones", "2", "--gateways", "3", "--base-port", str(base)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "devnet ready" not in open(log.name).read():
            c.check(proc.poll() is None, f"second devnet exited:\n{open(log.name).read()[-3000:]}")
            c.check(time.monotonic() < deadline, "second devnet not ready within 180 s")
            time.sleep(0.5)
        w = d.Watch(NAME, base=base)
        gateways = [d.s3_ip(i) for i in (4, 5, 6)]
        w.until(lambda ips: sorted(ips) == sorted(gateways), 30, "the 3 gateways listed")
        for victim, left in ((4, gateways[1:]), (5, gateways[2:])):
            t0 = time.monotonic()
            d.drill(dev, "stop-node", f"n{victim:02d}")
            w.until(lambda ips, want=left: sorted(ips) == sorted(want), LIMIT_S,
                    f"only {left} after stopping n{victim:02d}")
            c.log(f"  time n{victim:02d} stopped -> {NAME} = {left}: {time.monotonic() - t0:.1f} s")
        # The last gateway stops too: nothing healthy is left, so nothing may change.
        d.drill(dev, "stop-node", "n06")
        admin = f"127.0.0.1:{base + 1000}"
        t0 = time.monotonic()
        alerting = False
        while time.monotonic() - t0 < LIMIT_S:
            w.poll()
            with urllib.request.urlopen(f"http://{admin}/dns/history/{NAME}", timeout=5) as r:
                alerting = json.load(r)["alerting"]
            if alerting:
                break
            time.sleep(0.5)
        c.check(alerting, f"the ledger raised no all-unhealthy alert within {LIMIT_S} s")
        c.log(f"  time all gateways down -> alert: {time.monotonic() - t0:.1f} s")
        time.sleep(3)
        _, ips = w.poll()
        c.check_eq(ips, [gateways[2]], "fail static: the last record set stays")
        bad = w.never_empty()
        c.check(not bad, f"{len(bad)} of {len(w.seen)} answers were empty or failed: {bad[:3]}")
        c.log(f"  {len(w.seen)} answers observed, none empty")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)
        # Nodes restarted by drills are outside the group; anything naming our dir is ours.
        subprocess.run(["pkill", "-KILL", "-f", dev], check=False)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
