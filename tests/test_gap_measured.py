"""The parity report measures, not only declares (issue 14, point 6), on the real server: public
audit entries carry latency_ms (and queue_ms for engine requests) and the server declares the
models it serves (models_served); /v1/parity's measured section counts requests served, denied
and rate-limited per model and class, with latency, tokens and capabilities used; a granted
model the server does not run ("ghost", no weights) is not released; and the measured section
recomputed with `parity gap --audit` from a copy of the public tiles alone equals the server's."""
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "data", "server", "policy.yaml")) as f:
    policy = f.read().replace("model: tiny, tier: AL1,", "model: '*', tier: AL1,")  # al1 is granted ghost too
W = World("parity-measured-", ["al1", "al2", "slow"], policy=policy, admin="lab")
W.start()


def chat(org, model="tiny", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3, **extra}
    return W.req("POST", "/v1/chat/completions", body=body, key=org)[0]


got = [chat("admin") for _ in range(3)]                    # insiders, served
got += [chat("al1") for _ in range(2)]                     # outsiders, served
got.append(chat("al1", logprobs=True, top_logprobs=2))     # AL1 has no logprobs: denied
got += [chat("slow") for _ in range(3)]                    # 2 requests/minute: the third is rate-limited
got.append(chat("al1", model="ghost"))                     # granted, not served: 503
got.append(chat("al2", logprobs=True, top_logprobs=2))     # served, with logprobs
W.check(got == [200, 200, 200, 200, 200, 403, 200, 200, 429, 503, 200], "the requests: %s" % got)

for _ in range(100):  # until the receipts are published under a checkpoint
    st, _, h, _ = W.req("GET", "/healthz")
    if h["audit_log_size"] == h["audit_receipts"]:
        break
    time.sleep(0.1)
st, _, rep, _ = W.req("GET", "/v1/parity")
W.check(st == 200 and isinstance(rep.get("measured"), dict), "/v1/parity has a measured section: %d" % st)
meas = rep["measured"]
W.check(meas["served_models"] == ["tiny"], "the served models come from the log: %s" % meas["served_models"])
tiny = [m for m in meas["models"] if m["id"] == "tiny"][0]
ghost = [m for m in meas["models"] if m["id"] == "ghost"][0]
ins, out = tiny["insiders"], tiny["outsiders"]
W.check(ghost["served"] is False and tiny["served"] is True, "ghost not served, tiny served")
W.check((ins["requests"], ins["served"]) == (3, 3), "insiders: 3 served: %s" % ins)
W.check((out["served"], out["denied"], out["rate_limited"]) == (5, 1, 1),
        "outsiders: 5 served, 1 denied, 1 rate-limited: %s" % out)
W.check(ins["latency_ms"]["n"] == 3 and ins["latency_ms"]["p50"] is not None and ins["queue_ms"]["n"] == 3,
        "insiders' latency and queue wait measured: %s %s" % (ins["latency_ms"], ins["queue_ms"]))
W.check(out["capabilities_used"].get("logprobs") == 1 and out["capabilities_used"].get("sample") == 5,
        "capabilities used: %s" % out["capabilities_used"])
W.check(ins["tokens_per_day"]["max"] > 0 and ins["days_from_insider_since"] is not None, "tokens and first served")
W.check(tiny["uplift"]["verdict"] in ("parity", "gap"), "an uplift estimate: %s" % tiny["uplift"])


def pair(model, org):
    m = [x for x in rep["models"] if x["id"] == model][0]
    return [o for o in m["organisations"] if o["organisation"] == org][0]["dimensions"]


nr = pair("ghost", "al1")["non_release"]
W.check(nr["verdict"] == "gap" and "does not serve" in nr["detail"], "ghost granted to al1 is not released: %s" % nr)
W.check(pair("tiny", "al1")["non_release"]["verdict"] == "parity", "tiny is released to al1")

# Anyone with the public tiles recomputes the same measured section.
copy = os.path.join(W.tmp, "audit-copy")
shutil.copytree(os.path.join(W.data, "log", "audit"), copy,
                ignore=shutil.ignore_patterns("journal", "reserved", ".lock", "pending"))
vkey = run("log", "vkey", "--data", W.data, "--log", "audit").stdout.strip()
g = json.loads(run("gap", "--data", W.data, "--audit", copy, "--audit-vkey", vkey, "--json").stdout)
W.check(g["verified_audit_log"]["size"] == meas["entries"], "the copy verified at the server's size: %s vs %s"
        % (g["verified_audit_log"]["size"], meas["entries"]))
W.check(g["measured"] == meas, "the measured section from the copy equals the server's")
entry = W.req("GET", "/v1/receipts/1", key="admin")[2]["entry"]
W.check("latency_ms" in entry and "queue_ms" in entry, "a public request entry holds latency_ms and queue_ms: %s" % entry)
# The Python client recomputes the same report, declared dimensions and measured section, from the
# two public logs over HTTP (the ghost's non-release from models_served, rate limits, insiders).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ.get("PARITY_SRC", os.path.dirname(HERE)), "clients", "python"))
import parity_client as pc  # noqa: E402
pvkey = run("log", "vkey", "--data", W.data).stdout.strip()
server, mine, _ = pc.Client("http://127.0.0.1:%d" % W.port).verify_report(pvkey, vkey, report=rep)
W.check(mine["measured"] == meas and pc.report.compare(mine, rep) == [], "the Python client recomputes the report")
md = run("gap", "--data", W.data, "--markdown").stdout
W.check("Measured from the audit log" in md and "| outsiders | 7 | 5 | 1 | 1 | 0 |" in md, "the Markdown shows it")
W.stop()
sys.exit(W.summary("gap_measured"))
