/* note.c — C2SP signed-note and tlog-checkpoint. See note.h. */
#include "tlog/note.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/sha256.h"
#include "common/util.h"

static const char EM_DASH[] = "\xE2\x80\x94"; /* U+2014 */

/* Decodes one UTF-8 code point at s[0..n); returns its length (1..4) or 0 if malformed
 * (overlong forms, surrogates and values past U+10FFFF are malformed). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) len = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int unicode_space(uint32_t c) {
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

int note_name_ok(const char *name, size_t len) {
    if (len == 0 || len > NOTE_MAX_NAME) return 0;
    const unsigned char *s = (const unsigned char *)name;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t k = utf8_decode(s + i, len - i, &c);
        if (!k || c < 0x20 || c == 0x7F || c == '+' || unicode_space(c)) return 0;
        i += k;
    }
    return 1;
}

uint32_t note_key_id(const char *name, uint8_t alg, const uint8_t pub[32]) {
    pt_sha256_ctx st;
    uint8_t h[32], nl = '\n';
    pt_sha256_init(&st);
    pt_sha256_update(&st, name, strlen(name));
    pt_sha256_update(&st, &nl, 1);
    pt_sha256_update(&st, &alg, 1);
    pt_sha256_update(&st, pub, 32);
    pt_sha256_final(&st, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* Strict standard base64 of exactly s[0..n) into out (at most max bytes). 0 or -1. */
int note_b64_decode(const char *s, size_t n, uint8_t *out, size_t max, size_t *out_len) {
    const char *end = NULL;
    if (n == 0) return -1;
    if (sodium_base642bin(out, max, s, n, NULL, out_len, &end, sodium_base64_VARIANT_ORIGINAL) != 0) return -1;
    return end == s + n ? 0 : -1;
}

char *note_b64_encode(const uint8_t *p, size_t n) {
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (s) sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

/* Splits "NAME+HEX8+BASE64" keys. Names cannot contain '+' but base64 can, so the fields are
 * found from the left. */
static int split_key(const char *key, const char **name, size_t *name_len, const char **hex,
                     const char **b64, pt_err *err, const char *what) {
    const char *p1 = strchr(key, '+');
    const char *p2 = p1 ? strchr(p1 + 1, '+') : NULL;
    if (!p1 || !p2 || p2 - p1 != 9) return pt_errf(err, PT_EFORMAT, "%s: expected NAME+HEX8+BASE64", what);
    *name = key;
    *name_len = (size_t)(p1 - key);
    *hex = p1 + 1;
    *b64 = p2 + 1;
    if (!note_name_ok(key, *name_len)) return pt_errf(err, PT_EFORMAT, "%s: invalid key name", what);
    return PT_OK;
}

int note_key_parse(const char *key, uint8_t alg, char name_out[NOTE_MAX_NAME + 1], uint32_t *id,
                   uint8_t material[32], pt_err *err, const char *what) {
    const char *name = NULL, *hex = NULL, *b64 = NULL;
    size_t nlen = 0;
    int rc = split_key(key, &name, &nlen, &hex, &b64, err, what);
    if (rc) return rc;
    uint8_t idb[4];
    char hexbuf[9];
    memcpy(hexbuf, hex, 8);
    hexbuf[8] = 0;
    for (int i = 0; i < 8; i++)
        if (!((hexbuf[i] >= '0' && hexbuf[i] <= '9') || (hexbuf[i] >= 'a' && hexbuf[i] <= 'f')))
            return pt_errf(err, PT_EFORMAT, "%s: key ID '%s' is not 8 lower-case hex digits", what, hexbuf);
    if (pt_unhex(hexbuf, idb, 4) != 0) return pt_errf(err, PT_EFORMAT, "%s: bad key ID", what);
    uint8_t raw[64];
    size_t rawlen;
    if (note_b64_decode(b64, strlen(b64), raw, sizeof raw, &rawlen) != 0 || rawlen != 33)
        return pt_errf(err, PT_EFORMAT, "%s: key data is not base64 of 33 bytes", what);
    if (raw[0] != alg)
        return pt_errf(err, PT_EUNSUPPORTED, "%s: key algorithm %u is not %s (%u)", what, raw[0],
                       alg == 0x01 ? "Ed25519" : "cosignature/v1", alg);
    memcpy(name_out, name, nlen);
    name_out[nlen] = 0;
    memcpy(material, raw + 1, 32);
    *id = (uint32_t)idb[0] << 24 | (uint32_t)idb[1] << 16 | (uint32_t)idb[2] << 8 | idb[3];
    sodium_memzero(raw, sizeof raw);
    return PT_OK;
}

int note_verifier_parse(const char *vkey, note_verifier *v, pt_err *err) {
    memset(v, 0, sizeof *v);
    int rc = note_key_parse(vkey, 0x01, v->name, &v->key_id, v->pub, err, "verifier key");
    if (rc) return rc;
    if (note_key_id(v->name, 0x01, v->pub) != v->key_id)
        return pt_errf(err, PT_EFORMAT, "verifier key: key ID %08x does not match the key", v->key_id);
    return PT_OK;
}

int note_signer_parse(const char *skey, note_signer *s, pt_err *err) {
    memset(s, 0, sizeof *s);
    if (strncmp(skey, "PRIVATE+KEY+", 12) != 0)
        return pt_errf(err, PT_EFORMAT, "signer key: does not start with PRIVATE+KEY+");
    uint8_t seed[32];
    int rc = note_key_parse(skey + 12, 0x01, s->name, &s->key_id, seed, err, "signer key");
    if (rc) return rc;
    crypto_sign_seed_keypair(s->pub, s->sk, seed);
    sodium_memzero(seed, sizeof seed);
    if (note_key_id(s->name, 0x01, s->pub) != s->key_id)
        return pt_errf(err, PT_EFORMAT, "signer key: key ID %08x does not match the key", s->key_id);
    return PT_OK;
}

char *note_key_format(const char *prefix, const char *name, uint8_t alg, uint32_t id, const uint8_t material[32]) {
    uint8_t raw[33];
    raw[0] = alg;
    memcpy(raw + 1, material, 32);
    char *b = note_b64_encode(raw, 33);
    sodium_memzero(raw, sizeof raw);
    if (!b) return NULL;
    pt_buf out;
    pt_buf_init(&out, 4096);
    int rc = pt_buf_printf(&out, "%s%s+%08x+%s", prefix, name, id, b);
    sodium_memzero(b, strlen(b));
    free(b);
    if (rc) {
        pt_buf_free(&out);
        return NULL;
    }
    return pt_buf_steal(&out, NULL);
}

char *note_signer_vkey(const note_signer *s) { return note_key_format("", s->name, 0x01, s->key_id, s->pub); }

int note_generate_alg(const char *name, uint8_t alg, char **skey, char **vkey, pt_err *err) {
    *skey = *vkey = NULL;
    if (sodium_init() < 0) return pt_errf(err, PT_EINTERNAL, "libsodium failed to initialise");
    if (!note_name_ok(name, strlen(name))) return pt_errf(err, PT_EINVAL, "key name '%s' is not valid", name);
    uint8_t pub[32], sk[64];
    crypto_sign_keypair(pub, sk);
    uint32_t id = note_key_id(name, alg, pub);
    *skey = note_key_format("PRIVATE+KEY+", name, alg, id, sk); /* sk[0..32) is the seed */
    *vkey = note_key_format("", name, alg, id, pub);
    sodium_memzero(sk, sizeof sk);
    if (!*skey || !*vkey) {
        free(*skey);
        free(*vkey);
        *skey = *vkey = NULL;
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    return PT_OK;
}

int note_generate(const char *name, char **skey, char **vkey, pt_err *err) {
    return note_generate_alg(name, 0x01, skey, vkey, err);
}

/* Valid UTF-8 without control characters other than '\n'; returns the offset of the first
 * bad byte, or len. */
static size_t check_text(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t k = utf8_decode(u + i, len - i, &c);
        if (!k || (c < 0x20 && c != '\n') || c == 0x7F) return i;
        i += k;
    }
    return len;
}

int note_sign(const char *text, size_t len, const note_signer *s, char **out, size_t *out_len, pt_err *err) {
    *out = NULL;
    if (len == 0 || text[len - 1] != '\n') return pt_errf(err, PT_EINVAL, "note text must end with a newline");
    if (check_text(text, len) != len) return pt_errf(err, PT_EINVAL, "note text has invalid UTF-8 or control characters");
    uint8_t sig[4 + 64];
    sig[0] = (uint8_t)(s->key_id >> 24), sig[1] = (uint8_t)(s->key_id >> 16);
    sig[2] = (uint8_t)(s->key_id >> 8), sig[3] = (uint8_t)s->key_id;
    crypto_sign_detached(sig + 4, NULL, (const uint8_t *)text, len, s->sk);
    char *b = note_b64_encode(sig, sizeof sig);
    if (!b) return pt_errf(err, PT_ENOMEM, "out of memory");
    pt_buf o;
    pt_buf_init(&o, len + 1024);
    int rc = pt_buf_append(&o, text, len);
    if (!rc) rc = pt_buf_printf(&o, "\n%s %s %s\n", EM_DASH, s->name, b);
    free(b);
    if (rc) {
        pt_buf_free(&o);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    *out = pt_buf_steal(&o, out_len);
    return PT_OK;
}

int note_open(const char *msg, size_t len, const note_verifier *vs, size_t nv, size_t *text_len,
              size_t *verified, pt_err *err) {
    if (verified) *verified = 0;
    size_t bad = check_text(msg, len);
    if (bad != len)
        return pt_errf(err, PT_EFORMAT, "note: invalid UTF-8 or a control character at offset %zu", bad);
    /* The text ends at the last blank line: it may itself contain blank lines. */
    size_t split = len;
    for (size_t i = len; i >= 2; i--)
        if (msg[i - 1] == '\n' && msg[i - 2] == '\n') {
            split = i - 2;
            break;
        }
    if (split == len) return pt_errf(err, PT_EFORMAT, "note: no blank line before the signatures");
    if (split == 0) return pt_errf(err, PT_EFORMAT, "note: empty text");
    size_t tlen = split + 1;
    const char *p = msg + split + 2, *end = msg + len;
    if (p == end) return pt_errf(err, PT_EFORMAT, "note: no signature lines");
    if (end[-1] != '\n') return pt_errf(err, PT_EFORMAT, "note: signature block does not end with a newline");
    size_t nsig = 0, good = 0;
    uint32_t seen[NOTE_MAX_SIGS];
    size_t seen_v[NOTE_MAX_SIGS];
    size_t nseen = 0;
    while (p < end) {
        size_t off = (size_t)(p - msg);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (++nsig > NOTE_MAX_SIGS) return pt_errf(err, PT_EFORMAT, "note: more than %d signatures", NOTE_MAX_SIGS);
        if ((size_t)(nl - p) < 4 || memcmp(p, EM_DASH, 3) != 0 || p[3] != ' ')
            return pt_errf(err, PT_EFORMAT, "note: signature line at offset %zu does not start with \"\xE2\x80\x94 \"", off);
        const char *name = p + 4;
        const char *sp = memchr(name, ' ', (size_t)(nl - name));
        if (!sp) return pt_errf(err, PT_EFORMAT, "note: signature line at offset %zu has no signature", off);
        size_t nlen = (size_t)(sp - name);
        if (!note_name_ok(name, nlen)) return pt_errf(err, PT_EFORMAT, "note: bad key name at offset %zu", off + 4);
        uint8_t sig[512];
        size_t siglen;
        if (note_b64_decode(sp + 1, (size_t)(nl - sp - 1), sig, sizeof sig, &siglen) != 0 || siglen < 5)
            return pt_errf(err, PT_EFORMAT, "note: bad base64 signature at offset %zu", (size_t)(sp + 1 - msg));
        uint32_t id = (uint32_t)sig[0] << 24 | (uint32_t)sig[1] << 16 | (uint32_t)sig[2] << 8 | sig[3];
        for (size_t i = 0; i < nv; i++) {
            if (vs[i].key_id != id || strlen(vs[i].name) != nlen || memcmp(vs[i].name, name, nlen) != 0) continue;
            int dup = 0; /* only the first signature by a key counts */
            for (size_t j = 0; j < nseen; j++) dup |= seen[j] == id && seen_v[j] == i;
            if (dup) break;
            seen[nseen] = id, seen_v[nseen++] = i;
            if (siglen != 4 + 64 ||
                crypto_sign_verify_detached(sig + 4, (const uint8_t *)msg, tlen, vs[i].pub) != 0)
                return pt_errf(err, PT_EVERIFY, "note: invalid signature by key %s+%08x (offset %zu)",
                               vs[i].name, id, off);
            good++;
            break;
        }
        p = nl + 1;
    }
    if (good == 0) return pt_errf(err, PT_EVERIFY, "note: no signature by a trusted key (%zu signature(s) by unknown keys)", nsig);
    *text_len = tlen;
    if (verified) *verified = good;
    return PT_OK;
}

int checkpoint_parse(const char *text, size_t len, checkpoint *c, pt_err *err) {
    memset(c, 0, sizeof *c);
    if (len == 0 || text[len - 1] != '\n') return pt_errf(err, PT_EFORMAT, "checkpoint: text does not end with a newline");
    const char *lines[3];
    size_t lens[3];
    const char *p = text, *end = text + len;
    for (int i = 0; i < 3; i++) {
        if (p >= end) return pt_errf(err, PT_EFORMAT, "checkpoint: missing line %d (%s)", i + 1, i == 0 ? "origin" : i == 1 ? "size" : "root hash");
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        lines[i] = p;
        lens[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (lens[0] == 0) return pt_errf(err, PT_EFORMAT, "checkpoint: empty origin line");
    if (lens[0] >= sizeof c->origin) return pt_errf(err, PT_EFORMAT, "checkpoint: origin longer than %zu bytes", sizeof c->origin - 1);
    memcpy(c->origin, lines[0], lens[0]);
    size_t off = (size_t)(lines[1] - text);
    if (lens[1] == 0 || lens[1] > 20 || (lens[1] > 1 && lines[1][0] == '0'))
        return pt_errf(err, PT_EFORMAT, "checkpoint: line 2 (offset %zu) is not a decimal size without leading zeros", off);
    uint64_t v = 0;
    for (size_t i = 0; i < lens[1]; i++) {
        char ch = lines[1][i];
        if (ch < '0' || ch > '9' || v > (UINT64_MAX - (uint64_t)(ch - '0')) / 10)
            return pt_errf(err, PT_EFORMAT, "checkpoint: line 2 (offset %zu) is not a decimal size", off);
        v = v * 10 + (uint64_t)(ch - '0');
    }
    c->size = v;
    size_t rl;
    uint8_t root[64];
    if (note_b64_decode(lines[2], lens[2], root, sizeof root, &rl) != 0 || rl != 32)
        return pt_errf(err, PT_EFORMAT, "checkpoint: line 3 (offset %zu) is not a base64 32-byte root hash",
                       (size_t)(lines[2] - text));
    memcpy(c->root, root, 32);
    while (p < end) { /* extension lines: any, but not empty */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == p) return pt_errf(err, PT_EFORMAT, "checkpoint: empty extension line at offset %zu", (size_t)(p - text));
        p = nl + 1;
    }
    return PT_OK;
}

char *checkpoint_format(const char *origin, uint64_t size, const uint8_t root[32]) {
    char *b = note_b64_encode(root, 32);
    if (!b) return NULL;
    pt_buf o;
    pt_buf_init(&o, strlen(origin) + 128);
    int rc = pt_buf_printf(&o, "%s\n%llu\n%s\n", origin, (unsigned long long)size, b);
    free(b);
    if (rc) {
        pt_buf_free(&o);
        return NULL;
    }
    return pt_buf_steal(&o, NULL);
}
