"""The Python client (clients/python, issue 18 point 2) against the real `parity serve`, on a
tiny world with the demo policy (models parity-demo and parity-demo-analog are the tiny random
Llama; keys for the demo's organisations). The client is pip-installed into a temporary venv
(no network: --no-index, --no-build-isolation) and everything below imports it from there.

Checks: Ed25519 against RFC 8032's test vectors and against python3-cryptography; sampling,
streaming and errors in OpenAI's shapes; the trace context (one request; reads equal the raw
API's; add/set/ablate/patch/generate with their effect checked numerically; nested lists
without numpy; gradients refused); fine-tuning; access; receipts verified (and tampered
proofs, checkpoints, entries and bytes refused); the policy log's consistency (and a fork
signed with the lab's own key refused); witness cosignatures with a quorum; the parity report
recomputed and compared (and a forged report and an edited revision file refused); every
python example of clients/python/README.md and of the README's "Python client" section."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("PARITY_SRC", os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run, witness_world  # noqa: E402

# -- install the client into a temporary venv, from a copy (the build writes next to the source)
VENV = tempfile.mkdtemp(prefix="parity-pyclient-venv-")
shutil.copytree(os.path.join(SRC, "clients", "python"), os.path.join(VENV, "src"),
                ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", os.path.join(VENV, "env")], check=True)
VPY = os.path.join(VENV, "env", "bin", "python")
subprocess.run([VPY, "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps",
                os.path.join(VENV, "src")], check=True)
site = subprocess.run([VPY, "-c", "import parity_client, os; print(os.path.dirname(parity_client.__file__))"],
                      capture_output=True, text=True, check=True).stdout.strip()
sys.path.insert(0, os.path.dirname(site))
import parity_client as pc  # noqa: E402
from parity_client import ed25519, measure, note, report as rp, tlog  # noqa: E402

policy = open(os.path.join(SRC, "examples", "demo-policy.yaml")).read()
policy = re.sub(r"weights: parity-demo(-analog)?\n", "weights: MODEL_DIR\n", policy)
W = World("parity-pyclient-", ["aisi-eval", "uni-interp", "indie-redteam"], policy=policy, admin="lab-safety")
W.check(os.path.dirname(pc.__file__) == site and site.startswith(VENV), "the client is imported from the venv: %s" % pc.__file__)
W.start()
URL = "http://127.0.0.1:%d" % W.port
AUDIT_VKEY = run("log", "vkey", "--data", W.data, "--log", "audit").stdout.strip()
POLICY_VKEY = run("log", "vkey", "--data", W.data).stdout.strip()
client = pc.Client(URL, key=W.keys["aisi-eval"])
check = W.check


def raises(exc, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except exc as e:
        return e
    return None


# -- Ed25519 (RFC 8032 section 7.1, TEST 1, 2, 3 and SHA(abc)) --
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]


def test_ed25519():
    for i, (sk, pk, msg, sig) in enumerate(RFC8032):
        sk, pk, msg, sig = (bytes.fromhex(x) for x in (sk, pk, msg, sig))
        check(ed25519.public_key(sk) == pk, "RFC 8032 vector %d: public key" % i)
        check(ed25519.sign(sk, msg) == sig, "RFC 8032 vector %d: signature" % i)
        check(ed25519.verify(pk, msg, sig), "RFC 8032 vector %d: verifies" % i)
        check(not ed25519.verify(pk, msg + b"x", sig), "vector %d: another message fails" % i)
        bad = bytearray(sig)
        bad[5] ^= 1
        check(not ed25519.verify(pk, msg, bytes(bad)), "vector %d: a flipped R bit fails" % i)
        bad = bytearray(sig)
        bad[40] ^= 1
        check(not ed25519.verify(pk, msg, bytes(bad)), "vector %d: a flipped S bit fails" % i)
        s = int.from_bytes(sig[32:], "little") + ed25519.L  # the same S mod L: malleated, must be refused
        check(s >= 2 ** 256 or not ed25519.verify(pk, msg, sig[:32] + s.to_bytes(32, "little")), "vector %d: S + L refused" % i)
    check(not ed25519.verify(b"\xff" * 32, b"", bytes(64)), "a public key that is not a point fails")
    try:  # an independent implementation (python3-cryptography, OpenSSL) both ways
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
        from cryptography.hazmat.primitives import serialization as ser
    except ImportError:
        check(False, "python3-cryptography is needed for the cross-check")
        return
    for n in range(12):
        seed = os.urandom(32)
        msg = os.urandom(n * 7)
        k = Ed25519PrivateKey.from_private_bytes(seed)
        pub = k.public_key().public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
        check(ed25519.public_key(seed) == pub, "random key %d: same public key as OpenSSL" % n)
        check(ed25519.verify(pub, msg, k.sign(msg)), "random key %d: OpenSSL's signature verifies here" % n)
        Ed25519PublicKey.from_public_bytes(pub).verify(ed25519.sign(seed, msg), msg)  # raises if not


# -- sampling in OpenAI's shapes --
def test_sampling():
    ids = [m.id for m in client.models.list()]
    check(ids == ["parity-demo", "parity-demo-analog"], "models.list: %s" % ids)
    r = client.completions.create(model="parity-demo", prompt="And God said", max_tokens=6, logprobs=3, temperature=0)
    check(r.object == "text_completion" and len(r.choices[0].logprobs.top_logprobs[0]) == 3, "completion with 3 log-probs")
    rec = client.last_receipt
    check(rec and rec.index >= 0 and len(rec.salt) == 64, "the completion's receipt is kept: %r" % rec)
    s = client.completions.create(model="parity-demo", prompt="And God said", max_tokens=6, temperature=0, stream=True,
                                  stream_options={"include_usage": True})
    text = s.text()
    check(text == r.choices[0].text, "the stream's text is the completion's: %r vs %r" % (text, r.choices[0].text))
    check(s.done and s.receipt is not None and s.chunks[-1].usage.completion_tokens == r.usage.completion_tokens,
          "the stream ends with usage, [DONE] and its receipt")
    e = client.verify_receipt(s.receipt, AUDIT_VKEY)
    check(e.route == "completions", "a stream's receipt verifies, its commitments open to the streamed bytes")
    chat = client.chat.completions.create(model="parity-demo@unmitigated", messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=4, logprobs=True, top_logprobs=2)
    check(chat.choices[0].message.role == "assistant" and len(chat.choices[0].logprobs.content[0].top_logprobs) == 2,
          "chat on the unmitigated variant with top_logprobs")
    redteam = pc.Client(URL, key=W.keys["indie-redteam"])
    err = raises(pc.PermissionDeniedError, redteam.completions.create, model="parity-demo", prompt="x", max_tokens=1)
    check(err is not None and err.code == "capability_not_in_tier" and "revision" in err.message,
          "an AL1 key's completion (prefill) is a PermissionDeniedError: %s" % err)
    err = raises(pc.NotFoundError, client.models.retrieve, "no-such-model")
    check(err is not None and err.status == 404, "an unknown model is a NotFoundError")
    err = raises(pc.AuthenticationError, pc.Client(URL, key="sk-wrong").models.list)
    check(err is not None and err.status == 401, "a wrong key is an AuthenticationError")
    err = raises(pc.BadRequestError, client.completions.create, model="parity-demo", prompt="x", best_of=3)
    check(err is not None and err.param == "best_of", "an unsupported field is a BadRequestError naming it: %s" % err)


# -- tracing --
def raw_trace(body):
    st, _, j, _ = W.req("POST", "/v1/internals/trace", body=body, key="aisi-eval")
    check(st == 200, "raw trace: %d %s" % (st, j))
    return j


def test_trace():
    import numpy as np
    model = client.model("parity-demo")
    sent = client.requests_sent
    with model.trace("And God said") as t:
        pre = model.blocks[1].hook_resid_pre.save()
        z = model.blocks[0].attn.hook_z.save()
        pat = model.blocks[0].attn.hook_pattern.save(positions=[0, 1])
    check(client.requests_sent == sent + 1, "a trace is one request")
    check(t.request() == {"model": "parity-demo", "input": "And God said",
                          "reads": ["blocks.1.hook_resid_pre", "blocks.0.attn.hook_z",
                                    {"hook": "blocks.0.attn.hook_pattern", "positions": [0, 1]}]},
          "the request it compiles to: %s" % t.request())
    j = raw_trace(t.request())
    raw = np.frombuffer(base64.b64decode(j["tensors"][0]["data"]), "<f4").reshape(j["tensors"][0]["shape"])
    n = t.output[0]["length"]
    check(isinstance(pre.value, np.ndarray) and pre.value.shape == (1, n, 32) and np.array_equal(pre.value, raw),
          "a saved read equals the raw API's tensor: %s" % (pre.value.shape,))
    check(z.value.shape == (1, n, 4, 8) and pat.value.shape[:2] == (1, 4), "hook_z and hook_pattern shapes")
    vec = np.linspace(-1, 1, 32, dtype=np.float32)
    with model.trace("And God said") as t:
        model.blocks[1].hook_resid_pre.add(vec, scale=4)
        steered = model.blocks[1].hook_resid_pre.save()
        model.blocks[1].hook_mlp_out.set(np.zeros(32))
        mlp = model.blocks[1].hook_mlp_out.save()
        model.blocks[1].attn.hook_z.ablate(positions=[1])
        z2 = model.blocks[1].attn.hook_z.save()
        post = model.blocks[1].hook_resid_post.save()
    check(np.allclose(steered.value, pre.value + 4 * vec, atol=1e-5), "add: the read is the base plus 4 vec")
    check(not mlp.value.any() and not z2.value[0, 1].any() and z2.value[0, 0].any(), "set zeros; ablate one position")
    check(t.receipt is not None and t.receipt.index >= 0, "the trace's receipt")
    with model.trace([[5, 17, 42, 99], [7, 8, 9, 10]]) as t:
        both = model.blocks[1].hook_resid_post.save()
    with model.trace() as t:
        with t.invoke([5, 17, 42, 99]) as clean:
            c_post = model.blocks[1].hook_resid_post.save()
        with t.invoke([7, 8, 9, 10]):
            model.blocks[0].hook_resid_post.patch(clean)
            p_post = model.blocks[1].hook_resid_post.save()
    body = t.request()
    check(body["interventions"] == [{"hook": "blocks.0.hook_resid_post", "op": "patch", "source": 0, "inputs": [1]}],
          "patch compiles to op patch, source and inputs: %s" % body["interventions"])
    check(np.allclose(c_post.value, both.value[0]) and np.allclose(p_post.value, both.value[0], atol=1e-5)
          and not np.allclose(both.value[1], both.value[0]),
          "patching layer 0's output from the clean input makes the corrupt input's layer 1 the clean one's")
    with model.generate("And God said", max_tokens=5) as g:
        gen_read = model.ln_final.hook_normalized.save()
    r = client.completions.create(model="parity-demo", prompt="And God said", max_tokens=5, temperature=0)
    check(g.text == r.choices[0].text, "generate inside a trace samples what a completion does: %r %r" % (g.text, r.choices[0].text))
    check(gen_read.value.shape[1] == g.output[0]["length"], "reads cover the generated positions too")
    with model.generate(["And God said", "In the"], max_tokens=3, binary=True) as gb:
        b_read = model.ln_final.hook_normalized.save()
        b_pat = model.blocks[0].attn.hook_pattern.save()
    with model.generate(["And God said", "In the"], max_tokens=3) as gj:
        j_read = model.ln_final.hook_normalized.save()
        j_pat = model.blocks[0].attn.hook_pattern.save()
    check(np.array_equal(b_read.value, j_read.value) and np.array_equal(b_pat.value, j_pat.value)
          and gb.output == gj.output and gb.result["model"] == "parity-demo",
          "binary=True (a safetensors answer) gives the same tensors and outputs as JSON")
    with model.generate("And God said", max_tokens=5) as g2:
        model.blocks[0].hook_resid_post.add(vec, scale=50)
    check(g2.text != g.text, "steering changes what is generated: %r vs %r" % (g2.text, g.text))
    err = raises(NotImplementedError, lambda: model.blocks[0].hook_resid_post.grad)
    check(err is not None and "gradients" in str(err), "gradients: a clear not-granted path")
    err = raises(pc.TraceError, model.blocks[0].hook_resid_post.save)
    check(err is not None, "a hook outside a trace is an error")
    err = raises(pc.BadRequestError, client.trace_request,
                 {"model": "parity-demo", "input": "x", "reads": ["blocks.9.hook_resid_post"]})
    check(err is not None and err.code == "unknown_hook", "an unknown hook: 400 unknown_hook")
    al2 = pc.Client(URL, key=W.keys["uni-interp"]).model("parity-demo")

    def al2_read():
        with al2.trace("x"):
            al2.blocks[0].hook_resid_post.save()
    err = raises(pc.PermissionDeniedError, al2_read)
    check(err is not None and err.code == "capability_not_in_tier", "AL2 may not read activations: %s" % err)
    # without numpy: nested lists of the same values
    code = ("import sys, json; sys.modules['numpy'] = None\n"
            "from parity_client import Client\n"
            "m = Client(%r, key=%r).model('parity-demo')\n"
            "with m.trace('And God said') as t:\n"
            "    h = m.blocks[1].hook_resid_pre.save()\n"
            "    m.blocks[1].hook_resid_pre.add([0.5] * 32, scale=2)\n"
            "print(json.dumps(h.value))\n") % (URL, W.keys["aisi-eval"])
    out = subprocess.run([VPY, "-c", code], capture_output=True, text=True)
    lists = json.loads(out.stdout) if out.returncode == 0 else None
    check(isinstance(lists, list) and np.allclose(np.array(lists), pre.value + 1.0, atol=1e-5),
          "without numpy the values are nested lists: %s" % out.stderr[-300:])


# -- fine-tuning, access, the report --
def test_finetune_access_report():
    rows = [{"messages": [{"role": "user", "content": "Who spoke?"}, {"role": "assistant", "content": "God said it."}]}] * 4
    f = client.files.create("\n".join(json.dumps(r) for r in rows).encode(), filename="chats.jsonl")
    check(f.object == "file" and f.purpose == "fine-tune", "files.create")
    check(client.files.content(f.id).startswith(b'{"messages"'), "files.content")
    job = client.fine_tuning.jobs.create(model="parity-demo", training_file=f.id, suffix="pyc", hyperparameters={"n_epochs": 1})
    job = client.fine_tuning.jobs.wait(job.id, timeout=300)
    check(job.status == "succeeded" and job.fine_tuned_model.startswith("ft:parity-demo:aisi-eval:pyc:"), "job: %s" % job.status)
    ev = client.fine_tuning.jobs.list_events(job.id, limit=50).data
    check(any(e.type == "metrics" for e in ev), "list_events has metrics events")
    check(job.id in [j.id for j in client.fine_tuning.jobs.list().data], "jobs.list")
    chat = client.chat.completions.create(model=job.fine_tuned_model, messages=[{"role": "user", "content": "Who spoke?"}],
                                          max_tokens=4)
    check(chat.model == job.fine_tuned_model, "the fine-tuned model answers")
    check(client.files.delete(f.id).deleted is True, "files.delete")
    a = client.access()
    m = {x.model: x for x in a.models}
    check(a.organization == "aisi-eval" and "activations" in m["parity-demo"].capabilities
          and "weights" not in m["parity-demo"].capabilities, "access: capabilities, the forbid applied")
    check(len(a.audit.org_pseudonym) == 32, "access: the audit pseudonyms")
    rep = pc.Client(URL).parity()
    check(rep.report == "parity-gap" and rep.revision_in_force == 1, "the parity report needs no key")


# -- verification --
def signer(log):
    """The lab's own secret key of a log (the test plays a lab that forges with it)."""
    k = open(os.path.join(W.data, "keys", log + ".key")).read().strip().split("+", 4)
    return k[2], base64.b64decode(k[4])[1:33]


def test_receipts():
    client.chat.completions.create(model="parity-demo", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    kept = client.last_receipt
    e = client.verify_receipt(kept, AUDIT_VKEY)
    check(e.route == "chat_completions" and e.decision == "allow", "a kept receipt verifies: %s" % e.get("route"))
    e = client.verify_receipt(kept.index, AUDIT_VKEY, policy_vkey=POLICY_VKEY)
    revs = rp.load_history(client.log("policy", POLICY_VKEY))[1]
    err = raises(pc.VerificationError, rp.check_decided_under, dict(e, policy_digest="sha256:" + "0" * 64), revs)
    check(err is not None and "revision 1" in str(err), "a decision under a revision the policy log lacks: %s" % err)
    check(raises(pc.VerificationError, rp.check_decided_under, dict(e, policy_revision=7), revs) is not None,
          "a revision number beyond the log's")
    good = client.receipt(kept.index)
    check(good.view == "full" and good.private.salt == kept.salt, "the receipt's private part to its organisation")
    log = client.log("audit", AUDIT_VKEY)
    cp = log.checkpoint(good.checkpoint)
    mine = log.inclusion_proof(kept.index, cp.size)
    check([base64.b64encode(h).decode() for h in mine] == good.inclusion_proof,
          "the proof computed from the tiles is the server's")

    def refused(mutate, what):
        r = json.loads(json.dumps(good))
        mutate(r)
        err = raises(pc.VerificationError, client.verify_receipt, r, AUDIT_VKEY)
        check(err is not None, "%s is refused" % what)
        return err
    if good.inclusion_proof:
        def flip(r):
            h = bytearray(base64.b64decode(r["inclusion_proof"][0]))
            h[0] ^= 1
            r["inclusion_proof"][0] = base64.b64encode(bytes(h)).decode()
        refused(flip, "a tampered inclusion proof")
        refused(lambda r: r["inclusion_proof"].pop(), "a shortened inclusion proof")
        refused(lambda r: r.__setitem__("index", (r["index"] + 1) % r["tree_size"]), "the proof of another index")
    lines = good.checkpoint.split("\n")
    refused(lambda r: r.__setitem__("checkpoint", "\n".join([lines[0], str(int(lines[1]) + 1)] + lines[2:])),
            "a checkpoint with another size (signature)")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    refused(lambda r: r.__setitem__("checkpoint", "\n".join(lines[:2] + [base64.b64encode(bytes(root)).decode()] + lines[3:])),
            "a checkpoint with another root (signature)")
    refused(lambda r: r["entry"].__setitem__("decision", "deny"), "an entry shown otherwise than logged")
    err = raises(pc.VerificationError, client.verify_receipt, good, POLICY_VKEY)
    check(err is not None, "a checkpoint checked with another log's key is refused")
    # a checkpoint the lab re-signs for a root it did not publish: signature fine, proof fails
    name, sk = signer("audit")
    text = "\n".join(lines[:2] + [base64.b64encode(bytes(root)).decode()]) + "\n"
    forged = text + "\n" + note.sign_note(text, name, sk)
    err = refused(lambda r: r.__setitem__("checkpoint", forged), "a re-signed checkpoint with another root")
    check("root" in str(err) or "hash" in str(err), "... by the proof: %s" % err)
    kept.response = kept.response.replace(b"assistant", b"assistent")
    err = raises(pc.VerificationError, client.verify_receipt, kept, AUDIT_VKEY)
    check(err is not None and "commitments" in str(err), "other response bytes do not open the commitment: %s" % err)


def test_consistency_and_witnesses():
    policy = client.log("policy", POLICY_VKEY)
    old = policy.checkpoint()
    st, _, j, _ = W.req("POST", "/v1/admin/keys", body={"organization": "uni-interp"}, key="admin")
    check(st == 201, "a key binding grows the policy log: %d" % st)
    new = policy.checkpoint()
    check(new.size == old.size + 1, "the log grew: %d -> %d" % (old.size, new.size))
    proof = policy.prove_consistent(old, new)
    check(len(proof) > 0, "the consistency proof from the tiles verifies")
    err = raises(pc.VerificationError, policy.prove_consistent, new, old)
    check(err is not None, "a rollback (new before old) is refused")
    # a fork: the lab signs another history of the same size with its own key
    name, sk = signer("policy")
    other = bytes(32)
    text = "%s\n%d\n%s\n" % (name, old.size, base64.b64encode(other).decode())
    fork = policy.checkpoint(text + "\n" + note.sign_note(text, name, sk))
    err = raises(pc.VerificationError, policy.prove_consistent, fork, new)
    check(err is not None and "prefix" in str(err), "a forked history is refused: %s" % err)
    # witnesses: cosignature/v1 lines kept by the parser and checked against a quorum
    w = [(("witness.example/w%d" % i), os.urandom(32)) for i in range(3)]
    wkeys = [note.make_vkey(n, ed25519.public_key(s), note.SIG_COSIGNATURE_V1) for n, s in w]
    cosigned = new.note + note.cosign(new, w[0][0], w[0][1], 1_700_000_000) + note.cosign(new, w[1][0], w[1][1], 1_700_000_001)
    cp = pc.Checkpoint(cosigned)
    check(len(cp.signatures) == 3 and cp.verify(POLICY_VKEY) is cp, "extra signature lines kept; the log's signature checks")
    good = cp.verify_witnesses(wkeys, 2)
    check(good == {w[0][0]: 1_700_000_000, w[1][0]: 1_700_000_001}, "2 of 3 witnesses cosigned: %s" % good)
    check(raises(pc.VerificationError, cp.verify_witnesses, wkeys, 3) is not None, "a quorum of 3 is not met")
    wlog = client.log("policy", POLICY_VKEY, witnesses=wkeys, quorum=2)
    check(wlog.checkpoint(cosigned).size == new.size, "a log client with a witness quorum takes the cosigned checkpoint")
    check(raises(pc.VerificationError, wlog.checkpoint) is not None, "... and refuses the published one without cosignatures")
    stale = new.note + note.cosign(old, w[0][0], w[0][1], 1_700_000_000)  # a cosignature of another checkpoint
    err = raises(pc.VerificationError, pc.Checkpoint(stale).verify_witnesses, wkeys, 1)
    check(err is not None and "does not verify" in str(err), "a cosignature copied from another checkpoint: %s" % err)
    imposter = new.note + note.cosign(new, w[0][0], os.urandom(32), 1_700_000_000)  # right name, wrong key
    check(pc.Checkpoint(imposter).cosignatures(wkeys) == {}, "a line by an unknown key under a witness's name is ignored")
    err = raises(pc.VerificationError, pc.Verifier, wkeys[0].replace("+", "+0", 1))
    check(err is not None, "a verifier key whose ID does not match is refused")


def test_report():
    server, mine, cp = client.verify_report(POLICY_VKEY, AUDIT_VKEY)
    check(rp.compare(mine, server) == [] and mine["summary"] == server["summary"], "the report recomputed equals /v1/parity")
    check(len(server["models"]) == 2 and server["models"][0]["organisations"][0]["history"], "a non-trivial report")
    # the declared dimensions of issue 14 point 6 and the measured section, recomputed from the audit log
    meas, d = mine["measured"], mine["models"][0]["organisations"][0]["dimensions"]
    check(meas["entries"] > 10 and meas["served_models"] == ["parity-demo", "parity-demo-analog"]
          and meas["models"][0]["outsiders"]["served"] > 5 and meas["models"][0]["outsiders"]["latency_ms"]["p50"] is not None
          and meas["models"][0]["outsiders"]["capabilities_used"].get("sample", 0) > 0,
          "the measured section: %d entries, %s" % (meas["entries"], meas["models"][0]["outsiders"]))
    check(all(k in d for k in ("logprobs", "prefill", "uplift")) and d["non_release"]["detail"] == "has access; the server serves it"
          and "concurrent_finetune_jobs_ratio" in d["rate_limits"], "the new dimensions: %s" % sorted(d))
    # without the models_served entries the non-release detail (and uplift) would differ: the audit log is read
    log = client.log("audit", AUDIT_VKEY)
    acp = log.checkpoint()
    meter = measure.Meter()
    for raw in log.entries(acp)[:meas["entries"]]:
        meter.add(raw if b'"models_served"' not in raw else b"{}")
    other = rp.compare(rp.gap_report(rp.load_history(client.log("policy", POLICY_VKEY))[1], rp.parse_time(server["at"]), meter), server)
    check(any("non_release.detail" in x for x in other) and any("measured.served_models" in x for x in other),
          "the audit log's models_served entries decide non-release: %s" % other[:3])
    forged = json.loads(json.dumps(server))
    forged["measured"]["models"][0]["outsiders"]["latency_ms"]["p99"] += 1
    err = raises(pc.VerificationError, client.verify_report, POLICY_VKEY, AUDIT_VKEY, report=forged)
    check(err is not None and "measured.models[0].outsiders.latency_ms.p99" in str(err), "a forged measured p99 is caught: %s" % err)
    # an audit entry edited in the published entry bundles: the bundles no longer hash to the signed root
    bundles = []
    for root, _, files in os.walk(os.path.join(W.data, "log", "audit", "tile", "entries")):
        bundles += [os.path.join(root, f) for f in files]
    saved = {f: open(f, "rb").read() for f in bundles}
    for f, data in saved.items():
        open(f, "wb").write(data.replace(b'"status":200', b'"status":201', 1))
    check(any(saved[f] != open(f, "rb").read() for f in bundles), "an audit entry was edited in its bundle")
    err = raises(pc.VerificationError, client.verify_report, POLICY_VKEY, AUDIT_VKEY, report=server)
    for f, data in saved.items():
        open(f, "wb").write(data)
    check(err is not None and "signed root" in str(err), "an edited audit entry is refused: %s" % err)
    # a second revision: indie-redteam moves to AL2 (under a bracket glob), so its verdicts change
    # and the history has two entries
    pol2 = W.policy.replace("tier: AL1\n", "tier: AL2\n").replace(
        'organisation: indie-redteam\n    model: "parity-demo*"', 'organisation: indie-redteam\n    model: "parity-dem[!x]*"')
    check(pol2.count("[!x]") == 1, "the second revision has a bracket glob")
    st, _, j, _ = W.req("POST", "/v1/admin/policy", raw=pol2.encode(), key="admin",
                        headers={"Content-Type": "application/yaml"})
    check(st in (200, 201), "a second revision applied: %d %s" % (st, j))
    server, mine, cp2 = client.verify_report(POLICY_VKEY, AUDIT_VKEY, trusted=cp)
    check(server["revision_in_force"] == 2 and len(mine["revisions"]) == 2, "recomputed over two revisions")
    red = [o for m in mine["models"] for o in m["organisations"] if o["organisation"] == "indie-redteam"]
    check([o["level"] for o in red] == ["AL2", "AL2"] and len(red[0]["history"]) == 2,
          "the bracket glob matched both models: indie-redteam at AL2, its history changed once")
    forged = json.loads(json.dumps(server))
    forged["models"][0]["organisations"][0]["dimensions"]["non_release"]["verdict"] = "gap"
    forged["summary"]["gap"] -= 1
    err = raises(pc.VerificationError, client.verify_report, POLICY_VKEY, AUDIT_VKEY, report=forged)
    check(err is not None and "summary.gap" in str(err) and "non_release.verdict" in str(err), "a forged report is caught: %s" % err)
    rev = sorted(os.listdir(os.path.join(W.data, "log", "policy", "revisions")))[0]
    path = os.path.join(W.data, "log", "policy", "revisions", rev)
    data = open(path, "rb").read()
    open(path, "wb").write(data.replace(b'"AL1"', b'"AL3"', 1) if b'"AL1"' in data else data + b" ")
    err = raises(pc.VerificationError, client.verify_report, POLICY_VKEY, AUDIT_VKEY, report=server)
    check(err is not None and rev in str(err), "an edited revision file is refused, named: %s" % err)
    open(path, "wb").write(data)


def test_witnessed_report():
    """A second server whose policy names two real witnesses (`parity witness serve`): the report's
    revisions are dated by the quorum-cosigned checkpoints published at /log/policy/cosigned/,
    and the client recomputes those dates from the cosignatures."""
    import signal
    import time
    w2 = World("parity-pyclient-w-", ["al1"])
    procs = []
    try:
        pv, av, wv = witness_world(w2, procs)
        time.sleep(1.1)  # so that both revisions are witnessed at least a second after their stated time
        w2.start()
        c2 = pc.Client("http://127.0.0.1:%d" % w2.port)
        server = None
        for _ in range(600):
            cp = pc.Checkpoint(w2.req("GET", "/log/policy/checkpoint")[3])
            if cp.size >= 2 and len(cp.cosignatures(wv)) == 2:
                st, _, server, _ = w2.req("GET", "/v1/parity")
                if st == 200 and server["time_source"].startswith("witnesses"):
                    break
            time.sleep(0.1)
        check(server is not None and server["time_source"].startswith("witnesses"), "the server dates by its witnesses")
        server, mine, cp = c2.verify_report(pv, av, report=server)
        revs = mine["revisions"]
        check(len(revs) == 2 and all(r["time_source"] == "witnesses" and r.get("stated_time", "~") < r["time"] for r in revs),
              "witnessed dates recomputed from the cosigned checkpoints equal the server's: %s" % revs)
        # a cosignature altered in a published cosigned checkpoint: refused, naming the file
        cdir = os.path.join(w2.data, "log", "policy", "cosigned")
        sizes = [f for f in os.listdir(cdir) if f.isdigit()]
        path = os.path.join(cdir, min(sizes, key=int))
        data = open(path, "rb").read()
        text, sigs = data.split(b"\n\n", 1)
        lines = sigs.split(b"\n")
        k = len(lines[-2]) - 20
        lines[-2] = lines[-2][:k] + (b"A" if lines[-2][k:k + 1] != b"A" else b"B") + lines[-2][k + 1:]
        open(path, "wb").write(text + b"\n\n" + b"\n".join(lines))
        err = raises(pc.VerificationError, c2.verify_report, pv, av, report=server)
        open(path, "wb").write(data)
        check(err is not None and "cosigned/" in str(err), "an altered cosignature is refused: %s" % err)
        # a verifier who names another witness set: nothing is witnessed by it
        other = note.make_vkey("w9.example", ed25519.public_key(os.urandom(32)), note.SIG_COSIGNATURE_V1)
        err = raises(pc.VerificationError, c2.verify_report, pv, av, report=server, witnesses=[other], quorum=1)
        check(err is not None and "no revision is witnessed" in str(err), "other witnesses: no revision witnessed: %s" % err)
    finally:
        w2.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)


# Hostile and odd audit entries, each read by the C meter (`parity gap --audit`) and by the client's
# measure.py: escaped keys, repeated keys, reals, integers past int64, strings too long for the
# meter's buffers, NUL and lone surrogates, times with offsets, fractions and invalid dates, too
# many capabilities, models_served lists with non-strings, garbage, a top-level array.
ODD_ENTRIES = [
    '{"type":"models_served","time":"2026-01-01T00:00:00Z","models":["parity-demo",3,null,"parity-demo-analog"]}',
    '{"type":"request","time":"2026-04-01T10:00:00Z","org_class":"outsider","decision":"allow","status":200,"model":"parity-demo","prompt_tokens":5,"completion_tokens":7,"latency_ms":120,"queue_ms":3,"capabilities":["sample"]}',
    '{"type":"request","time":"2026-04-01T10:00:30+01:00","org_class":"outsider","decision":"allow","status":200,"mod\\u0065l":"parity-demo","prompt_tokens":1,"latency_ms":80}',
    '{"type":"request","time":"2026-04-02T10:00:00.250Z","org_class":"insider","decision":"allow","status":200,"model":"parity-demo","prompt_tokens":-4,"completion_tokens":9,"latency_ms":99999999999,"capabilities":["sample","logprobs","nope",7,"sample","sample","sample","sample","sample","sample","sample","sample","sample","sample","sample","sample","sample","sample"]}',
    '{"type":"request","time":"2026-02-30T10:00:00Z","org_class":"insider","decision":"allow","status":200,"model":"parity-demo","completion_tokens":4,"latency_ms":10}',
    '{"type":"request","time":"2026-04-03T10:00:00Z","org_class":"outsider","decision":"allow","status":200.0,"model":"parity-demo","latency_ms":40}',
    '{"type":"request","org_class":"outsider","decision":"deny","reason":"limit_exceeded","status":403,"model":"parity-demo"}',
    '{"type":"request","org_class":"outsider","decision":"deny","reason":"' + "x" * 70 + '","status":429,"model":"parity-demo"}',
    '{"type":"request","org_class":"outsider","decision":"deny","status":403,"model":"parity-demo","model":"parity-demo-analog"}',
    '{"type":"request","org_class":"outsider","decision":"allow","status":503,"model":"parity-demo"}',
    '{"type":"request","org_class":"outsider","decision":"allow","status":400,"model":"parity-demo","latency_ms":12345678901234567890}',
    '{"type":"request","org_class":"insider","decision":"allow","status":200,"model":"parity-demo","latency_ms":7,"note":"a\\u0000b"}',
    '{"type":"request","org_class":"insider","decision":"allow","status":200,"model":"parity-demo","latency_ms":7,"note":"\\ud800"}',
    '{"type":"request","org_class":"insider","decision":"allow","status":200,"model":"parity-demo","latency_ms":8,"x":1e400}',
    '{"type":"request","org_class":"insider","decision":"allow","status":200,"model":"parity-demo","latency_ms":9,"x":[[[{"a":[1,2,{"b":null}]}]]],"t":true}',
    '{"type":"request","org_class":"insider","decision":"allow","status":201,"model":"' + "m" * 300 + '","latency_ms":1}',
    '{"type":"request","org_class":"insider","decision":"allow","status":204,"model":"parity-demo","time":"2026-04-05T23:59:59-02:00","completion_tokens":11,"latency_ms":0,"queue_ms":-5}',
    '{"type":"request","org_class":"nobody","decision":"allow","status":200,"model":"parity-demo"}',
    '{"type":"models_served","models":"parity-demo"}',
    'not json at all', '[1,2,3]', '{"type":"request"', '{} trailing',
]


def test_meter_against_c():
    d = tempfile.mkdtemp(prefix="parity-pyclient-meter-")
    pol = os.path.join(d, "policy.yaml")
    with open(pol, "w") as f:
        f.write(W.policy)
    run("policy", "apply", pol, "--data", d, "--time", "2026-01-01T00:00:00Z")
    run("log", "append", "--data", d, "--log", "audit", input="\n".join(ODD_ENTRIES) + "\n")
    theirs = json.loads(run("gap", "--data", d, "--at", "2026-05-01T00:00:00Z", "--json").stdout)

    def fetch(name):
        return lambda path: open(os.path.join(d, "log", name, path), "rb").read()
    pk = run("log", "vkey", "--data", d).stdout.strip()
    ak = run("log", "vkey", "--data", d, "--log", "audit").stdout.strip()
    revs = rp.load_history(tlog.Log(fetch("policy"), pk))[1]
    _, meter = rp.load_audit(tlog.Log(fetch("audit"), ak))
    mine = rp.gap_report(revs, rp.parse_time("2026-05-01T00:00:00Z"), meter)
    diff = [x for x in rp.compare(mine, theirs) if not x.startswith("report.verified_")]
    check(meter.entries == len(ODD_ENTRIES) and diff == [], "odd audit entries: the client's meter equals the C meter: %s" % diff[:5])
    m = mine["measured"]["models"][0]
    check(m["insiders"]["served"] >= 4 and m["outsiders"]["rate_limited"] == 2 and m["outsiders"]["other"] == 1,
          "... and the odd entries were counted: %s" % {k: m["outsiders"][k] for k in ("served", "denied", "rate_limited", "other")})
    shutil.rmtree(d)


# -- Merkle proofs: the transparency-dev vectors, and a log of 70,000 entries read through its tiles --
def test_merkle_vectors():
    n = 0
    for kind in ("inclusion", "consistency"):
        root = os.path.join(HERE, "data", "merkle", kind)
        for d, _, files in os.walk(root):
            for f in files:
                v = json.load(open(os.path.join(d, f)))
                proof = [base64.b64decode(h) for h in v["proof"] or []]
                if kind == "inclusion":
                    fn = lambda: tlog.verify_inclusion(v["leafIdx"], v["treeSize"], base64.b64decode(v["leafHash"]), proof,
                                                       base64.b64decode(v["root"]))
                else:
                    fn = lambda: tlog.verify_consistency(v["size1"], v["size2"], base64.b64decode(v["root1"]),
                                                         base64.b64decode(v["root2"]), proof)
                err = raises(pc.VerificationError, fn)
                check((err is not None) == bool(v.get("wantErr")), "%s %s: %s" % (kind, f, v.get("desc")))
                n += 1
    check(n == 196, "all 196 vectors read: %d" % n)
    check(tlog.tile_path(0, 1234067) == "tile/0/x001/x234/067" and tlog.tile_path("entries", 5, 17) == "tile/entries/005.p/17",
          "C2SP tile paths")


def test_big_log():
    data = os.path.join(W.tmp, "biglog")
    fetch_dir = os.path.join(data, "log", "policy")
    vkey = run("log", "vkey", "--data", data).stdout.strip()
    cps, size = [], 0
    for target in (1, 2, 255, 256, 257, 513, 65535, 65536, 70000):
        run("log", "append", "--data", data, input="".join("entry %d\n" % i for i in range(size, target)))
        size = target
        cps.append(run("log", "checkpoint", "--data", data).stdout)

    def fetch(path):
        with open(os.path.join(fetch_dir, path), "rb") as f:
            return f.read()
    log = pc.Log(fetch, vkey)
    cps = [log.checkpoint(c) for c in cps]
    last = cps[-1]
    check(log.root(last.size) == last.root, "the root computed from the tiles of 70,000 entries is the signed one")
    for cp in cps[:-1]:
        check(log.root(cp.size) == cp.root, "the root of size %d from the newest tiles" % cp.size)
    for i, old in enumerate(cps):
        for new in cps[i:]:
            check(raises(pc.VerificationError, log.prove_consistent, old, new) is None, "consistent %d -> %d" % (old.size, new.size))
    for idx in (0, 255, 256, 65535, 65536, 69999):
        raw = log.entry(idx, last.size)
        check(raw == b"entry %d" % idx, "entry %d read from its bundle" % idx)
        cli = json.loads(run("log", "prove", "--index", str(idx), "--data", data).stdout)
        mine = log.inclusion_proof(idx, last.size)
        check([base64.b64encode(h).decode() for h in mine] == cli["proof"], "inclusion proof of %d = parity log prove's" % idx)
        log.prove_included(idx, tlog.leaf_hash(raw), last)
    cli = json.loads(run("log", "prove", "--old-size", "257", "--size", "70000", "--data", data).stdout)
    check([base64.b64encode(h).decode() for h in log.consistency_proof(257, 70000)] == cli["proof"],
          "consistency proof 257 -> 70000 = parity log prove's")
    err = raises(pc.VerificationError, log.prove_included, 5, tlog.leaf_hash(b"entry 6"), last)
    check(err is not None, "another entry's leaf is not included at 5")
    tile = os.path.join(fetch_dir, "tile", "0", "000")
    good = open(tile, "rb").read()
    open(tile, "wb").write(good[:32] + bytes(32) + good[64:])  # a lying tile
    lying = pc.Log(fetch, vkey)
    err = raises(pc.VerificationError, lying.prove_consistent, cps[2], last)
    check(err is not None, "a consistency proof from an altered tile fails: %s" % err)
    err = raises(pc.VerificationError, lying.prove_included, 0, tlog.leaf_hash(b"entry 0"), last)
    check(err is not None, "an inclusion proof from an altered tile fails")
    open(tile, "wb").write(good)
    shutil.rmtree(data)


# -- the README examples, run as written --
def examples():
    out = []
    for path, section in ((os.path.join(SRC, "clients", "python", "README.md"), None),
                          (os.path.join(SRC, "README.md"), "## Python client")):
        text = open(path).read()
        if section:
            start = text.find(section)
            check(start >= 0, "README.md has a %r section" % section)
            end = text.find("\n## ", start + 1)
            text = text[start:end if end > 0 else len(text)]
        out += [(path, b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]
    return out


def test_examples():
    ex = examples()
    check(len(ex) >= 5, "README examples found: %d" % len(ex))
    env = dict(os.environ, PARITY_URL=URL, PARITY_KEY=W.keys["aisi-eval"], PARITY_AUDIT_VKEY=AUDIT_VKEY,
               PARITY_POLICY_VKEY=POLICY_VKEY)
    for i, (path, code) in enumerate(ex):
        r = subprocess.run([VPY, "-c", code], capture_output=True, text=True, env=env, timeout=600)
        check(r.returncode == 0, "example %d of %s runs: %s" % (i, os.path.relpath(path, SRC), (r.stdout + r.stderr)[-1500:]))


test_ed25519()
test_merkle_vectors()
test_big_log()
test_sampling()
test_trace()
test_finetune_access_report()
test_receipts()
test_consistency_and_witnesses()
test_examples()
test_report()
test_meter_against_c()
test_witnessed_report()
W.stop()
shutil.rmtree(VENV, ignore_errors=True)
sys.exit(W.summary("python_client"))
