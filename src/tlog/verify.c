/* verify.c — verifying any C2SP tlog-tiles log, from a directory or over http(s).
 * See tlog_verify() in tlog.h. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "tlog/merkle.h"
#include "tlog/note.h"
#include "tlog/tile.h"
#include "tlog/tlog.h"

#define MAX_BUNDLE ((size_t)TILE_WIDTH * (2 + TLOG_MAX_ENTRY))

typedef struct source {
    const char *base; /* directory or URL prefix, without a trailing '/' */
    size_t base_len;
    int http;
    CURL *curl;
    pt_buf body;
} source;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    pt_buf *b = ctx;
    size_t len = size * n;
    return pt_buf_append(b, p, len) == 0 ? len : 0; /* 0 aborts the transfer: over the limit */
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Fetches <base>/<rel> (at most max bytes) into *data and *len (caller frees). PT_ENOTFOUND for
 * a missing file or HTTP 404. */
static int fetch(source *s, const char *rel, size_t max, uint8_t **data, size_t *len, pt_err *err) {
    pt_buf url;
    pt_buf_init(&url, 16384);
    if (pt_buf_append(&url, s->base, s->base_len) || pt_buf_printf(&url, "/%s", rel)) {
        pt_buf_free(&url);
        return pt_errf(err, PT_ENOMEM, "URL too long");
    }
    int rc;
    if (!s->http) {
        char *d;
        rc = pt_read_file(url.data, max, &d, len, err);
        if (rc == PT_ENOMEM) rc = pt_errf(err, PT_EFORMAT, "%s: larger than %zu bytes", url.data, max);
        if (!rc) *data = (uint8_t *)d;
        pt_buf_free(&url);
        return rc;
    }
    pt_buf_free(&s->body);
    pt_buf_init(&s->body, max);
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(s->curl, CURLOPT_URL, url.data);
    curl_easy_setopt(s->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->curl, CURLOPT_WRITEDATA, &s->body);
    curl_easy_setopt(s->curl, CURLOPT_ERRORBUFFER, ebuf);
    CURLcode cc = curl_easy_perform(s->curl);
    long status = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    if (cc == CURLE_WRITE_ERROR) rc = pt_errf(err, PT_EFORMAT, "%s: larger than %zu bytes", url.data, max);
    else if (cc != CURLE_OK) rc = pt_errf(err, PT_EIO, "%s: %s", url.data, ebuf[0] ? ebuf : curl_easy_strerror(cc));
    else if (status == 404 || status == 410) rc = pt_errf(err, PT_ENOTFOUND, "%s: HTTP %ld", url.data, status);
    else if (status != 200) rc = pt_errf(err, PT_EIO, "%s: HTTP %ld", url.data, status);
    else {
        rc = PT_OK;
        if (!s->body.data) pt_buf_append(&s->body, "", 0);
        *data = (uint8_t *)pt_buf_steal(&s->body, len);
        if (!*data) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    }
    pt_buf_free(&url);
    return rc;
}

typedef struct vstate {
    source *src;
    pt_err *err;
} vstate;

/* tile_full_fn: compares a recomputed full hash tile with the published one. */
static int check_tile(source *s, unsigned level, uint64_t n, unsigned width, const merkle_hash *hashes, pt_err *err) {
    char rel[TILE_PATH_MAX];
    tile_path(rel, (int)level, n, width);
    uint8_t *data;
    size_t len;
    int rc = fetch(s, rel, (size_t)TILE_WIDTH * MERKLE_HASH, &data, &len, err);
    if (rc) return rc;
    if (len != (size_t)width * MERKLE_HASH)
        rc = pt_errf(err, PT_EFORMAT, "%.*s/%s: %zu bytes, expected %u (truncated or padded tile)", (int)s->base_len,
                     s->base, rel, len, width * MERKLE_HASH);
    for (unsigned i = 0; !rc && i < width; i++)
        if (memcmp(data + (size_t)i * MERKLE_HASH, hashes[i], MERKLE_HASH) != 0)
            rc = pt_errf(err, PT_EVERIFY, "%.*s/%s: hash %u (offset %u) does not match the one recomputed from the entries",
                         (int)s->base_len, s->base, rel, i, i * MERKLE_HASH);
    free(data);
    return rc;
}

static int on_full(void *ctx, unsigned level, uint64_t n, const merkle_hash *hashes, pt_err *err) {
    return check_tile(ctx, level, n, TILE_WIDTH, hashes, err);
}

static int open_checkpoint(const char *text, size_t len, const note_verifier *v, checkpoint *c, const char *what,
                           pt_err *err) {
    size_t tlen;
    int rc = note_open(text, len, v, 1, &tlen, NULL, err);
    if (!rc) rc = checkpoint_parse(text, tlen, c, err);
    if (rc) pt_err_prefix(err, "%s", what);
    return rc;
}

/* Sets up s for fetching from src_path (a directory or an http(s) URL prefix). */
static int source_open(source *s, const char *src_path, pt_err *err) {
    memset(s, 0, sizeof *s);
    s->base = src_path;
    s->base_len = strlen(src_path);
    while (s->base_len > 1 && s->base[s->base_len - 1] == '/') s->base_len--;
    s->http = !strncmp(src_path, "http://", 7) || !strncmp(src_path, "https://", 8);
    pt_buf_init(&s->body, 1);
    if (s->http) {
        pthread_once(&curl_once, curl_init_once);
        if (!(s->curl = curl_easy_init())) return pt_errf(err, PT_EINTERNAL, "curl_easy_init failed");
        curl_easy_setopt(s->curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(s->curl, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(s->curl, CURLOPT_CONNECTTIMEOUT, 30L);
        curl_easy_setopt(s->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(s->curl, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(s->curl, CURLOPT_USERAGENT, "parity-tlog-verify/0.1");
        curl_easy_setopt(s->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(s->curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(s->curl, CURLOPT_ACCEPT_ENCODING, ""); /* tiles may be served gzipped */
    }
    return PT_OK;
}

static void source_close(source *s) {
    pt_buf_free(&s->body);
    if (s->curl) curl_easy_cleanup(s->curl);
    s->curl = NULL;
}

/* see tlog.h */
int tlog_fetch(const char *src_path, const char *rel, size_t max, uint8_t **data, size_t *len, pt_err *err) {
    *data = NULL;
    *len = 0;
    /* rel comes from callers that may build it from log entries: keep it inside the source. */
    if (!*rel || rel[0] == '/' || strstr(rel, "..") || strpbrk(rel, "?#\\"))
        return pt_errf(err, PT_EINVAL, "'%s' is not a plain relative path inside the log", rel);
    source s;
    int rc = source_open(&s, src_path, err);
    if (!rc) rc = fetch(&s, rel, max, data, len, err);
    source_close(&s);
    return rc;
}

int tlog_verify(const char *src_path, const char *vkey, const char *trusted_checkpoint, tlog_entry_fn fn, void *ctx,
                tlog_verified *out, pt_err *err) {
    if (out) memset(out, 0, sizeof *out);
    note_verifier v;
    int rc = note_verifier_parse(vkey, &v, err);
    if (rc) return rc;
    source s;
    if ((rc = source_open(&s, src_path, err))) {
        source_close(&s);
        return rc;
    }
    uint8_t *cp_data = NULL, *bundle = NULL;
    size_t cp_len;
    tile_stack *st = calloc(1, sizeof *st);
    size_t *offs = malloc(TILE_WIDTH * sizeof *offs), *lens = malloc(TILE_WIDTH * sizeof *lens);
    if (!st || !offs || !lens) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto out;
    }
    checkpoint c, old = {0};
    if ((rc = fetch(&s, "checkpoint", TLOG_MAX_CHECKPOINT, &cp_data, &cp_len, err))) goto out;
    char what[600];
    snprintf(what, sizeof what, "%.*s/checkpoint", (int)s.base_len, s.base);
    if ((rc = open_checkpoint((const char *)cp_data, cp_len, &v, &c, what, err))) goto out;
    int have_old = trusted_checkpoint != NULL;
    if (have_old) {
        if ((rc = open_checkpoint(trusted_checkpoint, strlen(trusted_checkpoint), &v, &old, "trusted checkpoint", err)))
            goto out;
        if (strcmp(old.origin, c.origin) != 0) {
            rc = pt_errf(err, PT_EVERIFY, "trusted checkpoint is for origin '%s', the log's is '%s'", old.origin, c.origin);
            goto out;
        }
        if (old.size > c.size) {
            rc = pt_errf(err, PT_EVERIFY, "the log (size %llu) is smaller than the trusted checkpoint (size %llu): "
                         "it was rolled back or forked", (unsigned long long)c.size, (unsigned long long)old.size);
            goto out;
        }
        if (old.size == 0) {
            uint8_t empty[32];
            merkle_empty_root(empty);
            if (memcmp(empty, old.root, 32) != 0) {
                rc = pt_errf(err, PT_EVERIFY, "trusted checkpoint of size 0 has a root that is not the empty tree's");
                goto out;
            }
        }
    }
    for (uint64_t k = 0; k * TILE_WIDTH < c.size; k++) {
        unsigned w = tile_width(TILE_ENTRIES, k, c.size);
        char rel[TILE_PATH_MAX], bwhat[700];
        tile_path(rel, TILE_ENTRIES, k, w);
        snprintf(bwhat, sizeof bwhat, "%.*s/%s", (int)s.base_len, s.base, rel);
        size_t blen;
        if ((rc = fetch(&s, rel, MAX_BUNDLE, &bundle, &blen, err))) goto out;
        if ((rc = tile_parse_bundle(bundle, blen, w, offs, lens, bwhat, err))) goto out;
        for (unsigned i = 0; i < w; i++) {
            uint8_t leaf[32];
            merkle_leaf_hash(bundle + offs[i], lens[i], leaf);
            if ((rc = tile_stack_push(st, leaf, on_full, &s, err))) goto out;
            if (have_old && st->size == old.size) {
                uint8_t r[32];
                tile_stack_root(st, r);
                if (memcmp(r, old.root, 32) != 0) {
                    rc = pt_errf(err, PT_EVERIFY, "the log is not consistent with the trusted checkpoint: its first %llu "
                                 "entries do not hash to the trusted root", (unsigned long long)old.size);
                    goto out;
                }
            }
            if (fn && fn(ctx, st->size - 1, bundle + offs[i], lens[i])) {
                rc = pt_errf(err, PT_ECANCELLED, "stopped by the caller at entry %llu", (unsigned long long)(st->size - 1));
                goto out;
            }
        }
        free(bundle);
        bundle = NULL;
    }
    for (unsigned l = 0; l < TILE_LEVELS; l++) { /* the partial tiles on the right edge */
        unsigned w = tile_stack_width(st, l);
        if (w && (rc = check_tile(&s, l, (c.size >> (TILE_HEIGHT * l)) >> TILE_HEIGHT, w, (const merkle_hash *)st->h[l], err)))
            goto out;
    }
    uint8_t root[32];
    tile_stack_root(st, root);
    if (memcmp(root, c.root, 32) != 0) {
        rc = pt_errf(err, PT_EVERIFY, "%s: the root hash of the %llu entries does not match the signed root", what,
                     (unsigned long long)c.size);
        goto out;
    }
    if (out) {
        snprintf(out->origin, sizeof out->origin, "%s", c.origin);
        out->size = c.size;
        memcpy(out->root, c.root, 32);
        out->trusted_size = have_old ? old.size : 0;
    }
out:
    free(bundle);
    free(cp_data);
    free(st);
    free(offs);
    free(lens);
    source_close(&s);
    return rc;
}
