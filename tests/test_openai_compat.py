"""OpenAI client compatibility: the official `openai` npm package (pinned in tests/js-openai)
drives the real `parity serve` on the tiny world, changing only baseURL and apiKey. Covers
completions, chat, streaming (for await, include_usage, the SDK's stream helper, an early
break), log-probs (completions' logprobs and chat's logprobs/top_logprobs, checked against
`parity generate` and `parity score`), models.list/retrieve, and the SDK's error classes for our
401/403/404/400/429 answers (maxRetries 0, so retries cannot hide them). Installs the package
with `npm ci` into the build directory when it is missing. Debian's python3 and node."""
import json
import math
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run  # noqa: E402

SRC = os.environ.get("PARITY_SRC", os.path.dirname(HERE))
BUILD = os.environ.get("PARITY_BUILD", os.path.join(SRC, "build"))
JS = os.path.join(BUILD, "openai-js")

def setup_js():
    os.makedirs(JS, exist_ok=True)
    for f in ("package.json", "package-lock.json", "openai_compat.mjs"):
        shutil.copy(os.path.join(HERE, "js-openai", f), os.path.join(JS, f))
    want = json.load(open(os.path.join(HERE, "js-openai", "package.json")))["dependencies"]["openai"]
    have = os.path.join(JS, "node_modules", "openai", "package.json")
    if not os.path.exists(have) or json.load(open(have))["version"] != want:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS, check=True)


setup_js()

W = World("parity-openai-", ["al1", "al2", "al3", "slow", "none"])
tmp, data, model_dir, keys, check = W.tmp, W.data, W.model_dir, W.keys, W.check
W.start()

prompt = [5, 17, 42, 99, 3]
cfg = {"baseURL": "http://127.0.0.1:%d/v1" % W.port, "keys": keys, "prompt_ids": prompt, "model": "tiny"}
cfg_path = os.path.join(tmp, "cfg.json")
json.dump(cfg, open(cfg_path, "w"))
p = subprocess.run(["node", os.path.join(JS, "openai_compat.mjs"), cfg_path], capture_output=True, text=True,
                   timeout=300)
if p.returncode != 0:
    print(p.stdout[-4000:], p.stderr[-4000:])
    check(False, "the driver ran (exit %d)" % p.returncode)
    sys.exit(1)
r = json.loads(p.stdout)


def ok(name):
    v = r[name]
    good = not (isinstance(v, dict) and v.get("thrown"))
    check(good, "%s: the client threw %s" % (name, v))
    return good


def close(a, b, tol=1e-4):
    return len(a) == len(b) and all(abs(x - y) < tol for x, y in zip(a, b))


# --- models -----------------------------------------------------------------------------------
if ok("models_list"):
    check(r["models_list"] == [{"id": "tiny", "object": "model", "owned_by": "test-lab"}],
          "models.list iterates the caller's models: %s" % r["models_list"])
if ok("models_list_none"):
    check(r["models_list_none"] == [], "an org without grants lists nothing")
if ok("models_retrieve"):
    check(r["models_retrieve"]["id"] == "tiny" and r["models_retrieve"]["object"] == "model", "models.retrieve")
e = r["models_retrieve_denied"]
check(e.get("is_NotFoundError") and e.get("status") == 404 and e.get("code") == "model_not_found",
      "retrieve without access: NotFoundError %s" % e)
if ok("models_list_receipt"):
    check(r["models_list_receipt"]["receipt"] is not None and r["models_list_receipt"]["receipt"].isdigit(),
          "withResponse() exposes the Parity-Receipt header: %s" % r["models_list_receipt"])

# --- completions, log-probs against the CLI ---------------------------------------------------
gen = json.loads(run("generate", "-m", model_dir, "--tokens", ",".join(map(str, prompt)), "--max-tokens", "6",
                     "--json").stdout)
if ok("completion_logprobs"):
    c = r["completion_logprobs"]
    lp = c["choices"][0]["logprobs"]
    check(c["object"] == "text_completion" and c["model"].startswith("tiny"), "completion object")
    check(len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]),
          "completions logprobs arrays line up: %s" % lp)
    check(all(1 <= len(t) <= 3 for t in lp["top_logprobs"]), "top_logprobs has at most 3 alternatives")
    check(close(lp["token_logprobs"], gen["logprobs"]),
          "greedy log-probs equal parity generate's: %s vs %s" % (lp["token_logprobs"], gen["logprobs"]))
    # greedy: the chosen token is the most likely alternative
    check(all(abs(max(t.values()) - x) < 1e-5 for t, x in zip(lp["top_logprobs"], lp["token_logprobs"])),
          "greedy picks the top alternative: %s %s" % (lp["top_logprobs"], lp["token_logprobs"]))
    check(c["usage"]["completion_tokens"] == len(lp["tokens"]) and c["usage"]["prompt_tokens"] == len(prompt),
          "completion usage: %s" % c["usage"])
sc = json.loads(run("score", "-m", model_dir, "--tokens", ",".join(map(str, prompt)), "--json").stdout)
if ok("completion_echo"):
    lp = r["completion_echo"]["choices"][0]["logprobs"]
    check(lp["token_logprobs"][0] is None, "echo: the first prompt token has no log-prob (null)")
    check(close(lp["token_logprobs"][1:], sc["logprobs"][1:]),
          "echo log-probs equal parity score's: %s vs %s" % (lp["token_logprobs"], sc["logprobs"]))
if ok("completion_text") and ok("completion_stream"):
    chunks = r["completion_stream"]
    text = "".join(ch["choices"][0]["text"] for ch in chunks if ch["choices"])
    check(text == r["completion_text"]["choices"][0]["text"], "streamed completion text equals the whole one")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] ==
          r["completion_text"]["usage"]["completion_tokens"], "completion stream ends with the usage chunk")
    fins = [ch["choices"][0]["finish_reason"] for ch in chunks if ch["choices"]]
    check(fins[-1] in ("length", "stop") and all(f is None for f in fins[:-1]), "finish_reason only at the end: %s" % fins)

# --- chat -------------------------------------------------------------------------------------
if ok("chat"):
    c = r["chat"]
    m = c["choices"][0]["message"]
    check(c["object"] == "chat.completion" and m["role"] == "assistant" and isinstance(m["content"], str), "chat object")
    check(c["choices"][0]["finish_reason"] in ("length", "stop"), "chat finish_reason")
    check(0 < c["usage"]["completion_tokens"] <= 6 and c["usage"]["prompt_tokens"] > 0 and
          c["usage"]["total_tokens"] == c["usage"]["prompt_tokens"] + c["usage"]["completion_tokens"], "chat usage")
if ok("chat_receipt"):
    check(r["chat_receipt"]["receipt"] is not None and r["chat_receipt"]["content"] == r["chat"]["choices"][0]["message"]["content"],
          "chat via withResponse(): receipt header, same greedy text")
if ok("chat_logprobs"):
    ch = r["chat_logprobs"]["choices"][0]
    content = ch["logprobs"]["content"]
    check(len(content) == r["chat_logprobs"]["usage"]["completion_tokens"], "one logprobs entry per generated token")
    check(all(isinstance(t["token"], str) and t["logprob"] <= 0 and isinstance(t["bytes"], list) and
              1 <= len(t["top_logprobs"]) <= 3 for t in content), "chat logprobs entries: %s" % content[:2])
    check(all(bytes(t["bytes"]).decode("utf-8", "replace") == t["token"] or "\ufffd" in bytes(t["bytes"]).decode("utf-8", "replace")
              for t in content), "bytes are the token's UTF-8")
    check(all(abs(t["top_logprobs"][0]["logprob"] - t["logprob"]) < 1e-5 for t in content),
          "greedy chat picks the top alternative")
    check(all(t["top_logprobs"][i]["logprob"] >= t["top_logprobs"][i + 1]["logprob"]
              for t in content for i in range(len(t["top_logprobs"]) - 1)), "top_logprobs sorted")
    check(all(sum(math.exp(a["logprob"]) for a in t["top_logprobs"]) <= 1 + 1e-4 for t in content),
          "top_logprobs are a sub-distribution")
    check("".join(t["token"] for t in content) == ch["message"]["content"] or ch["finish_reason"] == "stop",
          "the tokens spell the content")
if ok("chat_n_seed") and ok("chat_n_seed_again"):
    a = [c["message"]["content"] for c in r["chat_n_seed"]["choices"]]
    b = [c["message"]["content"] for c in r["chat_n_seed_again"]["choices"]]
    check(len(a) == 2 and a == b and sorted(c["index"] for c in r["chat_n_seed"]["choices"]) == [0, 1],
          "n=2 with a seed: two choices, repeatable")
if ok("chat_stream"):
    chunks = r["chat_stream"]
    check(all(c["object"] == "chat.completion.chunk" for c in chunks), "chunk objects")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "the first chunk names the role")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    check(text == r["chat"]["choices"][0]["message"]["content"], "streamed chat text equals the whole one")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"] == r["chat"]["usage"],
          "include_usage: the last chunk carries the same usage: %s vs %s" % (chunks[-1].get("usage"), r["chat"]["usage"]))
    check(len({c["id"] for c in chunks}) == 1, "every chunk has the same id")
if ok("chat_stream_logprobs") and ok("chat_logprobs"):
    chunks = r["chat_stream_logprobs"]
    got = [t for c in chunks if c["choices"] and c["choices"][0].get("logprobs") for t in c["choices"][0]["logprobs"]["content"]]
    want = r["chat_logprobs"]["choices"][0]["logprobs"]["content"]
    check([t["token"] for t in got] == [t["token"] for t in want] and
          close([t["logprob"] for t in got], [t["logprob"] for t in want]) and
          all(len(t["top_logprobs"]) <= 2 for t in got), "streamed chat logprobs equal the whole ones")
if ok("chat_stream_helper"):
    h = r["chat_stream_helper"]
    check(h["deltas"] == h["final"]["choices"][0]["message"]["content"] == r["chat"]["choices"][0]["message"]["content"],
          "the SDK's stream helper accumulates our chunks into the same completion: %s" % h)
if ok("chat_stream_abort"):
    check(r["chat_stream_abort"] == {"chunks_read": 2, "after_ok": True}, "breaking out of a stream: %s" % r["chat_stream_abort"])

# --- errors -----------------------------------------------------------------------------------
def denied(name, cls, status, code, text=None):
    e = r[name]
    good = e.get("thrown") and e.get("is_" + cls) and e.get("status") == status and e.get("code") == code
    if text is not None:
        good = good and text in e.get("message", "")
    check(good, "%s: %s %d %s: %s" % (name, cls, status, code, e))
    return e


e = denied("err_capability", "PermissionDeniedError", 403, "capability_not_in_tier", "policy revision 1")
check(e.get("type") == "permission_denied" and e.get("headers", {}).get("parity-receipt"),
      "the 403 has our type and a receipt: %s" % e)
denied("err_variant", "PermissionDeniedError", 403, "capability_not_in_tier", "(policy revision 1)")
denied("err_no_grant", "PermissionDeniedError", 403, "no_grant", "policy revision 1")
denied("err_logprobs_cap", "PermissionDeniedError", 403, "limit_exceeded")
denied("err_unknown_model", "NotFoundError", 404, "model_not_found", "nosuch")
denied("err_bad_key", "AuthenticationError", 401, "invalid_api_key", "Incorrect or revoked API key")
e = denied("err_bad_request", "BadRequestError", 400, "invalid_value")
check(e.get("param") == "max_tokens" or "max_tokens" in e.get("message", ""), "the 400 names max_tokens: %s" % e)
denied("err_stream_denied", "PermissionDeniedError", 403, "no_grant")
rl = r["err_rate_limit"]
check(rl[0] == {"ok": "chat.completion"} and rl[1] == {"ok": "chat.completion"}, "two requests within the limit: %s" % rl[:2])
e = rl[2]
check(e.get("is_RateLimitError") and e.get("status") == 429 and e.get("code") == "rate_limit_exceeded" and
      e.get("headers", {}).get("retry-after") and e.get("headers", {}).get("x-ratelimit-limit-requests") == "2",
      "the third is a RateLimitError with Retry-After, not retried: %s" % e)


# --- files and fine-tuning jobs (files.create, fineTuning.jobs.*) -----------------------------
if ok("ft"):
    ft = r["ft"]
    f = ft["file"]
    check(f["object"] == "file" and f["id"].startswith("file-") and f["purpose"] == "fine-tune", "files.create: %s" % f)
    b = ft["bad_file"]
    check(b.get("is_BadRequestError") and b.get("code") == "invalid_file" and ":2:" in b.get("message", ""),
          "a bad file is a BadRequestError naming line 2: %s" % b)
    d = ft["done"]
    check(ft["created"]["status"] == "validating_files" and d["status"] == "succeeded" and
          d["fine_tuned_model"] == "ft:tiny:al3:js:" + d["id"], "jobs.create + retrieve to succeeded: %s" % d)
    check(d["id"] in ft["list"], "jobs.list (auto-paginated) has the job")
    msgs = [e["message"] for e in ft["events"]]
    check(any(m.startswith("The job has successfully completed") for m in msgs) and
          any(e["type"] == "metrics" for e in ft["events"]), "jobs.listEvents: %s" % msgs)
    check(len(ft["checkpoints"]) == 1 and ft["checkpoints"][0]["fine_tuning_job_id"] == d["id"], "checkpoints.list")
    check(ft["chat"]["model"] == d["fine_tuned_model"] and ft["chat"]["object"] == "chat.completion",
          "chat with the fine-tuned model")
    o = ft["other_org"]
    check(o.get("is_NotFoundError") and o.get("status") == 404, "another organisation: NotFoundError: %s" % o)
    check(ft["cancelled"]["status"] == "cancelled", "jobs.cancel")
    o = ft["denied"]
    check(o.get("is_PermissionDeniedError") and o.get("code") == "capability_not_in_tier",
          "no finetune: PermissionDeniedError: %s" % o)
    check(f["id"] in ft["files_list"], "files.list (auto-paginated) has the upload: %s" % ft["files_list"])
    check(ft["file_deleted"] == {"id": f["id"], "object": "file", "deleted": True}, "files.delete: %s" % ft["file_deleted"])
    check(f["id"] not in ft["files_left"], "a deleted file is no longer listed")

check(W.stop() == 0, "the server exits cleanly after the client's run")
sys.exit(W.summary("openai compat"))
