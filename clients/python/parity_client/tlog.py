"""RFC 6962 / RFC 9162 Merkle trees over a C2SP tlog-tiles log read over HTTP.

Everything here checks, nothing trusts: hashes read from tiles only ever go into proofs that
are then verified against a root whose checkpoint signature was checked (the way Go's
sumdb/tlog reads tiles), so a lying server fails verification instead of fooling the client."""
import base64
import hashlib
import urllib.error
import urllib.request

from .note import Checkpoint, VerificationError

HASH = 32
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n):
    """The largest power of two strictly below n (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root_of(leaf_hashes):
    """MTH of a list of leaf hashes (RFC 6962 2.1)."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    level = list(leaf_hashes)
    # bottom-up with the odd node carried up: the same tree as the recursive definition
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _hashes(what, hs):
    for h in hs:
        if not isinstance(h, bytes) or len(h) != HASH:
            raise VerificationError("%s: a hash of %d bytes, not %d" % (what, len(h), HASH))


def verify_inclusion(index, size, leaf, proof, root):
    """RFC 9162 2.1.3.2. Raises VerificationError unless leaf is at index of the tree of size
    `size` with root `root`."""
    _hashes("inclusion", [leaf, root] + list(proof))
    if index >= size:
        raise VerificationError("inclusion: index %d is not below the tree size %d" % (index, size))
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof of %d in %d: too long" % (index, size))
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise VerificationError("inclusion proof of entry %d in a tree of size %d does not lead to the root" % (index, size))


def verify_consistency(size1, size2, root1, root2, proof):
    """RFC 9162 2.1.4.2. Raises VerificationError unless the tree of size1 with root1 is a
    prefix of the tree of size2 with root2."""
    _hashes("consistency", list(proof))
    if size1 == 0:
        raise VerificationError("consistency from the empty tree is not a proof (RFC 9162 2.1.4.2)")
    if size1 > size2:
        raise VerificationError("consistency: the old size %d is larger than the new %d" % (size1, size2))
    if size1 == size2:
        if proof or root1 != root2:
            raise VerificationError("consistency: two trees of size %d with different roots (a fork)" % size1)
        return
    if size1 & (size1 - 1) == 0:
        proof = [root1] + list(proof)
    if not proof:
        raise VerificationError("consistency proof %d -> %d: empty" % (size1, size2))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise VerificationError("consistency proof %d -> %d: too long" % (size1, size2))
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise VerificationError("the tree of size %d is not a prefix of the tree of size %d (consistency proof fails)" % (size1, size2))


def tile_path(level, index, width=TILE_WIDTH):
    """C2SP tlog-tiles path: tile/<L>/<N>[.p/<W>], N in 3-digit groups prefixed with x."""
    groups = []
    n = index
    while True:
        groups.append("%03d" % (n % 1000))
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    name = "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])
    lv = "entries" if level == "entries" else str(level)
    return "tile/%s/%s%s" % (lv, name, "" if width == TILE_WIDTH else ".p/%d" % width)


class NotFound(VerificationError):
    """A file the log does not publish (HTTP 404)."""


def http_fetch(base):
    """A fetch(path) -> bytes for a log published under the URL prefix `base`."""
    base = base.rstrip("/") + "/"

    def fetch(path):
        try:
            with urllib.request.urlopen(base + path, timeout=60) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            raise (NotFound if e.code == 404 else VerificationError)("%s%s: HTTP %d" % (base, path, e.code))
    return fetch


class Log:
    """A tlog-tiles log at `fetch` (a function path -> bytes, or a URL prefix) whose checkpoints
    are signed by vkey. log.checkpoint() fetches and verifies the latest one; the other methods
    read the tiles of a tree of a given (verified) size."""

    def __init__(self, source, vkey, witnesses=(), quorum=0):
        self.fetch = http_fetch(source) if isinstance(source, str) else source
        self.vkey = vkey
        self.witnesses, self.quorum = list(witnesses), quorum
        self._tiles = {}

    def checkpoint(self, text=None):
        """Parses and verifies a checkpoint (the published one when text is None): the log's
        signature, and the witness quorum when one is configured."""
        cp = Checkpoint(self.fetch("checkpoint") if text is None else text)
        cp.verify(self.vkey)
        if self.quorum:
            cp.verify_witnesses(self.witnesses, self.quorum)
        return cp

    # -- tiles --
    def _tile(self, level, index, size):
        """The hashes (or entries for level "entries") of tile index at level for a tree of size."""
        count = size >> (TILE_HEIGHT * (0 if level == "entries" else level))
        if index * TILE_WIDTH >= count:
            raise VerificationError("tile %s/%d is beyond a tree of size %d" % (level, index, size))
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        key = (level, index, width)
        if key not in self._tiles:
            path = tile_path(level, index, width)
            data = self.fetch(path)
            if level == "entries":
                entries, off = [], 0
                while off < len(data):
                    if off + 2 > len(data):
                        raise VerificationError("%s: truncated entry length at byte %d" % (path, off))
                    n = int.from_bytes(data[off:off + 2], "big")
                    if off + 2 + n > len(data):
                        raise VerificationError("%s: entry %d runs past the end (byte %d)" % (path, len(entries), off))
                    entries.append(data[off + 2:off + 2 + n])
                    off += 2 + n
                if len(entries) != width:
                    raise VerificationError("%s: %d entries, expected %d" % (path, len(entries), width))
                self._tiles[key] = entries
            else:
                if len(data) != width * HASH:
                    raise VerificationError("%s: %d bytes, expected %d" % (path, len(data), width * HASH))
                self._tiles[key] = [data[i:i + HASH] for i in range(0, len(data), HASH)]
        return self._tiles[key]

    def hash_at(self, level, index, size):
        """The hash of the complete subtree at (level, index) of a tree of size `size`, from the
        tiles: tile level level // 8 holds level 8L; the levels between are hashed here."""
        if (index + 1) << level > size:
            raise VerificationError("node (%d, %d) is not complete in a tree of size %d" % (level, index, size))
        tl, k = divmod(level, TILE_HEIGHT)
        first = index << k
        hs = self._tile(tl, first >> TILE_HEIGHT, size)
        off = first & (TILE_WIDTH - 1)
        row = hs[off:off + (1 << k)]
        while len(row) > 1:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        return row[0]

    def subtree(self, a, b, size):
        """MTH(D[a:b]) for a subtree of the RFC 6962 recursion in a tree of size `size`."""
        n = b - a
        if n & (n - 1) == 0 and a % n == 0:
            return self.hash_at(n.bit_length() - 1, a // n, size)
        k = _split(n)
        return node_hash(self.subtree(a, a + k, size), self.subtree(a + k, b, size))

    def root(self, size):
        return self.subtree(0, size, size) if size else hashlib.sha256(b"").digest()

    def inclusion_proof(self, index, size):
        def path(m, a, b):
            if b - a == 1:
                return []
            k = _split(b - a)
            if m - a < k:
                return path(m, a, a + k) + [self.subtree(a + k, b, size)]
            return path(m, a + k, b) + [self.subtree(a, a + k, size)]
        return path(index, 0, size)

    def consistency_proof(self, old, size):
        def sub(m, a, b, start):
            if m == b - a:
                return [] if start else [self.subtree(a, b, size)]
            k = _split(b - a)
            if m <= k:
                return sub(m, a, a + k, start) + [self.subtree(a + k, b, size)]
            return sub(m - k, a + k, b, False) + [self.subtree(a, a + k, size)]
        return sub(old, 0, size, True) if 0 < old < size else []

    def entry(self, index, size):
        """The bytes of entry index, from its entry bundle, in a tree of size `size`."""
        return self._tile("entries", index >> TILE_HEIGHT, size)[index & (TILE_WIDTH - 1)]

    def entries(self, cp):
        """Every entry of the verified checkpoint cp, checked: their leaf hashes must make cp's
        root (the bundles cannot hold anything the signed tree does not)."""
        out = [self.entry(i, cp.size) for i in range(cp.size)]
        if root_of([leaf_hash(e) for e in out]) != cp.root:
            raise VerificationError("the entry bundles of %s do not hash to the signed root of size %d" % (cp.origin, cp.size))
        return out

    # -- checks --
    def prove_included(self, index, leaf, cp):
        """Checks that leaf (a leaf hash) is entry index of the verified checkpoint cp, with a
        proof computed from the tiles."""
        verify_inclusion(index, cp.size, leaf, self.inclusion_proof(index, cp.size), cp.root)

    def prove_consistent(self, old, new):
        """Checks that the verified checkpoint old is a prefix of the verified checkpoint new
        (same log), with a proof computed from new's tiles. Returns the proof."""
        if old.origin != new.origin:
            raise VerificationError("consistency: checkpoints of two logs (%s, %s)" % (old.origin, new.origin))
        if old.size > new.size:
            raise VerificationError("consistency: the old checkpoint (size %d) is larger than the new (%d): a rollback" % (old.size, new.size))
        if old.size == 0:  # every tree extends the empty one, whose root is SHA-256("")
            if old.root != hashlib.sha256(b"").digest():
                raise VerificationError("consistency: a checkpoint of size 0 with a root that is not the empty tree's")
            return []
        proof = self.consistency_proof(old.size, new.size)
        verify_consistency(old.size, new.size, old.root, new.root, proof)
        return proof


def b64hashes(items):
    out = []
    for s in items:
        h = base64.b64decode(s)
        if len(h) != HASH:
            raise VerificationError("a proof hash is %d bytes, not 32" % len(h))
        out.append(h)
    return out
