#!/usr/bin/env python3
"""audit_drill: a storage node's disk rots; audits and the scrubber notice, nobody else pays.

1. Write OBJECTS objects of 64 KiB (so n05 holds at least one fragment of each), then wait
   until an audit round opened after the writes has been judged: every running node's proofs
   reach the ledger (its pass count grows).
2. `cairn drill corrupt-node n05 10` flips a byte in 10% of n05's fragment files on disk.
3. Within LOST_LIMIT_S, n05's scrubber (or its prover, when a damaged fragment is challenged)
   reports `FragmentLost`: `cairn audit status` and `/audit` show n05's lost count growing, its
   credit falling, and n05's `/metrics` counts the reports. Every object still reads back
   byte-identical (the gateway skips the rotten fragments).
4. Over the next judged round, no node other than n05 gets a fail or a miss, and n05 gets no
   fail either: an honest prover reports a lost fragment instead of sending a bad leaf.
5. `cairn audit verify` replays the chain from genesis through another node's blocks,
   recomputes every round's seed and challenges, re-verifies every proof and matches the
   node's state root.

Needs CAIRN_BIN, CAIRN_DEVNET_DIR and CAIRN_S3_BASE_PORT (set by tests/s3/run)."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402

OBJECTS = 40
LOST_LIMIT_S = float(os.environ.get("CAIRN_S3_AUDIT_LOST_LIMIT_S", "90"))
# A round is 240 blocks: 30-60 s on the devnet; allow three.
ROUND_LIMIT_S = float(os.environ.get("CAIRN_S3_AUDIT_ROUND_LIMIT_S", "240"))
BASE = int(c.env("CAIRN_S3_BASE_PORT"))


def admin(n):
    return f"127.0.0.1:{BASE + 1000 + n}"


def get_json(endpoint, path):
    with urllib.request.urlopen(f"http://{endpoint}{path}", timeout=10) as r:
        return json.load(r)


def node_id(n):
    return get_json(admin(n), "/status")["node_id"]


def standing():
    """Audit rows by node id, as n00's finalized state has them, and the last round."""
    v = get_json(admin(0), "/audit")
    return {r["node_id"]: r for r in v["nodes"]}, v["round"]


def cairn(*args):
    cmd = [c.env("CAIRN_BIN"), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    c.check(out.returncode == 0, f"`{' '.join(cmd)}` failed with exit {out.returncode}:\n"
                                 f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def wait_for_judged_round(after_height, what):
    """Waits until a round that opened after `after_height` has been judged; returns rows."""
    deadline = time.monotonic() + ROUND_LIMIT_S
    while time.monotonic() < deadline:
        rows, rnd = standing()
        if rnd and rnd["judged"] and rnd["opened_height"] > after_height:
            return rows, rnd
        time.sleep(2)
    raise c.CheckFailed(f"{what}: no audit round opened after height {after_height} was judged "
                        f"within {ROUND_LIMIT_S:.0f} s")


def main():
    s3 = c.client()
    bucket = c.fresh_bucket(s3, "audit")
    bodies = {}
    for i in range(OBJECTS):
        key = f"rot/{i:03d}"
        bodies[key] = os.urandom(64 * c.KIB)
        s3.put_object(Bucket=bucket, Key=key, Body=bodies[key])
    height = get_json(admin(0), "/status")["height"]
    with c.timed("first judged round after the writes"):
        before, rnd = wait_for_judged_round(height, "baseline")
    n05 = node_id(5)
    c.check(n05 in before, "n05 has an audit record")
    c.log(f"  round {rnd['number']} judged; n05 before: {short_row(before[n05])}")

    damaged = cairn("drill", "--dir", c.env("CAIRN_DEVNET_DIR"), "corrupt-node", "n05", "10")
    c.log(f"  {damaged.strip()}")
    c.check("corrupted" in damaged and not damaged.startswith("corrupted 0 "),
            f"the drill damaged nothing: {damaged!r}")
    drilled_at = get_json(admin(0), "/status")["height"]

    t0 = time.monotonic()
    while True:
        rows, _ = standing()
        if rows[n05]["lost_reported"] > before[n05]["lost_reported"]:
            break
        c.check(time.monotonic() - t0 < LOST_LIMIT_S,
                f"n05 reported no lost fragment within {LOST_LIMIT_S:.0f} s of the drill")
        time.sleep(1)
    c.log(f"  n05 reported its first lost fragment {time.monotonic() - t0:.1f} s after the drill")
    c.check(rows[n05]["credit"] < before[n05]["credit"], "n05's credit fell with its losses")

    metrics = urllib.request.urlopen(f"http://{admin(5)}/metrics", timeout=10).read().decode()
    reported = [float(line.split()[1]) for line in metrics.splitlines()
                if line.startswith("cairn_fragments_lost_reported_total ")]
    c.check(reported and reported[0] >= 1, "n05's /metrics counts its FragmentLost reports")
    c.check("cairn_scrub_fragments_total" in metrics, "n05's /metrics has scrub counters")
    c.check("audit_prove_ms_bucket" in metrics and "audit_proof_bytes_bucket" in metrics,
            "n05's /metrics has the prover's histograms")

    for key, body in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        c.check(got == body, f"{key} reads back byte-identical after n05's disk rotted")

    with c.timed("next judged round after the drill"):
        after, rnd = wait_for_judged_round(drilled_at, "after the drill")
    status = cairn("audit", "status", "--endpoint", admin(0))
    c.log("  " + "\n  ".join(status.strip().splitlines()))
    for node, row in after.items():
        b = before.get(node, {"fails": 0, "misses": 0, "passes": 0})
        c.check_eq(row["fails"] - b["fails"], 0, f"new failed rounds of {node[:16]}")
        if node == n05:
            continue
        c.check_eq(row["misses"] - b["misses"], 0, f"new missed rounds of {node[:16]}")
        c.check(row["passes"] > b["passes"], f"{node[:16]} passed the round after the drill")
    c.log(f"  n05 after: {short_row(after[n05])}")

    # Anyone can check: replay the chain from genesis and re-verify every round and proof.
    genesis = os.path.join(c.env("CAIRN_DEVNET_DIR"), "genesis.toml")
    with c.timed("cairn audit verify"):
        out = cairn("audit", "verify", "--endpoint", admin(3), "--genesis", genesis)
    c.log(f"  {out.strip()}")
    m = re.search(r"(\d+) rounds recomputed.*?(\d+) proofs re-verified \((\d+) leaves ok, (\d+) bad\)",
                  out)
    c.check(m is not None, f"cairn audit verify output: {out!r}")
    rounds, proofs, ok, bad = (int(x) for x in m.groups())
    c.check(rounds >= 2 and proofs >= 12 and ok >= 12, f"audit verify checked too little: {out!r}")
    c.check_eq(bad, 0, "leaves that did not verify on replay")
    c.check("state root matches" in out, "the replayed state root matches the node's")
    c.empty_bucket(s3, bucket)


def short_row(r):
    return (f"passes {r['passes']} fails {r['fails']} misses {r['misses']} lost "
            f"{r['lost_reported']} credit {r['credit']} state {r['state']}")


if __name__ == "__main__":
    c.run("audit_drill", main)
