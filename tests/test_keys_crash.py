# ctest-labels: slow
"""Keys across kill -9 (issue 14, point 5: the log first, the store derived). `parity keys
create` and `parity keys revoke` are killed at random moments of their run (120 rounds), and a
server is killed while it issues and revokes keys through its admin endpoints (8 rounds). After
every round, before any repair: every key the store accepts (live, not pending) is bound in the
policy log, and every revocation that was acknowledged is in the log. Every 20 rounds, after
`parity keys list` (which reconciles the store from the log): no key is pending, every key the
log revokes is revoked in the store. At the end the real server (which reconciles at start)
answers 401 to every key the log revokes and 200 to every acknowledged key it does not. The
real binary, Debian's python3 (sqlite3 reads the store)."""
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import PARITY, World, run  # noqa: E402

W = World("parity-kcrash-", ["al1"], admin="lab")
D = W.data
rng = random.Random(int(os.environ.get("PARITY_SEED", "14")))
known = {}  # key id -> key text, for creates that were acknowledged (printed)
acked_revocations = set()


def store_rows():
    db = sqlite3.connect(os.path.join(D, "parity.db"))
    cols = [c[1] for c in db.execute("PRAGMA table_info(keys)")]
    pending = "pending" if "pending" in cols else "0"  # a store from before pending keys
    rows = db.execute("SELECT id, revoked, %s FROM keys" % pending).fetchall()
    db.close()
    return rows


def log_keys():
    bound, revoked = set(), set()
    for line in run("log", "entries", "--data", D).stdout.splitlines():
        text = line.split("\t", 1)[1]
        if not text.startswith("{"):
            continue
        e = json.loads(text)
        if e.get("type") == "key_binding":
            bound.add(e["key_id"])
        elif e.get("type") == "key_revocation":
            revoked.add(e["key_id"])
    return bound, revoked


def check_accepted_are_bound(what):
    bound, revoked = log_keys()
    rows = store_rows()
    if os.environ.get("PARITY_VERBOSE"):
        gone = bound - {r[0] for r in rows}
        if gone:
            print(what, "bound, not in the store:", gone)
    for kid, rev, pend in rows:
        W.check(rev or pend or kid in bound, "%s: key %s is live in the store but not bound in the log" % (what, kid))
    for kid in acked_revocations:
        W.check(kid in revoked, "%s: the acknowledged revocation of %s is not in the log" % (what, kid))
    return bound, revoked


def check_reconciled(what):
    r = run("keys", "list", "--data", D, check=False)
    W.check(r.returncode == 0, "%s: keys list: %s" % (what, r.stderr))
    bound, revoked = check_accepted_are_bound(what)
    for kid, rev, pend in store_rows():
        W.check(not pend, "%s: key %s still pending after reconcile" % (what, kid))
        W.check(kid not in revoked or rev, "%s: key %s revoked in the log, live in the store" % (what, kid))
    return r.stderr


def live_ids():
    return [kid for kid, rev, pend in store_rows() if not rev and not pend]


# How long one create takes, so the kills land anywhere in it (adjusted as the rounds go).
t0 = time.monotonic()
run("keys", "create", "--org", "al1", "--data", D)
dur = max(time.monotonic() - t0, 0.005)
killed = repairs = 0
for rnd in range(120):
    ids = live_ids()
    revoke = ids and rng.random() < 0.4
    args = ["keys", "revoke", rng.choice(ids)] if revoke else ["keys", "create", "--org", "al1"]
    p = subprocess.Popen([PARITY, *args, "--data", D], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0, dur * 1.5))
    p.send_signal(signal.SIGKILL)
    out, err = p.communicate()
    repairs += err.count("\nkey ")  # every command reconciles first
    if p.returncode == -signal.SIGKILL:
        killed += 1
    elif p.returncode == 0 and revoke:
        acked_revocations.add(args[2])
    elif p.returncode == 0:
        key = out.strip().splitlines()[-1]
        known[key.split("_")[1]] = key
    # aim the kills at the whole run: about half land before it ends
    dur *= 1.1 if p.returncode == -signal.SIGKILL else 0.9
    check_accepted_are_bound("round %d (%s)" % (rnd, args[1]))
    if rnd % 20 == 19:
        out = check_reconciled("round %d" % rnd)
        repairs += out.count("\nkey ")
        if os.environ.get("PARITY_VERBOSE"):
            print(out)

# The server, killed while it issues and revokes keys on its admin endpoints.
admin = W.keys["admin"]
for rnd in range(8):
    W.start()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                ids = live_ids()
                if ids and rng.random() < 0.4:
                    kid = rng.choice(ids)
                    st, _, _, _ = W.req("POST", "/v1/admin/keys/%s/revoke" % kid, key=admin)
                    if st == 200:
                        acked_revocations.add(kid)
                else:
                    st, _, j, _ = W.req("POST", "/v1/admin/keys", body={"organization": "al1"}, key=admin)
                    if st == 201:
                        known[j["key_id"]] = j["key"]
            except (OSError, ValueError):
                return

    ts = [threading.Thread(target=client) for _ in range(2)]
    for t in ts:
        t.start()
    time.sleep(rng.uniform(0.05, 0.3))
    W.server.send_signal(signal.SIGKILL)
    W.server.wait()
    stop.set()
    for t in ts:
        t.join()
    killed += 1
    check_accepted_are_bound("server round %d" % rnd)
    acked_revocations.discard(W.keys["admin"].split("_")[1])

print("%d kills landed mid-operation; %d differences repaired by reconcile; %d keys issued"
      % (killed, repairs, len(known)))
W.check(killed >= 50, "the kills landed while the commands ran (%d)" % killed)
check_reconciled("end")

# The real server reconciles at start: what the log revokes is refused, what it binds works.
bound, revoked = log_keys()
W.start()
for kid, key in sorted(known.items()):
    st = W.req("GET", "/v1/models", key=key)[0]
    want = 401 if kid in revoked else 200
    W.check(st == want, "key %s: %d, want %d (revoked in the log: %s, bound: %s, store: %s)"
            % (kid, st, want, kid in revoked, kid in bound, [r for r in store_rows() if r[0] == kid]))
W.check(len(revoked & set(known)) >= 5 and len(set(known) - revoked) >= 5, "both kinds were exercised")
W.stop()
sys.exit(W.summary("keys_crash"))
