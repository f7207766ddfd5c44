#!/usr/bin/env python3
"""Deterministic DNS query corpus for a zone file, for benchmarks (scripts/bench-dns).

Every query is (qname, qtype, expect, group):
  expect  what an authoritative-only server for the zone should answer, from a small model of
          RFC 1034 4.3.2 / RFC 4592 / RFC 6604 (no delegations below the apex are modelled):
          ANSWER, NODATA, NXDOMAIN, REFUSED (name outside the zone: Knot and NSD answer REFUSED,
          with AA clear), CNAME (chain ends in data), CNAME-NODATA, CNAME-NXDOMAIN (dangling
          in-zone target: RCODE NXDOMAIN per RFC 6604), CNAME-OUT (chain leaves the zone: only
          the in-zone part is answered, NOERROR).
  group   why the query is there: names (every name x type), ent, nxdomain, wildcard, case,
          outside.

Query types: A AAAA CNAME TXT MX SRV CAA SOA NS (never ANY). The order and the letter-case
variants depend only on the zone and --seed.

  corpus.py [--zone FILE] [--origin NAME] [--seed N]            one "qname qtype expect group" a line
  corpus.py --dnsperf N [--seed N]                               N dnsperf lines "qname qtype"
  corpus.py --stats                                               counts by group and expectation
"""

import argparse
import os
import random
import re
import sys

try:
    import dns.name
    import dns.rdatatype
    import dns.zone
except ImportError:  # e.g. a pyenv python3 first on PATH: fall back to the system one
    if os.path.exists("/usr/bin/python3") and not os.environ.get("_DNS_HARNESS_REEXEC"):
        os.environ["_DNS_HARNESS_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit("corpus.py needs dnspython (apt-get install python3-dnspython)")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_ZONE = os.path.join(HERE, "zones", "example.zone")
TYPES = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "SOA", "NS"]
DEFAULT_SEED = 20240611
MAX_CHAIN = 8


def detect_origin(path):
    """The first $ORIGIN of the file (the harness zones all start with one)."""
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*\$ORIGIN\s+(\S+)", line, re.I)
            if m:
                origin = m.group(1)
                return origin if origin.endswith(".") else origin + "."
    raise SystemExit(f"{path}: no $ORIGIN line; pass --origin")


class Model:
    """The zone as the set of owner names and their types, enough to predict answers."""

    def __init__(self, path, origin=None):
        self.origin = dns.name.from_text(origin or detect_origin(path))
        z = dns.zone.from_file(path, origin=self.origin, relativize=False, check_origin=True)
        self.types = {}  # lowercased Name -> set of type names
        self.spelling = {}  # lowercased Name -> the owner as the file spells it
        self.cname = {}  # lowercased Name -> lowercased target
        for name, node in z.nodes.items():
            key = dns.name.from_text(name.to_text().lower())
            self.spelling[key] = name.to_text()
            self.types[key] = {dns.rdatatype.to_text(r.rdtype) for r in node.rdatasets}
            for r in node.rdatasets:
                if r.rdtype == dns.rdatatype.CNAME:
                    self.cname[key] = dns.name.from_text(r[0].target.to_text().lower())
        # Empty non-terminals: ancestors of owners (below the apex) that own nothing.
        self.ents = set()
        for name in self.types:
            n = name
            while n != self.origin and len(n) > len(self.origin):
                n = n.parent()
                if n not in self.types and n != self.origin:
                    self.ents.add(n)

    def exists(self, n):
        return n in self.types or n in self.ents

    def lookup(self, n):
        """Types at n after wildcard synthesis: (types, synthesized) or None for NXDOMAIN."""
        if n in self.types:
            return self.types[n], False
        if n in self.ents:
            return set(), False
        ce = n.parent()
        while not self.exists(ce) and ce != self.origin:
            ce = ce.parent()
        wc = dns.name.Name((b"*",) + ce.labels)
        if wc in self.types:
            return self.types[wc], True
        return None

    def expect(self, qname, qtype):
        n = dns.name.from_text(qname.lower())
        if not n.is_subdomain(self.origin):
            return "REFUSED"
        hops = 0
        while True:
            got = self.lookup(n)
            prefix = "CNAME-" if hops else ""
            if got is None:
                return prefix + "NXDOMAIN"
            types, synthesized = got
            if "CNAME" in types and qtype != "CNAME" and hops < MAX_CHAIN:
                if synthesized:  # wildcard CNAMEs are not modelled
                    return "CNAME"
                target = self.cname[n]
                if not target.is_subdomain(self.origin):
                    return "CNAME-OUT"
                n, hops = target, hops + 1
                continue
            if qtype in types:
                return "CNAME" if hops else "ANSWER"
            return prefix + "NODATA"


def random_case(name, rng):
    out = "".join(ch.upper() if ch.isalpha() and rng.random() < 0.5 else ch.lower() for ch in name)
    if out == name.lower():  # make sure at least one letter changes
        for i, ch in enumerate(out):
            if ch.isalpha():
                return out[:i] + ch.upper() + out[i + 1:]
    return out


def build(path=DEFAULT_ZONE, origin=None, seed=DEFAULT_SEED):
    m = Model(path, origin)
    o = m.origin.to_text()
    rng = random.Random(seed)
    out, seen = [], set()

    def add(qname, qtype, group):
        if (qname, qtype) not in seen:
            seen.add((qname, qtype))
            expect = m.expect(qname, qtype)
            if group == "nxdomain" and not expect.endswith("NXDOMAIN"):
                group = "wildcard"  # e.g. a name below an ENT that has a wildcard child
            out.append((qname, qtype, expect, group))

    def rel(text):
        return f"{text}.{o}" if text else o

    # 1. Every owner name (wildcard owners excepted) x every type: data, NODATA, CNAME chasing.
    names = sorted((n for n in m.types if n.labels[0] != b"*"), key=lambda n: n.to_text())
    for n in names:
        for t in TYPES:
            add(n.to_text(), t, "names")
    # 2. Empty non-terminals: NODATA for every type asked.
    for n in sorted(m.ents, key=lambda n: n.to_text()):
        for t in ("A", "AAAA", "TXT", "NS"):
            add(n.to_text(), t, "ent")
    # 3. NXDOMAIN: fresh names, deep names, below leaves, below ENTs, below CNAME owners,
    #    below a name that blocks the wildcard, the dangling CNAME target.
    nx = ["nope", "nx1", "nx2", "x.nope", "a.b.c.d.e", "deep.deep.deep.deep.nx",
          "www1", "ww", "_sip._udp", "_xmpp._tcp"]
    for n in names:
        rest = n.relativize(m.origin).to_text()
        if n != m.origin and n.labels[0] != b"*":
            nx.append("x." + rest)
    for n in m.ents:
        if n.labels[0] != b"*":
            nx.append("nx." + n.relativize(m.origin).to_text())
    nx += [t.relativize(m.origin).to_text() for t in m.cname.values() if t.is_subdomain(m.origin)]
    for i, text in enumerate(sorted(set(nx))):
        add(rel(text.lower()), "A", "nxdomain")
        add(rel(text.lower()), ("TXT", "AAAA", "MX", "SRV")[i % 4], "nxdomain")
    # 4. Wildcards: one- and multi-label matches, for every type (NODATA for the missing ones).
    for w in sorted((n for n in m.types if n.labels[0] == b"*"), key=lambda n: n.to_text()):
        parent = w.parent().relativize(m.origin).to_text()
        for label in ("foo", "a.b", "x.y.z", "_srv._tcp", "wild-card-1"):
            for t in ("A", "TXT", "AAAA", "MX", "CNAME"):
                add(rel(f"{label}.{parent}"), t, "wildcard")
    # 5. Letter case: the owners as the file spells them, and random-case copies of a sample.
    for n, spelled in sorted(m.spelling.items(), key=lambda kv: kv[0].to_text()):
        if spelled != n.to_text() and n.labels[0] != b"*":
            for t in ("A", "TXT", "CNAME"):
                add(spelled, t, "case")
    base = [q for q in out if q[3] != "case"]
    for qname, qtype, _, _ in rng.sample(base, min(48, len(base))):
        add(random_case(qname, rng), qtype, "case")
    # 6. Outside the zone: an authoritative-only server refuses (Knot, NSD: REFUSED, AA clear).
    bare = o.split(".", 1)[1] or "."
    for qname, qtype in [("example.com.", "A"), (bare, "SOA"), (".", "NS"), ("other" + o, "A"),
                         ("x" + o, "A"), ("www.example.org.", "AAAA"),
                         ("target.elsewhere.invalid.", "A"), ("mail2.example.net.", "MX")]:
        add(qname, qtype, "outside")
    return out


def dnsperf_lines(queries, count, seed):
    """A load mix: ~75% names with data (A/AAAA weighted up), ~10% NODATA, ~15% NXDOMAIN."""
    rng = random.Random(seed)
    pos = [q for q in queries if q[2] in ("ANSWER", "CNAME", "CNAME-OUT")]
    pos += [q for q in pos if q[1] in ("A", "AAAA")] * 2
    nodata = [q for q in queries if q[2] in ("NODATA", "CNAME-NODATA")]
    nx = [q for q in queries if q[2] in ("NXDOMAIN", "CNAME-NXDOMAIN")]
    lines = []
    for _ in range(count):
        r = rng.random()
        pool = pos if r < 0.75 else nodata if r < 0.85 else nx
        q = rng.choice(pool)
        lines.append(f"{q[0]} {q[1]}")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zone", default=DEFAULT_ZONE)
    ap.add_argument("--origin", help="default: the zone file's first $ORIGIN")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--dnsperf", type=int, metavar="N", help="print N dnsperf query lines instead")
    ap.add_argument("--stats", action="store_true")
    a = ap.parse_args()
    qs = build(a.zone, a.origin, a.seed)
    if a.dnsperf:
        print("\n".join(dnsperf_lines(qs, a.dnsperf, a.seed)))
    elif a.stats:
        from collections import Counter
        print(f"{len(qs)} queries")
        for what, idx in (("group", 3), ("expect", 2), ("qtype", 1)):
            c = Counter(q[idx] for q in qs)
            print(f"  by {what}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    else:
        for q in qs:
            print(" ".join(q))


if __name__ == "__main__":
    main()
