"""Helpers of bench/bench_server.sh (Debian's python3 with torch).

  server_bench.py world DIR          writes DIR/tiny (the test world's model), DIR/llama25m (a random
                                     Llama, ~25M parameters, the tiny world's tokenizer), a policy
                                     over both, applies it to DIR/data, prints an API key of an
                                     organisation with no limits
  server_bench.py batch PORT KEY N [ROUNDS]
                                     N completions one by one, then N at once, on llama25m,
                                     ROUNDS times (default 3); prints both tokens/s and the
                                     ratio of each round, and the median ratio
"""
import http.client
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
from ref_model import llama_config, write_model  # noqa: E402
from tiny_world import make_model, run, write_tokenizer  # noqa: E402

POLICY = """version: 1
lab: {id: bench-lab, name: Bench Lab}
models:
  - {id: tiny, weights: %s, insider_since: 2026-01-01}
  - {id: llama25m, weights: %s, insider_since: 2026-01-01}
organisations:
  - {id: lab, name: Bench Lab, kind: insider}
grants:
  - {id: g-lab, organisation: lab, model: "*", tier: AL3, window: {from: 2026-01-01}}
"""


def world(d):
    tiny, big = os.path.join(d, "tiny"), os.path.join(d, "llama25m")
    make_model(tiny)
    os.makedirs(big, exist_ok=True)
    n_tok = write_tokenizer(big)
    # 8 layers x (4 * 512^2 attention + 3 * 512 * 1376 MLP) = 25.3M parameters (F32: 101 MB)
    cfg = llama_config(vocab=n_tok + 3, d=512, layers=8, heads=8, kv_heads=8, head_dim=64, d_ff=1376)
    cfg["eos_token_id"] = n_tok - 1
    cfg["max_position_embeddings"] = 512
    write_model(big, cfg, seed=1)
    with open(os.path.join(d, "policy.yaml"), "w") as f:
        f.write(POLICY % (tiny, big))
    data = os.path.join(d, "data")
    run("policy", "apply", os.path.join(d, "policy.yaml"), "--data", data)
    print(run("keys", "create", "--org", "lab", "--data", data).stdout.strip().splitlines()[-1])


def complete(port, key, i, max_tokens, out):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = {"model": "llama25m", "prompt": "The request number %d says" % i, "max_tokens": max_tokens,
            "temperature": 0}
    c.request("POST", "/v1/completions", body=json.dumps(body),
              headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    j = json.loads(r.read())
    c.close()
    if r.status != 200:
        raise RuntimeError("completion %d: %d %s" % (i, r.status, j))
    out[i] = j["usage"]["completion_tokens"]


def batch(port, key, n, rounds=3, max_tokens=64):
    """n completions one by one, then the same n at once; `rounds` times, alternating (the
    machine is shared and one pair takes about two seconds: single pairs swing by +-15%)."""
    port, n, rounds = int(port), int(n), int(rounds)
    # Warm-up, not counted: pages the weights in, and one concurrent batch leaves the server
    # the n KV caches a batch needs (the engine keeps freed ones; the first batch after a
    # start maps fresh memory for them: its ratio was 2.4-2.7x where later rounds gave 3.0-3.5x).
    complete(port, key, 0, 4, {})
    ts = [threading.Thread(target=complete, args=(port, key, i, max_tokens, {})) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ratios = []
    for r in range(rounds):
        out = {}
        t0 = time.time()
        for i in range(n):
            complete(port, key, i, max_tokens, out)
        seq_s = time.time() - t0
        seq_tok = sum(out.values())
        out = {}
        ts = [threading.Thread(target=complete, args=(port, key, i, max_tokens, out)) for i in range(n)]
        t0 = time.time()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        con_s = time.time() - t0
        con_tok = sum(out.values())
        if len(out) != n:
            raise RuntimeError("a concurrent completion failed")
        a, b = seq_tok / seq_s, con_tok / con_s
        ratios.append(b / a)
        print("round %d: one by one %d requests, %d tokens in %.2f s = %.1f tokens/s; concurrent %d tokens in "
              "%.2f s = %.1f tokens/s; ratio %.2fx" % (r + 1, n, seq_tok, seq_s, a, con_tok, con_s, b, b / a))
    ratios.sort()
    print("ratio concurrent / one by one: %.2f-%.2fx (median %.2fx over %d rounds)" %
          (ratios[0], ratios[-1], ratios[len(ratios) // 2], rounds))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "world":
        world(sys.argv[2])
    elif len(sys.argv) >= 5 and sys.argv[1] == "batch":
        batch(*sys.argv[2:6])
    else:
        print(__doc__)
        sys.exit(0 if "--help" in sys.argv else 2)
