"""One "in force" everywhere (issue 14, point 3), the five together: a revision applied with an
effective time a few seconds ahead (it withdraws the grant of al2) is enforced by the server,
shown by GET /v1/access, explained by `parity policy explain --data`, reported by GET /v1/parity
and by `parity gap --data` only from that moment on, and before it every one of them uses the
revision before. The server switches by itself when the time comes (no new revision, no restart).
The real binary on loopback."""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run, err_code  # noqa: E402

W = World("parity-inforce-", ["al2"], admin="lab")
AHEAD = 8
effective = int(time.time()) + AHEAD
rev2 = os.path.join(W.tmp, "rev2.yaml")
with open(rev2, "w") as f:
    f.write("\n".join(line for line in W.policy.splitlines() if "id: g-al2," not in line) + "\n")
run("policy", "apply", rev2, "--data", W.data, "--time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(effective)))
W.start()


def five():
    """(server decision, /v1/access, policy explain, /v1/parity, parity gap): each the revision
    it used and whether al2 may sample tiny."""
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    st, _, j, _ = W.req("POST", "/v1/chat/completions", body=chat, key="al2")
    server = (None, st == 200, st, err_code(j))
    st, _, j, _ = W.req("GET", "/v1/access", key="al2")
    access = (j["policy_revision"], any(m["model"] == "tiny" for m in j["models"]))
    r = run("policy", "explain", "--data", W.data, "--org", "al2", "--model", "tiny", "--capability", "sample",
            check=False)
    explain = (int(r.stderr.split()[1]) if r.stderr.startswith("revision ") else r.stderr, r.returncode == 0)

    def al2(rep):
        m = [x for x in rep["models"] if x["id"] == "tiny"][0]
        o = [x for x in m["organisations"] if x["organisation"] == "al2"][0]
        return o["dimensions"]["non_release"]["verdict"] == "parity"
    st, _, j, _ = W.req("GET", "/v1/parity")
    parity = (j["revision_in_force"], al2(j))
    g = json.loads(run("gap", "--data", W.data, "--json").stdout)
    gap = (g["revision_in_force"], al2(g))
    return server, access, explain, parity, gap


before = five()
W.check(time.time() < effective, "the checks before ran before the effective time (%.1f s left)" % (effective - time.time()))
W.check(before[0][1], "server before: al2 served under revision 1: %s" % (before[0],))
for name, got in zip(("access", "explain", "parity", "gap"), before[1:]):
    W.check(got == (1, True), "%s before: revision 1, al2 has tiny: %s" % (name, got))
time.sleep(max(0.0, effective - time.time()) + 1.2)
after = five()
W.check(not after[0][1] and after[0][2] == 403 and after[0][3] == "no_grant",
        "server after: al2 refused (no_grant) under revision 2: %s" % (after[0],))
for name, got in zip(("access", "explain", "parity", "gap"), after[1:]):
    W.check(got == (2, False), "%s after: revision 2, al2 has no tiny: %s" % (name, got))
W.check("policy revision 1" in W.server_log(), "the server started with revision 1 in force")
W.stop()
sys.exit(W.summary("in_force_server"))
