"""Helpers for the DNS scenarios: query a devnet node's authoritative server with dnspython,
and drive `cairn drill`. The devnet layout (tests/s3/run) gives node i its DNS server on
127.0.0.1:BASE+3000+i and its S3 endpoint (the address `s3.<zone>` lists) on 127.0.1.(i+1)."""

import os
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

ZONE = os.environ.get("CAIRN_ZONE", "cairn.test")


def env(name):
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"missing environment variable {name} (run through tests/s3/run)")
    return value


def dns_port(node, base=None):
    return int(base if base is not None else env("CAIRN_S3_BASE_PORT")) + 3000 + node


def s3_ip(node):
    return f"127.0.1.{node + 1}"


def query(name, rdtype="A", node=0, tcp=False, base=None, timeout=2.0):
    """One query; returns the dnspython response (raises on timeout)."""
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    q.flags &= ~dns.flags.RD
    fn = dns.query.tcp if tcp else dns.query.udp
    return fn(q, "127.0.0.1", port=dns_port(node, base), timeout=timeout)


def addresses(name, node=0, base=None):
    """(rcode, sorted A addresses) of `name` at `node`."""
    r = query(name, "A", node=node, base=base)
    ips = sorted(
        rr.address
        for rrset in r.answer
        if rrset.rdtype == dns.rdatatype.A
        for rr in rrset
    )
    return r.rcode(), ips


def drill(dev_dir, *args):
    cmd = [env("CAIRN_BIN"), "drill", "--dir", dev_dir, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise AssertionError(f"`{' '.join(cmd)}` failed: {out.stdout[-1000:]}{out.stderr[-1000:]}")


class Watch:
    """Polls `name` every `interval_s` and keeps every observation (time, rcode, ips)."""

    def __init__(self, name, node=0, base=None, interval_s=0.1):
        self.name, self.node, self.base, self.interval_s = name, node, base, interval_s
        self.seen = []

    def poll(self):
        t = time.monotonic()
        try:
            rc, ips = addresses(self.name, node=self.node, base=self.base)
        except Exception as e:  # a timeout is an observation too
            rc, ips = f"error: {e}", []
        self.seen.append((t, rc, ips))
        return rc, ips

    def until(self, pred, limit_s, what):
        """Polls until pred(ips) holds; returns seconds waited. Fails after limit_s."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            rc, ips = self.poll()
            if rc == dns.rcode.NOERROR and pred(ips):
                return time.monotonic() - t0
            time.sleep(self.interval_s)
        raise AssertionError(f"{what}: not within {limit_s} s; last answer {self.seen[-1]}")

    def never_empty(self):
        bad = [(t, rc, ips) for (t, rc, ips) in self.seen if rc != dns.rcode.NOERROR or not ips]
        return bad
