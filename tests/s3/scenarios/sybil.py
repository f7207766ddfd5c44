#!/usr/bin/env python3
"""sybil: outsiders with fresh keys register 12 storage nodes claiming 2^64-1 bytes each, one
gateway whose S3 address is the attacker's, and 30 validators, through `cairn node register`.
Each registration finalizes as *pending*: `/nodes` shows no granted role or capacity, `cairn
status` lists them as pending, placement and `s3.cairn.test` ignore them, and S3 PUT/GET keep
working (the original attack made 5 of 5 acknowledged PUTs unreadable). An admission signed by
one committee operator is refused for want of a quorum; one signed by a quorum of the committee
(8 of 11) grants the role asked for. Needs CAIRN_BIN, CAIRN_DEVNET_DIR, CAIRN_S3_BASE_PORT."""

import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402

ATTACKER_S3 = "127.0.9.9"
NAME = f"s3.{d.ZONE}"


def cairn(*args, check=True):
    out = subprocess.run([d.env("CAIRN_BIN"), *args], capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"`cairn {' '.join(args)}` failed: {out.stdout[-800:]}{out.stderr[-800:]}")
    return out


def admin():
    return f"127.0.0.1:{int(d.env('CAIRN_S3_BASE_PORT')) + 1000}"


def nodes():
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{admin()}/nodes", timeout=10) as r:
        return {n["node_id"]: n for n in json.load(r)["nodes"]}


def fresh_key(tmp, i):
    out = cairn("keygen").stdout
    secret = re.search(r'private_key\s*=\s*"([0-9a-f]{64})"', out)
    public = re.search(r'public_key\s*=\s*"([0-9a-f]{64})"', out)
    c.check(secret and public, f"keygen prints a private and a public key: {out!r}")
    path = os.path.join(tmp, f"k{i}.key")
    with open(path, "w") as f:
        f.write(secret.group(1) + "\n")
    return path, public.group(1)


def node_key_file(tmp, dev, name):
    toml = open(os.path.join(dev, "nodes", name, "node.toml")).read()
    key = re.search(r'private_key\s*=\s*"([0-9a-f]{64})"', toml).group(1)
    path = os.path.join(tmp, f"{name}.key")
    with open(path, "w") as f:
        f.write(key + "\n")
    return path


def register(path, zone, roles, capacity, addresses):
    args = ["node", "register", "--endpoint", admin(), "--key", path, "--zone", zone, "--roles", roles,
            "--capacity-bytes", str(capacity)]
    for a in addresses:
        args += ["--address", a]
    return cairn(*args)


def main():
    dev = d.env("CAIRN_DEVNET_DIR")
    s3 = c.client(max_attempts=1)
    before = nodes()
    honest = set(before)
    w = d.Watch(NAME)
    everyone = sorted(d.s3_ip(i) for i in range(12))
    w.until(lambda ips: sorted(ips) == everyone, 60, "all 12 gateways listed")

    with tempfile.TemporaryDirectory() as tmp:
        fake = {}
        t0 = time.monotonic()
        for i in range(12):
            path, pub = fresh_key(tmp, i)
            register(path, f"z{i % 3 + 1}", "storage", 2**64 - 1, [f"127.0.9.{i + 10}:1"] * 4)
            fake[pub] = "storage"
        path, pub = fresh_key(tmp, "gw")
        register(path, "z1", "gateway", 0, [f"{ATTACKER_S3}:1", f"{ATTACKER_S3}:2", f"{ATTACKER_S3}:9000"])
        fake[pub] = "gateway"
        gateway_key, gateway_id = path, pub
        for i in range(30):
            path, pub = fresh_key(tmp, f"v{i}")
            register(path, "z2", "validator", 0, [f"127.0.9.{i + 100}:1"])
            fake[pub] = "validator"
        c.log(f"  time registered {len(fake)} outsider nodes in {time.monotonic() - t0:.1f} s")

        after = nodes()
        c.check_eq(set(after) - honest, set(fake), "every registration finalized")
        for pub, role in fake.items():
            n = after[pub]
            c.check_eq(n["status"], "pending", f"{role} registration {pub[:8]} status")
            c.check_eq(sum(n["roles"].values()), 0, f"{pub[:8]} holds no granted role")
            c.check_eq(n["capacity_bytes"], 0, f"{pub[:8]} holds no granted capacity")
            c.check(n["requested_roles"][role], f"{pub[:8]} keeps its request for review")
        status = cairn("status", "--endpoint", admin()).stdout
        c.check(f"({len(fake)} pending admission)" in status, f"cairn status counts pending: {status[:400]}")
        c.check(status.count(" pending ") >= len(fake), "cairn status lists each pending node")

        # Placement ignores them: objects stay readable (the attack made every GET fail).
        bucket = c.fresh_bucket(s3, "sybil")
        for i in range(5):
            body = os.urandom(64 * 1024 + i)
            s3.put_object(Bucket=bucket, Key=f"o{i}", Body=body)
            got = s3.get_object(Bucket=bucket, Key=f"o{i}")["Body"].read()
            c.check(got == body, f"object o{i} reads back byte-identical")
        # DNS ignores the outsider gateway (the attack had it listed 1.0 s later).
        time.sleep(3)
        for node in (0, 5, 11):
            _, ips = d.addresses(NAME, node=node)
            c.check(ATTACKER_S3 not in ips, f"{NAME} at node {node} does not list the outsider gateway")
            c.check_eq(sorted(ips), everyone, f"{NAME} at node {node} is unchanged")

        # One committee operator is not a quorum; the outsider's own key is not a member.
        n00 = node_key_file(tmp, dev, "n00")
        out = cairn("node", "admit", gateway_id, "--endpoint", admin(), "--key", n00, check=False)
        c.check(out.returncode != 0 and "committee members but needs" in out.stdout + out.stderr,
                f"a lone approval is refused: {out.stdout[-300:]}{out.stderr[-300:]}")
        out = cairn("node", "admit", gateway_id, "--endpoint", admin(), "--key", gateway_key, check=False)
        c.check(out.returncode != 0, "an outsider cannot approve itself")
        c.check_eq(nodes()[gateway_id]["status"], "pending", "still pending after refused admissions")

        # A committee quorum admits a validator-requesting outsider as a plain cache node
        # (a subset of nothing it asked for is refused; grant it what it asked, minus roles).
        target = next(p for p, r in fake.items() if r == "storage")
        keys = []
        for i in range(8):
            keys += ["--key", node_key_file(tmp, dev, f"n{i:02d}")]
        cairn("node", "admit", target, "--endpoint", admin(), "--roles", "storage",
              "--capacity-bytes", "0", *keys)
        n = nodes()[target]
        c.check_eq(n["status"], "admitted", "quorum admission applies")
        c.check(n["roles"]["storage"] and not n["roles"]["gateway"], "granted exactly the storage role")
        c.check_eq(n["capacity_bytes"], 0, "granted capacity is the committee's, not the claim")
        c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("sybil", main)
