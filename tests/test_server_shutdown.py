"""SIGTERM with more work queued than the grace period allows: `parity serve --shutdown-grace 1`
finishes what it can, fails the rest with 503 (in OpenAI's error shape), answers every client,
and exits 0 promptly; the audit log still verifies and usage persists. The real binary on
loopback, Debian's python3."""
import http.client
import json
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run  # noqa: E402

W = World("parity-shutdown-", ["lab"], serve_args=["--shutdown-grace", "1", "--queue-limit", "256"])
W.start()
results, lock = [], threading.Lock()


def client(i):
    c = http.client.HTTPConnection("127.0.0.1", W.port, timeout=120)
    body = {"model": "tiny", "prompt": [i % 50 + 1, 2, 3], "max_tokens": 200, "n": 16, "temperature": 1, "seed": i}
    try:
        c.request("POST", "/v1/completions", body=json.dumps(body),
                  headers={"Authorization": "Bearer " + W.keys["lab"], "Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        try:
            j = json.loads(data)
        except ValueError:
            j = None
        out = (r.status, j)
    except (OSError, http.client.HTTPException) as e:
        out = ("error", str(e))
    with lock:
        results.append(out)


ts = [threading.Thread(target=client, args=(i,)) for i in range(160)]
for t in ts:
    t.start()
time.sleep(0.5)  # everything is queued; the first jobs are running
t0 = time.time()
W.server.send_signal(signal.SIGTERM)
W.server.wait(timeout=60)
took = time.time() - t0
for t in ts:
    t.join(timeout=30)
W.check(W.server.returncode == 0, "SIGTERM past the grace period: exit 0 (got %s)" % W.server.returncode)
W.check(took < 15, "the server stopped promptly after the 1 s grace period (%.1f s)" % took)
statuses = [r[0] for r in results]
print("after SIGTERM: %d answered 200, %d answered 503, stopped in %.1f s" % (statuses.count(200), statuses.count(503), took))
W.check(len(results) == 160, "every client was answered (%d of 160)" % len(results))
W.check(all(s in (200, 503) for s in statuses), "only 200 or 503: %s" % sorted(set(map(str, statuses))))
failed = [j for s, j in results if s == 503]
W.check(failed and all(j and "error" in j and j["error"]["type"] == "server_error" for j in failed),
        "the work left when the grace period ended failed with 503 in OpenAI's shape (%d)" % len(failed))
vkey = run("log", "vkey", "--data", W.data, "--log", "audit").stdout.strip()
v = run("log", "verify", "--vkey", vkey, os.path.join(W.data, "log", "audit"), check=False)
W.check(v.returncode == 0, "the audit log verifies after the aborted shutdown: %s" % v.stderr)
n_audit = len(run("log", "entries", "--data", W.data, "--log", "audit").stdout.splitlines())
W.check(n_audit >= statuses.count(200) + len(failed), "every answered request has its receipt (%d entries)" % n_audit)
sys.exit(W.summary("server shutdown"))
