"""GET /v1/parity never serves a stale report (issue 14, point 3): while the policy log
verifies it answers 200; once a revision file no longer matches its logged digest, the next
recomputation (the log grew: a key was issued) answers 503 with the reason, not the report it
had cached; /parity says the report is not available. The real binary on loopback."""
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, err_code  # noqa: E402

W = World("parity-pendpoint-", ["al1"], admin="lab")
W.start()
st, _, j, _ = W.req("GET", "/v1/parity")
W.check(st == 200 and j.get("revision_in_force") == 1, "the report, from a log that verifies: %d" % st)

rev = glob.glob(os.path.join(W.data, "log", "policy", "revisions", "*.json"))[0]
with open(rev, "a") as f:
    f.write(" ")  # the file no longer hashes to the logged digest
st, _, j, _ = W.req("POST", "/v1/admin/keys", body={"organization": "al1"}, key="admin")
W.check(st == 201, "a key issued: the log grew (%d)" % st)
st, _, j, _ = W.req("GET", "/v1/parity")
W.check(st == 503 and err_code(j) == "report_unavailable", "503 report_unavailable, not the cached report: %d" % st)
msg = (j or {}).get("error", {}).get("message", "")
W.check(os.path.basename(rev) in msg, "the reason names the revision file: %s" % msg)
st, _, j, _ = W.req("GET", "/v1/parity")
W.check(st == 503, "still 503 on the next request: %d" % st)
st, _, _, body = W.req("GET", "/parity")
W.check(b"The report is not available" in body, "/parity says the report is not available")

with open(rev, "rb+") as f:  # repaired: the report is back
    data = f.read()
    f.seek(0)
    f.write(data[:-1])
    f.truncate()
time.sleep(1.1)  # a failed verification is retried at most once a second
st, _, j, _ = W.req("GET", "/v1/parity")
W.check(st == 200 and j.get("revision_in_force") == 1, "the report is back once the log verifies: %d" % st)
W.stop()
sys.exit(W.summary("parity_endpoint"))
