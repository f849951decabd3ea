"""Every authenticated request leaves an audit entry that says what happened (README: "every
authenticated request, allowed or denied, gets a receipt"): a Parity-Receipt header naming
an entry whose route, status and decision are those of the request. The real binary on a
loopback port, the server tests' policy. Debian's python3."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World  # noqa: E402

W = World("parity-audit-", ["al1", "al3"], admin="lab")
check, req = W.check, W.req
W.start()


def entry_of(headers):
    """The audit entry a response's Parity-Receipt names (read with the admin key)."""
    idx = headers.get("parity-receipt")
    if idx is None:
        return None
    st, _, r, _ = req("GET", "/v1/receipts/%s" % idx, key="admin")
    return r["entry"] if st == 200 else None


# Allowed requests on every authenticated GET endpoint that needs no engine work: 200, a
# receipt, and the entry says allow.
st, h, _, _ = req("GET", "/v1/models", key="al3")
first = int(h["parity-receipt"])
for path, route in (("/v1/models", "models"), ("/v1/models/tiny", "model"), ("/v1/access", "access"),
                    ("/v1/queue", "queue"), ("/v1/receipts/%d" % first, "receipt"),
                    ("/v1/internals/hooks?model=tiny", "internals_hooks"), ("/v1/fine_tuning/jobs", "fine_tuning_jobs")):
    st, h, _, _ = req("GET", path, key="al3")
    e = entry_of(h)
    check(st == 200 and "parity-receipt" in h, "GET %s: 200 with a Parity-Receipt header (%s, %s)" % (path, st, h.get("parity-receipt")))
    check(e is not None and e.get("route") == route and e.get("status") == 200 and e.get("decision") == "allow",
          "GET %s: its entry says route %s, status 200, allow: %s" % (path, route, e))

# Denied requests: a receipt, and the entry says deny with the reason.
st, h, _, _ = req("POST", "/v1/admin/keys", {"organization": "al1"}, key="al1")
e = entry_of(h)
check(st == 403 and e is not None and e.get("decision") == "deny" and e.get("reason") == "not_admin",
      "a non-admin on an admin endpoint: 403, its entry says deny (not_admin): %s" % (e,))
st, h, _, _ = req("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 1, "logprobs": 2},
                  key="al1")
e = entry_of(h)
check(st == 403 and e is not None and e.get("decision") == "deny" and e.get("status") == 403,
      "a capability the tier lacks: 403, its entry says deny: %s" % (e,))

# An unauthenticated request is not audited (it names no organisation).
st, h, _, _ = req("GET", "/v1/access")
check(st == 401 and "parity-receipt" not in h, "no key: 401 without a receipt")

W.stop()
sys.exit(W.summary("audit entries"))
