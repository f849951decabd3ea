/* witness.c — a C2SP tlog-witness. See witness.h. */
#include "tlog/witness.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/sha256.h"
#include "common/util.h"
#include "tlog/cosig.h"
#include "tlog/merkle.h"
#include "tlog/note.h"

struct witness {
    char *dir;
    cosig_signer signer;
    pthread_mutex_t mu;
};

static char *log_dir(const char *dir, const char *origin, size_t olen) {
    uint8_t h[32];
    char hex[17], rel[64];
    pt_sha256(origin, olen, h);
    pt_hex(h, 8, hex);
    snprintf(rel, sizeof rel, "logs/%s", hex);
    return pt_path_join(dir, rel);
}

static char *join3(const char *a, const char *b) { return pt_path_join(a, b); }

int witness_init(const char *dir, const char *name, char **vkey, pt_err *err) {
    if (vkey) *vkey = NULL;
    int rc = pt_mkdirs(dir, 1, err);
    if (rc) return rc;
    char *path = join3(dir, "witness.key");
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    if (pt_exists(path)) {
        rc = pt_errf(err, PT_ECONFLICT, "%s exists: this directory already holds a witness", path);
        free(path);
        return rc;
    }
    char *sk, *vk;
    if ((rc = cosig_generate(name, &sk, &vk, err))) {
        free(path);
        return rc;
    }
    size_t n = strlen(sk);
    sk[n] = '\n'; /* the string's NUL replaced for the write, restored below */
    rc = pt_write_atomic(path, sk, n + 1, 0600, err);
    sk[n] = 0;
    sodium_memzero(sk, n);
    free(sk);
    free(path);
    if (!rc) {
        char *logs = join3(dir, "logs");
        rc = logs ? pt_mkdirs(logs, 0, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(logs);
    }
    if (!rc && vkey) *vkey = vk;
    else free(vk);
    return rc;
}

static int read_signer(const char *dir, const char *key_file, cosig_signer *s, pt_err *err) {
    char *path = key_file ? strdup(key_file) : join3(dir, "witness.key"), *text;
    size_t len;
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = pt_read_file(path, 4096, &text, &len, err);
    if (rc == PT_ENOTFOUND) rc = pt_errf(err, PT_ENOTFOUND, "%s: no witness key (run parity witness init)", path);
    if (!rc) {
        while (len && (text[len - 1] == '\n' || text[len - 1] == '\r')) text[--len] = 0;
        rc = cosig_signer_parse(text, s, err);
        if (rc) pt_errf(err, rc, "%s: %s", path, err ? err->msg : "");
        sodium_memzero(text, len);
        free(text);
    }
    free(path);
    return rc;
}

int witness_read_vkey(const char *dir, char **vkey, pt_err *err) {
    cosig_signer s;
    int rc = read_signer(dir, NULL, &s, err);
    *vkey = rc ? NULL : cosig_signer_vkey(&s);
    sodium_memzero(&s, sizeof s);
    if (!rc && !*vkey) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    return rc;
}

int witness_add_log(const char *dir, const char *origin, const char *log_vkey, pt_err *err) {
    note_verifier v;
    int rc = note_verifier_parse(log_vkey, &v, err);
    if (rc) return rc;
    if (!*origin || strchr(origin, '\n') || strlen(origin) > 255)
        return pt_errf(err, PT_EINVAL, "origin: must be one non-empty line of at most 255 bytes");
    char *ld = log_dir(dir, origin, strlen(origin)), *path = ld ? join3(ld, "log") : NULL;
    pt_buf b;
    pt_buf_init(&b, 4096);
    if (!path || pt_buf_printf(&b, "%s\n%s\n", origin, log_vkey)) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    char *old;
    size_t olen;
    if (pt_read_file(path, 4096, &old, &olen, NULL) == PT_OK) {
        int same = olen == b.len && !memcmp(old, b.data, olen);
        free(old);
        if (!same) rc = pt_errf(err, PT_ECONFLICT, "%s: origin %s is configured with another key", path, origin);
        goto out;
    }
    if (!(rc = pt_mkdirs(ld, 0, err))) rc = pt_write_atomic(path, b.data, b.len, 0644, err);
out:
    pt_buf_free(&b);
    free(path);
    free(ld);
    return rc;
}

int witness_open(const char *dir, const char *key_file, witness **out, pt_err *err) {
    *out = NULL;
    witness *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return pt_errf(err, PT_ENOMEM, "out of memory");
    }
    int rc = read_signer(dir, key_file, &w->signer, err);
    if (rc) {
        free(w->dir);
        free(w);
        return rc;
    }
    pthread_mutex_init(&w->mu, NULL);
    *out = w;
    return PT_OK;
}

void witness_close(witness *w) {
    if (!w) return;
    sodium_memzero(&w->signer, sizeof w->signer);
    pthread_mutex_destroy(&w->mu);
    free(w->dir);
    free(w);
}

void witness_answer_free(witness_answer *a) {
    if (!a) return;
    free(a->body);
    a->body = NULL;
}

static int answer(witness_answer *a, int status, const char *ctype, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int answer(witness_answer *a, int status, const char *ctype, const char *fmt, ...) {
    pt_buf b;
    pt_buf_init(&b, 1 << 16);
    va_list ap;
    va_start(ap, fmt);
    pt_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    pt_buf_puts(&b, "\n");
    a->status = status;
    a->content_type = ctype;
    a->body = pt_buf_steal(&b, &a->len);
    if (!a->body) a->len = 0;
    return PT_OK;
}

/* The request's head: "old N\n", proof lines, blank line. *rest points at the note. */
static int parse_head(const char *body, size_t len, uint64_t *old, merkle_hash *proof, size_t *np,
                      const char **rest, char *why, size_t whylen) {
    const char *p = body, *end = body + len;
    const char *nl = memchr(p, '\n', len);
    if (!nl || nl - p < 5 || memcmp(p, "old ", 4) != 0) return snprintf(why, whylen, "the first line must be \"old <size>\""), -1;
    char num[24];
    size_t k = (size_t)(nl - p - 4);
    if (k >= sizeof num || (k > 1 && p[4] == '0')) return snprintf(why, whylen, "old: not a decimal size"), -1;
    memcpy(num, p + 4, k);
    num[k] = 0;
    if (pt_parse_u64(num, old) != 0) return snprintf(why, whylen, "old: not a decimal size"), -1;
    p = nl + 1;
    *np = 0;
    for (;;) {
        if (p >= end) return snprintf(why, whylen, "no blank line before the checkpoint"), -1;
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return snprintf(why, whylen, "no blank line before the checkpoint"), -1;
        if (nl == p) break;
        size_t hl;
        if (*np >= MERKLE_MAX_PROOF) return snprintf(why, whylen, "more than %d proof lines", MERKLE_MAX_PROOF), -1;
        if (note_b64_decode(p, (size_t)(nl - p), proof[*np], MERKLE_HASH, &hl) != 0 || hl != MERKLE_HASH)
            return snprintf(why, whylen, "proof line %zu is not a base64 32-byte hash", *np + 1), -1;
        (*np)++;
        p = nl + 1;
    }
    *rest = nl + 1;
    return 0;
}

/* Reads "<origin>\n<vkey>\n" of a configured log. 0 if configured, -1 if not. */
static int read_log_config(const char *ld, note_verifier *v) {
    char *path = join3(ld, "log"), *text = NULL;
    size_t len;
    int ok = path && pt_read_file(path, 4096, &text, &len, NULL) == PT_OK;
    free(path);
    if (!ok) return -1;
    char *nl = memchr(text, '\n', len);
    int rc = -1;
    if (nl) {
        char *vk = nl + 1, *e = strchr(vk, '\n');
        if (e) *e = 0;
        rc = note_verifier_parse(vk, v, NULL) == PT_OK ? 0 : -1;
    }
    free(text);
    return rc;
}

/* The checkpoint the witness holds for the log in ld (size 0 and the empty root if none). */
static int read_state(const char *ld, const note_verifier *v, checkpoint *c, pt_err *err) {
    memset(c, 0, sizeof *c);
    merkle_empty_root(c->root);
    char *path = join3(ld, "checkpoint"), *text;
    size_t len, tlen;
    if (!path) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = pt_read_file(path, (1u << 20), &text, &len, err);
    if (rc == PT_ENOTFOUND) {
        free(path);
        return PT_OK;
    }
    if (!rc) {
        rc = note_open(text, len, v, 1, &tlen, NULL, err);
        if (!rc) rc = checkpoint_parse(text, tlen, c, err);
        if (rc) rc = pt_errf(err, PT_EFORMAT, "%s: the stored state is unreadable: %s", path, err ? err->msg : "");
        free(text);
    }
    free(path);
    return rc;
}

static int add_locked(witness *w, const char *ld, const note_verifier *v, uint64_t old, const merkle_hash *proof,
                      size_t np, const char *note, size_t nlen, size_t tlen, const checkpoint *c, uint64_t now,
                      witness_answer *a) {
    pt_err err;
    checkpoint held;
    if (read_state(ld, v, &held, &err)) return answer(a, 500, "text/plain", "%s", err.msg);
    if (old != held.size) return answer(a, 409, "text/x.tlog.size", "%llu", (unsigned long long)held.size);
    if (old == c->size) {
        if (np || memcmp(held.root, c->root, 32) != 0)
            return answer(a, 409, "text/x.tlog.size", "%llu", (unsigned long long)held.size);
    } else if (old == 0) {
        if (np) return answer(a, 422, "text/plain", "a proof from size 0 must be empty");
    } else if (merkle_verify_consistency(old, c->size, held.root, c->root, proof, np, &err) != PT_OK) {
        return answer(a, 422, "text/plain", "consistency proof from %llu to %llu: %s", (unsigned long long)old,
                      (unsigned long long)c->size, err.msg);
    }
    char *path = join3(ld, "checkpoint");
    int rc = path ? pt_write_atomic(path, note, nlen, 0644, &err) : pt_errf(&err, PT_ENOMEM, "out of memory");
    free(path);
    if (rc) return answer(a, 500, "text/plain", "storing the new state: %s", err.msg);
    char *line;
    if (cosig_sign(note, tlen, now, &w->signer, &line, &err)) return answer(a, 500, "text/plain", "%s", err.msg);
    a->status = 200;
    a->content_type = "text/plain; charset=utf-8";
    a->body = line;
    a->len = strlen(line);
    return PT_OK;
}

int witness_add_checkpoint(witness *w, const char *body, size_t len, uint64_t now, witness_answer *a) {
    memset(a, 0, sizeof *a);
    if (len > WITNESS_MAX_REQUEST)
        return answer(a, 413, "text/plain", "request body larger than %u bytes", WITNESS_MAX_REQUEST);
    uint64_t old;
    merkle_hash proof[MERKLE_MAX_PROOF];
    size_t np;
    const char *note;
    char why[160];
    if (parse_head(body, len, &old, proof, &np, &note, why, sizeof why))
        return answer(a, 400, "text/plain", "add-checkpoint: %s", why);
    size_t nlen = len - (size_t)(note - body);
    const char *nl = memchr(note, '\n', nlen);
    if (!nl || nl == note) return answer(a, 400, "text/plain", "add-checkpoint: the checkpoint has no origin line");
    char *ld = log_dir(w->dir, note, (size_t)(nl - note));
    note_verifier v;
    if (!ld || read_log_config(ld, &v)) {
        free(ld);
        return answer(a, 404, "text/plain", "add-checkpoint: unknown log origin %.*s", (int)(nl - note > 255 ? 255 : nl - note), note);
    }
    pt_err err;
    size_t tlen;
    checkpoint c;
    int rc;
    if (note_open(note, nlen, &v, 1, &tlen, NULL, &err))
        rc = answer(a, err.code == PT_EFORMAT ? 400 : 403, "text/plain", "add-checkpoint: checkpoint: %s", err.msg);
    else if (checkpoint_parse(note, tlen, &c, &err))
        rc = answer(a, 400, "text/plain", "add-checkpoint: %s", err.msg);
    else if (old > c.size)
        rc = answer(a, 400, "text/plain", "add-checkpoint: old size %llu is larger than the checkpoint's %llu",
                    (unsigned long long)old, (unsigned long long)c.size);
    else {
        pthread_mutex_lock(&w->mu);
        rc = add_locked(w, ld, &v, old, proof, np, note, nlen, tlen, &c, now, a);
        pthread_mutex_unlock(&w->mu);
    }
    free(ld);
    return rc;
}
