"""The security test set in one place, to be read top to bottom (issue 13): what an attacker
tried against `parity serve`, and what must happen now. Each section is a class of attack the
outside review found working; the detailed tests of each rule live beside it
(test_server_gate.py, test_receipts_privacy.py, test_http_conformance.py,
test_http_slow_clients.py, test_http_one_server.py, test_keys_crash.py). This script replays the
attacks themselves against one real server on loopback, so a regression in any of them fails
here. Debian's python3."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import PARITY, World, err_code  # noqa: E402

# The world: one model, a lab with an admin key, and outside organisations with narrow grants.
POLICY = """version: 1
lab: {id: test-lab, name: Test Lab}
models:
  - id: tiny
    weights: MODEL_DIR
    insider_since: 2026-01-01
    variants:
      - {id: mitigated, differs: output filter}
      - {id: unmitigated, differs: no output filter}
tiers:
  - {id: capped, capabilities: [sample, logprobs, prefill, activations]}
  - {id: noprefill, capabilities: [sample, logprobs, activations]}
organisations:
  - {id: lab, name: Test Lab, kind: insider}
  - {id: capped, name: Capped org, kind: researcher}
  - {id: noprefill, name: No-prefill org, kind: researcher}
  - {id: white, name: White-box evaluator, kind: evaluator}
  - {id: rival, name: Rival evaluator, kind: evaluator}
grants:
  - {id: g-lab, organisation: lab, model: "*", tier: AL3}
  - {id: g-capped, organisation: capped, model: tiny, tier: capped, limits: {logprobs_top_k: 3}}
  - {id: g-noprefill, organisation: noprefill, model: tiny, tier: noprefill}
  - {id: g-white, organisation: white, model: tiny, tier: AL3}
  - {id: g-rival, organisation: rival, model: tiny, tier: AL3}
"""
LIMIT = 16  # --connection-limit: small, so "twice the cap" is a few dozen sockets
W = World("parity-security-", ["capped", "noprefill", "white", "rival"], policy=POLICY, admin="lab",
          serve_args=["--connection-limit", str(LIMIT), "--header-timeout", "3", "--max-body", "65536"])
check, req = W.check, W.req
W.start()


def raw_exchange(raw, wait=3.0):
    """Sends raw bytes on a new connection; returns (everything sent back, closed by the server?)."""
    return W.exchange(raw, wait)[:2]


# 1. Tier bypass: reading through one route what another route refuses --------------------------
# The `capped` grant may see 3 alternatives per position. Through completions, 4 is refused...
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 1, "logprobs": 4},
                  key="capped")
check(st == 403 and err_code(j) == "limit_exceeded", "top-k 4 over a cap of 3: 403 (%s)" % st)
# ...and reading the whole log-softmax through the `logits` hook used to return it anyway.
st, _, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": "the", "reads": ["logits"]},
                  key="capped")
check(st == 403 and err_code(j) == "limit_exceeded", "logits hook is charged as top-k = vocabulary: %s %s" % (st, j))
# The same read as a safetensors body is the same information: the same answer.
st, _, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": "the", "reads": ["logits"]},
                  key="capped", headers={"Accept": "application/x-safetensors"})
check(st == 403, "logits as safetensors: 403 too (%s)" % st)
# Other hooks stay readable with `activations`.
st, _, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": "the",
                                                  "reads": ["blocks.0.hook_resid_post"]}, key="capped")
check(st == 200, "a residual hook is still readable: %s" % st)
# logit_bias cannot pull tokens into the capped view: returned log-probs are the raw ones.
plain = req("POST", "/v1/completions", {"model": "tiny", "prompt": [5, 17], "max_tokens": 1, "temperature": 0,
                                        "logprobs": 3}, key="capped")[2]
biased = req("POST", "/v1/completions", {"model": "tiny", "prompt": [5, 17], "max_tokens": 1, "temperature": 0,
                                         "logprobs": 3, "logit_bias": {"7": 100}}, key="capped")[2]
try:
    pt = plain["choices"][0]["logprobs"]["top_logprobs"][0]
    bt = biased["choices"][0]["logprobs"]["top_logprobs"][0]
    check(pt == bt and len(bt) <= 3, "logit_bias changes no returned log-prob: %s vs %s" % (pt, bt))
except (KeyError, TypeError, IndexError):
    check(False, "completions with logit_bias answered: %s %s" % (plain, biased))
# Completion of arbitrary text through trace's `generate` needs `prefill`, as /v1/completions does.
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 2}, key="noprefill")
check(st == 403 and err_code(j) == "capability_not_in_tier", "no prefill: completions refused (%s)" % st)
st, _, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": "the", "reads": ["blocks.0.hook_resid_post"],
                                                  "generate": {"max_tokens": 2}}, key="noprefill")
check(st == 403 and err_code(j) == "capability_not_in_tier", "no prefill: trace generate refused too: %s %s" % (st, j))
# The unmitigated variant needs `unmitigated`; the capped tier does not have it.
st, _, j, _ = req("POST", "/v1/chat/completions", {"model": "tiny@unmitigated", "max_tokens": 1,
                                                   "messages": [{"role": "user", "content": "hi"}]}, key="capped")
check(st == 403 and err_code(j) == "capability_not_in_tier", "unmitigated without the capability: %s" % st)
# An intervention that overflows float32 is refused, naming it, instead of NaN logits and 200.
vec = {"data": "AACAPw==", "shape": [1]}  # 1.0f
st, _, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": "the", "reads": ["logits"],
                                                  "interventions": [{"hook": "blocks.0.hook_resid_post", "op": "add",
                                                                     "value": vec, "scale": 1e308}]}, key="white")
check(st == 400 and "interventions[0]" in json.dumps(j), "scale 1e308: 400 naming the intervention: %s" % (j,))
# Unknown or unimplemented OpenAI fields are refused, not silently ignored.
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 1, "best_of": 3},
                  key="white")
check(st == 400 and "best_of" in json.dumps(j), "best_of: 400 naming the field (%s)" % st)

# 2. Cross-tenant: what one organisation can learn about another ---------------------------------
# `white` makes a request with a secret marker in it; `rival` then reads the receipt.
secret = "the launch code is 0451-%d" % os.getpid()
body = {"model": "tiny", "prompt": secret, "max_tokens": 1}
st, h, _, _ = req("POST", "/v1/completions", body, key="white")
check(st == 200 and "parity-receipt" in h and "parity-receipt-salt" in h, "a receipt and its salt for the caller")
index = h.get("parity-receipt", "0")
st, _, mine, _ = req("GET", "/v1/receipts/" + index, key="white")
st2, _, theirs, _ = req("GET", "/v1/receipts/" + index, key="rival")
check(st == 200 and mine.get("view") == "full", "own organisation: the full receipt (%s)" % (mine.get("view"),))
check(st2 == 200 and theirs.get("view") == "public", "another organisation: the public part only")
check("white" not in json.dumps(theirs) and secret not in json.dumps(theirs),
      "the public part names neither the organisation nor the prompt")
# A guessed prompt cannot be confirmed offline: the plain SHA-256 of the body is published nowhere.
raw_body = json.dumps(body).encode()
digest = hashlib.sha256(raw_body).hexdigest()
published = b""
for root, _, files in os.walk(os.path.join(W.data, "log", "audit")):
    for f in files:
        published += open(os.path.join(root, f), "rb").read()
check(digest.encode() not in published and hashlib.sha256(raw_body).digest() not in published,
      "the body's plain digest is not in the public audit log")
check(b"white" not in published and secret.encode() not in published, "nor the organisation or the prompt")
# Files are per organisation: the rival lists none of white's and cannot read one by id.
up = subprocess.run(["curl", "-s", "-H", "Authorization: Bearer " + W.keys["white"], "-F", "purpose=fine-tune",
                     "-F", "file=@-;filename=t.jsonl", "http://127.0.0.1:%d/v1/files" % W.port],
                    input=b'{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}\n',
                    capture_output=True)
try:
    fid = json.loads(up.stdout)["id"]
except (ValueError, KeyError):
    fid = None
check(fid is not None, "white uploads a file: %s" % up.stdout[:200])
st, _, j, _ = req("GET", "/v1/files", key="rival")
check(st == 200 and all(f.get("id") != fid for f in j.get("data", [])), "rival's file list does not show it")
st, _, _, _ = req("GET", "/v1/files/%s/content" % fid, key="rival")
check(st == 404, "rival cannot read it by id (%s)" % st)
st, _, _, _ = req("DELETE", "/v1/files/%s" % fid, key="rival")
check(st == 404, "nor delete it (%s)" % st)

# 3. Request smuggling: framing the server and a proxy could read differently ---------------------
auth = b"Authorization: Bearer " + W.keys["white"].encode() + b"\r\n"
smuggle = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: application/json\r\n"
           b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
           b"GET /v1/access HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
out, closed = raw_exchange(smuggle)
check(out.startswith(b"HTTP/1.1 400") and out.count(b"HTTP/1.1 ") == 1 and closed,
      "Content-Length with Transfer-Encoding: one 400, connection closed, the tail never runs: %r" % out[:120])
out, closed = raw_exchange(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth +
                           b"Content-Length: 99999999999999999999\r\n\r\n")
check(out.startswith(b"HTTP/1.1 400") and out.count(b"HTTP/1.1 ") == 1, "a huge Content-Length: one 400: %r" % out[:80])
t0 = time.monotonic()
out, closed = raw_exchange(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n" + auth +
                           b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{", wait=5)
check(out.startswith(b"HTTP/1.1 413") and closed and time.monotonic() - t0 < 5,
      "a declared body over the cap: 413 at once, before the body: %r" % out[:80])

# 4. Slow clients: exhausting the connections without a key --------------------------------------
# Twice the connection cap of clients each sending one byte a second; a normal request must still
# be answered within a second (before: 20.8 s).
stop = threading.Event()


def dribbler():
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", W.port), timeout=2)
            for b in b"GET /v1/models HTTP/1.1\r\nHost: x\r\n":
                if stop.is_set():
                    break
                s.send(bytes([b]))
                stop.wait(1.0)
            s.close()
        except OSError:
            stop.wait(0.2)


threads = [threading.Thread(target=dribbler, daemon=True) for _ in range(2 * LIMIT)]
for t in threads:
    t.start()
time.sleep(2.5)
worst = 0.0
for _ in range(3):
    t0 = time.monotonic()
    st = req("GET", "/v1/models", key="white")[0]
    worst = max(worst, time.monotonic() - t0)
    check(st == 200, "a normal client is answered while %d clients dribble (%s)" % (2 * LIMIT, st))
    time.sleep(0.5)
check(worst < 1.0, "... within 1 s (worst %.3f s)" % worst)
stop.set()
for t in threads:
    t.join(timeout=5)

# 5. Two servers: a second one on the same port or the same data directory -----------------------
other = os.path.join(W.tmp, "other-data")
r = subprocess.run([PARITY, "serve", "--data", W.data, "--port", "0"], capture_output=True, text=True, timeout=60)
check(r.returncode != 0 and "in use by parity pid %d" % W.server.pid in r.stderr,
      "the same data directory: refused, naming the holder's pid: %s" % r.stderr.strip()[-200:])
subprocess.run([PARITY, "policy", "apply", os.path.join(W.tmp, "policy.yaml"), "--data", other], capture_output=True)
r = subprocess.run([PARITY, "serve", "--data", other, "--port", str(W.port)], capture_output=True, text=True,
                   timeout=60)
check(r.returncode != 0 and "already in use" in r.stderr, "the same port: refused: %s" % r.stderr.strip()[-200:])

# 6. Revocation: a revoked key fails on its next request ------------------------------------------
st, _, j, _ = req("POST", "/v1/admin/keys", {"organization": "rival"}, key="admin")
check(st == 201 and "key" in j, "the lab issues a key (%s)" % st)
key, key_id = (j or {}).get("key", ""), (j or {}).get("key_id", "")
check(req("GET", "/v1/models", key=key)[0] == 200, "the new key works")
st, _, _, _ = req("POST", "/v1/admin/keys/%s/revoke" % key_id, {}, key="admin")
check(st == 200, "the lab revokes it (%s)" % st)
st, _, j, _ = req("GET", "/v1/models", key=key)
check(st == 401, "the revoked key is refused on its next request (%s)" % st)
st, _, j, _ = req("POST", "/v1/admin/keys", {"organization": "rival"}, key="rival")
check(st == 403, "an outside key cannot issue keys (%s)" % st)

W.stop()
sys.exit(W.summary("security"))
