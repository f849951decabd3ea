/* cosig.c — C2SP tlog-cosignature (cosignature/v1). See cosig.h. */
#include "tlog/cosig.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "tlog/note.h"

static const char EM_DASH[] = "\xE2\x80\x94";

int cosig_generate(const char *name, char **skey, char **vkey, pt_err *err) {
    if (!note_name_ok(name, strlen(name))) return pt_errf(err, PT_EINVAL, "witness name '%s' is not a valid key name", name);
    return note_generate_alg(name, COSIG_ALG, skey, vkey, err);
}

int cosig_signer_parse(const char *skey, cosig_signer *s, pt_err *err) {
    memset(s, 0, sizeof *s);
    if (strncmp(skey, "PRIVATE+KEY+", 12) != 0)
        return pt_errf(err, PT_EFORMAT, "witness key: does not start with PRIVATE+KEY+");
    uint8_t seed[32];
    int rc = note_key_parse(skey + 12, COSIG_ALG, s->name, &s->key_id, seed, err, "witness key");
    if (rc) return rc;
    crypto_sign_seed_keypair(s->pub, s->sk, seed);
    sodium_memzero(seed, sizeof seed);
    if (note_key_id(s->name, COSIG_ALG, s->pub) != s->key_id)
        return pt_errf(err, PT_EFORMAT, "witness key: key ID %08x does not match the key", s->key_id);
    return PT_OK;
}

int cosig_verifier_parse(const char *vkey, cosig_verifier *v, pt_err *err) {
    memset(v, 0, sizeof *v);
    pt_err e;
    int rc = note_key_parse(vkey, COSIG_ALG, v->name, &v->key_id, v->pub, &e, "witness verifier key");
    if (rc) return pt_errf(err, PT_EFORMAT, "%s", e.msg); /* an Ed25519 log key too: not a witness key */
    if (note_key_id(v->name, COSIG_ALG, v->pub) != v->key_id)
        return pt_errf(err, PT_EFORMAT, "witness verifier key: key ID %08x does not match the key", v->key_id);
    return PT_OK;
}

char *cosig_signer_vkey(const cosig_signer *s) { return note_key_format("", s->name, COSIG_ALG, s->key_id, s->pub); }

/* "cosignature/v1\ntime T\n" ‖ text, the message a cosignature signs. */
static uint8_t *signed_message(const char *text, size_t len, uint64_t t, size_t *mlen) {
    char head[64];
    int h = snprintf(head, sizeof head, "cosignature/v1\ntime %llu\n", (unsigned long long)t);
    uint8_t *m = malloc((size_t)h + len);
    if (!m) return NULL;
    memcpy(m, head, (size_t)h);
    memcpy(m + h, text, len);
    *mlen = (size_t)h + len;
    return m;
}

int cosig_sign(const char *text, size_t len, uint64_t t, const cosig_signer *s, char **line, pt_err *err) {
    *line = NULL;
    size_t mlen;
    uint8_t *m = signed_message(text, len, t, &mlen);
    if (!m) return pt_errf(err, PT_ENOMEM, "out of memory");
    uint8_t sig[4 + 8 + 64];
    for (int i = 0; i < 4; i++) sig[i] = (uint8_t)(s->key_id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) sig[4 + i] = (uint8_t)(t >> (56 - 8 * i));
    crypto_sign_detached(sig + 12, NULL, m, mlen, s->sk);
    free(m);
    char *b = note_b64_encode(sig, sizeof sig);
    if (!b) return pt_errf(err, PT_ENOMEM, "out of memory");
    pt_buf o;
    pt_buf_init(&o, 4096);
    int rc = pt_buf_printf(&o, "%s %s %s\n", EM_DASH, s->name, b);
    free(b);
    if (rc) {
        pt_buf_free(&o);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    *line = pt_buf_steal(&o, NULL);
    return PT_OK;
}

size_t cosig_text_len(const char *note, size_t len) {
    for (size_t i = len; i >= 2; i--)
        if (note[i - 1] == '\n' && note[i - 2] == '\n') return i - 1;
    return 0;
}

int cosig_find(const char *note, size_t len, const cosig_verifier *vs, size_t nv, uint64_t *times, size_t *found,
               pt_err *err) {
    for (size_t i = 0; i < nv; i++) times[i] = 0;
    if (found) *found = 0;
    size_t tlen = cosig_text_len(note, len);
    if (tlen < 2) return pt_errf(err, PT_EFORMAT, "note: no blank line before the signatures");
    const char *p = note + tlen + 1, *end = note + len;
    if (p >= end || end[-1] != '\n') return pt_errf(err, PT_EFORMAT, "note: no signature lines");
    size_t good = 0;
    while (p < end) {
        size_t off = (size_t)(p - note);
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if ((size_t)(nl - p) < 4 || memcmp(p, EM_DASH, 3) != 0 || p[3] != ' ')
            return pt_errf(err, PT_EFORMAT, "note: signature line at offset %zu does not start with \"\xE2\x80\x94 \"", off);
        const char *name = p + 4, *sp = memchr(name, ' ', (size_t)(nl - name));
        if (!sp) return pt_errf(err, PT_EFORMAT, "note: signature line at offset %zu has no signature", off);
        size_t nlen = (size_t)(sp - name), siglen;
        uint8_t sig[512];
        if (note_b64_decode(sp + 1, (size_t)(nl - sp - 1), sig, sizeof sig, &siglen) != 0 || siglen < 5)
            return pt_errf(err, PT_EFORMAT, "note: bad base64 signature at offset %zu", (size_t)(sp + 1 - note));
        uint32_t id = (uint32_t)sig[0] << 24 | (uint32_t)sig[1] << 16 | (uint32_t)sig[2] << 8 | sig[3];
        for (size_t i = 0; i < nv; i++) {
            if (vs[i].key_id != id || strlen(vs[i].name) != nlen || memcmp(vs[i].name, name, nlen) != 0) continue;
            if (times[i]) break; /* only the first cosignature by a witness counts */
            uint64_t t = 0;
            int ok = siglen == 4 + 8 + 64;
            if (ok) {
                for (int k = 0; k < 8; k++) t = t << 8 | sig[4 + k];
                size_t mlen;
                uint8_t *m = signed_message(note, tlen, t, &mlen);
                if (!m) return pt_errf(err, PT_ENOMEM, "out of memory");
                ok = crypto_sign_verify_detached(sig + 12, m, mlen, vs[i].pub) == 0 && t > 0;
                free(m);
            }
            if (!ok)
                return pt_errf(err, PT_EVERIFY, "note: invalid cosignature by witness %s+%08x (offset %zu)", vs[i].name,
                               id, off);
            times[i] = t;
            good++;
            break;
        }
        p = nl + 1;
    }
    if (found) *found = good;
    return PT_OK;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int cosig_quorum_time(const uint64_t *times, size_t n, size_t quorum, uint64_t *t, pt_err *err) {
    uint64_t s[COSIG_MAX_WITNESSES];
    size_t k = 0;
    for (size_t i = 0; i < n && k < COSIG_MAX_WITNESSES; i++)
        if (times[i]) s[k++] = times[i];
    if (quorum == 0 || k < quorum)
        return pt_errf(err, PT_EVERIFY, "%zu of %zu witnesses cosigned the checkpoint; the quorum is %zu", k, n, quorum);
    qsort(s, k, sizeof *s, cmp_u64);
    *t = s[quorum - 1];
    return PT_OK;
}
