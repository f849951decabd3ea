"""parity log, end to end: the CLI writes a log; an independent Python reader (hashlib, and
Ed25519 from python3-cryptography) checks the checkpoint signature, the C2SP tlog-tiles layout,
every hash tile and the RFC 6962 root; the CLI's proofs are checked by a Python RFC 9162
verifier; `parity log verify` is run over HTTP (a loopback static server) and over a directory,
and must fail with a clear error on truncation, re-signing, a wrong key and a fork."""
import base64, functools, hashlib, http.server, json, os, shutil, subprocess, sys, tempfile, threading

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PARITY = os.environ.get("PARITY_BIN", "build/parity")
failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what, file=sys.stderr)


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
from rfc6962 import leaf, mth, verify_consistency, verify_inclusion  # noqa: E402


def run(*args, input=None):
    return subprocess.run([PARITY, "log", *args], input=input, capture_output=True, text=True)


def tile_path(level, n, w):
    s = "%03d" % (n % 1000)
    while n >= 1000:
        n //= 1000
        s = "x%03d/%s" % (n % 1000, s)
    return "tile/%s/%s%s" % (level, s, ".p/%d" % w if 0 < w < 256 else "")


def open_note(msg, vkey):
    name, kid, kb = vkey.split("+", 2)
    raw = base64.b64decode(kb)
    assert raw[0] == 1
    pub = raw[1:]
    assert hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()[:4].hex() == kid
    text, sigs = msg.rsplit(b"\n\n", 1)
    text += b"\n"
    for line in sigs.decode().splitlines():
        assert line.startswith("\u2014 ")
        n, sig = line[2:].split(" ")
        sig = base64.b64decode(sig)
        if n == name and sig[:4].hex() == kid:
            Ed25519PublicKey.from_public_bytes(pub).verify(sig[4:], text)  # raises if bad
            return text.decode()
    raise ValueError("no signature by the key")


def python_verify(d, vkey):
    """An independent reading of the log directory: returns the entries."""
    text = open_note(open(os.path.join(d, "checkpoint"), "rb").read(), vkey)
    origin, size, root = text.split("\n")[:3]
    size = int(size)
    entries = []
    for k in range((size + 255) // 256):
        w = min(256, size - 256 * k)
        b = open(os.path.join(d, tile_path("entries", k, w)), "rb").read()
        p = 0
        for _ in range(w):
            n = int.from_bytes(b[p:p + 2], "big")
            entries.append(b[p + 2:p + 2 + n])
            p += 2 + n
        assert p == len(b)
    hashes = [leaf(e) for e in entries]
    # every tile, per the spec: tile n at level l holds MTH(D[(n*256+i)*256^l : (n*256+i+1)*256^l])
    level = 0
    while size >> (8 * level):
        count = size >> (8 * level)
        for n in range((count + 255) // 256):
            w = min(256, count - 256 * n)
            t = open(os.path.join(d, tile_path(level, n, w)), "rb").read()
            want = b"".join(mth(hashes[(n * 256 + i) * 256 ** level:(n * 256 + i + 1) * 256 ** level]) for i in range(w))
            assert t == want, "tile %s" % tile_path(level, n, w)
        level += 1
    assert base64.b64decode(root) == mth(hashes), "root"
    return origin, entries


def main():
    tmp = tempfile.mkdtemp(prefix="parity-tlog-cli-")
    try:
        data = os.path.join(tmp, "data")
        r = run("--help")
        check(r.returncode == 0 and "verify" in r.stdout, "log --help")
        check(run("frobnicate", "--data", data).returncode == 2, "unknown subcommand is a usage error")
        check(run("prove", "--data", data).returncode == 2, "prove needs --index or --old-size")
        vkey = run("vkey", "--data", data, "--origin", "example.org/parity/policy").stdout.strip()
        check(vkey.startswith("example.org/parity/policy+"), "vkey")
        rev = lambda i: json.dumps({"type": "policy_revision", "seq": i, "digest": "sha256:" + "%064x" % i,
                                    "prev": None, "time": "2026-01-0%dT00:00:00Z" % (1 + i % 9), "summary": []})
        lines = [rev(i) for i in range(3)] + ["entry %d" % i for i in range(3, 300)]
        r = run("append", "--data", data, input="\n".join(lines[:100]) + "\n")
        check(r.returncode == 0 and r.stdout.strip() == "0", "append batch 1")
        old_cp = run("checkpoint", "--data", data).stdout
        r = run("append", "--data", data, input="\n".join(lines[100:]) + "\n")
        check(r.returncode == 0 and r.stdout.strip() == "100", "append batch 2")
        logdir = os.path.join(data, "log", "policy")
        origin, entries = python_verify(logdir, vkey)
        check(origin == "example.org/parity/policy", "origin")
        check([e.decode() for e in entries] == lines, "entries read back by the independent reader")
        r = run("entries", "--data", data, "--from", "298")
        check(r.stdout == "298\tentry 298\n299\tentry 299\n", "entries --from")
        r = run("entries", "--data", data, "--from", "1", "--count", "1")
        check(r.stdout == "1\t" + lines[1] + "\n", "entries --count")

        for idx, size in [(0, 300), (150, 300), (299, 300), (5, 100), (256, 257)]:
            p = json.loads(run("prove", "--data", data, "--index", str(idx), "--size", str(size)).stdout)
            hs = [leaf(l.encode()) for l in lines[:size]]
            check(base64.b64decode(p["root"]) == mth(hs), "root at %d" % size)
            check(verify_inclusion(idx, size, hs[idx], [base64.b64decode(x) for x in p["proof"]], mth(hs)),
                  "inclusion %d in %d" % (idx, size))
        for m, size in [(1, 300), (100, 300), (256, 300), (7, 8)]:
            p = json.loads(run("prove", "--data", data, "--old-size", str(m), "--size", str(size)).stdout)
            hs = [leaf(l.encode()) for l in lines]
            check(verify_consistency(m, size, mth(hs[:m]), mth(hs[:size]), [base64.b64decode(x) for x in p["proof"]]),
                  "consistency %d -> %d" % (m, size))
        check(run("prove", "--data", data, "--index", "300").returncode == 1, "index beyond the log")

        # verify over HTTP from a static server, and from the directory
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

        handler = functools.partial(Quiet, directory=logdir)
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = "http://127.0.0.1:%d/" % srv.server_address[1]
        trusted = os.path.join(tmp, "old-checkpoint")
        open(trusted, "w").write(old_cp)
        r = run("verify", "--vkey", vkey, url, "--trusted", trusted)
        check(r.returncode == 0, "verify over http: " + r.stderr)
        check("0\tpolicy_revision seq=0 time=2026-01-01T00:00:00Z digest=sha256:" + "0" * 64 in r.stdout, "revision listing")
        check("299\tentry 299" in r.stdout and "size 300" in r.stdout and "trusted checkpoint of size 100" in r.stdout,
              "verify output")
        check(run("verify", "--vkey", vkey, logdir).returncode == 0, "verify a directory")
        check(run("verify", "--vkey", vkey, url + "nothing-here").returncode == 1, "a 404 fails")

        # a wrong key, a re-signed checkpoint, a truncated tile, a forked trusted checkpoint
        other = run("vkey", "--data", os.path.join(tmp, "other"), "--origin", "example.org/parity/policy").stdout.strip()
        r = run("verify", "--vkey", other, logdir)
        check(r.returncode == 1 and "no signature by a trusted key" in r.stderr, "wrong key")
        bad = os.path.join(tmp, "bad")
        shutil.copytree(logdir, bad)
        shutil.copy(os.path.join(tmp, "other", "log", "policy", "checkpoint"), os.path.join(bad, "checkpoint"))
        check(run("verify", "--vkey", vkey, bad).returncode == 1, "checkpoint signed by another key")
        shutil.rmtree(bad)
        shutil.copytree(logdir, bad)
        t = os.path.join(bad, "tile", "0", "000")
        open(t, "r+b").truncate(8000)
        r = run("verify", "--vkey", vkey, bad)
        check(r.returncode == 1 and "tile/0/000" in r.stderr and "8000 bytes" in r.stderr, "truncated tile: " + r.stderr)
        cp = os.path.join(bad, "checkpoint")
        shutil.copy(os.path.join(logdir, "checkpoint"), cp)
        open(cp, "r+b").truncate(40)
        check(run("verify", "--vkey", vkey, bad).returncode == 1, "truncated checkpoint")
        fork = os.path.join(tmp, "fork")
        shutil.copytree(os.path.join(data, "keys"), os.path.join(fork, "keys"))
        run("append", "--data", fork, input="forked entry\n")
        forked = os.path.join(tmp, "forked-checkpoint")
        open(forked, "w").write(run("checkpoint", "--data", fork).stdout)
        r = run("verify", "--vkey", vkey, url, "--trusted", forked)
        check(r.returncode == 1 and "not consistent" in r.stderr, "fork detected: " + r.stderr)
        srv.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("test_tlog_cli: %s" % ("ok" if not failures else "%d failures" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
