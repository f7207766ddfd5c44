"""Raw HTTP/1.1 over a socket plus a small AWS SigV4 (header) signer, for hostile requests
that an SDK will not send: wrong digests, truncated bodies, oversize headers, bad XML.

Standard library only. Every request is sent with `Connection: close`, so a response is
read until the server closes (or the timeout)."""

import datetime
import hashlib
import hmac
import socket
from urllib.parse import quote

UNSIGNED = "UNSIGNED-PAYLOAD"


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _enc(s):
    return quote(s, safe="-_.~")


def sign(method, path, query, headers, payload_hash, access_key, secret_key, region, host,
         when=None, service="s3"):
    """Returns a new header dict with host, x-amz-date, x-amz-content-sha256 and Authorization.

    path: the request path exactly as sent (already percent-encoded; S3 does not re-encode it).
    query: list of (name, value) pairs, unencoded.
    headers: extra headers to sign (all of them are signed).
    """
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    hdrs = {k.lower(): str(v) for k, v in headers.items()}
    hdrs["host"] = host
    hdrs["x-amz-date"] = amz_date
    hdrs["x-amz-content-sha256"] = payload_hash
    names = sorted(hdrs)
    canonical_headers = "".join(f"{n}:{' '.join(hdrs[n].strip().split())}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in query))
    canonical_request = "\n".join(
        [method, path, canonical_query, canonical_headers, signed_headers, payload_hash])
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), day)
    key = _hmac(key, region)
    key = _hmac(key, service)
    key = _hmac(key, "aws4_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                             f"SignedHeaders={signed_headers}, Signature={signature}")
    return hdrs


def target(path, query):
    if not query:
        return path
    return path + "?" + "&".join(f"{_enc(k)}={_enc(v)}" if v != "" else _enc(k) for k, v in query)


class Response:
    def __init__(self, status, reason, headers, body, closed_early=False):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.closed_early = closed_early

    def __repr__(self):
        return f"<HTTP {self.status} {self.reason} body={self.body[:200]!r}>"


def _read_all(sock, timeout):
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _dechunk(data):
    out, i = [], 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            return b"".join(out)
        size = int(data[i:j].split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(data[j + 2 : j + 2 + size])
        i = j + 2 + size + 2


def parse_response(raw, method="GET"):
    """Parses the first HTTP response in raw bytes, or returns None if there is none."""
    end = raw.find(b"\r\n\r\n")
    if not raw.startswith(b"HTTP/") or end < 0:
        return None
    head = raw[:end].decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    status = int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    rest = raw[end + 4 :]
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(rest)
    elif "content-length" in headers:
        body = rest[: int(headers["content-length"])]
    else:
        body = rest
    return Response(status, reason, headers, body)


def send(host, port, method, tgt, headers, body=b"", send_body=None, timeout=30.0,
         half_close=False):
    """Sends one request and returns a Response (status 0 if the server answered nothing).

    send_body: bytes actually written after the headers (default: body). Lets a caller declare
    one Content-Length and send fewer bytes. half_close: shut down the write side afterwards.
    """
    hdrs = dict(headers)
    hdrs.setdefault("content-length", str(len(body)))
    hdrs["connection"] = "close"
    lines = [f"{method} {tgt} HTTP/1.1"] + [f"{k}: {v}" for k, v in hdrs.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    payload = body if send_body is None else send_body
    sock = socket.create_connection((host, port), timeout=timeout)
    closed_early = False
    try:
        try:
            sock.sendall(head)
            if payload:
                sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            closed_early = True  # the server refused mid-request; it may still have answered
        if half_close:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        raw = _read_all(sock, timeout)
    finally:
        sock.close()
    resp = parse_response(raw, method)
    if resp is None:
        return Response(0, "no response", {}, raw, closed_early=True)
    resp.closed_early = closed_early
    return resp


def send_bytes(host, port, data, timeout=15.0):
    """Writes arbitrary bytes and returns whatever comes back (parsed if it is HTTP)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = _read_all(sock, timeout)
    finally:
        sock.close()
    return parse_response(raw) or Response(0, "no response", {}, raw, closed_early=True)
