#!/usr/bin/env python3
"""dns_knot: Cairn against Knot DNS, the reference authoritative server.

1. Differential: tests/dns/zones/example.zone is loaded into a Knot primary and imported into
   the devnet; a corpus of at least 200 queries (every name and type, NXDOMAIN, NODATA, CNAME
   chains in and out of the zone, MX, TXT, SRV, CAA, wildcards, an empty non-terminal, random
   letter case, names outside the zone; tests/dns/corpus.py) goes to both over UDP with EDNS (a quarter over TCP too). RCODE, AA, the answer
   section and the authority section must match; the SOA serial is compared without its value
   (Knot serves the file's serial, Cairn the ledger's zone version). Deliberate differences are
   listed in tests/dns/deliberate.txt.
2. Secondary: a Knot secondary transfers the zone from Cairn node n01 over AXFR and then answers
   the corpus exactly like Cairn, serial included.
3. NOTIFY: n01 restarts with the secondary in its `notify` list; a zone change reaches the
   secondary through NOTIFY (its refresh timer is 2 hours), measured."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "dns"))
import corpus  # noqa: E402  (tests/dns/corpus.py: the query corpus bench-dns draws from too)
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DNS_DIR = os.path.join(HERE, "..", "..", "dns")
ZONE_FILE = os.path.join(DNS_DIR, "zones", "example.zone")
ORIGIN = "example.test."
BASE = int(d.env("CAIRN_S3_BASE_PORT"))
ADMIN = f"127.0.0.1:{BASE + 1000}"
KEY = os.path.join(d.env("CAIRN_DEVNET_DIR"), "admin.key")
KNOT_PRIMARY = BASE + 3500
KNOT_SECONDARY = BASE + 3501
KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"


def knot_conf(dir_, port, zone_stanza, extra=""):
    conf = os.path.join(dir_, "knot.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    rundir: "{dir_}"
    listen: 127.0.0.1@{port}
database:
    storage: "{dir_}"
log:
  - target: stderr
    any: warning
{extra}
zone:
  - domain: {ORIGIN}
    storage: "{dir_}"
    journal-content: none
    zonefile-sync: -1
{zone_stanza}
""")
    return conf


def start_knot(dir_, conf):
    log = open(os.path.join(dir_, "knot.log"), "w")
    return subprocess.Popen([KNOTD, "-c", conf], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def ask(port, name, rdtype, tcp=False):
    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    q.flags &= ~dns.flags.RD
    fn = dns.query.tcp if tcp else dns.query.udp
    for attempt in range(2):
        try:
            return fn(q, "127.0.0.1", port=port, timeout=2)
        except dns.exception.Timeout:
            if attempt == 1:
                raise


def soa_serial(port):
    try:
        r = ask(port, ORIGIN, "SOA")
        return r.answer[0][0].serial if r.answer else None
    except Exception:
        return None


def wait_for(pred, limit_s, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.2)
    raise c.CheckFailed(f"{what}: not within {limit_s} s")


def normalize(r, serial=True):
    def rrsets(section):
        got = []
        for rrset in section:
            rows = []
            for rd in rrset:
                text = rd.to_text()
                if rrset.rdtype == dns.rdatatype.SOA and not serial:
                    f = text.split()
                    text = " ".join(f[:2] + ["SERIAL"] + f[3:])
                rows.append(text.lower())
            got.append((rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype),
                        rrset.ttl, tuple(sorted(rows))))
        return sorted(got)
    return (dns.rcode.to_text(r.rcode()), bool(r.flags & dns.flags.AA),
            rrsets(r.answer), rrsets(r.authority))


def deliberate():
    path = os.path.join(DNS_DIR, "deliberate.txt")
    allowed = set()
    if os.path.exists(path):
        for line in open(path):
            line = line.split("#")[0].strip()
            if line:
                n, t = line.split()
                allowed.add((n.lower(), t.upper()))
    return allowed


def differential(queries, port_a, port_b, serial, what):
    allowed = deliberate()
    same, diffs = 0, []
    for i, (name, t) in enumerate(queries):
        tcp = i % 4 == 0
        a = normalize(ask(port_a, name, t, tcp), serial)
        b = normalize(ask(port_b, name, t, tcp), serial)
        if a == b:
            same += 1
        elif (name.lower(), t) not in allowed:
            diffs.append((name, t, a, b))
    c.log(f"  {what}: {len(queries)} queries, {same} identical, {len(diffs)} different "
          f"(outside tests/dns/deliberate.txt)")
    for name, t, a, b in diffs[:10]:
        c.log(f"    {name} {t}\n      A: {a}\n      B: {b}")
    c.check(not diffs, f"{what}: {len(diffs)} answers differ")


def main():
    tmp = tempfile.mkdtemp(prefix="cairn-knot.")
    procs = []
    try:
        out = subprocess.run([d.env("CAIRN_BIN"), "dns", "--endpoint", ADMIN, "--key", KEY,
                              "import", ZONE_FILE], capture_output=True, text=True, timeout=60)
        c.check(out.returncode == 0, f"cairn dns import: {out.stdout}{out.stderr}")
        # --- Knot primary on the same file ---
        prim = os.path.join(tmp, "primary")
        os.makedirs(prim)
        shutil.copy(ZONE_FILE, os.path.join(prim, "example.test.zone"))
        conf = knot_conf(prim, KNOT_PRIMARY, '    file: "example.test.zone"')
        procs.append(start_knot(prim, conf))
        wait_for(lambda: soa_serial(KNOT_PRIMARY) == 1, 20, "Knot primary serves the zone")
        queries = [(q[0], q[1]) for q in corpus.build(ZONE_FILE, ORIGIN)]
        c.check(len(queries) >= 200, f"corpus has {len(queries)} queries")
        differential(queries, KNOT_PRIMARY, d.dns_port(0), False, "Knot primary vs Cairn n00")

        # --- Knot secondary of Cairn n01, with NOTIFY ---
        sec = os.path.join(tmp, "secondary")
        os.makedirs(sec)
        cairn_port = d.dns_port(1)
        extra = f"""remote:
  - id: cairn
    address: 127.0.0.1@{cairn_port}
acl:
  - id: notify_from_cairn
    address: 127.0.0.1
    action: notify
"""
        conf = knot_conf(sec, KNOT_SECONDARY, "    master: cairn\n    acl: notify_from_cairn", extra)
        procs.append(start_knot(sec, conf))
        cairn_serial = soa_serial(cairn_port)
        took = wait_for(lambda: soa_serial(KNOT_SECONDARY) == cairn_serial, 30,
                        "Knot secondary transfers the zone from Cairn (AXFR)")
        c.log(f"  time Knot secondary AXFR from Cairn n01: {took:.1f} s (serial {cairn_serial})")
        differential(queries, d.dns_port(1), KNOT_SECONDARY, True, "Cairn n01 vs its Knot secondary")

        # --- NOTIFY: n01 restarts with the secondary in its notify list ---
        dev = d.env("CAIRN_DEVNET_DIR")
        toml = os.path.join(dev, "nodes", "n01", "node.toml")
        d.drill(dev, "stop-node", "n01")
        text = open(toml).read()
        text = re.sub(r"notify = \[[^\]]*\]", f'notify = ["127.0.0.1:{KNOT_SECONDARY}"]', text)
        open(toml, "w").write(text)
        d.drill(dev, "start-node", "n01")
        wait_for(lambda: soa_serial(cairn_port) is not None, 60, "n01 answers again")
        wait_for(lambda: soa_serial(cairn_port) == soa_serial(d.dns_port(0)), 60, "n01 caught up")
        changed = os.path.join(tmp, "changed.zone")
        open(changed, "w").write(open(ZONE_FILE).read() + "notified IN TXT \"by notify\"\n")
        before = soa_serial(KNOT_SECONDARY)
        t0 = time.monotonic()
        out = subprocess.run([d.env("CAIRN_BIN"), "dns", "--endpoint", ADMIN, "--key", KEY,
                              "import", changed], capture_output=True, text=True, timeout=60)
        c.check(out.returncode == 0, f"cairn dns import: {out.stdout}{out.stderr}")
        wait_for(lambda: (soa_serial(KNOT_SECONDARY) or 0) > before, 30,
                 "the secondary picks up the change (NOTIFY, then IXFR/AXFR)")
        c.log(f"  time zone change -> Knot secondary updated via NOTIFY: {time.monotonic() - t0:.1f} s")
        r = ask(KNOT_SECONDARY, "notified.example.test.", "TXT")
        c.check_eq([rd.to_text() for rr in r.answer for rd in rr], ['"by notify"'], "new record on the secondary")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except Exception:
                os.killpg(p.pid, signal.SIGKILL)
        for name in ("primary", "secondary"):
            log = os.path.join(tmp, name, "knot.log")
            if os.path.exists(log) and os.path.getsize(log) > 0:
                c.log(f"  knot {name} log: {open(log).read()[-800:]}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
