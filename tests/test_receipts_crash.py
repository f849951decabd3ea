"""Audit receipts across a crash (kill -9), in both modes of `parity serve --receipts`.

async (default): a response carries its receipt index before the receipt is on disk. After a
kill -9 under load, every index a client received is in the audit log either as that request's
entry or as an explicit {"type":"lost"} entry; indices are never reused (the next run's
receipts, here in durable mode, come after the crashed run's whole reservation); a clean stop
leaves no "lost" entry;
the log verifies. durable: every index a client received is that request's entry. The real
binary on loopback, Debian's python3."""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import PARITY, World, run  # noqa: E402


def entries(w):
    out = run("log", "entries", "--data", w.data, "--log", "audit").stdout
    got = {}
    for line in out.splitlines():
        i, text = line.split("\t", 1)
        got[int(i)] = json.loads(text)
    return got


def private_org(w, i):
    """The organisation in entry i's private record (docs/server.md, "Receipts": 384-byte
    records at i * 384 in DATA/private/audit-receipts), or None when there is none."""
    with open(os.path.join(w.data, "private", "audit-receipts"), "rb") as f:
        f.seek(i * 384)
        rec = f.read(384)
    if len(rec) < 384 or rec[:4] != b"PRV1" or int.from_bytes(rec[8:16], "little") != i:
        return None
    return rec[152:152 + rec[4]].decode()


def hammer(w, org, seconds, kill_after=None):
    """Keep-alive GET /v1/models from 8 threads; returns the receipt indices received. With
    kill_after, SIGKILLs the server after that many seconds, mid-load."""
    got, lock, stop = [], threading.Lock(), threading.Event()

    def client():
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
                c.request("GET", "/v1/models", headers={"Authorization": "Bearer " + w.keys[org]})
                r = c.getresponse()
                r.read()
                if r.status == 200 and r.getheader("Parity-Receipt") is not None:
                    with lock:
                        got.append(int(r.getheader("Parity-Receipt")))
            except (OSError, http.client.HTTPException):
                c = None
                if kill_after is not None:
                    return
                time.sleep(0.01)

    ts = [threading.Thread(target=client) for _ in range(8)]
    for t in ts:
        t.start()
    if kill_after is not None:
        time.sleep(kill_after)
        w.server.send_signal(signal.SIGKILL)
        w.server.wait()
    else:
        time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return got


def crash_round(mode):
    w = World("parity-rcrash-%s-" % mode, ["al1", "al2"])
    if mode == "durable":  # through the config file, which is tested here too
        conf = os.path.join(w.tmp, "serve.yaml")
        with open(conf, "w") as f:
            f.write("threads: 2\nreceipts: durable\n")
        w.serve_args = ["--config", conf]
        with open(conf + ".bad", "w") as f:
            f.write("threads: 2\nreceipts: maybe\n")
        r = run("serve", "--data", w.data, "--config", conf + ".bad", check=False)
        w.check(r.returncode != 0 and "serve.yaml.bad:2:11" in r.stderr and "async" in r.stderr,
                "a bad receipts mode in the config names line and column: %s" % r.stderr)
        r = run("serve", "--data", w.data, "--receipts", "maybe", check=False)
        w.check(r.returncode == 2, "--receipts maybe is a usage error")
    else:
        w.serve_args = ["--receipts", mode]
    w.start()
    # The public entries name organisations by pseudonyms (GET /v1/access gives each its own).
    pseud = {org: w.req("GET", "/v1/access", key=org)[2]["audit"]["org_pseudonym"] for org in ("al1", "al2")}
    of = lambda e: e.get("org_pseudonym") and [o for o, p in pseud.items() if p == e["org_pseudonym"]][0]
    before = hammer(w, "al1", 0, kill_after=1.5)
    w.check(len(before) > 50, "%s: requests were served before the kill (%d)" % (mode, len(before)))
    if mode == "async":  # restart in the other mode: it too must publish the lost indices first
        w.serve_args = ["--receipts", "durable"]
    w.start()  # replays the journal and publishes the lost indices
    after = hammer(w, "al2", 0.5)
    w.check(w.stop() == 0, "%s: clean stop after the crash" % mode)
    log = entries(w)
    wrong = [i for i in before if i not in log or not (log[i].get("type") == "lost" or of(log[i]) == "al1")]
    w.check(not wrong, "%s: every index handed out before the crash is that request's entry or 'lost': %s"
            % (mode, wrong[:5]))
    lost = sorted(i for i, e in log.items() if e.get("type") == "lost")
    if mode == "durable":
        w.check(not lost, "durable: no entry is lost (%d lost)" % len(lost))
        w.check(all(of(log[i]) == "al1" for i in before), "durable: every acknowledged receipt is on disk")
    else:
        # between them: the restarted server's models_served entry (the models it runs)
        w.check(lost and lost == list(range(lost[0], lost[-1] + 1)) and
                log.get(lost[-1] + 1, {}).get("type") == "models_served" and lost[-1] + 2 == min(after),
                "async: the lost indices are one range right before the next run's models_served entry and first receipt")
        w.check(all(log[i].get("index") == i for i in lost), "async: a lost entry names its index")
    w.check(all(i in log and of(log[i]) == "al2" for i in after) and min(after) > max(before),
            "%s: the next run's receipts come after every earlier index (no reuse)" % mode)
    w.check(len(set(before + after)) == len(before + after), "%s: no index handed out twice" % mode)
    # async writes a batch's private records before its public entries: every request entry has
    # one; durable writes them after and before acknowledging: every acknowledged one has one.
    owned = [i for i, e in log.items() if e.get("type") == "request"] if mode == "async" else before + after
    w.check(owned and all(private_org(w, i) == of(log[i]) for i in owned),
            "%s: every %s entry has its private part, naming its organisation" %
            (mode, "request" if mode == "async" else "acknowledged"))
    w.check(all(private_org(w, i) is None for i in lost), "%s: a lost entry has no private part" % mode)
    print("%s: %d receipts before the kill, %d after the restart, %d lost" % (mode, len(before), len(after), len(lost)))
    n_lost = len(lost)
    # A clean stop releases the reservation: the next start publishes nothing lost.
    w.start()
    w.check(w.stop() == 0, "%s: clean restart" % mode)
    log2 = entries(w)
    w.check(sum(1 for e in log2.values() if e.get("type") == "lost") == n_lost,
            "%s: a clean stop leaves no new lost entries" % mode)
    vkey = run("log", "vkey", "--data", w.data, "--log", "audit").stdout.strip()
    v = run("log", "verify", "--vkey", vkey, os.path.join(w.data, "log", "audit"), check=False)
    w.check(v.returncode == 0, "%s: the audit log verifies: %s" % (mode, v.stderr))
    # A damaged reservation file stops the start with a message naming it, rather than
    # publishing an absurd number of "lost" entries.
    reserved = os.path.join(w.data, "log", "audit", "reserved")
    for text, what in (("garbage\n", "not an index"), ("%d\n" % (max(log2) + 10 ** 12), "beyond the audit log")):
        with open(reserved, "w") as f:
            f.write(text)
        r = subprocess.run([PARITY, "serve", "--data", w.data, "--port", "0", *w.serve_args], capture_output=True,
                           text=True, timeout=60)
        w.check(r.returncode != 0 and "reserved" in r.stderr and what in r.stderr,
                "%s: a damaged reservation file (%r) is refused: %s" % (mode, text, r.stderr.strip()[-300:]))
    return w.summary("receipts crash (%s)" % mode)


rc = crash_round("async") | crash_round("durable")
sys.exit(rc)
