"""parity serve, driven as a client would: the real binary on a loopback port, a tiny random
model, the test policy (tests/data/server/policy.yaml). Covers every endpoint, each denial
reason, rate limits, streaming, receipts (checked with RFC 6962 hashing and `parity log
verify`), revocation, hostile input, and restart persistence. Debian's python3."""
import base64
import hashlib
import http.client
import json
import os
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from ref_model import read_safetensors  # noqa: E402
from rfc6962 import verify_inclusion  # noqa: E402
from tiny_world import World, err_code, run  # noqa: E402

W = World("parity-server-", ["lab", "al1", "al2", "al3", "slow", "late", "none"], admin="lab",
          serve_args=["--max-body", "65536"])
tmp, data, model_dir, keys, policy = W.tmp, W.data, W.model_dir, W.keys, W.policy
check, req, start, stop = W.check, W.req, W.start, W.stop
start()

# --- public endpoints -------------------------------------------------------------------------
st, _, j, _ = req("GET", "/healthz")
check(st == 200 and j["status"] == "ok" and j["policy_revision"] == 1, "healthz")
st, h, _, body = req("GET", "/metrics")
check(st == 200 and b"parity_http_requests_total" in body and h["content-type"].startswith("text/plain"), "metrics")
st, _, _, cp = req("GET", "/log/policy/checkpoint")
check(st == 200 and cp.split(b"\n")[1] == b"9", "policy checkpoint: 1 revision + 8 key bindings")
st, _, _, _ = req("GET", "/log/policy/../../keys/policy.key")
check(st == 404, "no path traversal out of the log")
st, _, j, _ = req("GET", "/v1/parity")
check(st == 200 and isinstance(j, dict), "parity report JSON")
st, h, _, body = req("GET", "/parity")
check(st == 200 and h["content-type"].startswith("text/html") and b"<table>" in body, "parity report HTML")

st, _, j, _ = req("GET", "/v1/models", key="al1", headers={"X-Big": "a" * 6000})
check(st == 200, "a request with 6 KB of headers is served")
st, _, _, _ = req("GET", "/v1/models", key="al1", headers={"X-Big": "a" * 60000})
check(st == 431, "60 KB of headers: 431, the server goes on: %s" % st)
check(req("GET", "/healthz")[0] == 200, "still serving")

# --- authentication ---------------------------------------------------------------------------
st, _, j, _ = req("GET", "/v1/models")
check(st == 401 and err_code(j) == "missing_api_key", "no key: 401")
st, _, j, _ = req("GET", "/v1/models", key="pk_0123456789abcdef_AAAA")
check(st == 401 and err_code(j) == "invalid_api_key", "unknown key: 401")
forged = keys["al1"][:-2] + ("AA" if not keys["al1"].endswith("AA") else "BB")
st, _, _, _ = req("GET", "/v1/models", key=forged)
check(st == 401, "right id, wrong secret: 401")

# --- models -----------------------------------------------------------------------------------
st, h, j, _ = req("GET", "/v1/models", key="al1")
check(st == 200 and [m["id"] for m in j["data"]] == ["tiny"] and "parity-receipt" in h, "al1 sees tiny, with a receipt")
st, _, j, _ = req("GET", "/v1/models", key="none")
check(st == 200 and j["data"] == [], "an org without grants sees no model")
st, _, j, _ = req("GET", "/v1/models/tiny", key="al3")
check(st == 200 and j["id"] == "tiny" and j["object"] == "model", "retrieve a model")
st, _, j, _ = req("GET", "/v1/models/tiny", key="none")
check(st == 404, "retrieve a model without access: 404")

# --- chat (AL1 has sample) ----------------------------------------------------------------------
chat = {"model": "tiny", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5,
        "temperature": 0}
st, h, j, _ = req("POST", "/v1/chat/completions", chat, key="al1")
check(st == 200 and j["object"] == "chat.completion" and j["choices"][0]["message"]["role"] == "assistant",
      "chat completion for AL1: %s %s" % (st, j))
check(st == 200 and j["usage"]["completion_tokens"] <= 5 and j["usage"]["prompt_tokens"] > 0, "chat usage")
st2, _, j2, _ = req("POST", "/v1/chat/completions", chat, key="al1")
check(st2 == 200 and j2["choices"][0]["message"]["content"] == j["choices"][0]["message"]["content"],
      "greedy chat is deterministic")

# --- denials ----------------------------------------------------------------------------------
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 3}, key="al1")
check(st == 403 and err_code(j) == "capability_not_in_tier", "AL1 has no prefill: 403 %s" % (j,))
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="tiny@unmitigated"), key="al1")
check(st == 403 and err_code(j) == "capability_not_in_tier", "AL1 may not use the unmitigated variant")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="tiny", variant="unmitigated"), key="al2")
check(st == 200, "AL2 may use the unmitigated variant")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="tiny", variant="nope"), key="al2")
check(st == 403 and err_code(j) == "unknown_variant", "unknown variant %s" % (j,))
st, _, j, _ = req("POST", "/v1/chat/completions", chat, key="late")
check(st == 403 and err_code(j) == "expired", "expired grant: 403 expired")
st, _, j, _ = req("POST", "/v1/chat/completions", chat, key="none")
check(st == 403 and err_code(j) == "no_grant", "no grant: 403")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="nosuch"), key="al3")
check(st == 404 and err_code(j) == "model_not_found", "unknown model: 404")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="ghost"), key="lab")
check(st == 503 and err_code(j) == "model_not_served", "a policy model without weights: 503")
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "logprobs": 10}, key="al2")
check(st == 403 and err_code(j) == "limit_exceeded", "logprobs above the grant's cap: 403 %s" % (j,))

# --- completions, log-probs, against the CLI --------------------------------------------------
prompt = [5, 17, 42, 99, 3]
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 6, "temperature": 0,
                                              "logprobs": 3}, key="al2")
check(st == 200 and j["object"] == "text_completion", "completions with logprobs")
lp = j["choices"][0]["logprobs"] if st == 200 else None
check(lp is not None and len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) and
      all(len(t) <= 3 for t in lp["top_logprobs"]), "logprobs shape")
# Tokens with the same text (byte tokens >= 0x80 all show as U+FFFD) share one key of the
# top_logprobs object: it must keep the most likely, so a greedy pick is the object's maximum.
check(lp is not None and any("\ufffd" in t for t in lp["top_logprobs"]) and
      all(abs(max(t.values()) - x) < 1e-5 for t, x in zip(lp["top_logprobs"], lp["token_logprobs"])),
      "greedy picks the top alternative, also when alternatives share a text: %s" % (lp,))
gen = json.loads(run("generate", "-m", model_dir, "--tokens", ",".join(map(str, prompt)), "--max-tokens", "6",
                     "--json").stdout)
if st == 200:
    check(j["usage"]["completion_tokens"] == len(lp["tokens"]), "usage counts the generated tokens")
    check(all(abs(a - b) < 1e-4 for a, b in zip(lp["token_logprobs"], gen["logprobs"])),
          "greedy completion log-probs equal parity generate's: %s vs %s" % (lp["token_logprobs"], gen["logprobs"]))
sc = json.loads(run("score", "-m", model_dir, "--tokens", ",".join(map(str, prompt)), "--json").stdout)
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 0, "echo": True,
                                              "logprobs": 0}, key="al2")
if st == 200:
    server_lp = j["choices"][0]["logprobs"]["token_logprobs"][1:]
    cli_lp = sc["logprobs"][1:]
    check(len(server_lp) == len(cli_lp) and all(abs(a - b) < 1e-4 for a, b in zip(server_lp, cli_lp)),
          "echo log-probs equal parity score's: %s vs %s" % (server_lp, cli_lp))
else:
    check(False, "echo scoring: %s %s" % (st, j))
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": ["a b", "c"], "n": 2, "max_tokens": 3,
                                              "seed": 7, "temperature": 1}, key="al2")
check(st == 200 and sorted(c["index"] for c in j["choices"]) == [0, 1, 2, 3], "two prompts x n=2: four choices")
st, _, j2, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": ["a b", "c"], "n": 2, "max_tokens": 3,
                                               "seed": 7, "temperature": 1}, key="al2")
check(st == 200 and [c["text"] for c in j["choices"]] == [c["text"] for c in j2["choices"]], "seeded sampling repeats")
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 20, "stop": ["e"],
                                              "temperature": 1, "seed": 3}, key="al2")
check(st == 200 and "e" not in j["choices"][0]["text"], "stop sequence is not in the text")

# --- streaming --------------------------------------------------------------------------------
def stream(body, key):
    c = http.client.HTTPConnection("127.0.0.1", W.port, timeout=60)
    c.request("POST", "/v1/chat/completions", body=json.dumps(body),
              headers={"Authorization": "Bearer " + keys[key], "Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode()
    c.close()
    return r.status, raw


st, raw = stream(dict(chat, stream=True, stream_options={"include_usage": True}), "al1")
events = [e[6:] for e in raw.split("\n\n") if e.startswith("data: ")]
check(st == 200 and events and events[-1] == "[DONE]", "stream ends with [DONE]")
chunks = [json.loads(e) for e in events[:-1]]
check(chunks and chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first chunk names the role")
check(chunks and chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 0, "usage chunk")
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
st, _, j, _ = req("POST", "/v1/chat/completions", chat, key="al1")
check(text == j["choices"][0]["message"]["content"], "streamed text equals the non-streamed text")
check(": parity-receipt " in raw, "a streamed response names its receipt")

# --- internals --------------------------------------------------------------------------------
trace = {"model": "tiny", "input": [prompt, prompt[:3]], "reads": ["blocks.0.hook_resid_post", "logits"]}
st, _, j, _ = req("POST", "/v1/internals/trace", trace, key="al2")
check(st == 403 and err_code(j) == "capability_not_in_tier", "AL2 may not read activations")
st, _, j, _ = req("POST", "/v1/internals/trace", trace, key="al3")
check(st == 200 and j["object"] == "trace", "AL3 trace %s" % (st,))
if st == 200:
    t = {x["name"]: x for x in j["tensors"]}
    check(t["blocks.0.hook_resid_post"]["shape"] == [2, 5, 32], "resid shape keeps the batch dimension")
    raw = base64.b64decode(t["blocks.0.hook_resid_post"]["data"])
    vals = struct.unpack("<%df" % (len(raw) // 4), raw)
    out = os.path.join(tmp, "cli.safetensors")
    run("trace", "-m", model_dir, "--tokens", ",".join(map(str, prompt)), "--read", "blocks.0.hook_resid_post",
        "-o", out)
    ref = read_safetensors(out)["blocks.0.hook_resid_post"].flatten().tolist()
    check(max(abs(a - b) for a, b in zip(vals[:160], ref)) < 1e-5, "HTTP trace equals parity trace")
    check(all(v == 0 for v in vals[160 + 3 * 32:]), "the shorter input is zero-padded")
# steering through HTTP equals steering through the CLI
vec = [0.5] * 32
st, _, j, _ = req("POST", "/v1/internals/trace", {
    "model": "tiny", "input": prompt, "reads": ["logits"],
    "interventions": [{"hook": "blocks.1.hook_resid_pre", "op": "add", "scale": 2.0,
                       "value": {"data": base64.b64encode(struct.pack("<32f", *vec)).decode(), "shape": [32]}}]},
    key="al3")
check(st == 200, "steering via HTTP")
# patching: input 1 takes input 0's resid_pre at every position -> the same logits
st, _, j, _ = req("POST", "/v1/internals/trace", {
    "model": "tiny", "input": [prompt, [1, 2, 3, 4, 6]], "reads": ["logits"],
    "interventions": [{"hook": "blocks.0.hook_resid_pre", "op": "patch", "source": 0}]}, key="al3")
if st == 200:
    lg = {x["name"]: x for x in j["tensors"]}["logits"]
    raw = base64.b64decode(lg["data"])
    n = len(raw) // 8
    a, b = raw[:n * 4], raw[n * 4:]
    check(a == b, "patching the clean resid_pre reproduces the clean logits")
else:
    check(False, "patch trace: %s %s" % (st, j))
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, reads=["blocks.9.hook_nope"]), key="al3")
check(st == 400 and err_code(j) == "unknown_hook" and "hook_resid_pre" in j["error"]["message"],
      "an unknown hook lists the valid ones")
st, h, _, body = req("POST", "/v1/internals/trace", trace, key="al3", headers={"Accept": "application/x-safetensors"})
check(st == 200 and h["content-type"] == "application/x-safetensors" and struct.unpack("<Q", body[:8])[0] < len(body),
      "trace as safetensors")
st, _, j, _ = req("GET", "/v1/internals/hooks?model=tiny", key="al3")
check(st == 200 and any(x["name"] == "blocks.1.attn.hook_pattern" and not x["writable"] for x in j["data"]),
      "hook listing")
st, _, j, _ = req("GET", "/v1/queue", key="al3")
check(st == 200 and j["data"][0]["model"] == "tiny", "queue")

# --- access and rate limits -------------------------------------------------------------------
st, _, j, _ = req("GET", "/v1/access", key="slow")
check(st == 200 and j["models"][0]["limits"]["requests_per_minute"] == 2, "access shows limits")
codes = []
for i in range(3):
    st, h, j, _ = req("POST", "/v1/chat/completions", chat, key="slow")
    codes.append(st)
check(codes[:2] == [200, 200] and codes[2] == 429, "third request in a minute is 429: %s" % codes)
check(h.get("x-ratelimit-limit-requests") == "2" and "retry-after" in h and err_code(j) == "rate_limit_exceeded",
      "429 carries the rate-limit headers")

# --- hostile input ----------------------------------------------------------------------------
st, _, j, _ = req("POST", "/v1/chat/completions", key="al1", raw=b"{not json", headers={"Content-Type": "application/json"})
check(st == 400 and err_code(j) == "invalid_json", "malformed JSON: 400")
JSON = {"Content-Type": "application/json"}
st, _, j, _ = req("POST", "/v1/chat/completions", key="al1", raw=b'{"model":"tiny","messages":[{"role":"user","content":"\xff"}]}',
                  headers=JSON)
check(st == 400, "invalid UTF-8: 400")
st, _, j, _ = req("POST", "/v1/chat/completions", key="al1", raw=b"[" * 100 + b"]" * 100, headers=JSON)
check(st == 400, "deep nesting: 400")
st, _, j, _ = req("POST", "/v1/chat/completions", key="al1", raw=b"x" * 70000)
check(st == 413, "body over the cap: 413")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, max_tokens=10 ** 6), key="al1")
check(st == 400, "max_tokens over the cap: 400")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, messages=[{"role": "wizard", "content": "x"}]), key="al1")
check(st == 400, "bad role: 400")
st, _, j, _ = req("DELETE", "/v1/models", key="al1")
check(st == 405, "wrong method: 405")
st, _, j, _ = req("GET", "/v1/nothing", key="al1")
check(st == 404, "unknown endpoint: 404")

# --- concurrency ------------------------------------------------------------------------------
results = []


def worker(i):
    results.append(req("POST", "/v1/completions", {"model": "tiny", "prompt": [i + 1, 2, 3], "max_tokens": 8,
                                                   "temperature": 0}, key="lab")[0])


ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(results == [200] * 8, "8 concurrent completions: %s" % results)

# --- admin, revocation, receipts --------------------------------------------------------------
st, _, j, _ = req("POST", "/v1/admin/keys", {"organization": "al1"}, key="al1")
check(st == 403, "admin endpoints need an admin key")
st, _, j, _ = req("POST", "/v1/admin/keys", {"organization": "al2"}, key="admin")
check(st == 201 and j["key"].startswith("pk_"), "admin creates a key")
newkey, newid = j["key"], j["key_id"]
st, _, _, _ = req("GET", "/v1/models", key=newkey)
check(st == 200, "the new key works")
st, _, j, _ = req("POST", "/v1/admin/keys/%s/revoke" % newid, {}, key="admin")
check(st == 200 and j["revoked"], "admin revokes it")
st, _, _, _ = req("GET", "/v1/models", key=newkey)
check(st == 401, "a revoked key stops working at once")
st, _, j, _ = req("POST", "/v1/admin/policy", key="admin", raw=policy.replace("requests_per_minute: 2", "requests_per_minute: 3").encode())
check(st == 201 and j["changed"] and j["seq"] == 2, "admin applies a policy revision: %s" % (j,))
st, _, j, _ = req("GET", "/v1/access", key="slow")
check(j["models"][0]["limits"]["requests_per_minute"] == 3 and j["policy_revision"] == 2, "the new revision is in force at once")
st, _, j, _ = req("POST", "/v1/admin/policy", key="admin", raw=b"version: 1\nlab: [")
check(st == 400 and err_code(j) == "invalid_policy", "an invalid policy is refused")
# A revision that adds models: the ones whose weights this server holds are served at once.
from tiny_world import make_model  # noqa: E402
tiny2 = os.path.join(tmp, "tiny2")
make_model(tiny2, seed=1)
broken = os.path.join(tmp, "broken")
os.makedirs(broken)
with open(os.path.join(broken, "config.json"), "w") as f:
    f.write('{"model_type": "llama", "hidden_size": ')
rev3 = policy.replace("requests_per_minute: 2", "requests_per_minute: 3").replace(
    "  - id: ghost\n", "  - {id: tiny2, weights: %s, insider_since: 2026-01-01}\n"
    "  - {id: broken, weights: %s, insider_since: 2026-01-01}\n  - id: ghost\n" % (tiny2, broken))
st, _, j, _ = req("POST", "/v1/admin/policy", key="admin", raw=rev3.encode())
check(st == 201 and j["seq"] == 3 and j["models"]["loaded"] == ["tiny2"], "a new model is loaded on apply: %s" % (j,))
check(st == 201 and [m["id"] for m in j["models"]["not_served"]] == ["broken"] and
      "config.json" in j["models"]["not_served"][0]["reason"], "a model that fails to load is named with the reason")
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="tiny2"), key="lab")
check(st == 200 and j["model"] == "tiny2", "the new model serves without a restart: %s %s" % (st, j))
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, model="broken"), key="lab")
check(st == 503 and err_code(j) == "model_not_served", "the broken one is not served: %s" % (j,))

st, h, _, _ = req("GET", "/v1/models", key="al3")
idx = int(h["parity-receipt"])
st, _, r, _ = req("GET", "/v1/receipts/%d" % idx, key="al3")
check(st == 200 and r["private"]["org"] == "al3" and r["entry"]["decision"] == "allow", "receipt entry")
# What a request can put in its audit entry stays valid JSON and out of the public entry: a
# model id (here from the path) with a quote, a backslash, a control character and a byte that
# is not UTF-8 is no model of the policy, so the entry only says so.
st, h, _, _ = req("GET", "/v1/models/a%22b%5Cc%01d%FFe", key="al3")
st2, _, r2, _ = req("GET", "/v1/receipts/%s" % h.get("parity-receipt"), key="al3")
check(st == 404 and st2 == 200 and isinstance(r2["entry"], dict) and "model" not in r2["entry"] and
      r2["entry"].get("unlisted_model") is True and r2["entry"]["status"] == 404,
      "an unlisted model id stays out of the audit entry: %s" % (r2.get("entry") if r2 else None,))


if st == 200:
    cp_lines = r["checkpoint"].split("\n")
    root = base64.b64decode(cp_lines[2])
    entry_bytes = json.dumps(r["entry"], separators=(",", ":")).encode()
    lh = base64.b64decode(r["leaf_hash"])
    check(verify_inclusion(idx, r["tree_size"], lh, [base64.b64decode(p) for p in r["inclusion_proof"]], root),
          "the receipt's inclusion proof verifies against the checkpoint root")
# The entry's hashes are SHA-256 of the bytes sent and received (a GET's request hash is that
# of no bytes, a constant in the server): a GET twice, and a POST.
for what, method, path, body in (("GET", "GET", "/v1/models", None), ("GET again", "GET", "/v1/models", None),
                                 ("POST", "POST", "/v1/chat/completions", chat)):
    st, h, _, got = req(method, path, body, key="al3")
    sent = json.dumps(body).encode() if body is not None else b""
    st2, _, r2, _ = req("GET", "/v1/receipts/%s" % h.get("parity-receipt"), key="al3")
    e = r2["entry"] if st2 == 200 else {}
    e = r2.get("private", {}) if st2 == 200 else {}  # the plain digests: to the caller only
    check(e.get("request_sha256") == hashlib.sha256(sent).hexdigest() and
          e.get("response_sha256") == hashlib.sha256(got).hexdigest(),
          "%s: the receipt's request and response hashes are those of the bytes (%s)" % (what, e))
denied_before = None
st, h, j, _ = req("POST", "/v1/chat/completions", chat, key="none")
check("parity-receipt" in h, "a denied request gets a receipt too")

# A grant's window opens and closes while the server runs: GET /v1/models (whose body is cached
# per organisation and policy revision until the policy's next grant boundary) follows it.
t_from = int(time.time()) + 2
fmt = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
rev4 = rev3 + "  - {id: g-none, organisation: none, model: tiny, tier: AL1, window: {from: %s, until: %s}}\n" % (
    fmt(t_from), fmt(t_from + 2))
st, _, j, _ = req("POST", "/v1/admin/policy", key="admin", raw=rev4.encode())
check(st == 201 and j["seq"] == 4, "a revision with a grant window in the next seconds: %s" % (j,))
listed = lambda: [m["id"] for m in req("GET", "/v1/models", key="none")[2]["data"]]
check(listed() == [] and listed() == [], "before the window: nothing listed (twice: the second from the cache)")
time.sleep(max(0, t_from - time.time()) + 0.2)
check(listed() == ["tiny"], "the window opened: the model is listed at once")
time.sleep(max(0, t_from + 2 - time.time()) + 0.2)
check(listed() == [], "the window closed: the model is gone at once")

# --- restart persistence ----------------------------------------------------------------------
st, _, j, _ = req("GET", "/v1/access", key="slow")
used = j["models"][0]["remaining"]["tokens_used_today"]
check(used > 0, "tokens were counted")
check(stop() == 0, "SIGTERM: clean exit")
vkey = run("log", "vkey", "--data", data, "--log", "audit").stdout.strip()
v = run("log", "verify", "--vkey", vkey, os.path.join(data, "log", "audit"), check=False)
check(v.returncode == 0, "the audit log verifies: %s" % v.stderr)
start()
st, _, j, _ = req("GET", "/v1/access", key="slow")
check(st == 200 and j["models"][0]["remaining"]["tokens_used_today"] == used, "usage survives a restart")
st, _, _, _ = req("GET", "/v1/models", key=newkey)
check(st == 401, "revocation survives a restart")
st, _, j, _ = req("GET", "/healthz")
check(j["policy_revision"] == 4, "the policy revision survives a restart")
pvkey = run("log", "vkey", "--data", data, "--log", "policy").stdout.strip()
v = run("log", "verify", "--vkey", pvkey, "http://127.0.0.1:%d/log/policy" % W.port, check=False)
check(v.returncode == 0 and "seq" in v.stdout, "the policy log verifies over HTTP from the server: %s" % v.stderr)
stop()

sys.exit(W.summary("server"))
