"""The RFC 9112 framing rules `parity serve` enforces (issue 13, hole 4: request smuggling), one
named case each, over raw sockets. A broken rule is answered by ONE well-formed response (one
status line, Content-Length, a JSON body in OpenAI's error shape), with Connection: close, and
the connection is closed: nothing after it is read as another request.

Who enforces what (docs/server.md, "HTTP framing"): the front door (src/server/http_door.c with
src/server/http_head.c) checks a connection's first request head before libmicrohttpd sees it;
the later requests of a keep-alive connection are checked again in the first handler call
(src/server/http.c), where libmicrohttpd has parsed them ("kept alive" cases below). Every
"rejected" case failed before: libmicrohttpd accepted the request, wrote its own HTML page, or
wrote its status line and headers twice. Debian's python3."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World  # noqa: E402

W = World("parity-conformance-", ["al1"], serve_args=["--max-body", "65536"])
check = W.check
W.start()
KEY = W.keys["al1"].encode()
AUTH = b"Authorization: Bearer " + KEY + b"\r\n"
HOST = b"Host: 127.0.0.1\r\n"
POST = b"POST /v1/chat/completions HTTP/1.1\r\n"
GOOD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


exchange = W.exchange


def responses(data):
    """Splits what the server sent into (status, headers, body) by Content-Length; a second
    status line inside a head shows up as an extra, malformed entry."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        try:
            status = int(lines[0].split(b" ")[1]) if lines[0].startswith(b"HTTP/1.1 ") else 0
        except (IndexError, ValueError):
            status = 0
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            if k.lower() in hdrs or not _:
                status = 0  # a repeated header or a status line inside the head: malformed
            hdrs[k.lower()] = v.strip()
        n = int(hdrs.get(b"content-length", b"0") or 0)
        out.append((status, hdrs, rest[:n]))
        data = rest[n:]
        if not sep:
            break
    return out


def rejected(name, raw, status, code=None, wait=3.0):
    data, closed, _ = exchange(raw, wait)
    rs = responses(data)
    ok = len(rs) == 1 and rs[0][0] == status
    body = {}
    if ok:
        try:
            body = json.loads(rs[0][2])
        except ValueError:
            ok = False
    err = body.get("error") if isinstance(body, dict) else None
    ok = ok and isinstance(err, dict) and set(err) == {"message", "type", "param", "code"}
    ok = ok and (code is None or err["code"] == code)
    ok = ok and rs[0][1].get(b"connection") == b"close" and closed
    check(ok, "%s: one %d in OpenAI's error shape, then close: got %r%s" %
          (name, status, data[:300], "" if closed else " (left open)"))


def served(name, raw, statuses, wait=3.0):
    data, _, _ = exchange(raw, wait)
    got = [r[0] for r in responses(data)]
    check(got == statuses, "%s: answered %s (got %s: %r)" % (name, statuses, got, data[:200]))


# --- RFC 9112 section 6.3: message body length -------------------------------------------------
SMUGGLED = b"GET /v1/access HTTP/1.1\r\n" + HOST + AUTH + b"\r\n"
rejected("6.3 Content-Length and Transfer-Encoding together (the smuggled request is not run)",
         POST + HOST + AUTH + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400,
         "invalid_framing")
rejected("6.3 Content-Length repeated", POST + HOST + AUTH + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400,
         "invalid_framing")
rejected("6.3 Content-Length as a list", POST + HOST + AUTH + b"Content-Length: 2, 2\r\n\r\n{}", 400, "invalid_framing")
rejected("6.3 Content-Length too large a number", POST + HOST + AUTH + b"Content-Length: 99999999999999999999\r\n\r\n{}",
         400, "invalid_framing")
rejected("6.3 Content-Length negative", POST + HOST + AUTH + b"Content-Length: -5\r\n\r\n{}", 400, "invalid_framing")
rejected("6.3 Transfer-Encoding whose final coding is not chunked", POST + HOST + b"Transfer-Encoding: gzip\r\n\r\n{}",
         400, "invalid_framing")
rejected("6.1 Transfer-Encoding with a coding parity does not decode",
         POST + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, "unsupported_transfer_coding")
rejected("6.1 Transfer-Encoding in an HTTP/1.0 request",
         b"POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_framing")
t0 = time.monotonic()
rejected("a declared body over the endpoint's cap: 413 before the body is read",
         POST + HOST + AUTH + b"Content-Length: 104857600\r\n\r\n{", 413, "body_too_large")
check(time.monotonic() - t0 < 2, "... at once (%.2f s), not after reading 100 MiB" % (time.monotonic() - t0))

# --- sections 2.2, 3, 5: lines, the request line, field syntax ---------------------------------
rejected("5.1 whitespace between a field name and the colon", b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-A : 1\r\n\r\n",
         400, "invalid_header")
rejected("5.2 obsolete line folding", b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-A: 1\r\n 2\r\n\r\n", 400,
         "invalid_header")
rejected("5 a field line without a colon", b"GET /healthz HTTP/1.1\r\n" + HOST + b"Junk\r\n\r\n", 400, "invalid_header")
rejected("5.5 a control character in a field value", b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-A: a\x01b\r\n\r\n", 400,
         "invalid_header")
rejected("2.2 a bare LF ends a line", b"GET /healthz HTTP/1.1\nHost: x\n\n", 400, "invalid_framing")
rejected("2.2 a bare CR inside a line", b"GET /healthz HTTP/1.1\r\nHost: x\ry\r\n\r\n", 400, "invalid_framing")
rejected("3.2 an HTTP/1.1 request without Host", b"GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_header")
rejected("3.2 Host repeated", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "invalid_header")
rejected("3 a method that is not a token", b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line")
rejected("3 two spaces in the request line", b"GET  /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_line")
rejected("2.3 an HTTP version parity does not speak", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505,
         "http_version_not_supported")
rejected("a request head over 8 KiB", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         "headers_too_large")

# --- the same rules on a kept-alive connection (libmicrohttpd parsed the head) -----------------
data, closed, _ = exchange(GOOD + POST + HOST + AUTH + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"0\r\n\r\n" + SMUGGLED)
rs = responses(data)
check([r[0] for r in rs] == [200, 400] and json.loads(rs[1][2])["error"]["code"] == "invalid_framing" and closed,
      "kept alive: 6.3 Content-Length and Transfer-Encoding: 200, then one 400, then close (%r)" % data[-200:])
for name, extra, status, code in [
        ("6.3 Content-Length repeated", b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", 400, "invalid_framing"),
        ("6.3 Transfer-Encoding whose final coding is not chunked", b"Transfer-Encoding: gzip\r\n\r\n", 400,
         "invalid_framing"),
        ("5.1 whitespace between a field name and the colon", b"X-A : 1\r\nContent-Length: 2\r\n\r\n{}", 400,
         "invalid_header"),
        ("a declared body over the cap", b"Content-Length: 104857600\r\n\r\n{", 413, "body_too_large")]:
    data, closed, _ = exchange(GOOD + POST + HOST + AUTH + extra)
    rs = responses(data)
    ok = [r[0] for r in rs] == [200, status] and closed
    ok = ok and json.loads(rs[1][2])["error"]["code"] == code and rs[1][1].get(b"connection") == b"close"
    check(ok, "kept alive: %s: 200, then one %d, then close (%r)" % (name, status, data[-200:]))

# --- what stays served ---------------------------------------------------------------------------
CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
served("a body with Content-Length", POST + HOST + AUTH + b"Content-Type: application/json\r\nConnection: close\r\n"
       b"Content-Length: " + str(len(CHAT)).encode() + b"\r\n\r\n" + CHAT, [200])
served("a chunked body", POST + HOST + AUTH + b"Content-Type: application/json\r\nConnection: close\r\n"
       b"Transfer-Encoding: chunked\r\n\r\n" + (b"%x\r\n" % len(CHAT)) + CHAT + b"\r\n0\r\n\r\n", [200])
served("HTTP/1.0 without Host", b"GET /healthz HTTP/1.0\r\n\r\n", [200])
served("two pipelined requests", GOOD + GOOD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"), [200, 200])
served("a field value with obs-text and tabs", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A:\t\xe9t\xe9 \r\n"
       b"Connection: close\r\n\r\n", [200])
check(W.stop() == 0, "clean shutdown")
sys.exit(W.summary("test_http_conformance"))
