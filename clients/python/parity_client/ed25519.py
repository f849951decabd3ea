"""Ed25519 (RFC 8032, section 5.1) in pure Python: verify, and sign for tests and witnesses.

The standard library has no Ed25519, and this client must not depend on anything else, so this
is a plain transcription of RFC 8032: points in extended homogeneous coordinates (5.1.4),
decoding with the square-root computation of 5.1.3, verification by the cofactorless equation
[S]B = R + [k]A of 5.1.7 (what libsodium, Go and the RFC's own code check), with S < L
enforced. It is not constant-time: verifying public signatures needs no secret; `sign` is for
tests and for a witness key that lives on the client's own machine."""
import hashlib

P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _sha512_int(*parts):
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return int.from_bytes(h.digest(), "little")


def _add(a, b):
    """Point addition in extended coordinates (X, Y, Z, T), RFC 8032 5.1.4."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(s, pt):
    q = (0, 1, 1, 0)  # the neutral element
    while s > 0:
        if s & 1:
            q = _add(q, pt)
        pt = _add(pt, pt)
        s >>= 1
    return q


def _equal(a, b):
    x1, y1, z1, _ = a
    x2, y2, z2, _ = b
    return (x1 * z2 - x2 * z1) % P == 0 and (y1 * z2 - y2 * z1) % P == 0


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


_GY = 4 * pow(5, P - 2, P) % P
_GX = _recover_x(_GY, 0)
G = (_GX, _GY, 1, _GX * _GY % P)


def _compress(pt):
    x, y, z, _ = pt
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _decompress(b):
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _secret_expand(secret):
    if len(secret) != 32:
        raise ValueError("an Ed25519 secret key is 32 bytes")
    h = hashlib.sha512(secret).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public_key(secret):
    """The 32-byte public key of a 32-byte secret key (seed)."""
    a, _ = _secret_expand(secret)
    return _compress(_mul(a, G))


def sign(secret, msg):
    """The 64-byte signature of msg by the 32-byte secret key (RFC 8032 5.1.6)."""
    a, prefix = _secret_expand(secret)
    pub = _compress(_mul(a, G))
    r = _sha512_int(prefix, msg) % L
    rs = _compress(_mul(r, G))
    k = _sha512_int(rs, pub, msg) % L
    s = (r + k * a) % L
    return rs + s.to_bytes(32, "little")


def verify(public, msg, signature):
    """True if signature (64 bytes) is a valid signature of msg by public (32 bytes); False for
    anything else, malformed keys and signatures included (RFC 8032 5.1.7)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decompress(public)
    r = _decompress(signature[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = _sha512_int(signature[:32], public, msg) % L
    return _equal(_mul(s, G), _add(r, _mul(k, a)))
