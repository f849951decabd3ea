"""RFC 6962 / RFC 9162 Merkle hashing and proof verification in plain Python: the independent
reference the transparency-log and server tests check parity's proofs against."""
import hashlib


def leaf(d):
    return hashlib.sha256(b"\x00" + d).digest()


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def mth(hs):
    if not hs:
        return hashlib.sha256(b"").digest()
    if len(hs) == 1:
        return hs[0]
    k = 1
    while k * 2 < len(hs):
        k *= 2
    return node(mth(hs[:k]), mth(hs[k:]))


def verify_inclusion(idx, size, lh, proof, root):  # RFC 9162 2.1.3.2
    if idx >= size:
        return False
    fn, sn, r = idx, size - 1, lh
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(s1, s2, r1, r2, proof):  # RFC 9162 2.1.4.2
    if s1 == s2:
        return not proof and r1 == r2
    if s1 & (s1 - 1) == 0:
        proof = [r1] + proof
    fn, sn = s1 - 1, s2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == r1 and sr == r2 and sn == 0
