"""The server witnesses off the request path (issue 14, point 1): with witnesses in the policy,
every new checkpoint of the policy and audit logs is submitted by a background thread, and a
receipt handed out by GET /v1/models is published under a checkpoint cosigned by both witnesses
(how soon is printed: the issue's 2 s is a figure for the README, not asserted here). A witness that is down does not hold requests up. The
real binary; two `parity witness serve` processes on loopback."""
import base64, json, os, signal, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run, witness_world  # noqa: E402

W = World("parity-wserver-", ["al1"])
procs = []


def cosigners(note, vkeys):
    text, sigs = note.rsplit(b"\n\n", 1)
    text += b"\n"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    ok = 0
    for vk in vkeys:
        name, kid, kb = vk.split("+", 2)
        pub = base64.b64decode(kb)[1:]
        for line in sigs.decode().splitlines():
            n, sig = line[2:].split(" ")
            sig = base64.b64decode(sig)
            if n == name and sig[:4].hex() == kid:
                t = int.from_bytes(sig[4:12], "big")
                Ed25519PublicKey.from_public_bytes(pub).verify(sig[12:], b"cosignature/v1\ntime %d\n" % t + text)
                ok += 1
    return ok


try:
    pv, av, wv = witness_world(W, procs)
    W.start()
    st, h, j, _ = W.req("GET", "/v1/models", key="al1")
    idx = int(h.get("parity-receipt", "-1"))
    W.check(st == 200 and idx >= 0, "a receipt for GET /v1/models: %d %s" % (st, h))
    # it has to happen; how fast (the 2 s) is a figure, printed below and written in the
    # README, not a timing assertion that a loaded CI machine could fail
    bound = 60.0
    t0 = time.monotonic()
    cosigned = None
    published = None
    while time.monotonic() - t0 < bound:
        st, _, _, cp = W.req("GET", "/log/audit/checkpoint")
        size = int(cp.split(b"\n")[1]) if st == 200 else 0
        if size > idx and published is None:
            published = time.monotonic() - t0
        if size > idx and cosigners(cp, wv) == 2:
            cosigned = time.monotonic() - t0
            break
        time.sleep(0.02)
    W.check(cosigned is not None and cosigned <= bound,
            "receipt %d under a checkpoint cosigned by both witnesses within %g s" % (idx, bound))
    print("receipt published after %.3f s, cosigned after %.3f s" % (published or -1, cosigned or -1))
    st, _, _, cp = W.req("GET", "/log/policy/checkpoint")
    W.check(st == 200 and cosigners(cp, wv) == 2, "the policy log's checkpoint is cosigned too")
    # anyone can recompute the report's dates over HTTP: the cosigned checkpoints are published
    r = run("gap", "--log", "http://127.0.0.1:%d/log/policy" % W.port, "--vkey", pv, "--witness", wv[0],
            "--witness", wv[1], "--json", check=False)
    rep = json.loads(r.stdout) if r.returncode == 0 else {}
    W.check(rep.get("time_source", "").startswith("witnesses"), "gap --log over HTTP, dated by the witnesses: %s %s"
            % (rep.get("time_source"), r.stderr))
    st, _, _, idx_body = W.req("GET", "/log/policy/cosigned/index")
    W.check(st == 200 and idx_body.split(), "GET /log/policy/cosigned/index: %d" % st)
    # one witness down: requests are still answered at once (witnessing is off the request path)
    procs[1].send_signal(signal.SIGTERM)
    procs[1].wait(timeout=30)
    t0 = time.monotonic()
    for _ in range(5):
        st, _, _, _ = W.req("GET", "/v1/models", key="al1")
        W.check(st == 200, "served while a witness is down: %d" % st)
    # below the server's 5 s witness timeout: requests that waited on the witness would fail it
    W.check(time.monotonic() - t0 < 4.0, "five requests took %.2f s with a witness down" % (time.monotonic() - t0))
    W.check(W.stop() == 0, "the server stops cleanly")
finally:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
sys.exit(W.summary("witness_server"))
