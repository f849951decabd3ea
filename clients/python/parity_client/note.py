"""C2SP signed notes (c2sp.org/signed-note), checkpoints (c2sp.org/tlog-checkpoint) and
Ed25519 cosignatures (c2sp.org/tlog-cosignature, cosignature/v1).

A note is text ending in a newline, a blank line, then signature lines
"\u2014 <name> <base64(key ID[4] || signature)>". Signatures by keys the verifier does not know
are kept (Checkpoint.signatures) and ignored, as the spec says; that is where a witness's
cosignature sits, checked by verify_cosignatures against a witness set and a quorum."""
import base64
import binascii
import hashlib

from . import ed25519

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "


class VerificationError(Exception):
    """A signature, proof, tile or report that does not check out; the message says which."""


def _b64(s, what):
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("%s: not base64: %r" % (what, s[:80]))


def key_id(name, alg, public):
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


class Verifier:
    """A verifier key "name+hex8(key ID)+base64(type byte || public key)": type 0x01 (a log's
    Ed25519 note key) or 0x04 (a witness's cosignature/v1 key)."""

    def __init__(self, vkey):
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
            raise VerificationError("verifier key %r: expected name+hex8+base64" % vkey)
        self.name = parts[0]
        raw = _b64(parts[2], "verifier key")
        if len(raw) != 33 or raw[0] not in (SIG_ED25519, SIG_COSIGNATURE_V1):
            raise VerificationError("verifier key %r: expected type 0x01 or 0x04 and a 32-byte Ed25519 key" % vkey)
        self.alg, self.public = raw[0], raw[1:]
        self.key_id = key_id(self.name, self.alg, self.public)
        if self.key_id.hex() != parts[1].lower():
            raise VerificationError("verifier key %r: its key ID is %s, not %s" % (vkey, self.key_id.hex(), parts[1]))
        self.vkey = vkey.strip()

    def __repr__(self):
        return "Verifier(%r)" % self.vkey


def make_vkey(name, public, alg=SIG_ED25519):
    """The verifier key string of an Ed25519 public key."""
    return "%s+%s+%s" % (name, key_id(name, alg, public).hex(), base64.b64encode(bytes([alg]) + public).decode())


class Signature:
    def __init__(self, name, kid, sig, line):
        self.name, self.key_id, self.sig, self.line = name, kid, sig, line

    def __repr__(self):
        return "Signature(%r, %s)" % (self.name, self.key_id.hex())


class Checkpoint:
    """A parsed checkpoint note. text: the signed body (origin, size, root, extension lines);
    signatures: every signature line, known key or not."""

    def __init__(self, note):
        if isinstance(note, bytes):
            try:
                note = note.decode("utf-8")
            except UnicodeDecodeError:
                raise VerificationError("checkpoint: not UTF-8")
        self.note = note
        sep = note.find("\n\n")
        if sep < 0:
            raise VerificationError("checkpoint: no blank line between the text and the signatures")
        self.text = note[:sep + 1]
        lines = self.text[:-1].split("\n")
        if len(lines) < 3:
            raise VerificationError("checkpoint: needs origin, size and root hash lines, got %d lines" % len(lines))
        self.origin = lines[0]
        if not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
            raise VerificationError("checkpoint: size %r is not a decimal without leading zeros" % lines[1])
        self.size = int(lines[1])
        self.root = _b64(lines[2], "checkpoint root hash")
        if len(self.root) != 32:
            raise VerificationError("checkpoint: root hash is %d bytes, not 32" % len(self.root))
        self.extensions = lines[3:]
        self.signatures = []
        rest = note[sep + 2:]
        if not rest.endswith("\n"):
            raise VerificationError("checkpoint: the signature block does not end in a newline")
        for line in rest[:-1].split("\n"):
            if not line.startswith(_DASH):
                raise VerificationError("checkpoint: %r is not a signature line" % line[:80])
            parts = line[len(_DASH):].split(" ")
            if len(parts) != 2:
                raise VerificationError("checkpoint: malformed signature line %r" % line[:80])
            raw = _b64(parts[1], "signature of " + parts[0])
            if len(raw) < 5:
                raise VerificationError("checkpoint: signature of %s is too short" % parts[0])
            self.signatures.append(Signature(parts[0], raw[:4], raw[4:], line))
        if not self.signatures:
            raise VerificationError("checkpoint: no signature")

    def verify(self, vkey):
        """Checks the log's own signature (vkey: the log's verifier key, a string or a
        Verifier): a signature line with its name and key ID must verify. Returns self."""
        v = vkey if isinstance(vkey, Verifier) else Verifier(vkey)
        if v.alg != SIG_ED25519:
            raise VerificationError("%s is a cosignature key, not a log key" % v.name)
        if v.name != self.origin:
            raise VerificationError("checkpoint: origin %r is not the key's name %r" % (self.origin, v.name))
        for s in self.signatures:
            if s.name == v.name and s.key_id == v.key_id:
                if len(s.sig) == 64 and ed25519.verify(v.public, self.text.encode(), s.sig):
                    return self
                raise VerificationError("checkpoint of %s (size %d): the signature does not verify" % (self.origin, self.size))
        raise VerificationError("checkpoint: no signature by %s (key ID %s)" % (v.name, v.key_id.hex()))

    def cosignatures(self, witnesses):
        """{witness name: timestamp} for each witness (Verifier of type 0x04, or vkey strings)
        whose cosignature/v1 on this checkpoint verifies. A line by a listed witness that does
        not verify is an error (it was forged or the checkpoint altered); lines by others are
        ignored, and so are a witness's lines after its first (as the server's cosig_find)."""
        good = {}
        for w in witnesses:
            v = w if isinstance(w, Verifier) else Verifier(w)
            if v.alg != SIG_COSIGNATURE_V1:
                raise VerificationError("%s: a witness key must be a cosignature/v1 key (type 0x04)" % v.name)
            for s in self.signatures:
                if s.name != v.name or s.key_id != v.key_id:
                    continue
                if v.name in good:
                    break
                if len(s.sig) != 72:
                    raise VerificationError("cosignature by %s: %d bytes, expected 8 + 64" % (v.name, len(s.sig)))
                ts = int.from_bytes(s.sig[:8], "big")
                if not 0 < ts < 2 ** 63 or not ed25519.verify(v.public, cosigned_message(self.text, ts), s.sig[8:]):
                    raise VerificationError("cosignature by %s on %s size %d does not verify" % (v.name, self.origin, self.size))
                good[v.name] = ts
        return good

    def verify_witnesses(self, witnesses, quorum):
        """Requires at least quorum valid cosignatures from the witness set; returns them."""
        good = self.cosignatures(witnesses)
        if len(good) < quorum:
            raise VerificationError("checkpoint of %s size %d: %d of the required %d witness cosignatures (%s)" % (
                self.origin, self.size, len(good), quorum, ", ".join(sorted(good)) or "none"))
        return good


def cosigned_message(text, timestamp):
    return b"cosignature/v1\ntime %d\n" % timestamp + text.encode()


def sign_note(text, name, secret):
    """A signature line of text by a log key (for tests and tools)."""
    kid = key_id(name, SIG_ED25519, ed25519.public_key(secret))
    return _DASH + name + " " + base64.b64encode(kid + ed25519.sign(secret, text.encode())).decode() + "\n"


def cosign(checkpoint, name, secret, timestamp):
    """A witness's cosignature/v1 line on a checkpoint (a Checkpoint or its note text)."""
    cp = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint(checkpoint)
    kid = key_id(name, SIG_COSIGNATURE_V1, ed25519.public_key(secret))
    sig = ed25519.sign(secret, cosigned_message(cp.text, timestamp))
    return _DASH + name + " " + base64.b64encode(kid + timestamp.to_bytes(8, "big") + sig).decode() + "\n"
