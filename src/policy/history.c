/* history.c — policy revisions in the transparency log. See history.h. */
#include "policy/history.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/sha256.h"
#include "common/util.h"

#define DIGEST_PREFIX "sha256:"
#define DIGEST_LEN (7 + 64)
/* A summary line longer than this is cut (a free-text reason in a forbid can be long). */
#define SUMMARY_LINE_MAX 1024

typedef pt_revision_entry rev_meta;

/* Serialises applies in this process: two concurrent applies must not both read revision N
 * and both append N+1. (Other processes cannot hold the log at the same time.) */
static pthread_mutex_t apply_mu = PTHREAD_MUTEX_INITIALIZER;

static const char empty_policy[] =
    "{\"version\":1,\"lab\":{\"id\":\"none\",\"name\":\"no policy revision applied yet\"},"
    "\"models\":[],\"organisations\":[]}";

void pt_apply_result_free(pt_apply_result *r) {
    if (!r) return;
    json_decref(r->summary);
    r->summary = NULL;
}

static int digest_ok(const char *s) {
    if (strlen(s) != DIGEST_LEN || strncmp(s, DIGEST_PREFIX, 7) != 0) return 0;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

int64_t pt_revision_in_force_from(const pt_revision_entry *e) { return e->time; }

/* see history.h */
int pt_revision_entry_parse(const uint8_t *data, size_t len, uint64_t index, const char *where, rev_meta *m,
                            pt_err *err) {
    char what[600];
    snprintf(what, sizeof what, "%s: entry %llu", where, (unsigned long long)index);
    pt_err perr;
    json_t *j = pt_json_parse((const char *)data, len, 8, what, &perr);
    if (!j) {
        /* Not JSON: not one of ours, unless it claims to be a revision (then hiding it by
         * breaking its syntax must not make the verifier skip it silently). */
        if (memmem(data, len, "policy_revision", 15))
            return pt_errf(err, PT_EFORMAT, "%s: a malformed policy_revision entry: %s", what, perr.msg);
        return 0;
    }
    const char *type = json_is_object(j) ? json_string_value(json_object_get(j, "type")) : NULL;
    if (!type || strcmp(type, "policy_revision") != 0) {
        json_decref(j);
        return 0;
    }
    int rc = PT_OK;
    memset(m, 0, sizeof *m);
    m->index = index;
    json_t *seq = json_object_get(j, "seq"), *dg = json_object_get(j, "digest"), *prev = json_object_get(j, "prev");
    json_t *tm = json_object_get(j, "time"), *sum = json_object_get(j, "summary");
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (strcmp(k, "type") && strcmp(k, "seq") && strcmp(k, "digest") && strcmp(k, "prev") && strcmp(k, "time") &&
            strcmp(k, "summary")) {
            rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision: unknown key '%s'", what, k);
            goto out;
        }
    }
    if (!json_is_integer(seq) || json_integer_value(seq) < 1)
        rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.seq: must be an integer >= 1", what);
    else if (!json_is_string(dg) || !digest_ok(json_string_value(dg)))
        rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.digest: must be \"sha256:<64 lower-case hex>\"", what);
    else if (!prev || (!json_is_null(prev) && (!json_is_string(prev) || !digest_ok(json_string_value(prev)))))
        rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.prev: must be null or \"sha256:<64 lower-case hex>\"", what);
    else if (!json_is_string(tm))
        rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.time: missing or not a string", what);
    else if (!json_is_array(sum))
        rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.summary: missing or not an array", what);
    for (size_t i = 0; !rc && i < json_array_size(sum); i++)
        if (!json_is_string(json_array_get(sum, i)))
            rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.summary[%zu]: not a string", what, i);
    if (rc) goto out;
    if (pt_parse_time(json_string_value(tm), &m->time, &perr)) {
        rc = pt_errf(err, PT_EFORMAT, "%s: policy_revision.time: %s", what, perr.msg);
        goto out;
    }
    m->seq = (int64_t)json_integer_value(seq);
    snprintf(m->digest, sizeof m->digest, "%s", json_string_value(dg));
    if (json_is_string(prev)) snprintf(m->prev, sizeof m->prev, "%s", json_string_value(prev));
    rc = 1;
out:
    json_decref(j);
    return rc;
}

/* The latest policy_revision in t: 1 and *m filled, 0 when there is none, or an error. */
static int find_latest(tlog *t, rev_meta *m, pt_err *err) {
    for (uint64_t i = tlog_size(t); i-- > 0;) {
        uint8_t *data;
        size_t len;
        int rc = tlog_entry(t, i, &data, &len, err);
        if (rc) return rc;
        rc = pt_revision_entry_parse(data, len, i, tlog_origin(t), m, err);
        free(data);
        if (rc) return rc;
    }
    return 0;
}

/* Fetches <source>/revisions/<hex>.json, checks its SHA-256 against m->digest, and parses it. */
static int load_revision(const char *source, const rev_meta *m, pt_policy **out, pt_err *err) {
    *out = NULL;
    char rel[128], where[1200];
    snprintf(rel, sizeof rel, "revisions/%s.json", m->digest + 7);
    snprintf(where, sizeof where, "%s/%s", source, rel);
    uint8_t *data;
    size_t len;
    int rc = tlog_fetch(source, rel, PT_REVISION_MAX, &data, &len, err);
    if (rc) {
        pt_err_prefix(err, "revision %lld (log entry %llu)", (long long)m->seq, (unsigned long long)m->index);
        return rc;
    }
    uint8_t h[32];
    char hex[65];
    pt_sha256(data, len, h);
    pt_hex(h, 32, hex);
    if (strcmp(hex, m->digest + 7) != 0) {
        rc = pt_errf(err, PT_EVERIFY, "%s: its SHA-256 is %s, but log entry %llu (revision %lld) says %s", where, hex,
                     (unsigned long long)m->index, (long long)m->seq, m->digest + 7);
    } else if (!(*out = pt_policy_parse((const char *)data, len, where, err))) {
        rc = err ? err->code : PT_EFORMAT;
        if (rc == PT_OK) rc = PT_EFORMAT;
    }
    free(data);
    return rc;
}

static char *policy_source(const char *data_dir) { return pt_path_join(data_dir, "log/policy"); }

/* Appends s (cut at SUMMARY_LINE_MAX bytes, on a UTF-8 boundary) to arr. */
static int append_line(json_t *arr, const char *s) {
    size_t n = strlen(s);
    if (n <= SUMMARY_LINE_MAX) return json_array_append_new(arr, json_string(s));
    size_t cut = SUMMARY_LINE_MAX - 3;
    while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    char *t = malloc(cut + 4);
    if (!t) return -1;
    memcpy(t, s, cut);
    memcpy(t + cut, "...", 4);
    int rc = json_array_append_new(arr, json_string(t));
    free(t);
    return rc;
}

/* The summary as logged: the lines in order while their compact JSON stays within
 * PT_REVISION_SUMMARY_MAX, then "... and K more". */
static json_t *capped_summary(const json_t *lines) {
    json_t *out = json_array();
    if (!out) return NULL;
    size_t total = 2, n = json_array_size(lines), i;
    const size_t reserve = 64; /* room for the "... and K more" line */
    for (i = 0; i < n; i++) {
        json_t *one = json_array();
        if (!one || append_line(one, json_string_value(json_array_get(lines, i)))) {
            json_decref(one);
            json_decref(out);
            return NULL;
        }
        char *enc = json_dumps(json_array_get(one, 0), JSON_ENCODE_ANY | JSON_COMPACT);
        size_t sz = enc ? strlen(enc) + 1 : 0;
        free(enc);
        if (!sz || total + sz + reserve > PT_REVISION_SUMMARY_MAX) {
            json_decref(one);
            break;
        }
        total += sz;
        json_array_append(out, json_array_get(one, 0));
        json_decref(one);
    }
    if (i < n) {
        char more[64];
        snprintf(more, sizeof more, "... and %zu more", n - i);
        json_array_append_new(out, json_string(more));
    }
    return out;
}

/* see history.h */
int pt_policy_current(tlog *policy_log, const char *data_dir, pt_policy **out, char digest[72], int64_t *seq,
                      pt_err *err) {
    *out = NULL;
    if (digest) digest[0] = 0;
    if (seq) *seq = 0;
    rev_meta m;
    int rc = find_latest(policy_log, &m, err);
    if (rc < 0) return rc;
    if (rc == 0) {
        *out = pt_policy_parse(empty_policy, sizeof empty_policy - 1, "(empty policy)", err);
        return *out ? PT_OK : pt_errf(err, PT_EINTERNAL, "the empty policy did not parse");
    }
    char *src = policy_source(data_dir);
    if (!src) return pt_errf(err, PT_ENOMEM, "out of memory");
    rc = load_revision(src, &m, out, err);
    free(src);
    if (rc) return rc;
    if (digest) memcpy(digest, m.digest, 72);
    if (seq) *seq = m.seq;
    return PT_OK;
}

/* The writer's last check before a revision is stored for good: its canonical bytes, parsed
 * back as every later reader will parse them, must give the same policy (the same canonical
 * bytes). A revision that does not would brick the log: it is append-only. */
static int check_round_trip(const char *canon, size_t clen, const char *what, pt_err *err) {
    pt_err e;
    pt_policy *q = pt_policy_parse(canon, clen, "(its canonical form)", &e);
    char *again = NULL;
    size_t alen = 0;
    int rc = q ? pt_policy_canonical(q, &again, &alen, NULL, &e) : e.code ? e.code : PT_EFORMAT;
    if (rc)
        rc = pt_errf(err, PT_EFORMAT, "%s: its canonical form does not parse back (%s); not appended", what, e.msg);
    else if (alen != clen || memcmp(again, canon, clen) != 0)
        rc = pt_errf(err, PT_EFORMAT, "%s: its canonical form parses back to another policy; not appended", what);
    free(again);
    pt_policy_free(q);
    return rc;
}

/* see history.h */
int pt_policy_in_force(tlog *policy_log, const char *data_dir, int64_t at, pt_policy **out, char digest[72],
                       int64_t *seq, int64_t *next, pt_err *err) {
    *out = NULL;
    if (digest) digest[0] = 0;
    if (seq) *seq = 0;
    rev_meta *metas = NULL;
    pt_policy_revision *revs = NULL;
    size_t n = 0, cap = 0;
    int rc = PT_OK;
    for (uint64_t i = 0, size = tlog_size(policy_log); i < size && !rc; i++) {
        uint8_t *data;
        size_t len;
        if ((rc = tlog_entry(policy_log, i, &data, &len, err))) break;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            rev_meta *m = realloc(metas, cap * sizeof *m);
            if (!m) rc = pt_errf(err, PT_ENOMEM, "out of memory");
            else metas = m;
        }
        if (!rc && (rc = pt_revision_entry_parse(data, len, i, tlog_origin(policy_log), &metas[n], err)) == 1) {
            n++;
            rc = PT_OK;
        }
        free(data);
    }
    if (!rc && n && !(revs = calloc(n, sizeof *revs))) rc = pt_errf(err, PT_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) revs[i].time = pt_revision_in_force_from(&metas[i]);
    size_t k = rc ? n : pt_policy_revision_in_force(revs, n, at, next);
    if (!rc && k == n) {
        *out = pt_policy_parse(empty_policy, sizeof empty_policy - 1, "(empty policy)", err);
        if (!*out) rc = pt_errf(err, PT_EINTERNAL, "the empty policy did not parse");
    } else if (!rc) {
        char *src = policy_source(data_dir);
        rc = src ? load_revision(src, &metas[k], out, err) : pt_errf(err, PT_ENOMEM, "out of memory");
        free(src);
        if (!rc && digest) memcpy(digest, metas[k].digest, 72);
        if (!rc && seq) *seq = metas[k].seq;
    }
    free(revs);
    free(metas);
    return rc;
}

static int apply_locked(tlog *t, const char *data_dir, const char *text, size_t len, const char *what, int64_t now,
                        pt_apply_result *out, pt_err *err) {
    pt_policy *p = NULL, *cur = NULL;
    char *canon = NULL, *src = NULL, *dir = NULL, *path = NULL, *entry = NULL;
    json_t *lines = NULL, *e = NULL;
    size_t clen;
    int rc;
    rev_meta m;
    if (!(p = pt_policy_parse(text, len, what, err))) return err && err->code ? err->code : PT_EFORMAT;
    if ((rc = pt_policy_canonical(p, &canon, &clen, out->digest, err))) goto done;
    if ((rc = check_round_trip(canon, clen, what, err))) goto done;
    if ((rc = find_latest(t, &m, err)) < 0) goto done;
    int have = rc == 1;
    rc = PT_OK;
    if (!(src = policy_source(data_dir))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto done;
    }
    if (have && (rc = load_revision(src, &m, &cur, err))) {
        pt_err_prefix(err, "the current policy");
        goto done;
    }
    if (have && !strcmp(m.digest, out->digest)) {
        out->changed = 0;
        out->seq = (uint64_t)m.seq;
        memcpy(out->prev, m.prev, sizeof out->prev);
        out->time = m.time;
        out->index = m.index;
        if (!(out->summary = json_array())) rc = pt_errf(err, PT_ENOMEM, "out of memory");
        snprintf(out->message, sizeof out->message, "no change: %s is revision %lld (log entry %llu)", out->digest,
                 (long long)m.seq, (unsigned long long)m.index);
        goto done;
    }
    if (!(lines = pt_policy_diff(cur, p))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto done;
    }
    if (json_array_size(lines) == 0) /* same meaning, different bytes: still a revision, said so */
        json_array_append_new(lines, json_string("no semantic change (the canonical form differs)"));
    int64_t when = have && now < m.time ? m.time : now;
    char tb[21];
    pt_format_time(when, tb);
    /* 1. the revision file, durably, before the entry that names it */
    char rel[128];
    snprintf(rel, sizeof rel, "revisions/%s.json", out->digest + 7);
    if (!(dir = pt_path_join(src, "revisions")) || !(path = pt_path_join(src, rel))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = pt_mkdirs(dir, 0, err)) || (rc = pt_write_atomic(path, canon, clen, 0644, err))) goto done;
    /* 2. the entry */
    uint64_t seq = have ? (uint64_t)m.seq + 1 : 1;
    e = json_object();
    json_t *capped = capped_summary(lines);
    if (!e || !capped) {
        json_decref(capped);
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto done;
    }
    json_object_set_new(e, "type", json_string("policy_revision"));
    json_object_set_new(e, "seq", json_integer((json_int_t)seq));
    json_object_set_new(e, "digest", json_string(out->digest));
    json_object_set_new(e, "prev", have ? json_string(m.digest) : json_null());
    json_object_set_new(e, "time", json_string(tb));
    json_object_set_new(e, "summary", capped);
    if (!(entry = pt_json_dump(e))) {
        rc = pt_errf(err, PT_ENOMEM, "out of memory");
        goto done;
    }
    size_t elen = strlen(entry);
    if (elen > TLOG_MAX_ENTRY) { /* cannot happen with the caps above; kept as a guard */
        rc = pt_errf(err, PT_EINTERNAL, "policy_revision entry of %zu bytes exceeds the log's limit", elen);
        goto done;
    }
    uint64_t index;
    if ((rc = tlog_append(t, entry, elen, &index, err))) goto done;
    out->changed = 1;
    out->seq = seq;
    snprintf(out->prev, sizeof out->prev, "%s", have ? m.digest : "");
    out->time = when;
    out->index = index;
    out->summary = lines;
    lines = NULL;
    snprintf(out->message, sizeof out->message, "applied revision %llu: %s at %s (log entry %llu)",
             (unsigned long long)seq, out->digest, tb, (unsigned long long)index);
done:
    json_decref(lines);
    json_decref(e);
    free(entry);
    free(path);
    free(dir);
    free(src);
    free(canon);
    pt_policy_free(cur);
    pt_policy_free(p);
    return rc;
}

/* see history.h */
int pt_policy_apply(tlog *policy_log, const char *data_dir, const char *text, size_t len, const char *what,
                    int64_t now, pt_apply_result *out, pt_err *err) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&apply_mu);
    int rc = apply_locked(policy_log, data_dir, text, len, what, now, out, err);
    pthread_mutex_unlock(&apply_mu);
    if (rc) pt_apply_result_free(out);
    return rc;
}

/* ---- history from a verified log ------------------------------------------------------- */

typedef struct collect {
    const char *source;
    rev_meta *revs;
    size_t n, cap;
    int rc;          /* the first error in an entry (reported only if the log verifies) */
    pt_err err;
} collect;

static int on_entry(void *ctx, uint64_t index, const uint8_t *data, size_t len) {
    collect *c = ctx;
    if (c->rc) return 0;
    rev_meta m;
    int rc = pt_revision_entry_parse(data, len, index, c->source, &m, &c->err);
    if (rc < 0) {
        c->rc = rc;
        return 0;
    }
    if (rc == 0) return 0;
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 16;
        rev_meta *r = realloc(c->revs, nc * sizeof *r);
        if (!r) {
            c->rc = pt_errf(&c->err, PT_ENOMEM, "out of memory");
            return 1;
        }
        c->revs = r;
        c->cap = nc;
    }
    c->revs[c->n++] = m;
    return 0;
}

void pt_policy_history_free(pt_policy_history *h) {
    if (!h) return;
    for (size_t i = 0; i < h->n; i++) {
        pt_policy_free((pt_policy *)h->revs[i].policy);
        free((char *)h->revs[i].digest);
    }
    free(h->revs);
    free(h->log_index);
    free(h);
}

/* see history.h */
int pt_policy_history_load(const char *source, const char *vkey, const char *trusted_checkpoint,
                           pt_policy_history **out, pt_err *err) {
    *out = NULL;
    collect c = {.source = source};
    pt_err_clear(&c.err);
    pt_policy_history *h = calloc(1, sizeof *h);
    if (!h) return pt_errf(err, PT_ENOMEM, "out of memory");
    int rc = tlog_verify(source, vkey, trusted_checkpoint, on_entry, &c, &h->verified, err);
    if (rc == PT_ECANCELLED && c.rc) rc = c.rc;
    if (rc == PT_OK && c.rc) rc = c.rc;
    if (rc && c.rc == rc && err) *err = c.err;
    if (rc) goto fail;
    /* the chain: seq 1..n in log order, each prev the digest before it, times in order */
    for (size_t i = 0; i < c.n; i++) {
        const rev_meta *m = &c.revs[i], *pm = i ? &c.revs[i - 1] : NULL;
        if (m->seq != (int64_t)i + 1) {
            rc = pt_errf(err, PT_EVERIFY, "%s: entry %llu: policy revision seq %lld, expected %zu (revisions lost or "
                         "repeated)", source, (unsigned long long)m->index, (long long)m->seq, i + 1);
        } else if (strcmp(m->prev, pm ? pm->digest : "") != 0) {
            rc = pt_errf(err, PT_EVERIFY, "%s: entry %llu: revision %lld names prev %s, but revision %zu is %s", source,
                         (unsigned long long)m->index, (long long)m->seq, m->prev[0] ? m->prev : "null", i,
                         pm ? pm->digest : "(none)");
        } else if (pm && m->time < pm->time) {
            rc = pt_errf(err, PT_EVERIFY, "%s: entry %llu: revision %lld takes effect before revision %zu", source,
                         (unsigned long long)m->index, (long long)m->seq, i);
        }
        if (rc) goto fail;
    }
    if (c.n) {
        h->revs = calloc(c.n, sizeof *h->revs);
        h->log_index = calloc(c.n, sizeof *h->log_index);
        if (!h->revs || !h->log_index) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < c.n; i++) {
        pt_policy *p;
        if ((rc = load_revision(source, &c.revs[i], &p, err))) goto fail;
        h->revs[i].policy = p;
        h->revs[i].time = pt_revision_in_force_from(&c.revs[i]);
        h->revs[i].seq = (uint64_t)c.revs[i].seq;
        h->log_index[i] = c.revs[i].index;
        h->n = i + 1;
        if (!(h->revs[i].digest = strdup(c.revs[i].digest))) {
            rc = pt_errf(err, PT_ENOMEM, "out of memory");
            goto fail;
        }
    }
    free(c.revs);
    *out = h;
    return PT_OK;
fail:
    free(c.revs);
    pt_policy_history_free(h);
    return rc;
}

int pt_policy_history_witness(pt_policy_history *h, const char *source, const char *vkey, const char *const *wvkeys,
                              size_t n, size_t quorum, const tlog_witnessed *latest, size_t *dropped, pt_err *err) {
    *dropped = 0;
    tlog_witnessed *w;
    size_t nw;
    int rc = tlog_witnessed_load(source, vkey, wvkeys, n, quorum, h->verified.size, &w, &nw, err);
    if (rc) return rc;
    if (latest) {
        tlog_witnessed *nw2 = realloc(w, (nw + 1) * sizeof *w);
        if (!nw2) {
            free(w);
            return pt_errf(err, PT_ENOMEM, "out of memory");
        }
        w = nw2;
        w[nw++] = *latest;
    }
    size_t keep = h->n;
    for (size_t i = 0; i < h->n; i++) {
        uint64_t t = tlog_witnessed_time(w, nw, h->log_index[i]);
        if (!t) { /* no quorum-cosigned checkpoint holds it yet: neither are the later ones */
            keep = i;
            break;
        }
        pt_policy_revision *r = &h->revs[i];
        r->stated_time = r->time;
        r->witnessed = 1;
        if ((int64_t)t > r->time) r->time = (int64_t)t;
    }
    free(w);
    for (size_t i = keep; i < h->n; i++) {
        pt_policy_free((pt_policy *)h->revs[i].policy);
        free((char *)h->revs[i].digest);
    }
    *dropped = h->n - keep;
    h->n = keep;
    return PT_OK;
}

int pt_policy_history_date(pt_policy_history *h, const char *source, const char *vkey, const char *const *wvkeys,
                           size_t n, size_t quorum, int strict, size_t *dropped, pt_err *err) {
    const char *pk[TLOG_MAX_WITNESSES];
    *dropped = 0;
    if (!n && h->n) {
        const pt_policy *p = h->revs[h->n - 1].policy;
        for (size_t i = 0; i < p->n_witnesses && i < TLOG_MAX_WITNESSES; i++) pk[n++] = p->witnesses[i].vkey;
        quorum = (size_t)p->witness_quorum;
        wvkeys = pk;
    }
    if (!n) return PT_OK;
    uint8_t *cp = NULL;
    size_t len;
    tlog_witnessed latest;
    pt_err e;
    int rc = tlog_fetch(source, "checkpoint", TLOG_MAX_CHECKPOINT, &cp, &len, err);
    if (rc) return rc;
    rc = tlog_check_quorum((const char *)cp, len, wvkeys, n, quorum, &latest.size, &latest.time, &e);
    free(cp);
    if (rc && (strict || rc != PT_EVERIFY)) return pt_errf(err, rc, "%s/checkpoint: %s", source, e.msg);
    size_t had = h->n;
    if ((rc = pt_policy_history_witness(h, source, vkey, wvkeys, n, quorum, rc ? NULL : &latest, dropped, err)))
        return rc;
    if (had && !h->n)
        return pt_errf(err, PT_EVERIFY, "%s: no checkpoint holding policy revision 1 carries cosignatures by %zu of the "
                       "%zu witnesses yet: no revision is witnessed", source, quorum, n);
    return PT_OK;
}

size_t pt_policy_revision_in_force(const pt_policy_revision *revs, size_t n, int64_t at, int64_t *next) {
    size_t k = 0; /* revisions dated at or before `at` */
    while (k < n && revs[k].time <= at) k++;
    if (next) *next = k < n ? revs[k].time : INT64_MAX;
    return k ? k - 1 : n;
}
