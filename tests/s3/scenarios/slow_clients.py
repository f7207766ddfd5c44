#!/usr/bin/env python3
"""slow_clients: 1,100 idle TCP sockets on each listener of node n00 (S3, admin, DNS over TCP,
fragments)
plus 20 signed PUTs trickling one body byte every 2 s, restarted as soon as the server cuts
them. Meanwhile an honest client keeps doing S3 PUT + GET, admin /status and DNS TCP
queries; each must succeed within the bounds documented in docs/S3.md, docs/CONFIG.md and
docs/DNS.md. Afterwards every idle socket must have been closed by the server within the
head/idle timeout (10 s), and every trickled upload cut within the body grace (5 s) plus
slack.

All sockets come from 127.0.0.1, like the honest client's, so this also shows that the
per-IP caps evict idle connections instead of locking out everyone on the address."""

import os
import resource
import selectors
import socket
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import cairn_dns as d  # noqa: E402
import cairn_s3 as c  # noqa: E402
import rawhttp  # noqa: E402

IDLE_PER_LISTENER = 1100
SLOW_UPLOADS = 20
ATTACK_S = 22.0
# Documented limits (docs/S3.md "Limits", docs/CONFIG.md, docs/DNS.md).
HEADER_TIMEOUT_S = 10.0
DNS_IDLE_TIMEOUT_S = 10.0
BODY_GRACE_S = 5.0
UPLOAD_SLOT_WAIT_S = 10.0
SLACK_S = 2.0
# Honest requests under attack: a PUT may wait for an upload slot, then commits (~1 s).
BOUND_S = {"put": UPLOAD_SLOT_WAIT_S + 5.0, "get": 5.0, "status": 2.0, "dns": 2.0}


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else need, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    c.check(soft >= need, f"need {need} file descriptors, the limit is {soft}")
    c.log(f"  open-file limit {soft}")


class IdleSockets:
    """Opens idle sockets and records when the server closes each one."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.opened = {}  # fd -> (listener, opened_at)
        self.lifetimes = {}  # listener -> [seconds]
        self.refused = {}
        self.lock = threading.Lock()
        self.stop = False

    def open(self, listener, host, port, n):
        self.lifetimes.setdefault(listener, [])
        self.refused.setdefault(listener, 0)
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect((host, port))
            except OSError:
                s.close()
                self.refused[listener] += 1
                continue
            s.setblocking(False)
            with self.lock:
                self.opened[s.fileno()] = (listener, time.monotonic(), s)
                self.sel.register(s, selectors.EVENT_READ)

    def watch(self):
        while not self.stop:
            events = self.sel.select(timeout=0.2) if self.opened else []
            if not events:
                time.sleep(0.05)
            for key, _ in events:
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    continue  # e.g. an HTTP error before the close; the close follows
                with self.lock:
                    listener, t0, _ = self.opened.pop(s.fileno())
                    self.sel.unregister(s)
                    self.lifetimes[listener].append(time.monotonic() - t0)
                s.close()

    def still_open(self):
        with self.lock:
            return len(self.opened)

    def close_all(self):
        with self.lock:
            for _, (_, _, s) in list(self.opened.items()):
                try:
                    self.sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
            self.opened.clear()


def slow_upload(bucket, i, stop, cuts, outcomes):
    """Repeatedly sends a signed 1 MiB PUT, one body byte every 2 s, until stopped."""
    n = 0
    while not stop.is_set():
        key = f"slow-{i}-{n}"
        n += 1
        path = f"/{bucket}/{key}"
        headers = rawhttp.sign("PUT", path, [], {"content-length": str(c.MIB)}, rawhttp.UNSIGNED,
                               c.ACCESS_KEY, c.SECRET_KEY, c.REGION, c.NETLOC)
        head = "".join([f"PUT {path} HTTP/1.1\r\n"] + [f"{k}: {v}\r\n" for k, v in headers.items()])
        s = socket.create_connection((c.HOST, c.PORT), timeout=5)
        t0 = time.monotonic()
        reply = b""
        try:
            s.sendall((head + "\r\n").encode())
            s.setblocking(False)
            while not stop.is_set():
                try:
                    chunk = s.recv(4096)
                    reply += chunk
                    if not chunk or b"\r\n\r\n" in reply:
                        break
                except BlockingIOError:
                    pass
                try:
                    s.send(b"x")
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
                stop.wait(2.0)
        except OSError:
            pass
        finally:
            s.close()
        if stop.is_set() and not reply:
            return
        cuts.append(time.monotonic() - t0)
        outcomes.append(reply.split(b"\r\n", 1)[0].decode("latin-1", "replace"))


def honest(s3, bucket, admin_port, stop, lat, failures):
    body = os.urandom(64 * c.KIB)
    n = 0
    while not stop.is_set():
        n += 1
        key = f"honest-{n}"
        for op, fn in (
            ("put", lambda: s3.put_object(Bucket=bucket, Key=key, Body=body)),
            ("get", lambda: c.check(s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body,
                                    f"GET {key} returned other bytes")),
            ("status", lambda: urllib.request.urlopen(
                f"http://127.0.0.1:{admin_port}/status", timeout=BOUND_S["status"]).read()),
            ("dns", lambda: c.check(d.query(f"s3.{d.ZONE}", "A", node=0, tcp=True,
                                            timeout=BOUND_S["dns"]).rcode() == 0, "DNS rcode")),
        ):
            t0 = time.monotonic()
            try:
                fn()
                lat[op].append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001
                failures.append(f"{op} #{n} after {time.monotonic() - t0:.2f} s: {type(e).__name__}: {e}")
        stop.wait(0.3)


def summary(xs):
    if not xs:
        return "none"
    xs = sorted(xs)
    return f"n={len(xs)} median {xs[len(xs) // 2]:.3f} s, max {xs[-1]:.3f} s"


def main():
    base = int(d.env("CAIRN_S3_BASE_PORT"))
    admin_port = base + 1000
    dns_port = d.dns_port(0)
    fragment_port = base + 4000
    listeners = (("s3", c.HOST, c.PORT), ("admin", "127.0.0.1", admin_port),
                 ("dns", "127.0.0.1", dns_port), ("fragments", "127.0.0.1", fragment_port))
    raise_fd_limit(len(listeners) * IDLE_PER_LISTENER + SLOW_UPLOADS + 512)
    s3 = c.client(max_attempts=1, read_timeout=60)
    bucket = c.fresh_bucket(s3, "slow")

    idle = IdleSockets()
    watcher = threading.Thread(target=idle.watch, daemon=True)
    watcher.start()
    stop = threading.Event()
    cuts, outcomes = [], []
    lat = {k: [] for k in BOUND_S}
    failures = []
    try:
        t_open = time.monotonic()
        # The honest PUTs go through n00, which pushes fragments to its own fragment
        # listener too: they can only finish if idle sockets never hold its slots.
        for name, host, port in listeners:
            idle.open(name, host, port, IDLE_PER_LISTENER)
        c.log(f"  opened {len(listeners) * IDLE_PER_LISTENER} idle sockets in {time.monotonic() - t_open:.2f} s "
              f"(refused at connect: {idle.refused})")
        slow = [threading.Thread(target=slow_upload, args=(bucket, i, stop, cuts, outcomes), daemon=True)
                for i in range(SLOW_UPLOADS)]
        for t in slow:
            t.start()
        time.sleep(0.5)  # let the trickled uploads take the upload slots first
        worker = threading.Thread(target=honest, args=(s3, bucket, admin_port, stop, lat, failures),
                                  daemon=True)
        worker.start()
        time.sleep(ATTACK_S)
        stop.set()
        worker.join(timeout=30)
        for t in slow:
            t.join(timeout=10)
        # Let the last idle sockets reach their timeout.
        deadline = t_open + HEADER_TIMEOUT_S + SLACK_S + 1
        while idle.still_open() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = idle.still_open()
    finally:
        stop.set()
        idle.stop = True
        idle.close_all()

    for op in BOUND_S:
        c.log(f"  honest {op} under attack: {summary(lat[op])} (bound {BOUND_S[op]:.0f} s)")
    for name, xs in idle.lifetimes.items():
        c.log(f"  idle {name} sockets closed by the server: {summary(xs)}")
    c.log(f"  trickled uploads cut: {summary(cuts)}; replies {sorted(set(outcomes))}")
    c.check(not failures, f"honest requests failed under attack: {failures[:5]}")
    for op, bound in BOUND_S.items():
        c.check(len(lat[op]) >= 3, f"too few honest {op} requests completed: {len(lat[op])}")
        c.check(max(lat[op]) <= bound, f"honest {op} took {max(lat[op]):.2f} s > {bound} s")
    c.check(left == 0, f"{left} idle sockets still open {HEADER_TIMEOUT_S + SLACK_S + 1:.0f} s after opening")
    limit = {"s3": HEADER_TIMEOUT_S, "admin": HEADER_TIMEOUT_S, "dns": DNS_IDLE_TIMEOUT_S,
             "fragments": HEADER_TIMEOUT_S}
    for name, xs in idle.lifetimes.items():
        c.check(len(xs) + idle.refused[name] == IDLE_PER_LISTENER, f"{name}: lost track of sockets")
        c.check(max(xs) <= limit[name] + SLACK_S, f"{name}: an idle socket lived {max(xs):.2f} s")
    c.check(len(cuts) >= SLOW_UPLOADS, f"only {len(cuts)} trickled uploads were answered")
    # Cut at the grace, or (queued behind others for a slot) at the grace after the slot.
    c.check(max(cuts) <= UPLOAD_SLOT_WAIT_S + BODY_GRACE_S + SLACK_S + 2,
            f"a trickled upload lasted {max(cuts):.2f} s")
    for o in outcomes:
        c.check(o.startswith("HTTP/1.1 400") or o.startswith("HTTP/1.1 503") or o == "",
                f"a trickled upload got {o!r}")
    c.object_absent(s3, bucket, "slow-0-0", "a trickled upload")
    c.empty_bucket(s3, bucket)


if __name__ == "__main__":
    c.run("slow_clients", main)
