"""Slow clients cannot exhaust `parity serve` (issue 13, hole 3). Each case failed before the
front door (src/server/http_door.c):

- twice the connection cap of clients dribbling a request head at 1 byte a second, reconnecting
  whenever they are cut off, while a normal client's `GET /v1/models` (sent in one write) is still
  answered within 1 s each time it asks (before: it waited ~20 s, the slow ones held every slot);
- a head that does not arrive within --header-timeout gets one 408 and the connection closes
  (before: 1 byte a second kept resetting the idle timeout forever);
- a keep-alive client that dribbles its *next* request is cut off --timeout after its last
  response (before: never);
- a request with a body but no valid key is answered 401 as soon as its head arrives, so only
  key holders can hold a connection for the time a body takes (before: 401 after the body);
- --per-ip-connection-limit (here as per_ip_connection_limit in a --config file) caps the
  connections one address may hold.
Debian's python3; raw sockets."""
import os
import selectors
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run  # noqa: E402

LIMIT = 32
W = World("parity-slow-", ["al1"], serve_args=["--connection-limit", str(LIMIT), "--header-timeout", "3",
                                               "--timeout", "4"])
check = W.check
W.start()
HEAD = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"


def normal_request(key):
    """One whole request in one write on a new connection: (seconds to the full answer, status)."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", W.port), timeout=10)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + key.encode() +
              b"\r\nConnection: close\r\n\r\n")
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except socket.timeout:
        pass
    s.close()
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return time.monotonic() - t0, status


class Dribbler:
    """n connections, each sending HEAD one byte a second and reconnecting when cut off. Records
    what each cut-off connection was answered and how long it lived."""

    def __init__(self, n):
        self.sel = selectors.DefaultSelector()
        self.conns = {}
        self.answers = []  # (seconds alive, first bytes of what the server sent)
        for _ in range(n):
            self.open()

    def open(self):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", W.port))
        self.conns[s] = [time.monotonic(), 0, b""]
        self.sel.register(s, selectors.EVENT_READ)

    def close(self, s):
        t0, _, got = self.conns.pop(s)
        self.answers.append((time.monotonic() - t0, got[:40]))
        self.sel.unregister(s)
        s.close()
        self.open()

    def tick(self, seconds):
        """Runs for seconds: each connection sends its next byte once a second."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for s, st in list(self.conns.items()):
                if time.monotonic() - st[0] >= st[1] and st[1] < len(HEAD) - 1:
                    try:
                        s.send(HEAD[st[1]:st[1] + 1])
                        st[1] += 1
                    except OSError:
                        pass
            for key, _ in self.sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                if d:
                    self.conns[s][2] += d
                else:
                    self.close(s)

    def stop(self):
        for s in list(self.conns):
            self.sel.unregister(s)
            s.close()
        self.conns.clear()


# --- 2x the cap of 1-byte-a-second clients; a normal client is still served at once -------------
slow = Dribbler(2 * LIMIT)
slow.tick(1.5)
worst = 0.0
for i in range(4):
    took, status = normal_request(W.keys["al1"])
    check(status == 200, "normal client #%d among %d slow ones: 200 (got %s)" % (i, 2 * LIMIT, status))
    worst = max(worst, took)
    slow.tick(1.0)
check(worst < 1.0, "the normal client is answered within 1 s (worst %.2f s)" % worst)
print("normal client among %d slow clients: worst %.3f s" % (2 * LIMIT, worst))

# --- reconnecting, they evicted one another (the one waiting longest makes room: 503) -------------
check(slow.answers and all(a[1].startswith(b"HTTP/1.1 503 ") or a[1] == b"" for a in slow.answers),
      "a slow client cut off to make room gets one 503 status line or nothing: %s" % slow.answers[:2])
slow.stop()
time.sleep(0.3)

# --- below the cap, a head that does not arrive within --header-timeout gets 408 -----------------
slow = Dribbler(8)
slow.tick(4.5)
timed_out = [a for a in slow.answers if a[1].startswith(b"HTTP/1.1 408 ")]
check(len(timed_out) >= 8, "each slow head gets 408 Request Timeout: %s" % slow.answers[:3])
check(all(2.5 < t < 4.5 for t, _ in timed_out), "... about --header-timeout (3 s) after connecting: %s" %
      [round(t, 1) for t, _ in timed_out][:8])
slow.stop()
time.sleep(0.3)

# --- a keep-alive client dribbling its next request is cut off --timeout after its response ------
s = socket.create_connection(("127.0.0.1", W.port), timeout=15)
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
first = s.recv(65536)
check(first.startswith(b"HTTP/1.1 200 "), "keep-alive: first answer")
t0 = time.monotonic()
gone = None
for b in HEAD:
    try:
        s.send(bytes([b]))
        s.settimeout(1.0)
        if s.recv(4096) == b"":
            gone = time.monotonic() - t0
            break
    except socket.timeout:
        continue
    except OSError:
        gone = time.monotonic() - t0
        break
    if time.monotonic() - t0 > 12:
        break
s.close()
check(gone is not None and gone < 7, "a dribbled second request is cut off about --timeout (4 s) after "
      "the first answer (after %s s)" % (None if gone is None else round(gone, 1)))

# --- a client that stops sending (half-close) before its head is complete is let go at once -----
s = socket.create_connection(("127.0.0.1", W.port), timeout=5)
t0 = time.monotonic()
s.sendall(b"GET /healthz HTTP/1.1\r\nHo")
s.shutdown(socket.SHUT_WR)
try:
    got = s.recv(4096)
except OSError:
    got = b""
s.close()
check(got == b"" and time.monotonic() - t0 < 1.5, "a half-closed incomplete head is closed at once (%.1f s)" %
      (time.monotonic() - t0))

# --- a body is only waited for when the key is valid: without one, 401 at once ---------------------
for name, auth in [("no key", b""), ("a wrong key", b"Authorization: Bearer pk_0123456789abcdef_AAAA\r\n")]:
    s = socket.create_connection(("127.0.0.1", W.port), timeout=5)
    t0 = time.monotonic()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 60000\r\n\r\n{")
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    except OSError:
        pass
    s.close()
    took = time.monotonic() - t0
    check(got.startswith(b"HTTP/1.1 401 ") and b"Connection: close" in got and took < 2,
          "%s and a body still to come: 401 before the body, then close (%.1f s: %r)" % (name, took, got[:60]))

# --- a cap per client address ---------------------------------------------------------------------
W.stop()
conf = os.path.join(W.tmp, "serve.yaml")
with open(conf, "w") as f:
    f.write("header_timeout: 0\n")
r = run("serve", "--data", W.data, "--config", conf, check=False)
check(r.returncode != 0 and "serve.yaml:1:17: header_timeout" in r.stderr, "config: header_timeout 0 is refused, "
      "naming line and column: %r" % r.stderr.strip())
with open(conf, "w") as f:
    f.write("per_ip_connection_limit: 2\nheader_timeout: 5\nmin_body_rate: 100\n")
W.serve_args = ["--config", conf]  # the keys of the config file, as the flags
W.start()
held = [socket.create_connection(("127.0.0.1", W.port)) for _ in range(2)]
third = socket.create_connection(("127.0.0.1", W.port))
third.settimeout(3)
try:
    third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    got = third.recv(4096)
except OSError:
    got = b""
check(got == b"", "a third connection from one address is closed unanswered: %r" % got[:40])
for h in held:
    h.close()
time.sleep(0.3)
st = W.req("GET", "/healthz")[0]
check(st == 200, "once they close, the address is served again")
check(W.stop() == 0, "clean shutdown")
sys.exit(W.summary("test_http_slow_clients"))
