"""Witnesses (issue 14, points 1, 2 and 4): `parity witness serve` speaks C2SP tlog-witness
(good, stale 409 with its size, bad proof 422, bad signature 403, unknown log 404, oversized
413, malformed 400) and its cosignatures are checked by an independent Python reading of
cosignature/v1; it keeps its state across a restart. The CLI writers publish checkpoints
cosigned by the policy's witnesses; `parity log verify` and `parity gap` refuse a checkpoint
without quorum; backdating is refused at apply time, and a revision applied backdated before
witnesses were configured is dated in the report when it was witnessed; a writer whose log was
rolled back behind what a witness cosigned stops. The real binary, witnesses on loopback."""
import base64, hashlib, http.client, json, os, shutil, signal, subprocess, sys, tempfile, time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PARITY = os.environ.get("PARITY_BIN", "build/parity")
failures = 0
T = tempfile.mkdtemp(prefix="parity-witness-")
procs = {}


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, flush=True)


def run(*args, ok=True):
    r = subprocess.run([PARITY, *args], capture_output=True, text=True)
    if ok and r.returncode != 0:
        raise RuntimeError("parity %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


def start_witness(name):
    pf = os.path.join(T, name + ".port")
    if os.path.exists(pf):
        os.remove(pf)
    procs[name] = subprocess.Popen([PARITY, "witness", "serve", "--data", os.path.join(T, name), "--port-file", pf],
                                   stdout=subprocess.DEVNULL, stderr=open(os.path.join(T, name + ".log"), "a"))
    for _ in range(200):
        if os.path.exists(pf):
            return int(open(pf).read())
        time.sleep(0.05)
    raise RuntimeError("witness %s did not start" % name)


def stop_witness(name):
    procs[name].send_signal(signal.SIGTERM)
    procs[name].wait(timeout=30)


def post(port, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/add-checkpoint", body=body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, r.getheader("Content-Type", ""), data


def split_note(note):
    text, sigs = note.rsplit(b"\n\n", 1)
    return text + b"\n", sigs.decode().splitlines()


def cosig_time(note, wvkey):
    """Independent cosignature/v1 check: the time of wvkey's valid cosignature, or None."""
    name, kid, kb = wvkey.split("+", 2)
    raw = base64.b64decode(kb)
    assert raw[0] == 4 and hashlib.sha256(name.encode() + b"\n\x04" + raw[1:]).digest()[:4].hex() == kid
    text, lines = split_note(note)
    for line in lines:
        n, sig = line[2:].split(" ")
        sig = base64.b64decode(sig)
        if n == name and sig[:4].hex() == kid and len(sig) == 76:
            t = int.from_bytes(sig[4:12], "big")
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[12:], b"cosignature/v1\ntime %d\n" % t + text)
            return t
    return None


def checkpoint(data, log):
    return open(os.path.join(data, "log", log, "checkpoint"), "rb").read()


def proof_lines(data, log, old, size):
    if old == 0 or old == size:
        return b""
    j = json.loads(run("log", "prove", "--data", data, "--log", log, "--old-size", str(old), "--size", str(size)).stdout)
    return b"".join(h.encode() + b"\n" for h in j["proof"])


def sign_fake(data, log, size, root):
    """A checkpoint signed with the log's own key (as a lab forking its log would)."""
    sk = open(os.path.join(data, "keys", log + ".key")).read().strip()
    _, _, name, kid, kb = sk.split("+", 4)
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(kb)[1:])
    text = b"%s\n%d\n%s\n" % (name.encode(), size, base64.b64encode(root))
    sig = bytes.fromhex(kid) + key.sign(text)
    return text + b"\n\xe2\x80\x94 " + name.encode() + b" " + base64.b64encode(sig) + b"\n"


try:
    # ---- two witnesses, each with its own key and directory ------------------------------------
    wv = {}
    for w in ("w1", "w2"):
        wv[w] = run("witness", "init", "--data", os.path.join(T, w), "--name", w + ".example").stdout.strip()
        check(wv[w].startswith(w + ".example+"), "init prints the verifier key: " + wv[w])
    r = run("witness", "init", "--data", os.path.join(T, "w1"), "--name", "again", ok=False)
    check(r.returncode == 1 and "already holds a witness" in r.stderr, "init refuses a second key: " + r.stderr)
    check(oct(os.stat(os.path.join(T, "w1", "witness.key")).st_mode & 0o777) == "0o600", "the witness key is 0600")

    r = run("witness", "serve", "--data", os.path.join(T, "w1"), "--key", os.path.join(T, "nokey"), ok=False)
    check(r.returncode == 1 and "nokey" in r.stderr, "serve --key FILE reads that file: " + r.stderr)

    # ---- the protocol, on a scratch log "t" ----------------------------------------------------
    lab = os.path.join(T, "lab")
    lines = os.path.join(T, "lines")
    open(lines, "w").write("a\nb\nc\n")
    run("log", "append", "--data", lab, "--log", "t", "--lines", lines)
    tv = run("log", "vkey", "--data", lab, "--log", "t").stdout.strip()
    for w in ("w1", "w2"):
        run("witness", "add-log", "--data", os.path.join(T, w), "--vkey", tv)
    p1 = start_witness("w1")
    cp3 = checkpoint(lab, "t")
    t0 = int(time.time())
    st, ct, body = post(p1, b"old 0\n\n" + cp3)
    check(st == 200, "a first checkpoint from size 0 is cosigned: %d %s" % (st, body))
    if st == 200:
        text, _ = split_note(cp3)
        t = cosig_time(text + b"\n" + body, wv["w1"])
        check(t is not None and t0 - 1 <= t <= time.time() + 1, "a valid cosignature/v1 with the witness's time: %s" % t)
    st, ct, body = post(p1, b"old 0\n\n" + cp3)
    check(st == 409 and ct.startswith("text/x.tlog.size") and body == b"3\n",
          "stale old size: 409 with the size it holds: %d %s %r" % (st, ct, body))
    st, _, body = post(p1, b"old 3\n\n" + cp3)
    check(st == 200, "the same checkpoint again (old = size, no proof): %d %s" % (st, body))
    open(lines, "w").write("d\ne\n")
    run("log", "append", "--data", lab, "--log", "t", "--lines", lines)
    cp5 = checkpoint(lab, "t")
    good = proof_lines(lab, "t", 3, 5)
    bad = base64.b64encode(hashlib.sha256(b"x").digest()) + b"\n" + good.split(b"\n", 1)[1]
    st, _, body = post(p1, b"old 3\n" + bad + b"\n" + cp5)
    check(st == 422, "a consistency proof that does not verify: 422: %d %s" % (st, body))
    forged = bytearray(cp5)
    i = forged.rindex(b" ") + 5
    forged[i] = ord("A") if forged[i] != ord("A") else ord("B")
    st, _, body = post(p1, b"old 3\n" + good + b"\n" + bytes(forged))
    check(st == 403, "a checkpoint whose signature does not verify: 403: %d %s" % (st, body))
    fork = sign_fake(lab, "t", 3, hashlib.sha256(b"fork").digest())
    st, ct, body = post(p1, b"old 3\n\n" + fork)
    check(st == 409 and body == b"3\n", "another root at the size it holds (a fork): 409: %d %s" % (st, body))
    st, _, body = post(p1, b"old 3\n" + good + b"\n" + sign_fake(lab, "t", 5, hashlib.sha256(b"fork").digest()))
    check(st == 422, "a forked larger tree, signed by the log's key: 422: %d %s" % (st, body))
    st, _, body = post(p1, b"old 3\n" + good + b"\n" + cp5.replace(b"parity/t", b"parity/u", 1))
    check(st == 404, "an unknown origin: 404: %d %s" % (st, body))
    st, _, body = post(p1, b"old 3\n" + good + b"\n" + cp5 + b"x" * (70 << 10))
    check(st == 413, "a body over 64 KiB: 413: %d" % st)
    for req, what in ((b"old x\n\n" + cp5, "old that is not a number"), (b"old 9\n\n" + cp5, "old beyond the size"),
                      (b"old 3\n" + b"AAAA\n\n" + cp5, "a proof line that is not a hash"),
                      (b"old 3\n" + good * 40 + b"\n" + cp5, "more than 64 proof lines"),
                      (b"old 3\n" + good + cp5, "no blank line"), (b"", "an empty body")):
        st, _, body = post(p1, req)
        check(st == 400 and body.strip(), "%s: 400 with a message: %d %s" % (what, st, body))
    st, _, body = post(p1, b"old 3\n" + good + b"\n" + cp5)
    check(st == 200, "a good proof from the size it holds: 200: %d %s" % (st, body))
    # restart: the witness still holds size 5
    stop_witness("w1")
    p1 = start_witness("w1")
    st, ct, body = post(p1, b"old 3\n" + good + b"\n" + cp5)
    check(st == 409 and body == b"5\n", "after a restart it still holds size 5: %d %r" % (st, body))
    p2 = start_witness("w2")

    # ---- writers: a policy that names both witnesses --------------------------------------------
    data = os.path.join(T, "data")
    pv = run("log", "vkey", "--data", data, "--log", "policy").stdout.strip()
    for w in ("w1", "w2"):
        run("witness", "add-log", "--data", os.path.join(T, w), "--vkey", pv)
    here = os.path.dirname(os.path.abspath(__file__))
    base = open(os.path.join(here, "data", "server", "policy.yaml")).read().replace("MODEL_DIR", "/nonexistent")
    p0 = os.path.join(T, "p0.yaml")
    open(p0, "w").write(base)
    # applied before any witness was configured: backdating is not refused (nobody could tell)
    run("policy", "apply", p0, "--data", data, "--time", "2026-01-01")
    wsec = ("\nwitnesses:\n  quorum: 2\n  members:\n"
            "    - {name: w1.example, vkey: \"%s\", url: \"http://127.0.0.1:%d\"}\n"
            "    - {name: w2.example, vkey: \"%s\", url: \"http://127.0.0.1:%d\"}\n" % (wv["w1"], p1, wv["w2"], p2))
    pw = os.path.join(T, "pw.yaml")
    open(pw, "w").write(base + wsec)
    r = run("policy", "check", pw)
    bad_w = os.path.join(T, "bad.yaml")
    open(bad_w, "w").write(base + wsec.replace("quorum: 2", "quorum: 3"))
    r = run("policy", "check", bad_w, ok=False)
    check(r.returncode == 1 and "witnesses.quorum" in r.stderr, "quorum above the members refused: " + r.stderr)
    open(bad_w, "w").write(base + wsec.replace(wv["w1"], pv))
    r = run("policy", "check", bad_w, ok=False)
    check(r.returncode == 1 and "witnesses.members[0].vkey" in r.stderr, "a log key is no witness key: " + r.stderr)
    t_apply = int(time.time())
    r = run("policy", "apply", pw, "--data", data)
    check("witnesses none -> quorum 2 of" in r.stdout, "the witness set is a logged change: " + r.stdout)
    cp = checkpoint(data, "policy")
    times = [cosig_time(cp, wv[w]) for w in ("w1", "w2")]
    check(all(times), "the published policy checkpoint carries both cosignatures: %s" % cp)
    idx = open(os.path.join(data, "log", "policy", "cosigned", "index")).read().split()
    check(idx and idx[-1] == "2" and os.path.exists(os.path.join(data, "log", "policy", "cosigned", "2")),
          "the cosigned checkpoint is kept in cosigned/: %s" % idx)
    # backdating refused now that witnesses are configured
    r = run("policy", "apply", p0, "--data", data, "--time", "2026-02-01", ok=False)
    check(r.returncode == 1 and "before it is witnessed" in r.stderr, "backdating refused: " + r.stderr)
    # a key: the CLI writer publishes a cosigned checkpoint again
    run("keys", "create", "--org", "al1", "--data", data)
    cp = checkpoint(data, "policy")
    check(b"\n3\n" in cp and all(cosig_time(cp, wv[w]) for w in ("w1", "w2")), "keys create: size 3, cosigned")

    run("log", "append", "--data", data, "--log", "policy", "--lines", lines)  # two entries
    cp = checkpoint(data, "policy")
    check(b"\n5\n" in cp and all(cosig_time(cp, wv[w]) for w in ("w1", "w2")), "log append: size 5, cosigned")

    # ---- verifiers: quorum or refusal -------------------------------------------------------------
    src = os.path.join(data, "log", "policy")
    r = run("log", "verify", "--vkey", pv, src, "--witness", wv["w1"], "--witness", wv["w2"], "--quorum", "2", ok=False)
    check(r.returncode == 0 and "witnessed: a quorum of 2" in r.stdout, "log verify with quorum 2: " + r.stdout + r.stderr)
    w3 = run("witness", "init", "--data", os.path.join(T, "w3"), "--name", "w3.example").stdout.strip()
    r = run("log", "verify", "--vkey", pv, src, "--witness", wv["w1"], "--witness", w3, "--quorum", "2", ok=False)
    check(r.returncode == 1 and "1 of 2 witnesses cosigned" in r.stderr, "no quorum: refused: " + r.stderr)
    r = run("log", "verify", "--vkey", tv, os.path.join(lab, "log", "t"), "--witness", wv["w1"], ok=False)
    check(r.returncode == 1 and "0 of 1" in r.stderr, "a checkpoint without cosignatures: refused: " + r.stderr)
    r = run("gap", "--log", src, "--vkey", pv, "--witness", wv["w1"], "--witness", w3, ok=False)
    check(r.returncode == 1 and "1 of 2" in r.stderr, "gap --log without quorum: refused: " + r.stderr)

    # ---- honest time: the report's dates come from the witnesses ----------------------------------
    for args in (["--data", data], ["--log", src, "--vkey", pv, "--witness", wv["w1"], "--witness", wv["w2"]]):
        rep = json.loads(run("gap", *args, "--json").stdout)
        revs = rep["revisions"]
        check(rep["time_source"].startswith("witnesses"), "time source: witnesses: %s" % rep["time_source"])
        check(revs[0].get("stated_time") == "2026-01-01T00:00:00Z" and revs[0]["time_source"] == "witnesses",
              "the backdated revision keeps its stated time only as such: %s" % revs[0])
        t1 = int(time.mktime(time.strptime(revs[0]["time"], "%Y-%m-%dT%H:%M:%SZ"))) - time.timezone
        check(t_apply - 1 <= t1 <= time.time() + 1, "it is dated when the witnesses first cosigned it: %s" % revs[0])
        check(rep["revision_in_force"] == 2, "revision 2 in force")
    md = run("gap", "--data", data, "--markdown").stdout
    check("Dates: witnesses" in md, "the Markdown report says where its dates come from")

    # ---- rollback: a writer behind what a witness cosigned stops ----------------------------------
    backup = os.path.join(T, "backup")
    shutil.copytree(data, backup)
    run("keys", "create", "--org", "al1", "--data", data)  # size 6, cosigned
    shutil.rmtree(data)
    shutil.copytree(backup, data)  # the whole directory restored: size 5, consistent on its own
    r = run("keys", "create", "--org", "al1", "--data", data, ok=False)
    check(r.returncode == 1 and "older than what a witness cosigned" in r.stderr and "size 6" in r.stderr,
          "keys create on a rolled-back log stops: " + r.stderr)
    check(b"\n5\n" in checkpoint(data, "policy"), "nothing was appended")
    r = run("log", "append", "--data", data, "--log", "policy", "--lines", lines, ok=False)
    check(r.returncode == 1 and "older than what a witness cosigned" in r.stderr, "log append stops too: " + r.stderr)
    r = run("policy", "apply", pw, "--data", data, ok=False)
    # (no change to apply, but the check runs before: it must still refuse)
    check(r.returncode == 1 and "older than what a witness cosigned" in r.stderr, "policy apply stops too: " + r.stderr)
    # the local record alone (witnesses unreachable) also stops the writer at open
    shutil.rmtree(data)
    shutil.copytree(backup, data)
    with open(os.path.join(data, "log", "policy", "cosigned", "index"), "a") as f:
        f.write("99\n")
    r = run("log", "append", "--data", data, "--log", "policy", "--lines", lines, ok=False)
    check(r.returncode == 1 and "older than what witnesses cosigned" in r.stderr, "open refuses: " + r.stderr)
finally:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
    if failures:
        for w in ("w1", "w2"):
            lp = os.path.join(T, w + ".log")
            if os.path.exists(lp):
                print("--- %s log ---\n%s" % (w, open(lp).read()[-3000:]))
    shutil.rmtree(T, ignore_errors=True)
print("witness: %d failure(s)" % failures)
sys.exit(1 if failures else 0)
