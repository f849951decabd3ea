"""A tiny world for end-to-end tests of the server: a random-init Llama with a byte-level BPE
tokenizer, an access policy over it, and helpers to run parity commands. Debian's python3."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ref_model import llama_config, write_model  # noqa: E402

PARITY = os.environ.get("PARITY_BIN", "build/parity")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tokenizer(dirname, merges=(("Ġ", "t"), ("h", "e"), ("Ġt", "he"))):
    """A byte-level BPE tokenizer.json: 256 byte tokens, a few merges, <|endoftext|>."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: i for i, b in enumerate(range(256))}
    for a, b in merges:
        vocab[a + b] = len(vocab)
    eot = len(vocab)
    tok = {
        "version": "1.0",
        "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    with open(os.path.join(dirname, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False)
    return eot + 1


def make_model(dirname, seed=0):
    os.makedirs(dirname, exist_ok=True)
    n_tok = write_tokenizer(dirname)
    cfg = llama_config(vocab=n_tok + 3, d=32, layers=2, heads=4, kv_heads=2, head_dim=8, d_ff=64)
    cfg["eos_token_id"] = n_tok - 1
    cfg["max_position_embeddings"] = 256
    write_model(dirname, cfg, seed=seed)
    return cfg


def start_witness(tmp, name, log_vkeys):
    """A real `parity witness serve` named NAME.example in tmp/NAME that witnesses the logs of
    log_vkeys, on a free port: (its vkey, its port, the process)."""
    import time
    d = os.path.join(tmp, name)
    vkey = run("witness", "init", "--data", d, "--name", name + ".example").stdout.strip()
    for vk in log_vkeys:
        run("witness", "add-log", "--data", d, "--vkey", vk)
    pf = os.path.join(tmp, name + ".port")
    proc = subprocess.Popen([PARITY, "witness", "serve", "--data", d, "--port-file", pf], stdout=subprocess.DEVNULL)
    for _ in range(200):
        if os.path.exists(pf) and open(pf).read().strip():
            break
        time.sleep(0.05)
    return vkey, int(open(pf).read()), proc


def witness_world(world, procs):
    """Starts two witnesses (w1.example, w2.example; their processes appended to procs) of the
    world's policy and audit logs and applies the world's policy with them named, quorum 2.
    Returns (policy log vkey, audit log vkey, [witness vkeys])."""
    pv = run("log", "vkey", "--data", world.data, "--log", "policy").stdout.strip()
    av = run("log", "vkey", "--data", world.data, "--log", "audit").stdout.strip()
    wv, ports = [], []
    for name in ("w1", "w2"):
        vk, port, proc = start_witness(world.tmp, name, (pv, av))
        wv.append(vk)
        ports.append(port)
        procs.append(proc)
    pol = os.path.join(world.tmp, "pw.yaml")
    with open(pol, "w") as f:
        f.write(world.policy + "\nwitnesses:\n  quorum: 2\n  members:\n" + "".join(
            '    - {name: w%d.example, vkey: "%s", url: "http://127.0.0.1:%d"}\n' % (i + 1, wv[i], ports[i]) for i in range(2)))
    run("policy", "apply", pol, "--data", world.data)
    return pv, av, wv


def run(*args, check=True, input=None):
    r = subprocess.run([PARITY, *args], capture_output=True, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError("parity %s failed (%d): %s" % (" ".join(args), r.returncode, r.stderr))
    return r


class World:
    """A data directory with the tiny model, an applied policy and a key per organisation, and
    the real `parity serve` on a free loopback port: what the server tests share.

    policy: policy text with MODEL_DIR where the model's path goes (default: the server tests'
    tests/data/server/policy.yaml); orgs: organisations that get a key (keys[org]); admin: the
    organisation of an extra admin key (keys["admin"]); serve_args: extra `parity serve` flags.
    Counts checks, and at exit kills a server still running, prints its log if a check failed
    and removes the directory."""

    def __init__(self, prefix, orgs, policy=None, admin=None, serve_args=()):
        import atexit
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.data = os.path.join(self.tmp, "data")
        self.model_dir = os.path.join(self.tmp, "tiny")
        self.log_path = os.path.join(self.tmp, "server.log")
        self.serve_args = list(serve_args)
        self.server = None
        self.port = None
        self.checks = self.failures = 0
        make_model(self.model_dir)
        if policy is None:
            here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            with open(os.path.join(here, "data", "server", "policy.yaml")) as f:
                policy = f.read()
        self.policy = policy.replace("MODEL_DIR", self.model_dir)
        policy_path = os.path.join(self.tmp, "policy.yaml")
        with open(policy_path, "w") as f:
            f.write(self.policy)
        run("policy", "apply", policy_path, "--data", self.data)
        self.keys = {org: self.new_key(org) for org in orgs}
        if admin:
            self.keys["admin"] = self.new_key(admin, "--admin")
        atexit.register(self._cleanup)

    def new_key(self, org, *extra):
        return run("keys", "create", "--org", org, "--data", self.data, *extra).stdout.strip().splitlines()[-1]

    def check(self, cond, what):
        self.checks += 1
        if not cond:
            self.failures += 1
            print("FAIL:", what, flush=True)

    def server_log(self):
        return open(self.log_path).read()[-8000:] if os.path.exists(self.log_path) else ""

    def start(self):
        import time
        pf = os.path.join(self.tmp, "port")
        if os.path.exists(pf):
            os.remove(pf)
        log = open(self.log_path, "a")
        self.server = subprocess.Popen([PARITY, "serve", "--data", self.data, "--port", "0", "--port-file", pf,
                                        *self.serve_args], stderr=log)
        for _ in range(300):
            if os.path.exists(pf):
                self.port = int(open(pf).read())
                return
            if self.server.poll() is not None:
                raise RuntimeError("server exited: " + self.server_log())
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self):
        """SIGTERM and wait; returns the exit status (and prints the log if it is not 0)."""
        import signal
        self.server.send_signal(signal.SIGTERM)
        self.server.wait(timeout=60)
        if self.server.returncode != 0:
            print("--- server log ---\n" + self.server_log())
        return self.server.returncode

    def req(self, method, path, body=None, key=None, headers=None, raw=None):
        """One request on a new connection: (status, lower-cased headers, JSON or None, bytes).
        key is an organisation (or "admin") or a literal key."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = dict(headers or {})
        if key:
            h["Authorization"] = "Bearer " + self.keys.get(key, key)
        if body is not None:
            raw = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        c.request(method, path, body=raw, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        try:
            j = json.loads(data)
        except ValueError:
            j = None
        return r.status, {k.lower(): v for k, v in r.getheaders()}, j, data

    def upload(self, key, content, filename="train.jsonl", purpose="fine-tune"):
        """POST /v1/files (multipart) of bytes content."""
        b = "----parityTestBoundary7MA4YWxk"
        body = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n%s\r\n"
                "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n" % (b, purpose, b, filename)).encode() + content + \
            ("\r\n--%s--\r\n" % b).encode()
        return self.req("POST", "/v1/files", key=key, raw=body, headers={"Content-Type": "multipart/form-data; boundary=" + b})

    def wait_job(self, jid, key, want, timeout=60):
        """Polls a fine-tuning job until its status is in want (or timeout s); the last job seen."""
        import time
        t0 = time.time()
        j = None
        while time.time() - t0 < timeout:
            _, _, j, _ = self.req("GET", "/v1/fine_tuning/jobs/" + jid, key=key)
            if j and j.get("status") in want:
                return j
            time.sleep(0.05)
        return j

    def exchange(self, raw, wait=3.0):
        """Sends raw bytes on a new connection; returns (everything the server sent, closed by
        the server?, seconds)."""
        import socket
        import time
        s = socket.create_connection(("127.0.0.1", self.port))
        t0 = time.monotonic()
        s.sendall(raw)
        s.settimeout(wait)
        out, closed = b"", False
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    closed = True
                    break
                out += d
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
        s.close()
        return out, closed, time.monotonic() - t0

    def summary(self, name):
        print("%s: %d passed, %d failed" % (name, self.checks - self.failures, self.failures))
        return 1 if self.failures else 0

    def _cleanup(self):
        import shutil
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait()
        if self.failures:
            print("--- server log ---\n" + self.server_log())
        shutil.rmtree(self.tmp, ignore_errors=True)


def err_code(j):
    """The "code" of an OpenAI-shaped error body (None otherwise)."""
    return (j or {}).get("error", {}).get("code")
