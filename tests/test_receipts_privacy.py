"""What the public audit log and GET /v1/receipts/{i} reveal (README, security model; docs/server.md,
"Receipts"): another organisation sees only the public entry; the entry's own organisation and
admins see the private part (organisation, key id, exact time, salt, plain digests); the public
entry names organisation and key only by keyed pseudonyms unless the policy says the
organisation's usage is public; a guessed prompt cannot be confirmed from anything public (the
plain SHA-256 of a body appears nowhere public); the caller can open its salted commitments.
The real binary on a loopback port, Debian's python3."""
import hashlib
import http.client
import json
import os
import stat
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "ref"))
from tiny_world import World, run  # noqa: E402

with open(os.path.join(HERE, "data", "server", "policy.yaml")) as f:
    policy = f.read().replace("{id: al1, name: Black-box org, kind: researcher}",
                              "{id: al1, name: Black-box org, kind: researcher, public_usage: true}")
W = World("parity-privacy-", ["al1", "al2", "al3"], admin="lab", policy=policy)
check, req = W.check, W.req
W.start()


def commit(tag, salt_hex, data):
    return hashlib.sha256(b"parity-receipt-v1 " + tag + bytes.fromhex(salt_hex) + hashlib.sha256(data).digest()).hexdigest()


def public_bytes():
    """Every byte of the audit log's directory: the public tiles and checkpoint, and the journal
    of entries not yet in a tile (the same public entries)."""
    out = []
    for root, _, files in os.walk(os.path.join(W.data, "log", "audit")):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out.append(f.read())
    return b"\n".join(out)


# A prompt with a secret marker, from al2 (pseudonymous usage).
MARKER = "SECRET-MARKER-4f9d2c: the launch code is 0451"
chat = {"model": "tiny", "messages": [{"role": "user", "content": MARKER}], "max_tokens": 4, "seed": 1}
sent = json.dumps(chat).encode()
st, h, _, got = req("POST", "/v1/chat/completions", chat, key="al2")
idx, salt = h.get("parity-receipt"), h.get("parity-receipt-salt", "")
check(st == 200 and idx is not None and len(salt) == 64, "the caller gets its receipt index and a 32-byte salt: %s" % (h,))

# A mistyped fine-tuned model name carries the organisation's id: not in the public entry.
st, h2, _, _ = req("POST", "/v1/chat/completions", dict(chat, model="ft:tiny:al2:mine:ftjob-nope"), key="al2")
st2, _, r, _ = req("GET", "/v1/receipts/%s" % h2.get("parity-receipt"), key="al3")
check(st == 404 and st2 == 200 and r["entry"].get("unlisted_model") is True and "model" not in r["entry"],
      "an unlisted model name is not published: %s" % (r.get("entry"),))

# Another organisation: the public part only.
st, _, r, raw = req("GET", "/v1/receipts/%s" % idx, key="al3")
e = r.get("entry", {}) if r else {}
check(st == 200 and r["view"] == "public" and "private" not in r, "another organisation gets the public part only: %s" % (r,))
check("org" not in e and "key_id" not in e and len(e.get("org_pseudonym", "")) == 32 and
      len(e.get("key_pseudonym", "")) == 32, "the public entry names al2 and its key only by pseudonyms: %s" % (e,))
check(e.get("org_class") == "outsider" and e.get("route") == "chat_completions" and e.get("decision") == "allow" and
      e.get("model") == "tiny" and e.get("completion_tokens", 0) > 0 and e.get("time", "").endswith(":00Z"),
      "the public entry keeps what counting needs (class, route, decision, model, tokens, the minute): %s" % (e,))
plain = hashlib.sha256(sent).hexdigest()
check(plain.encode() not in raw and b"al2" not in raw and W.keys["al2"].split("_")[1].encode() not in raw,
      "the public receipt holds neither the body's plain SHA-256 nor the organisation or key id")
# The guessing attack: whoever guesses the prompt hashes it and looks for the digest.
pub = public_bytes()
check(e.get("request_commitment", "-").encode() in pub, "the scan below covers the entry")
check(plain.encode() not in pub and hashlib.sha256(sent).digest() not in pub,
      "the body's plain SHA-256 appears nowhere in the public audit log (hex or raw)")
check(hashlib.sha256(got).hexdigest().encode() not in pub, "nor does the response's")
check(b"al2" not in pub and MARKER.encode() not in pub,
      "nor the organisation's id (nor its grant's, which the public policy ties to it) or the prompt")

# Its own organisation: the full receipt; it opens the commitments with its salt.
st, _, r, _ = req("GET", "/v1/receipts/%s" % idx, key="al2")
p = r.get("private", {}) if r else {}
check(st == 200 and r["view"] == "full" and p.get("org") == "al2" and p.get("key_id") == W.keys["al2"].split("_")[1] and
      p.get("salt") == salt and p.get("grant") == "g-al2", "its own organisation gets the private part: %s" % (p,))
check(p.get("request_sha256") == plain and p.get("response_sha256") == hashlib.sha256(got).hexdigest(),
      "the private part holds the plain digests of the bytes sent and received")
check(r["entry"].get("request_commitment") == commit(b"request", salt, sent) and
      r["entry"].get("response_commitment") == commit(b"response", salt, got),
      "the caller verifies the public commitments from its salt and bytes")
check(commit(b"request", "00" * 32, sent) != r["entry"].get("request_commitment"), "a guess without the salt does not match")
st, _, r2, _ = req("GET", "/v1/receipts/%s" % idx, key="admin")
check(st == 200 and r2["view"] == "full" and r2["private"] == p, "an admin gets the full receipt")

# The organisation finds its entries by the pseudonyms GET /v1/access gives it.
st, _, a, _ = req("GET", "/v1/access", key="al2")
check(st == 200 and a["audit"]["org_pseudonym"] == e["org_pseudonym"] and a["audit"]["key_pseudonym"] == e["key_pseudonym"]
      and a["audit"]["public_usage"] is False, "GET /v1/access gives the organisation its pseudonyms: %s" % (a.get("audit"),))
st, _, a3, _ = req("GET", "/v1/access", key="al3")
check(a3["audit"]["org_pseudonym"] != e["org_pseudonym"], "another organisation has another pseudonym")

# public_usage: true — the entry names the organisation and its key id.
st, h, _, _ = req("POST", "/v1/chat/completions", chat, key="al1")
st, _, r, _ = req("GET", "/v1/receipts/%s" % h["parity-receipt"], key="al3")
e1 = r["entry"]
check(r["view"] == "public" and e1.get("org") == "al1" and e1.get("key_id") == W.keys["al1"].split("_")[1] and
      e1.get("grant") == "g-al1" and "org_pseudonym" not in e1, "a public_usage organisation's entries name it: %s" % (e1,))
check(req("GET", "/v1/access", key="al1")[2]["audit"]["public_usage"] is True, "GET /v1/access says its usage is public")

# A streamed response: the salt in the headers, the commitment over every byte streamed.
c = http.client.HTTPConnection("127.0.0.1", W.port, timeout=60)
c.request("POST", "/v1/chat/completions", body=json.dumps(dict(chat, stream=True)).encode(),
          headers={"Authorization": "Bearer " + W.keys["al2"], "Content-Type": "application/json"})
resp = c.getresponse()
ssalt, body = resp.getheader("Parity-Receipt-Salt", ""), resp.read()
c.close()
sidx = [ln.split()[-1] for ln in body.decode().splitlines() if ln.startswith(": parity-receipt ")]
st, _, r, _ = req("GET", "/v1/receipts/%s" % (sidx[0] if sidx else "x"), key="al2")
streamed = body[:body.index(b": parity-receipt")] if sidx else b""
check(len(ssalt) == 64 and st == 200 and r["private"]["salt"] == ssalt and
      r["entry"]["response_commitment"] == commit(b"response", ssalt, streamed),
      "a stream: salt header, and the commitment covers the bytes streamed before the receipt")

# The lab's pseudonym secret is private, and the pseudonyms survive a restart.
check(W.stop() == 0, "clean stop")
mode = stat.S_IMODE(os.stat(os.path.join(W.data, "private", "audit-pseudonym.key")).st_mode)
pmode = stat.S_IMODE(os.stat(os.path.join(W.data, "private", "audit-receipts")).st_mode)
check(mode == 0o600 and pmode == 0o600, "the secret and the private records are 0600 (%o, %o)" % (mode, pmode))
W.start()
st, _, a, _ = req("GET", "/v1/access", key="al2")
check(a["audit"]["org_pseudonym"] == e["org_pseudonym"], "the pseudonym is the same after a restart")
st, _, r, _ = req("GET", "/v1/receipts/%s" % idx, key="al2")
check(st == 200 and r["view"] == "full" and r["private"]["salt"] == salt, "the private part survives a restart")
check(W.stop() == 0, "clean stop")
vkey = run("log", "vkey", "--data", W.data, "--log", "audit").stdout.strip()
v = run("log", "verify", "--vkey", vkey, os.path.join(W.data, "log", "audit"), check=False)
check(v.returncode == 0, "the audit log verifies: %s" % v.stderr)
os.chmod(os.path.join(W.data, "private", "audit-pseudonym.key"), 0o600)
with open(os.path.join(W.data, "private", "audit-pseudonym.key"), "wb") as f:
    f.write(b"short")
r = run("serve", "--data", W.data, "--port", "0", check=False)
check(r.returncode != 0 and "audit-pseudonym.key" in r.stderr, "a damaged secret stops the start, named: %s" % r.stderr[-200:])

# The policy field: validated, in the canonical form only when true, in the diff.
pdir = os.path.join(W.tmp, "pol")
os.makedirs(pdir)
old, new = os.path.join(pdir, "old.yaml"), os.path.join(pdir, "new.yaml")
with open(old, "w") as f:
    f.write(W.policy.replace(", public_usage: true", ""))
with open(new, "w") as f:
    f.write(W.policy)
canon_old = run("policy", "canonical", old).stdout
canon_new = run("policy", "canonical", new).stdout
check("public_usage" not in canon_old and '"public_usage":true' in canon_new, "canonical form: the field only when true")
d = run("policy", "diff", old, new, check=False).stdout
check("organisation al1: usage pseudonymous -> public" in d, "the diff names the change: %s" % d)

sys.exit(W.summary("receipts privacy"))
