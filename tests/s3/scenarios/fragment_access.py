#!/usr/bin/env python3
"""fragment_access: fragments move only between gateways and storage nodes, on the fragment
listener (base port + 4000 + i), never on the admin API.

On the main devnet (every node a gateway): S3 PUT/GET through the gateway works; a gateway's
signed ticket reads a stored fragment byte-identical; the same ticket again is refused as a
replay, a 31 s old one as stale, one for another node as misdirected, one from a key that is
no node (the devnet admin account) as AccessDenied, unsigned requests too, and the admin API
no longer routes /fragments. On a second devnet of 4 nodes where only n03 is a gateway, the
storage-only nodes n00..n02 (registered, staked) can neither GET nor PUT fragments.

Tickets are signed with `cairn fragment-sign` (hidden helper) and sent with http.client."""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_s3 as c  # noqa: E402

BASE = int(c.env("CAIRN_S3_BASE_PORT"))
BIN = c.env("CAIRN_BIN")
WORK = c.env("CAIRN_S3_WORK")


def request(port, method, path, headers=None, body=b""):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=body, headers={**(headers or {}), "Content-Length": str(len(body))})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def code(body):
    try:
        return json.loads(body)["error"]
    except Exception:  # noqa: BLE001
        return body[:200]


def key_file(dev, i):
    with open(os.path.join(dev, "nodes", f"n{i:02d}", "node.toml")) as f:
        key = next(l.split('"')[1] for l in f if l.startswith("private_key"))
    path = os.path.join(WORK, f"frag-key-{os.path.basename(os.path.dirname(dev))}-n{i:02d}")
    with open(path, "w") as f:
        f.write(key)
    return path


def nodes(base):
    status, body, _ = request(base + 1000, "GET", "/nodes")
    c.check_eq(status, 200, "GET /nodes")
    out = {}
    for n in json.loads(body)["nodes"]:
        # Outsiders' registrations (the sybil scenario shares this devnet) are not devnet
        # nodes: only the layout's own admin ports count.
        if n["status"] == "pending" or len(n["addresses"]) < 4:
            continue
        admin_port = int(n["addresses"][1].rsplit(":", 1)[1])
        if not 0 <= admin_port - base - 1000 < 100:
            continue
        out[admin_port - base - 1000] = n
    return out


def sign(key, method, target, root, length=0, time_ms=None):
    cmd = [BIN, "fragment-sign", "--key", key, "--method", method, "--target", target, "--root", root,
           "--content-length", str(length)]
    if time_ms is not None:
        cmd += ["--time-ms", str(time_ms)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    c.check(out.returncode == 0, f"fragment-sign failed: {out.stderr}")
    return json.loads(out.stdout)


def a_fragment(dev, i):
    fdir = os.path.join(dev, "nodes", f"n{i:02d}", "data", "fragments")
    for shard in sorted(os.listdir(fdir)):
        sdir = os.path.join(fdir, shard)
        if len(shard) != 2 or not os.path.isdir(sdir):
            continue
        for name in sorted(os.listdir(sdir)):
            if name.endswith(".frag"):
                with open(os.path.join(sdir, name), "rb") as f:
                    return name[: -len(".frag")], f.read()
    return None, None


def expect(got, status, err, what):
    s, body, headers = got
    c.check(s == status and code(body) == err, f"{what}: expected {status} {err}, got {s} {code(body)!r}")
    c.log(f"  {what}: {s} {err}")
    return headers


def main_devnet():
    dev = c.env("CAIRN_DEVNET_DIR")
    s3 = c.client()
    bucket = c.fresh_bucket(s3, "frag")
    data = os.urandom(300 * c.KIB)
    try:
        s3.put_object(Bucket=bucket, Key="obj", Body=data)
        got = s3.get_object(Bucket=bucket, Key="obj")["Body"].read()
        c.check(got == data, "S3 GET through the gateway is not byte-identical")
        c.log("  S3 PUT and GET through the gateway: ok")
        ns = nodes(BASE)
        holder = next(i for i in sorted(ns) if a_fragment(dev, i)[0])
        root, stored = a_fragment(dev, holder)
        target = ns[holder]["node_id"]
        other = ns[(holder + 1) % len(ns)]["node_id"]
        port = BASE + 4000 + holder
        c.check_eq(ns[holder]["addresses"][3], f"127.0.0.1:{port}", "advertised fragment address")
        path = f"/fragments/{root}"
        gateway = key_file(dev, (holder + 2) % len(ns))
        ticket = sign(gateway, "GET", target, root)
        s, body, _ = request(port, "GET", path, ticket)
        c.check(s == 200 and body == stored, f"gateway GET: {s} {code(body)!r}, {len(body)} bytes")
        c.log(f"  gateway GET of a fragment on n{holder:02d}: 200, {len(body)} bytes, identical")
        expect(request(port, "GET", path, ticket), 403, "RequestReplayed", "same ticket again")
        stale = sign(gateway, "GET", target, root, time_ms=int(time.time() * 1000) - 31_000)
        expect(request(port, "GET", path, stale), 403, "RequestTimeTooSkewed", "31 s old ticket")
        expect(request(port, "GET", path, sign(gateway, "GET", other, root)), 421, "WrongTarget",
               "ticket for another node")
        admin_key = os.path.join(dev, "admin.key")
        expect(request(port, "GET", path, sign(admin_key, "GET", target, root)), 403, "AccessDenied",
               "GET signed by an account that is no node")
        junk = os.urandom(4096)
        junk_root = "5a" * 32
        expect(request(port, "PUT", f"/fragments/{junk_root}", sign(admin_key, "PUT", target, junk_root, len(junk)),
                       junk), 403, "AccessDenied", "PUT signed by an account that is no node")
        expect(request(port, "GET", path), 403, "AccessDenied", "unsigned GET")
        expect(request(BASE + 1000 + holder, "GET", path, sign(gateway, "GET", target, root)), 404, "NotFound",
               "the admin API routing /fragments")
        # Still serving normally after all the refusals.
        got = s3.get_object(Bucket=bucket, Key="obj")["Body"].read()
        c.check(got == data, "S3 GET after the refused fragment requests is not byte-identical")
    finally:
        c.empty_bucket(s3, bucket)


def second_devnet():
    base = BASE + 200
    tmp = tempfile.mkdtemp(prefix="cairn-fragaccess.")
    dev = os.path.join(tmp, "devnet")
    log = open(os.path.join(tmp, "devnet.log"), "w")
    proc = subprocess.Popen(
        [BIN, "devnet", "--dir", dev, "--nodes", "4", "--validators", "4", "--zones", "2",
         "--gateways", "1", "--base-port", str(base)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "devnet ready" not in open(log.name).read():
            c.check(proc.poll() is None, f"second devnet exited:\n{open(log.name).read()[-3000:]}")
            c.check(time.monotonic() < deadline, "second devnet not ready within 180 s")
            time.sleep(0.5)
        text = open(log.name).read()
        c.check("verified GET" in text, f"second devnet's S3 self-check failed:\n{text[-2000:]}")
        ns = nodes(base)
        c.check(ns[3]["roles"]["gateway"] and not any(ns[i]["roles"]["gateway"] for i in range(3)),
                "expected n03 to be the only gateway")
        root, stored = a_fragment(dev, 1)
        c.check(root is not None, "no fragment on n01 after the self-check")
        target, port, path = ns[1]["node_id"], base + 4000 + 1, f"/fragments/{root}"
        s, body, _ = request(port, "GET", path, sign(key_file(dev, 3), "GET", target, root))
        c.check(s == 200 and body == stored, f"gateway n03 GET: {s} {code(body)!r}")
        c.log("  second devnet: gateway n03 reads n01's fragment: 200")
        for i in (0, 2):
            key = key_file(dev, i)
            expect(request(port, "GET", path, sign(key, "GET", target, root)), 403, "AccessDenied",
                   f"storage-only n{i:02d} GET")
            junk = os.urandom(4096)
            junk_root = "5a" * 32
            expect(request(port, "PUT", f"/fragments/{junk_root}", sign(key, "PUT", target, junk_root, len(junk)),
                           junk), 403, "AccessDenied", f"storage-only n{i:02d} PUT")
        c.check(not os.path.exists(os.path.join(dev, "nodes", "n01", "data", "fragments", "5a", junk_root + ".frag")),
                "a refused PUT was stored")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    main_devnet()
    second_devnet()


if __name__ == "__main__":
    c.run("fragment_access", main)
