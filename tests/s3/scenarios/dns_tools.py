#!/usr/bin/env python3
"""dns_tools: the devnet's authoritative servers through real DNS tools.

- dig and kdig: the managed name s3.cairn.test (12 gateways), SOA serial = zone version, NXDOMAIN
  and NODATA with the SOA in authority, REFUSED outside our zones, TCP, AXFR.
- `cairn dns import` of tests/dns/zones/tools.zone, then every type through dig, a CNAME chain,
  a wildcard, an empty non-terminal, TC over UDP and dig's TCP retry; `cairn dns export` gives
  the same records back (compared with dnspython); a re-import changes nothing; a broken zone
  file is refused with its line and leaves the zone alone.
- Bad packets: short garbage (no answer), two questions (FORMERR), UPDATE (NOTIMP), oversize
  (FORMERR), unknown type (NODATA), class CH (REFUSED), EDNS version 1 (BADVERS); the server
  keeps answering."""

import os
import socket
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402
import dns.message  # noqa: E402
import dns.rcode  # noqa: E402
import dns.zone  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ZONES = os.path.join(HERE, "..", "..", "dns", "zones")
PORT = d.dns_port(0)
ADMIN = f"127.0.0.1:{int(d.env('CAIRN_S3_BASE_PORT')) + 1000}"
KEY = os.path.join(d.env("CAIRN_DEVNET_DIR"), "admin.key")


def run(cmd, ok=True):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if ok:
        c.check(out.returncode == 0, f"`{' '.join(cmd)}` failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out


def dig(*args):
    return run(["dig", "@127.0.0.1", "-p", str(PORT), "+norec", "+time=2", "+tries=1", *args]).stdout


def kdig(*args):
    return run(["kdig", "@127.0.0.1", "-p", str(PORT), "+norec", "+time=2", "+retry=0", *args]).stdout


def cairn(*args, ok=True):
    return run([d.env("CAIRN_BIN"), "dns", "--endpoint", ADMIN, "--key", KEY, *args], ok=ok)


def status_of(text):
    return text.split("status: ")[1].split(",")[0] if "status: " in text else "?"


def answers(text, rtype):
    """Data of the answer-section records of type rtype in dig/kdig output."""
    out, section = [], False
    for line in text.splitlines():
        if "ANSWER SECTION" in line:
            section = True
            continue
        if section and (not line.strip() or line.startswith(";;")):
            section = False
        if section:
            f = line.split()
            if len(f) >= 5 and f[3] == rtype:
                out.append(" ".join(f[4:]))
    return out


def udp(packet, timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(packet, ("127.0.0.1", PORT))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def rcode_of(reply):
    return dns.message.from_wire(reply).rcode() if reply and len(reply) >= 12 else None


def main():
    zone = d.ZONE
    # --- the devnet zone ---------------------------------------------------------------
    out = dig(f"s3.{zone}", "A")
    c.check_eq(status_of(out), "NOERROR", "s3 A status")
    c.check(" aa" in out.split("flags:")[1].split(";")[0], "authoritative answer (aa)")
    c.check_eq(sorted(answers(out, "A")), sorted(d.s3_ip(i) for i in range(12)), "s3 A records")
    soa = answers(kdig("+tcp", zone, "SOA"), "SOA")
    c.check_eq(len(soa), 1, "one SOA over TCP (kdig)")
    version = run([d.env("CAIRN_BIN"), "dns", "--endpoint", ADMIN, "zones"]).stdout
    serial = soa[0].split()[2]
    c.check(f"version {serial} " in version, f"SOA serial {serial} is the zone version: {version}")
    out = dig(f"nope.{zone}", "A")
    c.check_eq(status_of(out), "NXDOMAIN", "NXDOMAIN status")
    c.check("AUTHORITY SECTION" in out and "SOA" in out.split("AUTHORITY SECTION")[1], "SOA in authority")
    out = dig(zone, "MX")
    c.check_eq((status_of(out), answers(out, "MX")), ("NOERROR", []), "NODATA")
    c.check("SOA" in out.split("AUTHORITY SECTION")[1], "NODATA carries the SOA")
    c.check_eq(status_of(dig("example.org", "A")), "REFUSED", "outside our zones")
    axfr = dig(zone, "AXFR")
    recs = [l.split() for l in axfr.splitlines() if l and not l.startswith(";")]
    c.check(recs[0][3] == "SOA" and recs[-1][3] == "SOA", "AXFR starts and ends with the SOA")
    c.check_eq(sum(1 for r in recs if r[0] == f"s3.{zone}." and r[3] == "A"), 12, "AXFR has the managed A set")

    # --- import a zone file --------------------------------------------------------------
    path = os.path.join(ZONES, "tools.zone")
    out = cairn("import", path)
    c.log("  " + out.stdout.strip())
    c.check("imported" in out.stdout, "import reports what it did")
    c.check("already up to date" in cairn("import", path).stdout, "re-import changes nothing")
    expect = {
        ("www.tools.test", "A"): ["192.0.2.10", "192.0.2.11"],
        ("www.tools.test", "AAAA"): ["2001:db8::10"],
        ("tools.test", "MX"): ["10 mail.tools.test."],
        ("tools.test", "CAA"): ['0 issue "ca.example.net"'],
        ("_imap._tcp.tools.test", "SRV"): ["10 5 993 mail.tools.test."],
        ("x.dyn.tools.test", "A"): ["192.0.2.99"],
        ("WwW.ToOls.TeSt", "A"): ["192.0.2.10", "192.0.2.11"],
    }
    for (name, t), want in expect.items():
        c.check_eq(sorted(answers(dig(name, t), t)), sorted(want), f"dig {name} {t}")
    chain = dig("chain.tools.test", "A")
    c.check_eq((answers(chain, "CNAME"), sorted(answers(chain, "A"))),
               (["alias.tools.test.", "www.tools.test."], ["192.0.2.10", "192.0.2.11"]), "CNAME chain")
    c.check_eq(status_of(dig("b.deep.tools.test", "A")), "NOERROR", "empty non-terminal is NODATA")
    c.check_eq(status_of(dig("nothing.deep.tools.test", "A")), "NXDOMAIN", "below an ENT: NXDOMAIN")
    tc = dig("+ignore", "+noedns", "big.tools.test", "TXT")
    c.check(" tc" in tc.split("flags:")[1].split(";")[0], "a big answer over UDP sets TC")
    full = dig("+noedns", "big.tools.test", "TXT")  # dig retries over TCP on TC
    c.check_eq(len(answers(full, "TXT")), 5, "the TCP retry gets all 5 TXT records")

    # --- export gives the same records ------------------------------------------------
    exported = cairn("export", "tools.test", "--static").stdout
    got = dns.zone.from_text(exported, origin="tools.test.", relativize=False)
    want = dns.zone.from_file(path, origin="tools.test.", relativize=False)
    for name, node in want.nodes.items():
        for rds in node.rdatasets:
            if rds.rdtype == dns.rdatatype.SOA:
                continue  # the serial is the ledger's zone version
            other = got.get_rdataset(name, rds.rdtype)
            c.check(other is not None and set(other) == set(rds) and other.ttl == rds.ttl,
                    f"export keeps {name} {dns.rdatatype.to_text(rds.rdtype)}")

    # --- a broken zone file ----------------------------------------------------------------
    bad = cairn("import", os.path.join(ZONES, "broken.zone"), ok=False)
    c.check(bad.returncode != 0, "a broken zone file is refused")
    c.check("CNAME" in bad.stderr and "www.tools.test" in bad.stderr,
            f"the error names the problem: {bad.stderr.strip()}")
    c.log(f"  broken zone file: {bad.stderr.strip()}")
    c.check_eq(sorted(answers(dig("www.tools.test", "A"), "A")), ["192.0.2.10", "192.0.2.11"],
               "the zone is unchanged after a refused import")

    # --- bad packets ---------------------------------------------------------------------
    q = dns.message.make_query("www.tools.test", "A").to_wire()
    c.check_eq(udp(b"\x01\x02\x03\x04\x05"), None, "5 bytes of garbage get no answer")
    two = bytearray(q)
    two[5] = 2
    c.check_eq(rcode_of(udp(bytes(two))), dns.rcode.FORMERR, "two questions")
    update = bytearray(q)
    update[2] = 5 << 3
    c.check_eq(rcode_of(udp(bytes(update))), dns.rcode.NOTIMP, "opcode UPDATE")
    c.check_eq(rcode_of(udp(q + b"\x00" * 5000)), dns.rcode.FORMERR, "oversize query")
    odd = dns.message.make_query("www.tools.test", 65280)
    r = dns.message.from_wire(udp(odd.to_wire()))
    c.check_eq((r.rcode(), len(r.answer), len(r.authority)), (dns.rcode.NOERROR, 0, 1), "unknown type: NODATA")
    ch = dns.message.make_query("www.tools.test", "TXT", rdclass="CH")
    c.check_eq(rcode_of(udp(ch.to_wire())), dns.rcode.REFUSED, "class CH")
    v1 = dns.message.make_query("www.tools.test", "A", use_edns=1)
    r = dns.message.from_wire(udp(v1.to_wire()))
    c.check_eq(r.rcode(), dns.rcode.BADVERS, "EDNS version 1")
    c.check_eq(sorted(answers(dig("www.tools.test", "A"), "A")), ["192.0.2.10", "192.0.2.11"],
               "still answering after bad input")

    # --- the server's counters on the node's /metrics -------------------------------------
    text = urllib.request.urlopen(f"http://{ADMIN}/metrics", timeout=10).read().decode()
    counters = {l.split()[0]: int(l.split()[1]) for l in text.splitlines()
                if l.startswith("cairn_dns_") and len(l.split()) == 2}
    c.log(f"  node 0 DNS counters: {counters}")
    c.check(counters.get("cairn_dns_udp_answers_total", 0) >= 20, "UDP answers counted on /metrics")
    c.check(counters.get("cairn_dns_tcp_answers_total", 0) >= 2, "TCP answers counted on /metrics")
    c.check(counters.get("cairn_dns_transfers_total", 0) >= 1, "the AXFR counted on /metrics")


if __name__ == "__main__":
    main()
