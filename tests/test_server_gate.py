"""What each use of a model is charged, on every route (issue 13 holes 1 and 2), and the
OpenAI surface the outside review found loose (issue 12): the real `parity serve` on the tiny
world with a policy of narrow custom tiers. Each block names the bug it pins down. Debian's
python3."""
import base64
import http.client
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, err_code  # noqa: E402

POLICY = """version: 1
lab: {id: test-lab, name: Test Lab}
models:
  - id: tiny
    name: Tiny test model
    weights: MODEL_DIR
    insider_since: 2026-01-01
    variants:
      - {id: mitigated, differs: output filter}
tiers:
  - {id: capped, capabilities: [sample, logprobs, prefill, activations, model_info]}
  - {id: noprefill, capabilities: [sample, logprobs, activations]}
  - {id: bare, capabilities: [sample]}
organisations:
  - {id: capped, name: Capped, kind: researcher}
  - {id: noprefill, name: No prefill, kind: researcher}
  - {id: bare, name: Bare, kind: public}
  - {id: white, name: White box, kind: evaluator}
  - {id: other, name: Other white box, kind: evaluator}
  - {id: limited, name: Rate-limited white box, kind: evaluator}
grants:
  - {id: g-capped, organisation: capped, model: tiny, tier: capped, limits: {logprobs_top_k: 3}}
  - {id: g-noprefill, organisation: noprefill, model: tiny, tier: noprefill}
  - {id: g-bare, organisation: bare, model: tiny, tier: bare}
  - {id: g-white, organisation: white, model: tiny, tier: AL3}
  - {id: g-other, organisation: other, model: tiny, tier: AL3}
  - {id: g-limited, organisation: limited, model: tiny, tier: AL3, limits: {requests_per_minute: 1, tokens_per_day: 100000}}
"""
W = World("parity-gate-", ["capped", "noprefill", "bare", "white", "other", "limited"], policy=POLICY)
check, req = W.check, W.req
W.start()
prompt = [5, 17, 42, 99, 3]
chat = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3, "temperature": 0}


def brief(j):
    """A failure message's view of a body: its first 300 characters."""
    return str(j)[:300]


def f32(vals):
    return {"data": base64.b64encode(struct.pack("<%df" % len(vals), *vals)).decode(), "shape": [len(vals)]}


def raw_post(path, body, key, ctype="application/json"):
    c = http.client.HTTPConnection("127.0.0.1", W.port, timeout=60)
    h = {"Authorization": "Bearer " + W.keys[key]}
    if ctype:
        h["Content-Type"] = ctype
    c.request("POST", path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, None


# --- issue 13 hole 1: the logits hook is the whole log-probability vector -------------------
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, logprobs=True, top_logprobs=4), key="capped")
check(st == 403 and err_code(j) == "limit_exceeded", "top_logprobs 4 over a cap of 3: 403 (%s)" % st)
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, logprobs=True, top_logprobs=3), key="capped")
check(st == 200, "top_logprobs 3 under a cap of 3: 200 (%s %s)" % (st, brief(j)))
trace = {"model": "tiny", "input": prompt, "reads": ["logits"]}
st, _, j, _ = req("POST", "/v1/internals/trace", trace, key="capped")
check(st == 403 and err_code(j) == "limit_exceeded" and "logprobs_top_k" in j["error"]["message"] and
      "reading 'logits'" in j["error"]["message"],
      "reading logits under a top-k cap of 3 is refused like top_logprobs = vocabulary: %s %s" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/internals/trace", trace, key="capped", headers={"Accept": "application/x-safetensors"})
check(st == 403 and err_code(j) == "limit_exceeded", "and as a safetensors body too: %s" % st)
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, reads=["logits", "blocks.0.hook_resid_post"]),
                  key="capped")
check(st == 403, "logits among other reads: refused (%s)" % st)
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, reads=["blocks.1.hook_resid_post"]), key="capped")
check(st == 200, "an activation read is charged activations only: %s %s" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/internals/trace", trace, key="white")
check(st == 200 and j["tensors"][0]["name"] == "logits", "an uncapped AL3 grant reads logits: %s" % st)
st, _, j, _ = req("POST", "/v1/internals/trace", trace, key="noprefill")
check(st == 403 and err_code(j) == "capability_not_in_tier" and "prefill" in j["error"]["message"],
      "logits of raw input text need prefill, as completions' echo log-probs do: %s %s" % (st, brief(j)))

# --- issue 13 hole 2: trace's generate is a completion of raw text: sample + prefill ---------
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 3}, key="noprefill")
check(st == 403 and "prefill" in j["error"]["message"], "no prefill: completions refused (%s)" % st)
gen = {"model": "tiny", "input": "the cat", "reads": ["blocks.0.hook_resid_post"], "generate": {"max_tokens": 3}}
st, _, j, _ = req("POST", "/v1/internals/trace", gen, key="noprefill")
check(st == 403 and err_code(j) == "capability_not_in_tier" and "prefill" in j["error"]["message"],
      "no prefill: trace with generate refused the same way: %s %s" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/internals/trace", dict(gen, generate=None), key="noprefill")
check(st == 200, "no prefill: a trace without generate is served (%s)" % st)
st, _, j, _ = req("POST", "/v1/internals/trace", gen, key="capped")
check(st == 200 and len(j["inputs"][0]["generated"]) <= 3, "sample + prefill + activations: generate served (%s)" % st)

# --- hooks listing and trace come from one source (issue 12) ---------------------------------
st, _, j, _ = req("GET", "/v1/internals/hooks?model=tiny", key="white")
names = [h["name"] for h in j["data"]] if st == 200 else []
check(names and "hook_pos_embed" not in names, "a Llama model lists no hook_pos_embed: %s" % names[:4])
st, _, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": prompt[:2], "reads": names}, key="white")
check(st == 200 and len(j["tensors"]) == len(names), "trace reads every listed hook: %s %s" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, reads=["hook_pos_embed"]), key="white")
check(st == 400 and err_code(j) == "unknown_hook", "and refuses what is not listed (%s)" % st)

# --- non-finite interventions (issue 12) -----------------------------------------------------
iv = {"hook": "blocks.0.hook_resid_pre", "op": "add", "value": f32([1.0] * 32)}
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, interventions=[dict(iv, scale=1.0), dict(iv, scale=1e308)]),
                  key="white")
check(st == 400 and "interventions[1]" in j["error"]["message"] and "blocks.0.hook_resid_pre" in j["error"]["message"],
      "scale 1e308: 400 naming interventions[1] and its hook: %s %s" % (st, brief(j)))
big = dict(iv, hook="blocks.1.hook_resid_pre", value=f32([3e38] * 32))
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, interventions=[big, big]), key="white")
check(st == 400 and "interventions[0]" in j["error"]["message"] and "interventions[1]" in j["error"]["message"] and
      "NaN or infinite" in j["error"]["message"], "a non-finite result: 400 naming the interventions: %s %s" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/internals/trace", dict(trace, interventions=[big, big], generate={"max_tokens": 2}),
                  key="white")
check(st == 400, "with generate too (%s)" % st)

# --- model_info gates the model's metadata (issue 12) ----------------------------------------
st, _, j, _ = req("GET", "/v1/models/tiny", key="bare")
check(st == 200 and j["id"] == "tiny" and "config" not in j and "name" not in j,
      "no model_info: the model object without its metadata: %s" % brief(j))
st, _, j, _ = req("GET", "/v1/models", key="bare")
check(st == 200 and "config" not in j["data"][0], "nor in the list")
st, _, j, _ = req("GET", "/v1/models/tiny", key="capped")
check(st == 200 and j.get("name") == "Tiny test model" and j.get("config", {}).get("num_hidden_layers") == 2,
      "model_info: name and config: %s" % brief(j))
st, _, j, _ = req("GET", "/v1/models", key="capped")
check(st == 200 and "config" in j["data"][0], "and in the list")

# --- OpenAI request bodies (issue 12) --------------------------------------------------------
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 2, "best_of": 3},
                  key="capped")
check(st == 400 and j["error"]["param"] == "best_of" and err_code(j) == "unsupported_parameter",
      "best_of 3: 400 naming it: %s %s" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "the", "max_tokens": 2, "best_of": 1,
                                              "user": "u1", "frequency_penalty": 0}, key="capped")
check(st == 200, "best_of 1, user, frequency_penalty 0 ask for nothing: 200 (%s %s)" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, wizardry=True), key="capped")
check(st == 400 and j["error"]["param"] == "wizardry" and err_code(j) == "unknown_parameter",
      "an unknown field: 400 naming it: %s" % brief(j))
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, metadata={"a": "b"}, store=False,
                                                       stream_options=None), key="capped")
check(st == 200, "metadata, store false: 200 (%s %s)" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, max_tokens=2.5), key="capped")
check(st == 400 and j["error"]["param"] == "max_tokens", "max_tokens 2.5: 400 (%s)" % st)
st, _, j, _ = req("POST", "/v1/chat/completions", dict(chat, n=1.0), key="capped")
check(st == 400 and j["error"]["param"] == "n", "n 1.0: 400 (%s)" % st)
body = json.dumps(dict(chat, max_tokens=3)).encode()
st, j = raw_post("/v1/chat/completions", body[:-1] + b"\x00}", "capped")
check(st == 400 and err_code(j) == "invalid_json", "a NUL after a number: 400 (%s %s)" % (st, brief(j)))
st, j = raw_post("/v1/chat/completions", body, "capped", ctype="text/plain")
check(st == 415 and err_code(j) == "unsupported_media_type" and "text/plain" in j["error"]["message"],
      "text/plain: 415 (%s %s)" % (st, brief(j)))
st, j = raw_post("/v1/chat/completions", body, "capped", ctype=None)
check(st == 415, "no Content-Type: 415 (%s)" % st)
st, j = raw_post("/v1/chat/completions", body, "capped", ctype="Application/JSON; charset=utf-8")
check(st == 200, "application/json with a charset: 200 (%s %s)" % (st, brief(j)))

# logit_bias: changes what is drawn, not the reported log-probs
base = {"model": "tiny", "prompt": prompt, "max_tokens": 4, "temperature": 0, "logprobs": 1}
st, _, j0, _ = req("POST", "/v1/completions", base, key="white")
st2, _, j1, _ = req("POST", "/v1/completions", dict(base, logit_bias={"7": 100}), key="white")
toks1 = j1["choices"][0]["logprobs"]["tokens"] if st2 == 200 else []
check(st == 200 and st2 == 200 and j0["choices"][0]["text"] != j1["choices"][0]["text"] and
      all(t == toks1[0] for t in toks1), "logit_bias +100 on token 7 makes every token 7: %s" % toks1)
lp0 = j0["choices"][0]["logprobs"]["top_logprobs"][0] if st == 200 else {}
lp1 = j1["choices"][0]["logprobs"]["top_logprobs"][0] if st2 == 200 else {}
check(lp0 == lp1, "the reported top log-probs are the raw logits', unbiased: %s %s" % (lp0, lp1))
st, _, j, _ = req("POST", "/v1/completions", dict(base, logit_bias={"7": 101}), key="white")
check(st == 400 and j["error"]["param"] == "logit_bias", "a bias over 100: 400 (%s)" % st)
st, _, j, _ = req("POST", "/v1/completions", dict(base, logit_bias={"999999": 1}), key="white")
check(st == 400 and j["error"]["param"] == "logit_bias", "a token outside the vocabulary: 400 (%s)" % st)
st, _, j, _ = req("POST", "/v1/completions", dict(base, logit_bias={"x": 1}), key="white")
check(st == 400, "a key that is not a token id: 400 (%s)" % st)

# --- GET /v1/files and DELETE /v1/files/{id} (issue 12) --------------------------------------
def upload(key, content, filename="train.jsonl"):
    b = "----parityGateBoundary"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" % (b, b, filename)).encode() + content + \
        ("\r\n--%s--\r\n" % b).encode()
    return req("POST", "/v1/files", key=key, raw=body, headers={"Content-Type": "multipart/form-data; boundary=" + b})


line = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
ids = []
for name in ("a.jsonl", "b.jsonl"):
    st, _, j, _ = upload("white", (line + "\n").encode(), name)
    check(st == 200, "upload %s (%s %s)" % (name, st, j))
    ids.append(j["id"] if st == 200 else "")
st, _, j, _ = upload("other", (line + "\n").encode(), "theirs.jsonl")
theirs = j["id"] if st == 200 else ""
st, _, j, _ = req("GET", "/v1/files", key="white")
check(st == 200 and j["object"] == "list" and [f["id"] for f in j["data"]] == ids[::-1] and
      j["first_id"] == ids[1] and j["last_id"] == ids[0] and j["has_more"] is False,
      "list: the organisation's files, newest first: %s %s" % (st, brief(j)))
st, _, j, _ = req("GET", "/v1/files?limit=1", key="white")
check(st == 200 and len(j["data"]) == 1 and j["has_more"] is True, "list with limit 1 (%s)" % st)
st, _, j, _ = req("DELETE", "/v1/files/" + theirs, key="white")
check(st == 404, "another organisation's file cannot be deleted (%s)" % st)
st, _, j, _ = req("DELETE", "/v1/files/" + ids[0], key="white")
check(st == 200 and j == {"id": ids[0], "object": "file", "deleted": True}, "delete: %s %s" % (st, brief(j)))
st, _, j, _ = req("GET", "/v1/files/" + ids[0], key="white")
check(st == 404, "a deleted file is gone (%s)" % st)
st, _, j, _ = req("GET", "/v1/files/%s/content" % ids[0], key="white")
check(st == 404, "and its content (%s)" % st)
st, _, j, _ = req("DELETE", "/v1/files/" + ids[0], key="white")
check(st == 404, "deleting twice: 404 (%s)" % st)
st, _, j, _ = req("GET", "/v1/files", key="white")
check(st == 200 and [f["id"] for f in j["data"]] == [ids[1]], "the list no longer has it: %s" % brief(j))
st, _, j, _ = req("GET", "/v1/files", key="other")
check(st == 200 and [f["id"] for f in j["data"]] == [theirs], "each organisation lists only its own")

# fine-tuning job bodies: the same rule for fields this server does not take
job = {"model": "tiny", "training_file": ids[1], "hyperparameters": {"n_epochs": 1}}
st, _, j, _ = req("POST", "/v1/fine_tuning/jobs", dict(job, best_of=1), key="white")
check(st == 400 and err_code(j) == "unknown_parameter" and j["error"]["param"] == "best_of",
      "a job body with an unknown field: 400 naming it (%s %s)" % (st, brief(j)))
st, _, j, _ = req("POST", "/v1/fine_tuning/jobs", dict(job, integrations=[{"type": "wandb", "wandb": {"project": "p"}}]),
                  key="white")
check(st == 400 and err_code(j) == "unsupported_parameter", "integrations: not implemented, 400 (%s)" % st)

# One rate limit and one 429 on every route that runs a model (pipeline.c's srv_limit_request):
# the trace's 429 said less than the chat's (no "Retry in", no token headers) when each handler
# had its own copy.
st, _, _, _ = req("POST", "/v1/chat/completions", chat, key="limited")
check(st == 200, "the minute's one request (%s)" % st)
st, chat_h, chat_j, _ = req("POST", "/v1/chat/completions", chat, key="limited")
check(st == 429 and "Retry in" in chat_j["error"]["message"], "the second: 429 (%s %s)" % (st, brief(chat_j)))
st, h, j, _ = req("POST", "/v1/internals/trace", {"model": "tiny", "input": prompt, "reads": ["logits"]}, key="limited")
check(st == 429 and err_code(j) == "rate_limit_exceeded" and j["error"]["type"] == "requests" and
      j["error"]["message"].split(" Retry in")[0] == chat_j["error"]["message"].split(" Retry in")[0] and
      "Retry in" in j["error"]["message"] and "retry-after" in h and h.get("x-ratelimit-limit-tokens") == "100000" and
      all(h.get(k) == chat_h.get(k) for k in ("x-ratelimit-limit-requests", "x-ratelimit-limit-tokens")),
      "a trace's 429 is the chat's, headers and message: %s %s %s" % (st, brief(j), h))

sys.exit(W.summary("test_server_gate"))
